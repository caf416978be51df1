"""What a client reads of a namespace and of its Redis before first use: the key layout
pinned in the namespace's meta hash, and whether completions go over sharded pub/sub."""

from __future__ import annotations

from redpromise.core.errors import ConfigurationError
from redpromise.core.keys import LAYOUT_LEGACY, LAYOUT_SPREAD, LAYOUTS, Keys
from redpromise.redis.kinds import any_node_info
from redpromise.redis.wire import AnyRedis

__all__ = ["pinned_layout", "sharded_pubsub"]


async def pinned_layout(redis: AnyRedis, keys: Keys) -> Keys:
    """``keys`` in the key layout pinned in the namespace's meta hash; pins the newest
    layout first if the namespace is new. :class:`ConfigurationError` for a layout this
    version does not know.

    Runs before any key is used and before ``partitions`` is pinned: a new namespace
    gets ``layout`` first, so a meta with ``partitions`` and no ``layout`` can only
    come from a version without layouts, and keeps its legacy tags (no data moves).
    """
    meta = keys.meta
    partitions, raw = await redis.hmget(meta, ["partitions", "layout"])
    if partitions is None:  # a new namespace (or one whose creator died right here)
        await redis.hsetnx(meta, "layout", LAYOUT_SPREAD)
        raw = await redis.hget(meta, "layout")
    layout = LAYOUT_LEGACY if raw is None else int(raw) if raw.isdigit() else -1
    if layout not in LAYOUTS:
        raise ConfigurationError(
            f"namespace {keys.namespace!r} uses key layout {raw!r}, unknown to this "
            f"version of redpromise (it knows {LAYOUTS}): upgrade redpromise"
        )
    return keys.with_layout(layout)


async def sharded_pubsub(redis: AnyRedis) -> bool:
    """Whether completions go over sharded pub/sub (SPUBLISH): on a Redis >= 7 cluster.
    Classic pub/sub, which a cluster broadcasts to every node, on 6.2."""
    info = await any_node_info(redis, "server")
    version = str(info.get("redis_version", "0"))
    return int(version.split(".")[0] or 0) >= 7
