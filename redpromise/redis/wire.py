"""Batches of commands sent as one pre-packed buffer on one pooled connection.

redis-py's pipeline encodes every argument through its ``Encoder``, packs each command
into a list of chunks, wraps each reply read in its own timeout and runs a response
callback per command; on the hot path (a batch of ``acquire`` or ``complete`` calls)
that was a third of a worker's CPU. Here the arguments of a whole batch, which
redpromise builds itself from ``str``, ``bytes`` and ``int`` only, are packed into one
buffer, written once, and the replies read back raw under one timeout for the batch.

Connections still come from the client's own pool, so TLS, ACL, RESP version, health
checks and the client's ``Retry`` (reconnect and resend after a connection error) are
redis-py's. Only replay-safe commands go through here: a resent batch is harmless.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from hiredis import pack_command
from redis.asyncio import Redis, RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeout

from redpromise.core.errors import StoreUnavailable
from redpromise.redis import redispy as _redispy

__all__ = [
    "NOTHING_BUFFERED",
    "Ack",
    "AnyRedis",
    "buffered",
    "bulk",
    "pack",
    "roundtrip",
    "send_to_server",
    "server_name",
    "short_of_replicas",
    "with_wait",
]

# What redpromise talks to: one server (or a replica set behind one address), or a cluster.
AnyRedis = Redis | RedisCluster


def pack(
    commands: Sequence[Sequence[Any]], packed: Sequence[bytes | None] | None = None
) -> bytes:
    """RESP-encode a batch of commands (each a sequence of ``str``/``bytes``/``int``).

    hiredis (required through ``redis[hiredis]``) packs in C, five times faster than
    Python; it refuses any other type, which is reported as redis-py's ``DataError``.
    ``packed[i]``, when given and not ``None``, is taken as command i's encoding as it
    stands (a caller that built it from cached pieces, see ``redpromise/store/prepack.py``).
    """
    try:
        if packed is None:
            return b"".join([pack_command(tuple(c)) for c in commands])
        return b"".join(
            [
                p if p is not None else pack_command(tuple(c))
                for c, p in zip(commands, packed, strict=True)
            ]
        )
    except TypeError as exc:
        raise DataError(f"invalid argument for a Redis command: {exc}") from exc


def bulk(arg: str | bytes | int) -> bytes:
    """One argument as a RESP bulk string (``$<len>\\r\\n<arg>\\r\\n``), as :func:`pack`
    encodes it inside a command: a piece to cache for arguments that repeat."""
    packed: bytes = pack_command((arg,))
    return packed[4:]  # without the "*1\r\n" array header


@dataclass(frozen=True, slots=True)
class Ack:
    """Durable writes are acknowledged only once ``replicas`` replicas have them
    (``WAIT replicas timeout_ms`` after them, on the same connection)."""

    replicas: int
    timeout_ms: int


# Shards ("host:port" of their master) whose last durable write in this process had too
# few replicas for Settings.replicas_ack -> when this process first saw it so (ms since
# the epoch). A write acknowledged in full removes the shard. Kept in the process that
# saw the refusals (no Redis write): its dashboard, /metrics and health() show it.
_SHORT_OF_REPLICAS: dict[str, int] = {}


def short_of_replicas() -> dict[str, int]:
    """``{shard: since_ms}``: the shards refusing this process's writes for want of
    replicas (``NOREPLICAS``), since when (ms since the epoch), until one is acknowledged."""
    return dict(_SHORT_OF_REPLICAS)


def server_name(redis: Any) -> str:
    """``host:port`` (or the socket path) of a single-server client's Redis."""
    kw = getattr(getattr(redis, "connection_pool", None), "connection_kwargs", {})
    return str(kw.get("path") or f"{kw.get('host', '?')}:{kw.get('port', '?')}")


def with_wait(
    commands: Sequence[Sequence[Any]],
    durable: Sequence[bool] | None,
    ack: Ack | None,
    shard: str = "",
) -> tuple[list[Sequence[Any]], Callable[[list[Any]], list[Any]]]:
    """``commands`` with a ``WAIT`` after them when one is durable, and the function that
    takes the replies back: the WAIT's own reply dropped, and each durable write's reply
    replaced by :class:`StoreUnavailable` when too few replicas acknowledged it (``shard``,
    the master they went to, is then in :func:`short_of_replicas` until a write is)."""
    if ack is None or not durable or not any(durable):
        return list(commands), _same
    wait = ["WAIT", ack.replicas, ack.timeout_ms]

    def check(replies: list[Any]) -> list[Any]:
        got, out = replies[-1], replies[:-1]
        if isinstance(got, int) and got >= ack.replicas:
            _SHORT_OF_REPLICAS.pop(shard, None)
            return out
        if isinstance(got, int):  # not an error reply about the WAIT itself
            _SHORT_OF_REPLICAS.setdefault(shard, int(time.time() * 1000))
        err = StoreUnavailable(
            f"the write was not acknowledged by {ack.replicas} replica(s) within "
            f"{ack.timeout_ms} ms (WAIT answered {got!r}); it may or may not survive a "
            "failover: repeat it (every redpromise write is idempotent by id)",
            "NOREPLICAS",
        )
        return [
            err if d and not isinstance(r, BaseException) else r
            for r, d in zip(out, durable, strict=True)
        ]

    return [*commands, wait], check


