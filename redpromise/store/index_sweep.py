"""The sweep of the search indexes: drops the entries of completed promises whose record
expired (see :mod:`redpromise.store.search` for the indexes and why a search never
writes). Every worker's upkeep runs it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from redpromise.core.codec import as_text
from redpromise.store.scripts import Command
from redpromise.store.states import COMPLETED
from redpromise.store.store import Call, Store

__all__ = ["IndexSweep"]

_ZRANGE = Command("ZRANGEBYSCORE")


class IndexSweep:
    """Drops index entries of completed promises whose record expired (retention).

    Reads, per partition, up to ``budget`` expiries that are due (each record's own
    retention); then, for entries with no expiry (completed by an earlier version), those
    created more than this worker's ``retention`` ago, ``budget`` per index per run.
    Entries whose promise is still retained (it ran long) are stepped over, so they cannot
    stall the sweep of the ones behind them.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._offsets: dict[str, int] = {}

    async def run(
        self,
        budget: int = 100,
        report: Callable[[Sequence[Any], Sequence[str]], None] | None = None,
    ) -> int:
        """One pass over every partition's completed indexes; returns entries dropped.

        Replies that are errors are skipped and handed to ``report`` with their keys
        (the worker's upkeep logs a broken key and raises a failure of Redis as a whole);
        without ``report`` the first is raised.
        """
        store = self.store
        dropped = await self._due(budget, report)
        if store.retention_ms <= 0:
            return dropped
        cutoff = store.clock.now_ms() - store.retention_ms  # scores are on Redis' clock
        targets = [(k, s) for k in range(store.keys.partitions) for s in COMPLETED]
        zkeys = [store.keys.index(k, s) for k, s in targets]
        reads: list[Call] = [
            (_ZRANGE, [z], [0, cutoff, "LIMIT", self._offsets.get(z, 0), budget]) for z in zkeys
        ]
        found = await store.run_calls(reads)
        _report(report, found, zkeys)
        calls: list[Call] = []
        owners: list[str] = []
        full: set[str] = set()
        for (k, s), z, members in zip(targets, zkeys, found, strict=True):
            if isinstance(members, BaseException):
                continue
            if len(members) >= budget:
                full.add(z)
            for m in members:
                calls.append(store.forget_call(k, s, as_text(m)))
                owners.append(z)
        results = await store.run_calls(calls) if calls else []
        _report(report, results, [str(keys[0]) for _, keys, _ in calls])
        kept = dict.fromkeys(zkeys, 0)
        for z, res in zip(owners, results, strict=True):
            if isinstance(res, BaseException) or int(res[0]) == 0:
                kept[z] += 1
        for z in zkeys:
            # Dropped entries leave the range, kept ones stay ahead of the next read; after
            # a short read the index's end was reached: start over next time.
            self._offsets[z] = self._offsets.get(z, 0) + kept[z] if z in full else 0
        return dropped + len(results) - sum(kept.values())

    async def _due(
        self, budget: int, report: Callable[[Sequence[Any], Sequence[str]], None] | None
    ) -> int:
        """Forget the entries whose record's expiry (``Keys.expiries``) has passed."""
        store = self.store
        now = store.clock.now_ms()  # scores are on Redis' clock
        ekeys = [store.keys.expiries(k) for k in range(store.keys.partitions)]
        found = await store.run_calls(
            [(_ZRANGE, [e], ["-inf", now, "LIMIT", 0, budget]) for e in ekeys]
        )
        _report(report, found, ekeys)
        calls: list[Call] = []
        for k, members in enumerate(found):
            if isinstance(members, BaseException):
                continue
            for m in members:
                state, _, member = as_text(m).partition("|")
                calls.append(store.forget_call(k, state, member))
        results = await store.run_calls(calls) if calls else []
        _report(report, results, [str(keys[0]) for _, keys, _ in calls])
        return sum(1 for r in results if not isinstance(r, BaseException) and int(r[0]) == 1)


def _report(
    report: Callable[[Sequence[Any], Sequence[str]], None] | None,
    results: Sequence[Any],
    keys: Sequence[str],
) -> None:
    if report is not None:
        report(results, keys)
        return
    for res in results:
        if isinstance(res, BaseException):
            raise res
