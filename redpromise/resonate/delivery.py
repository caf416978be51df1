"""Messages from Redis to the SSE connections of this replica.

The transition scripts write every message into Redis, never into a process's memory, so a
replica that dies loses none:

- ``poll://any@G[/P]`` messages are entries of group G's dispatch streams (``{ns:k}:q:G``,
  one per partition, the streams redpromise's own dispatch uses). A replica holding a
  connection of G reads them as a consumer of G's consumer group, offers each to one of its
  connections (P's when P is connected here), then acknowledges and deletes it. An entry
  nobody is connected for waits in the stream until a member of G connects; one read by a
  replica that died before offering it is claimed (``XAUTOCLAIM``) by a live replica.
- ``poll://uni@G/P`` messages are published on one channel; the replica holding P's
  connection offers it, the others ignore it. A message for a process connected nowhere
  is dropped, as the protocol allows: a pending task is offered again by the tick (its
  retry timer or its lapsed lease), and a listener's process reads the promise when it
  reconnects.

A message is never trusted for state: an execute is an invitation to ``task.acquire`` at a
version, which the store refuses (409) once stale.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redpromise.core.keys import Keys
from redpromise.redis.classify import cause_of
from redpromise.redis.kinds import is_cluster
from redpromise.redis.replies import ErrorReply
from redpromise.resonate.pollers import Pollers, parse_address

__all__ = ["GroupFeed", "UnicastFeed", "consumer_name", "execute_frame", "frame", "unblock_frame"]

log = logging.getLogger("redpromise.resonate")

RecordOf = Callable[[str], Awaitable[dict[str, Any] | None]]

_COUNT = 256  # entries per read
_BLOCK_MS = 1000
_CLAIM_IDLE_MS = 5000  # an entry read but not acknowledged this long: its replica died


def consumer_name() -> str:
    """This replica's consumer name in every group it reads: unique per process."""
    return f"serve:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def frame(message: dict[str, Any]) -> bytes:
    """One SSE frame carrying ``message``."""
    return b"data: " + json.dumps(message, separators=(",", ":")).encode() + b"\n\n"


def execute_frame(id: str, version: int) -> bytes:
    return frame({"kind": "execute", "head": {}, "data": {"task": {"id": id, "version": version}}})


def unblock_frame(record: dict[str, Any]) -> bytes:
    return frame({"kind": "unblock", "head": {}, "data": {"promise": record}})


def _text(v: Any) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


async def _message_frame(kind: str, id: str, version: str, record_of: RecordOf) -> bytes | None:
    """The frame of one message, or ``None`` when it can no longer be formed (the promise of
    an unblock is gone)."""
    if kind == "e":
        return execute_frame(id, int(version or 0))
    record = await record_of(id)
    return None if record is None else unblock_frame(record)