def _same(replies: list[Any]) -> list[Any]:
    return replies


async def send_to_server(
    redis: Redis,
    commands: Sequence[Sequence[Any]],
    *,
    resend: bool = True,
    durable: Sequence[bool] | None = None,
    ack: Ack | None = None,
    packed: Sequence[bytes | None] | None = None,
) -> list[Any]:
    """:func:`redpromise.redis.batch.send_batch` to one server (see there)."""
    n = len(commands)
    commands, check = with_wait(commands, durable, ack, server_name(redis) if ack else "")
    if packed is not None and len(commands) > n:
        packed = [*packed, None]  # the WAIT
    data = pack(commands, packed)
    return check(await _send(redis, data, len(commands), resend))


# Connections kept out of the pool between batches: at most this many per pool, for at
# most about this many seconds without a batch; only from pools allowed this many.
_KEEP = 4
_KEEP_IDLE = 1.0
_KEEP_FROM = 64


class _KeptConnections:
    """Connections of one pool kept (still checked out) between batches.

    Taking a connection from redis-py's pool and giving it back costs a lock, a
    condition, a timeout, a readiness check and metrics each way: more than a small
    batch itself. A connection that served a batch in full is kept for the next one,
    and given back once no batch came for :data:`_KEEP_IDLE` seconds. One the pool has
    forgotten meanwhile (``ConnectionPool.reset()``) is closed, never used again; one
    that is stale (disconnected by ``pool.disconnect()`` or a failover, closed by the
    server) is given back, and the pool's checkout reconnects it. Pools with fewer than
    :data:`_KEEP_FROM` connections allowed keep none: other callers may need them.
    """

    __slots__ = ("busy", "conns", "pool", "timer")

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.conns: list[Any] = []
        self.busy = False
        self.timer: asyncio.TimerHandle | None = None

    def take(self) -> Any:
        while self.conns:
            conn = self.conns.pop()
            if _redispy.stale(conn) or not _ours(self.pool, conn):
                # The pool's checkout checks, and reconnects, what is given back to it.
                _background(_give_back(self.pool, conn))
                continue
            self.busy = True
            return conn
        return None

    def keep(self, conn: Any) -> bool:
        if len(self.conns) >= _KEEP or not conn.is_connected or not _ours(self.pool, conn):
            return False
        self.conns.append(conn)
        if self.timer is None:
            self.timer = asyncio.get_running_loop().call_later(_KEEP_IDLE, self.sweep)
        return True

    def sweep(self) -> None:
        if self.busy and self.conns:
            self.busy = False
            self.timer = asyncio.get_running_loop().call_later(_KEEP_IDLE, self.sweep)
            return
        self.timer = None
        conns, self.conns = self.conns, []
        for conn in conns:
            _background(_give_back(self.pool, conn))


def _ours(pool: Any, conn: Any) -> bool:
    # Looked up each time: reset() gives the pool a new set of connections in use.
    in_use = _redispy.in_use(pool)
    return in_use is not None and conn in in_use


async def _give_back(pool: Any, conn: Any) -> None:
    """Release ``conn`` to ``pool``; or, when the pool was reset since it handed ``conn``
    out (its release would fail: the pool no longer knows it), close it."""
    if _ours(pool, conn):
        await pool.release(conn)
    else:
        await conn.disconnect()


_releasing: set[asyncio.Task[Any]] = set()


def _background(coro: Any) -> None:
    task = asyncio.ensure_future(coro)
    _releasing.add(task)
    task.add_done_callback(_releasing.discard)


def _kept_connections(pool: Any) -> _KeptConnections | None:
    kept: _KeptConnections | None = getattr(pool, "_redpromise_kept", None)
    if kept is None:
        if (
            _redispy.in_use(pool) is None
            or (getattr(pool, "max_connections", 0) or 0) < _KEEP_FROM
        ):
            return None  # another pool layout, or a small pool: nothing kept
        kept = _KeptConnections(pool)
        pool._redpromise_kept = kept
    return kept


