"""How a worker takes new entries from its group's streams (``XREADGROUP ... >``).

- :class:`StreamReads`, on one server: one blocking ``XREADGROUP`` names every
  partition's stream, so one command waits for all of them.
- :class:`PartitionReads`, on a cluster, which refuses a read of several slots: one
  blocking ``XREADGROUP`` per partition, each on a connection of the node that holds it,
  all waiting at once. An idle worker costs one command per partition per ``block``
  period, and a new entry wakes its read at once, as on one server. While entries keep
  coming (a wake-up delivered several), the next read is one non-blocking pass over every
  partition, one buffer per node: entries are taken in bulk, not a round trip each.

Reads are never resent after a lost connection (a second read would deliver other
entries; those of a lost reply wait in the consumer's pending list until reclaimed).
An error reply is raised; the caller decides (``NOGROUP``: create the groups again).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

from redis import exceptions as rex

from ._codec import as_text
from ._wire import AnyRedis, exchange

__all__ = ["Delivery", "PartitionReads", "StreamReads", "parse_read"]

Delivery = tuple[int, str, Any]  # (partition, entry id, fields)


def parse_read(resp: Any, index: dict[str, int]) -> list[Delivery]:
    """Entries of a raw XREADGROUP reply: a map (RESP3) or pairs (RESP2) of streams."""
    out: list[Delivery] = []
    items = resp.items() if isinstance(resp, dict) else (resp or [])
    for stream, entries in items:
        k = index.get(as_text(stream))
        if k is None:
            continue
        for entry_id, fields in entries:
            out.append((k, as_text(entry_id), fields))
    return out


class StreamReads:
    """One blocking read over every usable partition's stream (a single server)."""

    def __init__(
        self, redis: AnyRedis, head: list[Any], streams: list[str], block_ms: int
    ) -> None:
        self._redis = redis
        self._head = head  # XREADGROUP GROUP <group> <consumer>
        self._streams = streams
        self._index = {s: k for k, s in enumerate(streams)}
        self._block_ms = block_ms
        self._tail: list[Any] = []

    def use(self, partitions: Sequence[int]) -> None:
        """Read only these partitions from now on."""
        streams = [self._streams[k] for k in partitions]
        self._tail = (
            ["BLOCK", self._block_ms, "STREAMS", *streams, *[">"] * len(streams)]
            if streams
            else []
        )

    async def read(self, free: int) -> list[Delivery]:
        if not self._tail:
            await asyncio.sleep(self._block_ms / 1000)
            return []
        count = max(1, min(free, 500) // len(self._streams))
        (resp,) = await exchange(
            self._redis, [[*self._head, "COUNT", count, *self._tail]], resend=False
        )
        if isinstance(resp, rex.ResponseError):
            raise resp
        return parse_read(resp, self._index)

    async def close(self) -> None:
        return None


class PartitionReads:
    """One blocking read per partition, all outstanding at once (a cluster)."""

    def __init__(
        self, redis: AnyRedis, head: list[Any], streams: list[str], block_ms: int
    ) -> None:
        self._redis = redis
        self._head = head
        self._streams = streams
        self._index = {s: k for k, s in enumerate(streams)}
        self._block_ms = block_ms
        self._active: list[int] = []
        self._reads: dict[int, asyncio.Task[Any]] = {}
        self._error: BaseException | None = None
        self._busy = False  # the last wake-up delivered several entries

    def use(self, partitions: Sequence[int]) -> None:
        self._active = list(partitions)
        for k in set(self._reads) - set(partitions):
            self._reads.pop(k).cancel()

    async def _read(self, k: int, count: int) -> Any:
        cmd = [*self._head, "COUNT", count, "BLOCK", self._block_ms, "STREAMS"]
        (resp,) = await exchange(self._redis, [[*cmd, self._streams[k], ">"]], resend=False)
        return resp

    async def read(self, free: int) -> list[Delivery]:
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        if not self._active:
            await asyncio.sleep(self._block_ms / 1000)
            return []
        count = max(1, min(free, 500) // len(self._active))
        if self._busy:
            out = await self._poll(count)
            if out:
                return out
            self._busy = False  # a quiet moment: park a read on every partition again
        for k in self._active:
            if k not in self._reads:
                self._reads[k] = asyncio.create_task(self._read(k, count))
        done, _ = await asyncio.wait(self._reads.values(), return_when=asyncio.FIRST_COMPLETED)
        out = self._collect({k for k, t in self._reads.items() if t in done})
        failed = self._take_error()
        if failed is not None and not out:
            raise failed
        self._error = failed
        # More than one entry at a wake-up: entries are flowing, so take them in bulk.
        self._busy = len(out) > 1
        return out

    async def _poll(self, count: int) -> list[Delivery]:
        """While entries keep coming: one non-blocking read of every partition without a
        parked read, one buffer per node, instead of a wake-up (and a round trip) per
        partition and entry. Also hands over what parked reads delivered meanwhile."""
        ks = [k for k in self._active if k not in self._reads]
        cmd = [*self._head, "COUNT", count, "STREAMS"]
        replies = await exchange(
            self._redis, [[*cmd, self._streams[k], ">"] for k in ks], resend=False
        )
        out = self._collect({k for k, t in self._reads.items() if t.done()})
        for resp in replies:
            if isinstance(resp, Exception):
                self._error = self._error or resp  # raised by the next call
            else:
                out += parse_read(resp, self._index)
        return out

    def _take_error(self) -> BaseException | None:
        error, self._error = self._error, None
        return error

    def _collect(self, ks: set[int]) -> list[Delivery]:
        """Entries of the finished parked reads of partitions ``ks``; an error is kept
        for the next call, after the entries other partitions delivered."""
        out: list[Delivery] = []
        for k in ks:
            task = self._reads.pop(k)
            try:
                resp = task.result()
                # An error reply, or (on a cluster, where a node's lost connection comes
                # back in its commands' places instead of being raised) a connection error.
                if isinstance(resp, Exception):
                    raise resp
            except Exception as exc:
                self._error = self._error or exc
                continue
            out += parse_read(resp, self._index)
        return out

    async def close(self) -> None:
        tasks = list(self._reads.values())
        self._reads.clear()
        for t in tasks:
            t.cancel()
        if tasks:
            with contextlib.suppress(Exception):
                await asyncio.wait(tasks, timeout=5)
