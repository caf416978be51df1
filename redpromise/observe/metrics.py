"""Prometheus metrics (``pip install redpromise[metrics]``); no-ops when it is absent.

Two kinds, both in ``prometheus_client``'s default registry:

- **Events**, counted where they happen into plain dicts (a dict update, or a bisect
  over the buckets for a histogram; no lock, no Redis command), turned into Prometheus
  families only when scraped:
  promises begun and completed, execution and end-to-end latency, steps, redeliveries,
  fence refusals, retries, Redis failures of the supervised loops. Each process counts
  what it did; Prometheus sums over processes.
- **Queue state**, read from Redis at scrape time for the groups a process watches (a
  worker its own group, a gateway its target group): per partition stream one pipelined
  ``XINFO GROUPS``, ``XLEN`` and ``XRANGE - + COUNT 1`` — O(P) commands, cached for
  :data:`CACHE_SECONDS` so that several scrapers cost Redis no more than one. A scrape
  that cannot reach Redis leaves those gauges out rather than show stale numbers.

Queue depth (entries not yet delivered to the group) is defined once, in
:mod:`redpromise.store.queues` (the dashboard's backlog is the same number); the client
reads it (:meth:`Redpromise.queue_state`) for the groups it is asked to watch.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import weakref
from bisect import bisect_left
from collections.abc import Iterator
from typing import Any

from redpromise.core.codec import as_text
from redpromise.core.hooks import QueueSource, WorkerGauge
from redpromise.redis.wire import short_of_replicas

try:
    import prometheus_client as _prom
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
    )
except ImportError:  # the `metrics` extra is not installed: every hook is a no-op
    _prom = None  # type: ignore[assignment]

__all__ = [
    "AVAILABLE",
    "CACHE_SECONDS",
    "CONTENT_TYPE",
    "METRICS",
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


class _Counter:
    """A labelled counter kept as a plain dict of one-element lists, turned into a
    Prometheus family only when scraped: an event costs a dict lookup and an add, not a
    lock and a label lookup (or, with the cell kept by the caller, just the add)."""

    __slots__ = ("doc", "labels", "name", "values")

    def __init__(self, name: str, doc: str, labels: tuple[str, ...]) -> None:
        self.name, self.doc, self.labels = name, doc, labels
        self.values: dict[tuple[str, ...], list[float]] = {}

    def cell(self, key: tuple[str, ...]) -> list[float]:
        """The count of ``key`` (``[n]``), for a caller that increments it directly."""
        cell = self.values.get(key)
        if cell is None:
            cell = self.values[key] = [0.0]
        return cell

    def inc(self, key: tuple[str, ...]) -> None:
        self.cell(key)[0] += 1

    def family(self) -> Any:
        f = CounterMetricFamily(self.name, self.doc, labels=self.labels)
        # list(): a C-level copy, safe while the event loop's thread adds entries.
        for key, cell in list(self.values.items()):
            f.add_metric(key, cell[0])
        return f


class _Histogram:
    """A labelled histogram kept as ``{labels: [count per bucket…, +Inf count, sum]}``."""

    __slots__ = ("doc", "labels", "name", "values")

    def __init__(self, name: str, doc: str, labels: tuple[str, ...]) -> None:
        self.name, self.doc, self.labels = name, doc, labels
        self.values: dict[tuple[str, ...], list[float]] = {}

    def row(self, key: tuple[str, ...]) -> list[float]:
        """The row of ``key``, for a caller that observes into it directly."""
        row = self.values.get(key)
        if row is None:
            row = self.values[key] = [0.0] * (len(_BUCKETS) + 2)
        return row

    def observe(self, key: tuple[str, ...], seconds: float) -> None:
        row = self.row(key)
        row[bisect_left(_BUCKETS, seconds)] += 1
        row[-1] += seconds

    def family(self) -> Any:
        f = HistogramMetricFamily(self.name, self.doc, labels=self.labels)
        for key, row in list(self.values.items()):
            row = row[:]
            cumulative, buckets = 0.0, []
            for bound, n in zip((*_BUCKETS, math.inf), row, strict=False):
                cumulative += n
                buckets.append(("+Inf" if bound == math.inf else repr(bound), cumulative))
            f.add_metric(key, buckets, sum_value=row[-1])
        return f


GF = ("group", "function")
_BEGUN = _Counter(
    "redpromise_promises_begun",
    "Promises created by this process (a re-attach to an existing id is not counted)",
    GF,
)
_COMPLETED = _Counter(
    "redpromise_promises_completed",
    "First completions made by this process, by final state",
    (*GF, "state"),
)
_EXECUTION = _Histogram(
    "redpromise_execution_seconds",
    "One run of a function on a worker, from its start to its return or raise",
    GF,
)
_END_TO_END = _Histogram(
    "redpromise_end_to_end_seconds",
    "From a promise's creation to its completion, by Redis' clock",
    (*GF, "state"),
)
_STEPS = _Counter(
    "redpromise_steps_checkpointed", "Steps recorded through the fence", GF
)
_REDELIVERIES = _Counter(
    "redpromise_redeliveries",
    "Acquisitions of a dispatch delivered before (its worker died, stalled or left)",
    GF,
)
_REFUSALS = _Counter(
    "redpromise_fence_refusals",
    "Writes of an execution refused by the fence or by the promise's state",
    ("group", "operation", "code"),
)
_RETRIES = _Counter(
    "redpromise_retries", "Failed attempts handed back for a retry after a backoff", GF
)
_REDIS_FAILURES = _Counter(
    "redpromise_redis_failures",
    "Failed iterations of a supervised loop (or gateway requests) because of Redis",
    ("loop", "cause"),
)
_EVENTS = (
    _BEGUN, _COMPLETED, _EXECUTION, _END_TO_END, _STEPS, _REDELIVERIES, _REFUSALS,
    _RETRIES, _REDIS_FAILURES,
)  # fmt: skip


class _EventCollector:
    def describe(self) -> Iterator[Any]:
        return self.collect()

    def collect(self) -> Iterator[Any]:
        return iter([e.family() for e in _EVENTS])


# -- event hooks (each a no-op without prometheus_client) ------------------------------


def begun(group: str, function: str) -> None:
    """A promise was created by this process."""
    if AVAILABLE:
        _BEGUN.inc((group, function))


def completed(group: str, function: Any, state: Any, created_at: Any, completed_at: Any) -> None:
    """A promise was completed by this process (the first completion, not a re-answer).

    ``created_at``/``completed_at`` are the record's Redis timestamps (ms), as the
    completing script returns them.
    """
    if not AVAILABLE:
        return
    rows = _completion_rows.get((group, function, state))
    if rows is None:
        rows = _completion_row(group, function, state)
    rows[0][0] += 1
    try:
        seconds = max(0, int(completed_at) - int(created_at)) / 1000
    except (TypeError, ValueError):
        return  # a timestamp missing: counted, not timed
    latency = rows[1]
    latency[bisect_left(_BUCKETS, seconds)] += 1
    latency[-1] += seconds


# (group, function, state) as a reply gives them (bytes, str or None) -> that label set's
# completion count and end-to-end row: labels decoded and looked up once per combination,
# not once per completion. Cleared should odd names pile up (the counts stay in the
# metrics; only these shortcuts to them go).
_completion_rows: dict[tuple[str, Any, Any], tuple[list[float], list[float]]] = {}


def _completion_row(group: str, function: Any, state: Any) -> tuple[list[float], list[float]]:
    key = (group, as_text(function or b""), as_text(state or b""))
    if len(_completion_rows) >= 4096:
        _completion_rows.clear()
    rows = _completion_rows[(group, function, state)] = (_COMPLETED.cell(key), _END_TO_END.row(key))
    return rows


def completed_reply(group: str, reply: Any) -> None:
    """Count a completion from ``complete.lua``'s reply ``[1, state, created, done, func]``."""
    if AVAILABLE and isinstance(reply, list) and len(reply) >= 5 and reply[0] == 1:
        completed(group, reply[4], reply[1], reply[2], reply[3])


