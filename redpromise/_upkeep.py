"""The worker's upkeep: reclaim from silent workers, reconcile, sweep, promote, time out.

A mixin of :class:`~redpromise._worker.Worker`, kept apart because none of it runs a
function: it only moves entries and promises between states.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any

from redis import exceptions as rex
from redis.asyncio import Redis

from ._codec import as_text
from ._keys import Keys
from ._options import Settings
from ._store import Store

__all__ = ["Upkeep"]

log = logging.getLogger("redpromise.worker")


class Upkeep:
    """Periodic work every worker does for its group (and, for promote, for all)."""

    redis: Redis
    store: Store
    keys: Keys
    settings: Settings
    group: str
    consumer: str
    _inflight: dict[tuple[int, str], Any]
    _stopping: bool
    _cursors: list[str]
    _streams: list[str]
    _lease_ms: int
    _sweep_every: float
    _reconcile_at: tuple[int, int]

    async def _guard(self, coro: Any) -> None:
        raise NotImplementedError

    async def _acquire(self, deliveries: Sequence[tuple[int, str, Any]]) -> None:
        raise NotImplementedError

    async def ensure_groups(self) -> None:
        raise NotImplementedError

    async def _reclaim_loop(self) -> None:
        every = self.settings.reclaim_every.total_seconds()
        next_sweep = time.monotonic() + self._sweep_every
        while True:
            await asyncio.sleep(every)
            if self._stopping:
                continue
            await self._guard(self.reclaim())
            await self._guard(self.reconcile(self.settings.reconcile_batch))
            if time.monotonic() > next_sweep:
                next_sweep = time.monotonic() + self._sweep_every
                await self._guard(self.sweep_consumers())

    async def reclaim(self) -> int:
        """Claim entries idle longer than the lease and acquire them; returns how many."""
        free = self.settings.concurrency - len(self._inflight)
        if free <= 0:
            return 0
        pipe = self.redis.pipeline(transaction=False)
        for k, s in enumerate(self._streams):
            pipe.xautoclaim(
                s, self.group, self.consumer, self._lease_ms, self._cursors[k], count=min(free, 100)
            )
        claimed: list[tuple[int, str, Any]] = []
        for k, res in enumerate(await pipe.execute(raise_on_error=False)):
            if isinstance(res, rex.ResponseError) and "NOGROUP" in str(res):
                await self.ensure_groups()
                continue
            if isinstance(res, BaseException):
                raise res
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
        return len(claimed)

    async def reconcile(self, budget: int) -> int:
        """Check up to ``budget`` pending promises of the group for a vanished entry.

        Walks the partitions' timeouts sets (every pending promise is there) a slice per
        call, so a full pass costs little per tick. Returns how many were re-dispatched.
        """
        k, offset = self._reconcile_at
        members = await self.redis.zrange(self.keys.timeouts(k), offset, offset + budget - 1)
        self._reconcile_at = (
            ((k + 1) % self.keys.partitions, 0) if len(members) < budget else (k, offset + budget)
        )
        ids = [
            id
            for group, _, id in (as_text(m).partition("|") for m in members)
            if group == self.group
        ]
        if not ids:
            return 0
        last = ""
        with contextlib.suppress(rex.ResponseError):
            for g in await self.redis.xinfo_groups(self._streams[k]):
                if as_text(g.get("name", b"")) == self.group:
                    last = as_text(g.get("last-delivered-id", b""))
        calls = [self.store.reconcile_call(k, self.group, id, last) for id in ids]
        fixed = [
            id
            for id, r in zip(ids, await self.store.pipelined(calls), strict=True)
            if not isinstance(r, BaseException) and int(r[0]) == 1
        ]
        if fixed:
            log.warning(
                "re-dispatched %d promises whose entry had vanished: %s", len(fixed), fixed[:5]
            )
        return len(fixed)

    async def sweep_consumers(self) -> None:
        """Delete consumers of the group with nothing pending that have been idle long."""
        idle_ms = int(self._sweep_every * 1000)
        pipe = self.redis.pipeline(transaction=False)
        for s in self._streams:
            pipe.xinfo_consumers(s, self.group)
        infos = await pipe.execute(raise_on_error=False)
        pipe = self.redis.pipeline(transaction=False)
        n = 0
        for s, info in zip(self._streams, infos, strict=True):
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

    async def _promote_loop(self) -> None:
        every = self.settings.poll_interval.total_seconds()
        while True:
            await asyncio.sleep(every)
            await self._guard(self.promote())

    async def promote(self) -> int:
        """Dispatch due retries and time out expired promises; returns how many moved."""
        now = int(time.time() * 1000)
        pipe = self.redis.pipeline(transaction=False)
        for k in range(self.keys.partitions):
            pipe.zrangebyscore(self.keys.delayed(k), "-inf", now, start=0, num=100)
            pipe.zrangebyscore(self.keys.timeouts(k), "-inf", now, start=0, num=100)
        res = await pipe.execute()
        calls = []
        for k in range(self.keys.partitions):
            for member in res[2 * k]:
                group, _, id = as_text(member).partition("|")
                calls.append(self.store.promote_call(k, group, id))
            for member in res[2 * k + 1]:
                group, _, id = as_text(member).partition("|")
                calls.append(self.store.timeout_call(id, group))
        if not calls:
            return 0
        done = 0
        for r in await self.store.pipelined(calls):
            if isinstance(r, BaseException):
                log.warning("promote step failed: %s", r)
            elif int(r[0]) == 1:
                done += 1
        return done
