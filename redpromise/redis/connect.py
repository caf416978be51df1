"""How a client reaches Redis: one server or a cluster, and what it checks on the way."""

from __future__ import annotations

import logging
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from redpromise.core.codec import as_text
from redpromise.core.errors import ConfigurationError, StoreError
from redpromise.redis.classify import translate_errors
from redpromise.redis.cluster import connect_cluster
from redpromise.redis.wire import AnyRedis

__all__ = ["connect", "connect_cluster_client", "decodes", "warn_eviction"]

log = logging.getLogger("redpromise")


def connect(url: str) -> Redis:
    """A client whose pool waits for a free connection instead of failing when more
    than ``max_connections`` commands run at once, and whose commands retry after a
    connection error (``Redis.from_url`` retries none: after a Redis restart every
    stale pooled connection failed one command). Every redpromise write is replay-safe.
    """
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=100,
        timeout=30,
        socket_connect_timeout=5,
        socket_timeout=30,
        health_check_interval=15,
        retry=Retry(ExponentialWithJitterBackoff(base=0.01, cap=1), 3),
    )
    return Redis.from_pool(pool)


def connect_cluster_client(url: str) -> RedisCluster:
    """A cluster client built from the same URL (TLS, ACL user, timeouts): the same
    per-command retry as :func:`connect`, and the slot map refreshed on redirections."""
    return connect_cluster(
        url,
        max_connections=100,
        socket_connect_timeout=5,
        socket_timeout=30,
        health_check_interval=15,
        retry=Retry(ExponentialWithJitterBackoff(base=0.01, cap=1), 3),
    )


def decodes(redis: AnyRedis) -> bool:
    if isinstance(redis, RedisCluster):
        return bool(redis.get_connection_kwargs().get("decode_responses"))
    return bool(redis.connection_pool.connection_kwargs.get("decode_responses"))


def _nested(cfg: Any) -> bool:
    return bool(cfg) and all(isinstance(v, dict) for v in cfg.values())


async def warn_eviction(redis: AnyRedis) -> None:
    """Log a warning when Redis may evict keys (a maxmemory-policy other than noeviction)."""
    try:
        async with translate_errors():
            cfg: Any = await redis.config_get("maxmemory-policy")
    except (ConfigurationError, StoreError):
        return  # CONFIG may be forbidden by ACL, or renamed away: nothing to check
    # A cluster answers per node: {node: {name: value}}.
    values = [v for c in cfg.values() for v in c.values()] if _nested(cfg) else cfg.values()
    policies = {as_text(v) for v in values if v is not None}
    for policy in policies - {"noeviction"}:
        log.warning(
            "Redis maxmemory-policy is %r, not 'noeviction': under memory pressure Redis "
            "may evict promises, and evicted promises are LOST. Set noeviction.",
            policy,
        )