def executed(group: str, function: str, seconds: float) -> None:
    if AVAILABLE:
        row = _EXECUTION.values.get((group, function)) or _EXECUTION.row((group, function))
        row[bisect_left(_BUCKETS, seconds)] += 1
        row[-1] += seconds


def step(group: str, function: str) -> None:
    if AVAILABLE:
        _STEPS.inc((group, function))


def redelivered(group: str, function: str) -> None:
    if AVAILABLE:
        _REDELIVERIES.inc((group, function))


def refused(group: str, operation: str, code: str) -> None:
    if AVAILABLE:
        _REFUSALS.inc((group, operation, code))


def retried(group: str, function: str) -> None:
    if AVAILABLE:
        _RETRIES.inc((group, function))


def redis_failure(loop: str, cause: str) -> None:
    if AVAILABLE:
        _REDIS_FAILURES.inc((loop, cause))


if _prom is not None:
    _prom.REGISTRY.register(_EventCollector())


# -- queue state, read at scrape time ------------------------------------------------


class _Watch:
    """One group of one client's namespace, and its last snapshot."""

    def __init__(self, source: QueueSource, group: str) -> None:
        self.source = weakref.ref(source)
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
            source = self.source()
            if source is None:
                return
            try:
                self.snapshot = await source.queue_state(self.group)
            except Exception as exc:
                log.debug("queue metrics of %r unavailable: %s", self.group, exc)
                self.snapshot = None
            self.at = time.monotonic()


