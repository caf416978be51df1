"""One subscribed connection of the completion listener (:mod:`redpromise.client.waiter`):
opening and subscribing it, reading its messages, and pinging it while it is quiet.

Each message read is handed to the listener; the reads of promises it asks for are
coalesced: one read of the waited-on promises per burst of notifications.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from typing import Any, Protocol

from redpromise.redis.wire import NOTHING_BUFFERED, buffered, pack

__all__ = ["CompletionListener", "SubscribedConnection", "open_subscribed"]

_MESSAGE = (b"message", "message", b"smessage", "smessage")
# Sent by a cluster node when a slot (with its shard channels) moved away.
_MOVED_AWAY = (b"sunsubscribe", "sunsubscribe")
_PING_AFTER = 15.0  # seconds of silence before the listener pings its connection
_SILENT = 10.0  # seconds a ping (or a subscription) may take before the connection counts as dead


class CompletionListener(Protocol):
    """What a :class:`SubscribedConnection` tells, and asks of, the listener it serves."""

    closing: bool  # set when the listener stops: leave the loops
    safety_poll: float  # seconds between reads of everything waited on

    def heard_id(self, conn: SubscribedConnection, id: str) -> None:
        """A completion announced by the promise's id only."""

    def heard_outcome(self, conn: SubscribedConnection, data: bytes) -> None:
        """A completion message carrying its outcome (``lua/includes/settle.lua``)."""

    def read_if_waited(self, ids: set[str]) -> None:
        """Read, in the background, the promises of ``ids`` still waited on."""

    def read_all_waited(self) -> None:
        """Read, in the background, every promise waited on (the safety poll)."""


async def open_subscribed(cls: Any, base: dict[str, Any], command: str, channels: list[str]) -> Any:
    """A new connection (``cls(**base)``, in RESP2) subscribed to ``channels`` by
    ``command`` (``SUBSCRIBE`` or ``SSUBSCRIBE``), within :data:`_SILENT` seconds."""
    # Its own pings only (see SubscribedConnection.tick): redis-py's health check would
    # read the PONG itself, racing the reader for the replies of one connection.
    conn: Any = cls(**{**base, "protocol": 2, "health_check_interval": 0})
    try:
        async with asyncio.timeout(_SILENT):
            await conn.connect()
            if command == "SSUBSCRIBE":  # one slot per command: one command per channel
                await conn.send_packed_command(pack([[command, ch] for ch in channels]))
            else:
                await conn.send_command(command, *channels)
            for _ in channels:  # one confirmation per channel
                await conn.read_response(timeout=math.inf)
    except BaseException:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.disconnect(), 2.0)
        raise
    return conn


class SubscribedConnection:
    """One live subscribed connection of a listener: its reader (:meth:`read`) and its
    ticker (:meth:`tick`), each running until the connection fails or falls silent."""

    def __init__(self, listener: CompletionListener, conn: Any, *, poll: bool) -> None:
        self.listener = listener
        self.conn = conn
        self.poll = poll  # this connection's ticker runs the process's safety poll
        self.loop = asyncio.get_running_loop()
        self.heard = self.loop.time()
        self.ids: set[str] = set()  # promises to read at the end of this burst
        self.flushing = False

    def flush(self) -> None:
        self.flushing = False
        batch, self.ids = self.ids, set()
        self.listener.read_if_waited(batch)

    def read_soon(self, id: str) -> None:
        """Read promise ``id`` (if still waited on) once the messages received are parsed."""
        self.ids.add(id)
        if not self.flushing:
            # Everything already received is parsed before this runs: one read of the
            # waited-on promises per burst of notifications.
            self.flushing = True
            self.loop.call_soon(self.flush)

    async def read(self) -> None:
        listener = self.listener
        take = buffered(self.conn)
        while not listener.closing:
            msg = await self.conn.read_response(timeout=math.inf)
            self.heard = self.loop.time()
            self.heard_message(msg)
            # Completions come in bursts (a batch of them settled together): the ones
            # already whole in the buffer are taken straight from it.
            while take is not None and not listener.closing:
                msg = take()
                if msg is NOTHING_BUFFERED:
                    break
                self.heard_message(msg)

    def heard_message(self, msg: Any) -> None:
        listener = self.listener
        if type(msg) is list and len(msg) == 3 and msg[0] in _MESSAGE:
            data = msg[2]
            if type(data) is not bytes:
                listener.heard_id(self, str(data))
            elif data[:1] == b"\0":
                listener.heard_outcome(self, data)
            else:
                listener.heard_id(self, data.decode("utf-8", "replace"))
        elif type(msg) is list and msg and msg[0] in _MOVED_AWAY:
            raise ConnectionError("a slot moved to another node: subscribing again")

    async def tick(self) -> None:
        listener = self.listener
        next_poll = self.loop.time() + listener.safety_poll
        pinged_at: float | None = None
        while not listener.closing:
            await asyncio.sleep(min(1.0, listener.safety_poll))
            now = self.loop.time()
            if self.poll and now >= next_poll:
                next_poll = now + listener.safety_poll
                listener.read_all_waited()
            if pinged_at is not None and self.heard >= pinged_at:
                pinged_at = None  # heard from Redis since the ping: the connection is alive
            if pinged_at is None:
                if now - self.heard >= _PING_AFTER:
                    pinged_at = now
                    await self.conn.send_command("PING", check_health=False)
            elif now - pinged_at > _SILENT:
                raise ConnectionError(f"no reply to a ping within {now - pinged_at:.0f}s")