async def _send(redis: Redis, packed: bytes, n: int, resend: bool) -> list[Any]:
    pool = redis.connection_pool
    # Not for a command that cannot be resent: a kept connection the server closed
    # unnoticed fails its write, where the pool's check would have reconnected first.
    kept = _kept_connections(pool) if resend else None
    conn = kept.take() if kept is not None else None
    if conn is None:
        conn = await _redispy.checkout(pool)
    answered = False
    try:

        async def once() -> list[Any]:
            return await roundtrip(conn, packed, n)

        async def failed(_error: Exception) -> None:
            await conn.disconnect()

        if not resend:
            try:
                out = await once()
            except BaseException:
                await conn.disconnect()
                raise
        else:
            out = await conn.retry.call_with_retry(once, failed)
        answered = True
        return out
    finally:
        # Kept only after every reply was read: nothing of this batch is left unread.
        if not answered or kept is None or not kept.keep(conn):
            await _give_back(pool, conn)


async def roundtrip(conn: Any, packed: bytes, n: int) -> list[Any]:
    # One timeout for the whole batch instead of one per reply; cancelling a read
    # disconnects the connection (redis-py does so on any BaseException), so a
    # half-read batch never goes back to the pool.
    limit = conn.socket_timeout
    out: list[Any] = []
    try:
        async with asyncio.timeout(limit):
            await conn.send_packed_command(packed)
            take = _redispy.buffered_replies(conn)
            push = _redispy.push_type(conn) or _NEVER
            for _ in range(n):
                # Most replies of a batch arrive together: each one already whole in the
                # parser's buffer is taken straight from it; read_response does the rest.
                if take is not None:
                    try:
                        reply = take()
                        if reply is not NOTHING_BUFFERED:
                            if _unusual(reply, push):
                                reply = await _handle_unusual_reply(conn, reply)
                            out.append(reply)
                            continue
                    except BaseException:
                        await conn.disconnect(nowait=True)
                        raise
                try:
                    out.append(await conn.read_response(timeout=math.inf))
                except ResponseError as exc:
                    out.append(exc)
    except TimeoutError as exc:
        await conn.disconnect(nowait=True)
        raise RedisTimeout(f"no reply from Redis within {limit}s") from exc
    except (AttributeError, RuntimeError) as exc:
        # redis-py's cluster client disconnects every connection of a node it drops from
        # its topology (a failover), including one in use here: its next write meets a
        # writer set to None, or a closed transport. That is a lost connection, not a bug.
        if conn.is_connected:
            raise
        raise RedisConnectionError(f"connection closed while in use: {exc}") from exc
    if take is not None:
        _redispy.mark_used(conn)  # what read_response does after each reply
    return out


NOTHING_BUFFERED: Any = _redispy.NOT_ENOUGH_DATA
"""What :func:`buffered`'s function returns when no whole reply is buffered."""


def buffered(conn: Any) -> Callable[[], Any] | None:
    """A function giving the next reply of ``conn`` already whole in its parser's buffer
    (:data:`NOTHING_BUFFERED` when there is none), or raising it as ``read_response``
    would (an error reply, a lost connection); ``None`` where
    :func:`redpromise.redis.redispy.buffered_replies` finds no reader to take replies from.
    For RESP2 connections that only read (a subscription): ``read_response`` costs
    several µs per reply around the parser."""
    gets = _redispy.buffered_replies(conn)
    if gets is None:
        return None

    def take() -> Any:
        reply = gets()
        if reply is NOTHING_BUFFERED:
            return NOTHING_BUFFERED
        if isinstance(reply, BaseException):
            raise reply
        if type(reply) is list and reply and isinstance(reply[0], RedisConnectionError):
            raise reply[0]
        return reply

    return take


class _NEVER:
    """No reply is of this type (the parser has no RESP3 push type)."""


def _unusual(reply: Any, push: type) -> bool:
    """Not a plain reply: what the hiredis parser's ``read_response`` acts on."""
    t = type(reply)
    if t is list:
        return bool(reply) and isinstance(reply[0], RedisConnectionError)
    if t is bytes or t is int or reply is None:
        return False
    return isinstance(reply, (RedisConnectionError, push))


async def _handle_unusual_reply(conn: Any, reply: Any) -> Any:
    """What the hiredis parser's ``read_response`` does with an unusual reply: raise a
    connection error; hand a RESP3 push to the connection's handler and read on."""
    if isinstance(reply, RedisConnectionError):
        raise reply
    if isinstance(reply, list):
        raise reply[0]
    await _redispy.handle_push(conn, reply)
    try:
        return await conn.read_response(timeout=math.inf)
    except ResponseError as exc:
        return exc
