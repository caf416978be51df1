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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from hiredis import pack_command
from redis.asyncio import Redis, RedisCluster
from redis.exceptions import DataError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeout

from ._errors import StoreUnavailable

__all__ = ["Ack", "AnyRedis", "exchange", "pack", "with_wait"]

# What redpromise talks to: one server (or a replica set behind one address), or a cluster.
AnyRedis = Redis | RedisCluster


def pack(commands: Sequence[Sequence[Any]]) -> bytes:
    """RESP-encode a batch of commands (each a sequence of ``str``/``bytes``/``int``).

    hiredis (required through ``redis[hiredis]``) packs in C, five times faster than
    Python; it refuses any other type, which is reported as redis-py's ``DataError``.
    """
    try:
        return b"".join([pack_command(tuple(c)) for c in commands])
    except TypeError as exc:
        raise DataError(f"invalid argument for a Redis command: {exc}") from exc


@dataclass(frozen=True, slots=True)
class Ack:
    """Durable writes are acknowledged only once ``replicas`` replicas have them
    (``WAIT replicas timeout_ms`` after them, on the same connection)."""

    replicas: int
    timeout_ms: int


def with_wait(
    commands: Sequence[Sequence[Any]], durable: Sequence[bool] | None, ack: Ack | None
) -> tuple[list[Sequence[Any]], Callable[[list[Any]], list[Any]]]:
    """``commands`` with a ``WAIT`` after them when one is durable, and the function that
    takes the replies back: the WAIT's own reply dropped, and each durable write's reply
    replaced by :class:`StoreUnavailable` when too few replicas acknowledged it."""
    if ack is None or not durable or not any(durable):
        return list(commands), _same
    wait = ["WAIT", ack.replicas, ack.timeout_ms]

    def check(replies: list[Any]) -> list[Any]:
        got, out = replies[-1], replies[:-1]
        if isinstance(got, int) and got >= ack.replicas:
            return out
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


async def exchange(
    redis: AnyRedis,
    commands: Sequence[Sequence[Any]],
    *,
    resend: bool = True,
    durable: Sequence[bool] | None = None,
    ack: Ack | None = None,
) -> list[Any]:
    """Send ``commands`` in one write; their replies in order.

    An error reply comes back in its slot as the exception redis-py maps it to (e.g.
    ``NoScriptError``); a connection failure is retried per the client's ``Retry`` by
    resending the whole batch, then raised. ``resend=False`` is for commands that are not
    replay-safe (``XREADGROUP ... >`` delivers new entries each time): a failure is
    raised at once, and the caller decides. With ``ack``, the ``durable`` commands are
    followed by a ``WAIT`` (see :func:`with_wait`).
    """
    if isinstance(redis, RedisCluster):
        from ._cluster import cluster_exchange

        return await cluster_exchange(redis, commands, resend=resend, durable=durable, ack=ack)
    commands, check = with_wait(commands, durable, ack)
    packed = pack(commands)
    n = len(commands)
    faults = getattr(redis, "_redpromise_faults", None)  # redpromise.testing.FaultyRedis
    if faults is not None:
        return check(await faults.exchange(commands, lambda: _send(redis, packed, n, resend)))
    return check(await _send(redis, packed, n, resend))


async def _send(redis: Redis, packed: bytes, n: int, resend: bool) -> list[Any]:
    pool = redis.connection_pool
    conn = await pool.get_connection()  # type: ignore[no-untyped-call]
    try:

        async def once() -> list[Any]:
            return await _roundtrip(conn, packed, n)

        async def failed(_error: Exception) -> None:
            await conn.disconnect()

        if not resend:
            try:
                return await once()
            except BaseException:
                await conn.disconnect()
                raise
        out: list[Any] = await conn.retry.call_with_retry(once, failed)
        return out
    finally:
        await pool.release(conn)


async def _roundtrip(conn: Any, packed: bytes, n: int) -> list[Any]:
    # One timeout for the whole batch instead of one per reply; cancelling a read
    # disconnects the connection (redis-py does so on any BaseException), so a
    # half-read batch never goes back to the pool.
    limit = conn.socket_timeout
    out: list[Any] = []
    try:
        async with asyncio.timeout(limit):
            await conn.send_packed_command(packed)
            for _ in range(n):
                try:
                    out.append(await conn.read_response(timeout=math.inf))
                except ResponseError as exc:
                    out.append(exc)
    except TimeoutError as exc:
        await conn.disconnect(nowait=True)
        raise RedisTimeout(f"no reply from Redis within {limit}s") from exc
    return out
