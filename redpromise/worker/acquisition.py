"""How delivered entries become executions: the worker's acquisitions.

An entry read from the group's streams (or reclaimed from a silent worker) is acquired
(``acquire_entry.lua``, pipelined: the fence advances there) before its function runs;
one that ``take`` read is acquired already. :class:`Acquirer` handles both kinds of reply:
it starts an execution per acquisition, counts poison, and moves to the dead stream only
the entries that can never be acquired. Kept apart from
:class:`~redpromise.worker.worker.Worker` (which reads, runs and renews): none of this
runs a function.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redpromise.core.codec import as_text
from redpromise.redis.classify import cause_of
from redpromise.redis.replies import error_reply
from redpromise.store.scripts import CODES
from redpromise.worker.execution import Execution, Runtime, id_field
from redpromise.worker.protocol_tasks import Offer
from redpromise.worker.reads import Delivery, Taken

__all__ = ["Acquirer"]

log = logging.getLogger("redpromise.worker")

_NO_ID = "entry without a promise id"  # the dead record's reason


class Acquirer:
    """Acquires delivered entries for one consumer of the group and hands each acquisition
    to ``start`` as an :class:`Execution` (the worker runs it)."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        consumer: str,
        poison: bytes,
        start: Callable[[Execution], None],
        offered: Callable[[Sequence[Offer]], Awaitable[None]],
    ) -> None:
        """``poison``: the error a promise delivered too often is rejected with;
        ``offered`` handles the Resonate protocol entries (acquire's ``-9``: see
        :mod:`redpromise.worker.protocol_tasks`)."""
        self.runtime = runtime
        self.store = runtime.store
        self.group = runtime.group
        self.consumer = consumer
        self._poison = poison
        self._start = start
        self._offered = offered
        self._metrics = runtime.hooks.metrics

    async def acquire(self, deliveries: Sequence[Delivery]) -> None:
        """Acquire delivered entries (pipelined) and start an execution for each.

        An entry whose acquire call failed (Redis refusing for now: ``MISCONF``, ``OOM``;
        a slot migrating: ``TRYAGAIN``; any other error reply) stays in this consumer's
        pending list and is reclaimed after the lease; the first such error is raised
        once the others are handled. Only an entry that can never be acquired (no
        promise id, a promise key of another type) goes to the dead stream, after the
        acquired ones have started.
        """
        calls, valid = [], []
        garbage: list[tuple[int, str]] = []
        for k, entry, fields in deliveries:
            raw = id_field(fields)
            if raw is None:
                garbage.append((k, entry))
                continue
            id = as_text(raw)
            calls.append(
                self.store.acquire_call(k, self.group, entry, id, self.consumer, self._poison)
            )
            valid.append((k, entry, id))
        try:
            if calls:
                await self._acquire_calls(calls, valid)
        finally:
            await self.bury([(k, entry, _NO_ID) for k, entry in garbage])

    async def took(self, taken: Sequence[Taken], sent: float) -> None:
        """Start an execution for each entry ``take`` acquired (sent at ``sent``), as
        :meth:`acquire` does; the executions start before any bury can fail."""
        valid = [(k, entry, id) for k, entry, id, _ in taken if id is not None]
        try:
            await self._acquired(valid, [r for _, _, id, r in taken if id is not None], sent)
        finally:
            await self.bury([(k, entry, _NO_ID) for k, entry, id, _ in taken if id is None])

    async def _acquire_calls(self, calls: list[Any], valid: list[tuple[int, str, str]]) -> None:
        # The lease is counted from when acquire was *sent*: a process frozen while the
        # reply waited in its socket must not wake up believing its lease is fresh.
        sent = time.monotonic()
        results = await self.store.run_calls(calls)
        await self._acquired(valid, results, sent)

    async def _acquired(
        self, valid: Sequence[tuple[int, str, str]], results: Sequence[Any], sent: float
    ) -> None:
        """Handle acquire's replies (from ``acquire`` or ``take``, sent at ``sent``): start
        an execution per acquisition, count poison; bury, once every acquisition has
        started, the entries whose promise key holds another type (reply ``{0, error}``).
        A failed call (an exception in a reply's place) says nothing about its entry,
        which stays pending to be acquired again; the first such error is raised last."""
        deferred: BaseException | None = None
        corrupt: list[tuple[int, str, str]] = []
        offers: list[Offer] = []
        try:
            for (k, entry, id), res in zip(valid, results, strict=True):
                if isinstance(res, BaseException):
                    deferred = deferred or res
                    continue
                if int(res[0]) == 0 and len(res) > 1:
                    error = error_reply(as_text(res[1]))
                    if cause_of(error) == "WRONGTYPE":
                        log.error("promise %r: record of the wrong type; entry to dead", id)
                        corrupt.append((k, entry, f"acquire failed: {error}"))
                    else:  # not expected from acquire_entry.lua: left to be reclaimed
                        deferred = deferred or error
                    continue
                if int(res[0]) == -9:  # a protocol entry: never dropped (see protocol_tasks)
                    offers.append((k, entry, id, res, sent))
                    continue
                self._acquisition(k, entry, id, res, sent)
            if offers:
                await self._offered(offers)
        finally:
            await self.bury(corrupt)
        if deferred is not None:
            raise deferred

    def _acquisition(self, k: int, entry: str, id: str, res: Any, sent: float) -> None:
        """Start the execution of one acquire reply that is not an error: an acquisition
        runs (its lease counted from ``sent``); a refusal (the entry was dropped) or a
        poison rejection is only counted."""
        code = int(res[0])
        if code != 1:
            if code == -7:
                log.error("promise %r rejected as poison", id)
                if len(res) >= 4:
                    self._metrics.completed(self.group, res[1], "rejected", res[2], res[3])
            else:
                log.debug("skipped entry %s of %r: %s", entry, id, CODES.get(code, code))
            return
        steps = res[8]
        ex = Execution(
            runtime=self.runtime,
            id=id,
            k=k,
            entry=entry,
            version=int(res[1]),
            func=as_text(res[2] or b""),
            args=res[3] or b"",
            attempt=int(res[4] or 0),
            timeout_at=int(res[5] or 0),
            retry=res[6] or b"",
            deliveries=int(res[7] or 0),
            steps={int(steps[i]): steps[i + 1] for i in range(0, len(steps), 2)} if steps else {},
            last_hb=sent,
        )
        if ex.deliveries > 1:
            self._metrics.redelivered(self.group, ex.func)
        self._start(ex)

    async def bury(self, entries: Sequence[tuple[int, str, str]]) -> None:
        """Move entries redpromise can never acquire to the dead stream, out of the group:
        ``(partition, entry id, reason)`` each."""
        if not entries:
            return
        calls = [self.store.bury_call(k, self.group, entry, why) for k, entry, why in entries]
        for res in await self.store.run_calls(calls):
            if isinstance(res, BaseException):
                raise res
