"""Prometheus metrics (``pip install redpromise[metrics]``); no-ops when it is absent.

Two kinds, both in ``prometheus_client``'s default registry:

- **Events**, counted where they happen, at the cost of one counter or histogram update
  (a dict lookup and a locked add; no Redis command, no allocation on the hot path):
  promises begun and completed, execution and end-to-end latency, steps, redeliveries,
  fence refusals, retries, Redis failures of the supervised loops. Each process counts
  what it did; Prometheus sums over processes.
- **Queue state**, read from Redis at scrape time for the groups a process watches (a
  worker its own group, a gateway its target group): per partition stream one pipelined
  ``XINFO GROUPS``, ``XLEN`` and ``XRANGE - + COUNT 1`` — O(P) commands, cached for
  :data:`CACHE_SECONDS` so that several scrapers cost Redis no more than one. A scrape
  that cannot reach Redis leaves those gauges out rather than show stale numbers.

Queue depth (entries not yet delivered to the group) is ``XINFO GROUPS``' ``lag`` on
Redis >= 7 when Redis can compute it, else ``XLEN - pending``. The fallback is exact
because redpromise keeps one invariant in every script: an entry leaves the pending list
only in the script that deletes it from the stream (``XACK`` then ``XDEL``), and only
entries outside the pending list are ever deleted without an ``XACK`` — so the entries
still in the stream are exactly the undelivered ones plus the pending ones. (An operator's
``XTRIM`` breaks this; the value is clamped at 0.)
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ._codec import as_text

if TYPE_CHECKING:
    from ._client import Redpromise
    from ._worker import Worker

try:
    import prometheus_client as _prom
    from prometheus_client.core import GaugeMetricFamily
except ImportError:  # the `metrics` extra is not installed: every hook is a no-op
    _prom = None  # type: ignore[assignment]

__all__ = [
    "AVAILABLE",
    "CACHE_SECONDS",
    "CONTENT_TYPE",
    "exposition",
    "refresh",
    "watch",
    "watch_worker",
]

log = logging.getLogger("redpromise.metrics")

AVAILABLE = _prom is not None
CONTENT_TYPE = _prom.CONTENT_TYPE_LATEST if _prom is not None else "text/plain"
CACHE_SECONDS = 1.0

# Durable functions run from milliseconds to hours: buckets up to an hour.
_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
    300.0, 600.0, 1800.0, 3600.0,
)  # fmt: skip


class _Events:
    """The event instruments, with their labelled children cached by label values
    (``labels()`` validates and locks on every call; a dict lookup does not)."""

    def __init__(self) -> None:
        assert _prom is not None
        p = _prom
        self.begun = p.Counter(
            "redpromise_promises_begun",
            "Promises created (a re-attach to an existing id is not counted)",
            ["group", "function"],
        )
        self.completed = p.Counter(
            "redpromise_promises_completed",
            "Promises completed, by final state (counted by the process that completed it)",
            ["group", "function", "state"],
        )
        self.execution = p.Histogram(
            "redpromise_execution_seconds",
            "One run of a function on a worker, from its start to its return or raise",
            ["group", "function"],
            buckets=_BUCKETS,
        )
        self.end_to_end = p.Histogram(
            "redpromise_end_to_end_seconds",
            "From a promise's creation to its completion, by Redis' clock",
            ["group", "function", "state"],
            buckets=_BUCKETS,
        )
        self.steps = p.Counter(
            "redpromise_steps_checkpointed",
            "Steps (ctx.run, ctx.sleep, …) recorded through the fence",
            ["group", "function"],
        )
        self.redeliveries = p.Counter(
            "redpromise_redeliveries",
            "Acquisitions of a dispatch delivered before (its worker died, stalled or left)",
            ["group", "function"],
        )
        self.refusals = p.Counter(
            "redpromise_fence_refusals",
            "Writes of an execution refused by the fence or by the promise's state",
            ["group", "operation", "code"],
        )
        self.retries = p.Counter(
            "redpromise_retries",
            "Failed attempts handed back for a retry after a backoff",
            ["group", "function"],
        )
        self.redis_failures = p.Counter(
            "redpromise_redis_failures",
            "Failed iterations of a supervised loop (or gateway requests) because of Redis",
            ["loop", "cause"],
        )
        self._children: dict[tuple[Any, ...], Any] = {}

    def child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        c = self._children.get(key)
        if c is None:
            c = self._children[key] = metric.labels(*labels)
        return c


_events: _Events | None = _Events() if _prom is not None else None


def _ms(raw: Any) -> int | None:
    try:
        return int(raw)
    except (TypeError, ValueError):
        return None


# -- event hooks (each a no-op without prometheus_client) ------------------------------


def begun(group: str, function: str) -> None:
    """A promise was created by this process."""
    if _events is not None:
        _events.child(_events.begun, group, function).inc()


def completed(group: str, function: Any, state: Any, created_at: Any, completed_at: Any) -> None:
    """A promise was completed by this process (the first completion, not a re-answer).

    ``created_at``/``completed_at`` are the record's Redis timestamps (ms), as the
    completing script returns them.
    """
    if _events is None:
        return
    fn, st = as_text(function or b""), as_text(state or b"")
    _events.child(_events.completed, group, fn, st).inc()
    start, end = _ms(created_at), _ms(completed_at)
    if start is not None and end is not None:
        _events.child(_events.end_to_end, group, fn, st).observe(max(0, end - start) / 1000)


def completed_reply(group: str, reply: Any) -> None:
    """Count a completion from ``complete.lua``'s reply ``[1, state, created, done, func]``."""
    if _events is not None and isinstance(reply, list) and len(reply) >= 5 and reply[0] == 1:
        completed(group, reply[4], reply[1], reply[2], reply[3])