class GroupFeed:
    """Reads group ``group``'s dispatch streams for this replica's connections of it."""

    def __init__(
        self,
        redis: Any,
        keys: Keys,
        group: str,
        consumer: str,
        pollers: Pollers,
        record_of: RecordOf,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.group = group
        self.consumer = consumer
        self.pollers = pollers
        self.record_of = record_of
        self.streams = [keys.stream(k, group) for k in range(keys.partitions)]
        self._grouped = False
        self._backlog = True  # this consumer's entries read earlier and never acknowledged
        self._refused: set[str] = set()  # redpromise entries already logged (one line each)

    async def ensure_groups(self) -> None:
        """Create the consumer group on every stream of the group, from the start of the
        stream: entries written before any member ever connected are delivered too."""
        for key in self.streams:
            try:
                await self.redis.xgroup_create(key, self.group, id="0", mkstream=True)
            except ErrorReply as exc:  # BUSYGROUP: it exists, as wanted
                if cause_of(exc) != "BUSYGROUP":
                    raise
        self._grouped = True

    def member_joined(self) -> None:
        """A connection of the group opened here: offer this consumer's entries that no
        connection took (their connections were closing) before new ones."""
        self._backlog = True

    async def read_once(self) -> int:
        """One read of new entries (blocking up to a second on one server); offers them."""
        if not self._grouped:
            await self.ensure_groups()
        if self._backlog:
            # A feed stopped when its group's last connection went, with entries read but
            # taken by no connection (they were closing): the next feed of this replica
            # offers them first, rather than leaving them to the claim of idle entries.
            got = 0
            for key in self.streams:
                got += await self._offer_all(await self._read({key: "0"}, block=None))
            self._backlog = False
            return got
        if is_cluster(self.redis):
            got = 0
            for key in self.streams:  # one slot per call on a cluster
                resp = await self._read({key: ">"}, block=None)
                got += await self._offer_all(resp)
            if not got:
                await asyncio.sleep(0.05)
            return got
        resp = await self._read(dict.fromkeys(self.streams, ">"), block=_BLOCK_MS)
        return await self._offer_all(resp)

    async def _read(self, streams: dict[str, str], block: int | None) -> Any:
        try:
            return await self.redis.xreadgroup(
                self.group, self.consumer, streams, count=_COUNT, block=block
            )
        except ErrorReply as exc:
            if cause_of(exc) == "NOGROUP":
                self._grouped = False  # a stream was deleted: make the groups again
            raise

    async def claim_once(self) -> int:
        """Take over entries another replica read and never acknowledged (it died)."""
        got = 0
        for key in self.streams:
            resp = await self.redis.xautoclaim(
                key, self.group, self.consumer, _CLAIM_IDLE_MS, "0-0", count=_COUNT
            )
            entries = resp[1] if resp else []
            got += await self._offer(key, entries)
        return got

    async def _offer_all(self, resp: Any) -> int:
        if not resp:
            return 0
        items = resp.items() if isinstance(resp, dict) else resp
        got = 0
        for key, entries in items:
            if (
                entries
                and isinstance(entries[0], list)
                and not isinstance(entries[0][0], bytes | str)
            ):
                entries = entries[0]  # RESP3 nesting
            got += await self._offer(_text(key), entries)
        return got

    def _refuse(self, id: str, entry: str) -> None:
        """Say once per entry why a redpromise dispatch is not offered."""
        if entry in self._refused:
            return
        if len(self._refused) > 10_000:
            self._refused.clear()
        self._refused.add(entry)
        log.error(
            "promise %r of group %r is a redpromise promise (msgpack), which Resonate SDK "
            "workers cannot run: its entry %s is left for the group's redpromise workers. A "
            "group is served by one kind of runtime at a time",
            id, self.group, entry,
        )  # fmt: skip

    async def _offer(self, key: str, entries: Sequence[Any]) -> int:
        done: list[Any] = []
        for entry in entries:
            if entry is None:
                continue
            if entry[1] is None:  # deleted while pending: nothing to offer, only to ack
                done.append(entry[0])
                continue
            entry_id, raw = entry[0], entry[1]
            fields = {_text(k): _text(v) for k, v in raw.items()}
            id = fields.get("id")
            if id is None:
                done.append(entry_id)  # not a protocol message: nothing to offer
                continue
            if "k" not in fields:
                # redpromise's own dispatch (every protocol message carries k): a Resonate
                # worker cannot run it. Left in this consumer's pending list, never
                # acknowledged, so a redpromise worker of the group reclaims it.
                self._refuse(id, _text(entry_id))
                continue
            message = await _message_frame(
                fields.get("k", "e"), id, fields.get("v", "0"), self.record_of
            )
            if message is None or self.pollers.anycast(self.group, fields.get("p"), message):
                done.append(entry_id)
            # else: no connection took it (all gone meanwhile): left pending, claimed later
        if done:
            await self.redis.xack(key, self.group, *done)
            await self.redis.xdel(key, *done)
        return len(done)


class UnicastFeed:
    """The channel of ``poll://uni@…`` messages, offered to this replica's connections."""

    def __init__(self, redis: Any, channel: str, pollers: Pollers, record_of: RecordOf) -> None:
        self.redis = redis
        self.channel = channel
        self.pollers = pollers
        self.record_of = record_of
        self._pubsub: Any = None

    async def listen_once(self) -> None:
        """Wait up to a second for one message and offer it; (re)subscribes as needed."""
        if self._pubsub is None:
            # Kept before subscribing: a stop that cancels the subscribe still closes it.
            self._pubsub = self.redis.pubsub()
            try:
                await self._pubsub.subscribe(self.channel)
            except BaseException:
                await self.close()
                raise
        try:
            msg = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
        except Exception:
            await self.close()
            raise
        if msg is None or msg.get("type") != "message":
            return
        await self.offer(_text(msg["data"]))

    async def offer(self, payload: str) -> bool:
        """Offer one published message ``kind\\nversion\\naddress\\nid`` if its process is
        connected here."""
        parts = payload.split("\n", 3)
        if len(parts) != 4:
            log.warning("ignored a malformed message on %s", self.channel)
            return False
        kind, version, address_text, id = parts
        address = parse_address(address_text)
        if address is None or address.pid is None:
            return False
        if not self.pollers.holds(address.group, address.pid):
            return False
        message = await _message_frame(kind, id, version, self.record_of)
        return message is not None and self.pollers.unicast(address, message)

    async def close(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            try:
                await pubsub.aclose()
            except Exception:  # closing a broken connection: nothing to keep
                log.debug("closing the pub/sub connection failed", exc_info=True)
