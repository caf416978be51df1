"""A group's queue: the one definition of its depth (metrics and the dashboard use it).

Depth (entries not yet delivered to the group) is ``XINFO GROUPS``' ``lag`` on Redis >= 7
when Redis can compute it, else ``XLEN - pending``. The fallback is exact because
redpromise keeps one invariant in every script: an entry leaves the pending list only in
the script that deletes it from the stream (``XACK`` then ``XDEL``), and only entries
outside the pending list are ever deleted without an ``XACK`` — so the entries still in
the stream are exactly the undelivered ones plus the pending ones. (An operator's
``XTRIM`` breaks this; the value is clamped at 0.)
"""

from __future__ import annotations

from typing import Any

from redpromise.core.codec import as_text
from redpromise.core.keys import Keys
from redpromise.redis.wire import AnyRedis

__all__ = ["depth", "queue_state"]


def depth(length: int, pending: int, lag: Any = None) -> int:
    """Entries of one stream not yet delivered to the group (see the module doc)."""
    if lag is not None:
        try:
            return max(0, int(lag))
        except (TypeError, ValueError):
            pass
    return max(0, length - pending)


async def queue_state(redis: AnyRedis, keys: Keys, group: str) -> tuple[int, int, float]:
    """``(depth, in_flight, oldest_age_seconds)`` of ``group`` over every partition."""
    streams = [keys.stream(k, group) for k in range(keys.partitions)]
    pipe = redis.pipeline(transaction=False)
    for s in streams:
        pipe.xinfo_groups(s)
        pipe.xlen(s)
        pipe.xrange(s, "-", "+", count=1)
    replies = await pipe.execute(raise_on_error=False)
    now_s, now_us = await redis.time()
    now_ms = int(now_s) * 1000 + int(now_us) // 1000
    total = in_flight = 0
    oldest: int | None = None
    for i in range(len(streams)):
        groups, length, first = replies[3 * i : 3 * i + 3]
        if isinstance(groups, BaseException):
            if "no such key" in str(groups):
                continue  # no stream yet: nothing was ever dispatched to this partition
            raise groups
        for r in (length, first):
            if isinstance(r, BaseException):
                raise r
        info = next((g for g in groups if as_text(g.get("name", b"")) == group), None)
        pending = int(info.get("pending", 0)) if info is not None else 0
        total += depth(int(length), pending, info.get("lag") if info is not None else None)
        in_flight += pending
        if first:
            ms = int(as_text(first[0][0]).split("-", 1)[0])
            oldest = ms if oldest is None else min(oldest, ms)
    age = 0.0 if oldest is None else max(0, now_ms - oldest) / 1000
    return total, in_flight, age