def executed(group: str, function: str, seconds: float) -> None:
    if _events is not None:
        _events.child(_events.execution, group, function).observe(seconds)


def step(group: str, function: str) -> None:
    if _events is not None:
        _events.child(_events.steps, group, function).inc()


def redelivered(group: str, function: str) -> None:
    if _events is not None:
        _events.child(_events.redeliveries, group, function).inc()


def refused(group: str, operation: str, code: str) -> None:
    if _events is not None:
        _events.child(_events.refusals, group, operation, code).inc()


def retried(group: str, function: str) -> None:
    if _events is not None:
        _events.child(_events.retries, group, function).inc()


def redis_failure(loop: str, cause: str) -> None:
    if _events is not None:
        _events.child(_events.redis_failures, loop, cause).inc()


# -- queue state, read at scrape time ------------------------------------------------


class _Watch:
    """One group of one client's namespace, and its last snapshot."""

    def __init__(self, rp: Redpromise, group: str) -> None:
        self.rp = weakref.ref(rp)
        self.group = group
        self.at = -CACHE_SECONDS
        self.snapshot: tuple[int, int, float] | None = None
        self.lock = asyncio.Lock()

    async def refresh(self) -> None:
        if time.monotonic() - self.at < CACHE_SECONDS:
            return
        async with self.lock:
            if time.monotonic() - self.at < CACHE_SECONDS:
                return
            rp = self.rp()
            if rp is None:
                return
            try:
                self.snapshot = await _read_queue(rp, self.group)
            except Exception as exc:
                log.debug("queue metrics of %r unavailable: %s", self.group, exc)
                self.snapshot = None
            self.at = time.monotonic()