class _QueueCollector:
    """Yields the gauges of every watched group and running worker (see module doc)."""

    def __init__(self) -> None:
        self.watches: dict[str, _Watch] = {}
        self.workers: weakref.WeakSet[WorkerGauge] = weakref.WeakSet()

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
            GaugeMetricFamily(
                "redpromise_shard_without_replicas_since_seconds",
                "Since when (Unix time) a shard refuses this process's writes for want of "
                "replicas (Settings.replicas_ack, NOREPLICAS); absent once one is acknowledged",
                labels=["shard"],
            ),
        ]

    def describe(self) -> Iterator[Any]:
        return iter(self._families())

    def collect(self) -> Iterator[Any]:
        depth, in_flight, age, slots, used, short = self._families()
        for shard, since_ms in sorted(short_of_replicas().items()):
            short.add_metric([shard], since_ms / 1000)
        for group, w in sorted(self.watches.items()):
            if w.source() is not None and w.snapshot is not None:
                d, f, a = w.snapshot
                depth.add_metric([group], d)
                in_flight.add_metric([group], f)
                age.add_metric([group], a)
        for worker in list(self.workers):
            if not worker.stopping:
                slots.add_metric([worker.group], worker.slots)
                used.add_metric([worker.group], worker.inflight)
        return iter([depth, in_flight, age, slots, used, short])


_collector: _QueueCollector | None = None


def _queues() -> _QueueCollector | None:
    global _collector
    if not AVAILABLE:
        return None
    if _collector is None:
        _collector = _QueueCollector()
        _prom.REGISTRY.register(_collector)
    return _collector


def watch(source: QueueSource, group: str) -> None:
    """Report ``group``'s queue gauges, read through ``source`` (a client), in this
    process's metrics. Held weakly: a client dropped leaves the gauges.

    One watch per group and process: a later watch of the same group replaces it.
    """
    c = _queues()
    if c is not None and (
        group not in c.watches or c.watches[group].source() is not source
    ):
        c.watches[group] = _Watch(source, group)


def watch_worker(worker: WorkerGauge) -> None:
    """Report ``worker``'s slots (its client watches its group's queue)."""
    c = _queues()
    if c is not None:
        c.workers.add(worker)


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


class PrometheusMetrics:
    """The :class:`~redpromise.core.hooks.Metrics` hooks, counted into this module's
    families (no-ops without ``prometheus_client``)."""

    begun = staticmethod(begun)
    completed = staticmethod(completed)
    completed_reply = staticmethod(completed_reply)
    executed = staticmethod(executed)
    step = staticmethod(step)
    redelivered = staticmethod(redelivered)
    refused = staticmethod(refused)
    retried = staticmethod(retried)
    redis_failure = staticmethod(redis_failure)
    watch = staticmethod(watch)
    watch_worker = staticmethod(watch_worker)


METRICS = PrometheusMetrics()
