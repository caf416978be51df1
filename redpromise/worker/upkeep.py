"""The worker's upkeep: reclaim from silent workers, reconcile, sweep consumers and expired
search-index entries, promote, time out, fire due schedules.

Kept apart from :class:`~redpromise.worker.worker.Worker` because none of it runs a function:
it only moves entries and promises between states. Each method is one iteration of a
supervised loop (see :mod:`redpromise.worker.supervise`): a failure of Redis as a whole is
raised, to be logged and retried with backoff; a problem confined to one key (a
``WRONGTYPE``) is logged once per key and the other keys go on being served.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

from redpromise.core.codec import as_text
from redpromise.core.hooks import Metrics
from redpromise.redis.classify import cause_of, retryable
from redpromise.redis.replies import ErrorReply
from redpromise.store.index_sweep import IndexSweep
from redpromise.store.protocol import ProtocolStore
from redpromise.store.protocol_schedules import ProtocolSchedules
from redpromise.store.store import Store
from redpromise.worker.supervise import CauseLog

__all__ = ["SCHEDULE_TICK", "Upkeep"]

SCHEDULE_TICK = 1.0  # seconds between two looks at the due schedules (cron's resolution)

log = logging.getLogger("redpromise.worker")


class Upkeep:
    """Periodic work every worker does for its group (and, for promote, for all)."""

    def __init__(
        self,
        store: Store,
        *,
        consumer: str,
        group: str,
        streams: list[str],
        bad_partitions: set[int],
        inflight: Callable[[], int],
        stopping: Callable[[], bool],
        acquire: Callable[[list[tuple[int, str, Any]]], Awaitable[Any]],
        ensure_groups: Callable[[], Awaitable[Any]],
        metrics: Metrics,
    ) -> None:
        """``streams``/``bad_partitions``: the worker's, shared (it updates them);
        ``inflight``/``stopping``: read from the worker; ``acquire``/``ensure_groups``: the
        worker's, called with what was reclaimed and when a group is missing."""
        self.redis = store.redis
        self.store = store
        self.keys = store.keys
        self.settings = store.settings
        self.group = group
        self.consumer = consumer
        self.streams = streams
        self.bad_partitions: Final[set[int]] = bad_partitions
        self._inflight = inflight
        self._stopping = stopping
        self._acquire = acquire
        self._ensure_groups = ensure_groups
        self._metrics = metrics
        lease = self.settings.lease.total_seconds()
        self._lease_ms = int(lease * 1000)
        # A consumer silent for ten leases with nothing pending is gone; sweeping it is
        # safe (a live one that was swept is re-created by its next read).
        self._sweep_every = max(10 * lease, 5.0)
        self._next_sweep = time.monotonic() + self._sweep_every
        self._cursors = ["0-0"] * self.keys.partitions
        self._reconcile_at = (0, 0)  # (partition, offset) in the timeouts zsets
        self._key_faults: dict[str, CauseLog] = {}
        self.index_sweep = IndexSweep(store)
        self._schedules = ProtocolSchedules(store)
        self._protocol = ProtocolStore(store)

    def key_fault(self, key: str, exc: BaseException) -> None:
        """Log a problem confined to one key, once per key and cause (rate-limited)."""
        causes = self._key_faults.get(key)
        if causes is None:
            causes = self._key_faults[key] = CauseLog(f"key {key}", log)
        causes.failed(exc)

    def raise_first(self, results: Sequence[Any], keys: Sequence[str]) -> None:
        """Log per-key errors among ``results``; raise the first error of Redis as a whole."""
        first: BaseException | None = None
        for res, key in zip(results, keys, strict=True):
            if not isinstance(res, BaseException):
                continue
            if retryable(res) or cause_of(res) == "NOPERM":
                first = first or res
            else:
                self.key_fault(key, res)
        if first is not None:
            raise first

    async def reclaim_round(self) -> None:
        """One round of the reclaim loop: reclaim, reconcile, and now and then sweep."""
        if self._stopping():
            return
        if self.bad_partitions:
            await self._ensure_groups()
        await self.reclaim()
        await self.reconcile(self.settings.reconcile_batch)
        await self.index_sweep.run(report=self.raise_first)
        if time.monotonic() > self._next_sweep:
            self._next_sweep = time.monotonic() + self._sweep_every
            await self.sweep_consumers()

    async def reclaim(self) -> int:
        """Claim entries idle longer than the lease and acquire them; returns how many."""
        free = self.settings.concurrency - self._inflight()
        if free <= 0:
            return 0
        parts = [k for k in range(self.keys.partitions) if k not in self.bad_partitions]
        pipe = self.redis.pipeline(transaction=False)
        for k in parts:
            pipe.xautoclaim(
                self.streams[k],
                self.group,
                self.consumer,
                self._lease_ms,
                self._cursors[k],
                count=min(free, 100),
            )
        results = await pipe.execute(raise_on_error=False)
        claimed: list[tuple[int, str, Any]] = []
        missing = False
        for k, res in zip(parts, results, strict=True):
            if isinstance(res, ErrorReply) and cause_of(res) == "NOGROUP":
                missing = True
                continue
            if isinstance(res, BaseException):
                continue
            self._cursors[k] = as_text(res[0])
            for item in res[1]:
                if item is None:
                    continue
                entry, fields = item
                if fields is None:
                    continue
                claimed.append((k, as_text(entry), fields))
        if claimed:
            log.info("reclaimed %d entries of silent workers", len(claimed))
            await self._acquire(claimed)
        if missing:
            await self._ensure_groups()
        self.raise_first(results, [self.streams[k] for k in parts])
        return len(claimed)

    async def reconcile(self, budget: int) -> int:
        """Check up to ``budget`` pending promises of the group for a vanished entry.

        Walks the partitions' timeouts sets (every pending promise is there) a slice per
        call, so a full pass costs little per tick. Returns how many were re-dispatched.
        """
        k, offset = self._reconcile_at
        key = self.keys.timeouts(k)
        try:
            members = await self.redis.zrange(key, offset, offset + budget - 1)
        except ErrorReply as exc:
            if retryable(exc) or cause_of(exc) == "NOPERM":
                raise
            self.key_fault(key, exc)
            members = []
        self._reconcile_at = (
            ((k + 1) % self.keys.partitions, 0) if len(members) < budget else (k, offset + budget)
        )
        ids = [
            id
            for group, _, id in (as_text(m).partition("|") for m in members)
            if group == self.group
        ]
        if not ids or k in self.bad_partitions:
            return 0
        last = ""
        with contextlib.suppress(ErrorReply):
            for g in await self.redis.xinfo_groups(self.streams[k]):
                if as_text(g.get("name", b"")) == self.group:
                    last = as_text(g.get("last-delivered-id", b""))
        calls = [self.store.reconcile_call(k, self.group, id, last) for id in ids]
        results = await self.store.run_calls(calls)
        fixed = [
            id
            for id, r in zip(ids, results, strict=True)
            if not isinstance(r, BaseException) and int(r[0]) == 1
        ]
        if fixed:
            log.warning(
                "re-dispatched %d promises whose entry had vanished: %s", len(fixed), fixed[:5]
            )
        self.raise_first(results, [self.keys.promise(id) for id in ids])
        return len(fixed)

    async def sweep_consumers(self) -> None:
        """Delete consumers of the group with nothing pending that have been idle long."""
        idle_ms = int(self._sweep_every * 1000)
        streams = self.streams
        pipe = self.redis.pipeline(transaction=False)
        for s in streams:
            pipe.xinfo_consumers(s, self.group)
        infos = await pipe.execute(raise_on_error=False)
        pipe = self.redis.pipeline(transaction=False)
        n = 0
        for s, info in zip(streams, infos, strict=True):
            if isinstance(info, BaseException):
                continue
            for c in info:
                name = as_text(c.get("name", b""))
                if name != self.consumer and c.get("pending") == 0 and c.get("idle", 0) > idle_ms:
                    pipe.xgroup_delconsumer(s, self.group, name)
                    n += 1
        if n:
            await pipe.execute(raise_on_error=False)

    # -- promote and timeouts -----------------------------------------------------------

    async def promote(self) -> int:
        """Dispatch due retries and time out expired promises; returns how many moved."""
        now = self.store.clock.now_ms()
        zkeys: list[str] = []
        pipe = self.redis.pipeline(transaction=False)
        for k in range(self.keys.partitions):
            for key in (self.keys.delayed(k), self.keys.timeouts(k)):
                zkeys.append(key)
                pipe.zrangebyscore(key, "-inf", now, start=0, num=100)
        res = await pipe.execute(raise_on_error=False)
        self.raise_first(res, zkeys)
        calls = []
        for k in range(self.keys.partitions):
            due, expired = res[2 * k], res[2 * k + 1]
            for member in due if isinstance(due, list) else ():
                group, _, id = as_text(member).partition("|")
                calls.append(self.store.promote_call(k, group, id))
            for member in expired if isinstance(expired, list) else ():
                group, _, id = as_text(member).partition("|")
                calls.append(self.store.timeout_call(id, group))
        if not calls:
            return 0
        results = await self.store.run_calls(calls)
        done = sum(1 for r in results if not isinstance(r, BaseException) and int(r[0]) == 1)
        for (script, _, args), r in zip(calls, results, strict=True):
            if script.name == "complete":  # a timeout applied: ARGV[2] is the group
                self._metrics.completed_reply(str(args[1]), r)
        # promote's KEYS[2] and complete's KEYS[1] are the promise hash.
        promises = [str(keys[1] if s.name == "promote" else keys[0]) for s, keys, _ in calls]
        self.raise_first(results, promises)
        return done

    # -- schedules ----------------------------------------------------------------------

    async def fire_schedules(self) -> int:
        """Fire the namespace's due schedules, of every group and both kinds (one run per
        schedule per call); returns how many runs this call advanced.

        Every worker of every group does it (and every ``redpromise serve`` replica):
        :meth:`ProtocolSchedules.fire_due` creates each run's promise idempotently by id
        and advances the schedule fenced on the run, so each run makes one promise
        however many tickers race. A redpromise schedule's run is a redpromise promise; a
        protocol schedule's (``schedule.create``) is the protocol's ``promise.create``.
        """
        if self._stopping():
            return 0

        async def create(data: dict[str, Any]) -> Any:
            return await self._protocol.apply("promise.create", data, None)

        # Redis' clock as this process keeps it (no TIME round trip per second); the
        # fence, not the clock, is what keeps each run to one promise.
        return await self._schedules.fire_due(self.store.clock.now_ms(), create)