async def _read_queue(rp: Redpromise, group: str) -> tuple[int, int, float]:
    """``(depth, in_flight, oldest_age_seconds)`` of ``group`` over every partition."""
    await rp._ready()  # the key layout is known only once the namespace was read
    streams = [rp.keys.stream(k, group) for k in range(rp.keys.partitions)]
    pipe = rp.redis.pipeline(transaction=False)
    for s in streams:
        pipe.xinfo_groups(s)
        pipe.xlen(s)
        pipe.xrange(s, "-", "+", count=1)
    replies = await pipe.execute(raise_on_error=False)
    now_s, now_us = await rp.redis.time()
    now_ms = int(now_s) * 1000 + int(now_us) // 1000
    depth = in_flight = 0
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
        lag = info.get("lag") if info is not None else None
        depth += int(lag) if lag is not None else max(0, int(length) - pending)
        in_flight += pending
        if first:
            ms = int(as_text(first[0][0]).split("-", 1)[0])
            oldest = ms if oldest is None else min(oldest, ms)
    age = 0.0 if oldest is None else max(0, now_ms - oldest) / 1000
    return depth, in_flight, age


class _QueueCollector:
    """Yields the gauges of every watched group and running worker (see module doc)."""

    def __init__(self) -> None:
        self.watches: dict[str, _Watch] = {}
        self.workers: weakref.WeakSet[Worker] = weakref.WeakSet()

    def _families(self) -> list[Any]:
        return [
            GaugeMetricFamily(
                "redpromise_queue_depth",
                "Dispatches waiting in the group's streams, not yet delivered to a worker",
                labels=["group"],
            ),
            GaugeMetricFamily(
                "redpromise_queue_in_flight",
                "Dispatches delivered to a worker of the group and not completed (PEL size)",
                labels=["group"],
            ),
            GaugeMetricFamily(
                "redpromise_queue_oldest_pending_age_seconds",
                "Age of the group's oldest dispatch still waiting or in flight (0 if none)",
                labels=["group"],
            ),
            GaugeMetricFamily(
                "redpromise_worker_slots",
                "Functions this worker process may run at once (Settings.concurrency)",
                labels=["group"],
            ),
            GaugeMetricFamily(
                "redpromise_worker_slots_in_use",
                "Functions this worker process runs right now",
                labels=["group"],
            ),
        ]

    def describe(self) -> Iterator[Any]:
        return iter(self._families())

    def collect(self) -> Iterator[Any]:
        depth, in_flight, age, slots, used = self._families()
        for group, w in sorted(self.watches.items()):
            if w.rp() is not None and w.snapshot is not None:
                d, f, a = w.snapshot
                depth.add_metric([group], d)
                in_flight.add_metric([group], f)
                age.add_metric([group], a)
        for worker in list(self.workers):
            if not worker.stopping:
                slots.add_metric([worker.group], worker.settings.concurrency)
                used.add_metric([worker.group], worker.inflight)
        return iter([depth, in_flight, age, slots, used])


_collector: _QueueCollector | None = None


def _queues() -> _QueueCollector | None:
    global _collector
    if not AVAILABLE:
        return None
    if _collector is None:
        _collector = _QueueCollector()
        _prom.REGISTRY.register(_collector)
    return _collector


def watch(rp: Redpromise, group: str) -> None:
    """Report ``group``'s queue gauges, read through ``rp``, in this process's metrics.

    One watch per group and process: a later watch of the same group replaces it.
    """
    c = _queues()
    if c is not None and (
        group not in c.watches or c.watches[group].rp() is not rp
    ):
        c.watches[group] = _Watch(rp, group)


def watch_worker(worker: Worker) -> None:
    """Report ``worker``'s slots, and its group's queue gauges."""
    c = _queues()
    if c is not None:
        c.workers.add(worker)
        watch(worker.client, worker.group)


async def refresh() -> None:
    """Read the watched groups' queue state from Redis unless read in the last second."""
    c = _queues()
    if c is not None and c.watches:
        await asyncio.gather(*(w.refresh() for w in list(c.watches.values())))


async def exposition() -> bytes:
    """The text exposition of the default registry, queue gauges refreshed first."""
    if not AVAILABLE:
        raise RuntimeError("prometheus_client is not installed: pip install redpromise[metrics]")
    await refresh()
    return bytes(_prom.generate_latest(_prom.REGISTRY))
