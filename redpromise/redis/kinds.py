"""One server or a cluster: which kind of Redis a client talks to, and the few reads and
connections that differ between the two.

The wings above this one tell the kinds apart only through these names, so that redis-py's
client classes stay inside the redis wing.
"""

from __future__ import annotations

from typing import Any, TypeGuard

from redis.asyncio import RedisCluster

from redpromise.redis import redispy as _redispy
from redpromise.redis.wire import AnyRedis, server_name

__all__ = ["any_node_info", "is_cluster", "own_connection_recipe", "primaries_info"]


def is_cluster(redis: AnyRedis) -> TypeGuard[RedisCluster]:
    """Whether ``redis`` is a cluster client (else a client of one server)."""
    return isinstance(redis, RedisCluster)


async def any_node_info(redis: AnyRedis, section: str) -> dict[str, Any]:
    """``INFO section`` of the server, or of any one node of a cluster (for what every
    node shares, such as the server version)."""
    if is_cluster(redis):
        return await redis.info(section, target_nodes=RedisCluster.RANDOM)
    return await redis.info(section)


async def primaries_info(redis: AnyRedis, section: str) -> list[tuple[str, dict[str, Any]]]:
    """``(name, INFO section)`` of every primary of a cluster, one after the other, or of
    the one server; ``name`` is ``host:port`` (or the socket path)."""
    if not is_cluster(redis):
        return [(server_name(redis), await redis.info(section))]
    return [
        (node.name, await redis.execute_command("INFO", section, target_nodes=node))
        for node in redis.get_primaries()
    ]


def own_connection_recipe(redis: AnyRedis) -> tuple[Any, dict[str, Any]]:
    """The class and keyword arguments of a connection of redpromise's own to the server
    (to a cluster's default node): see :func:`redpromise.redis.redispy.connection_recipe`."""
    if isinstance(redis, RedisCluster):
        return _redispy.connection_recipe(redis.get_default_node())
    return _redispy.connection_recipe(redis.connection_pool)
