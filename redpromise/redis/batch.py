"""Send a batch of commands: the one entry point, to one server or to a cluster.

Three levels, each adding one thing: :func:`send_batch` (raw commands, one write per
node), :func:`redpromise.store.scripts.run_calls` (script calls: a NOSCRIPT reply loads
the script and sends those calls again) and ``Store.run_calls`` (the store's connection
and its ``replicas_ack``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.asyncio import RedisCluster

from redpromise.redis.cluster import send_to_cluster
from redpromise.redis.wire import Ack, AnyRedis, send_to_server

__all__ = ["send_batch"]


async def send_batch(
    redis: AnyRedis,
    commands: Sequence[Sequence[Any]],
    *,
    resend: bool = True,
    durable: Sequence[bool] | None = None,
    ack: Ack | None = None,
    packed: Sequence[bytes | None] | None = None,
) -> list[Any]:
    """Send ``commands`` in one write; their replies in order.

    An error reply comes back in its slot as the exception redis-py maps it to (e.g.
    ``NoScriptError``); a connection failure is retried per the client's ``Retry`` by
    resending the whole batch, then raised. ``resend=False`` is for commands that are not
    replay-safe (``XREADGROUP ... >`` delivers new entries each time): a failure is
    raised at once, and the caller decides. With ``ack``, the ``durable`` commands are
    followed by a ``WAIT`` (see :func:`with_wait`). ``packed``: see :func:`pack` (a
    cluster client packs per node from ``commands``).
    """
    if isinstance(redis, RedisCluster):
        return await send_to_cluster(redis, commands, resend=resend, durable=durable, ack=ack)
    return await send_to_server(
        redis, commands, resend=resend, durable=durable, ack=ack, packed=packed
    )
