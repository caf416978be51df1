"""The worker runtime: read the group's streams, run functions, keep leases, reclaim.

One worker per process serves one group. Four supervised loops (see
:mod:`redpromise.worker.supervise`: a Redis failure is logged once per cause and retried with
backoff; any other failure ends the process's worker with a reason) run beside the
executions:

- read: ``XREADGROUP`` on every partition's stream, then one pipelined ``acquire`` per
  entry (the fence advances there; :mod:`redpromise.worker.acquisition`), then each
  function runs in its own task and its outcome is written
  (:mod:`redpromise.worker.outcomes`); while entries are flowing, ``take`` calls read
  and acquire in one (see :mod:`redpromise.worker.reads`);
- heartbeat: every ``lease / 3`` the fenced heartbeat renews each in-flight entry; a
  refusal cancels that execution at once;
- reclaim: ``XAUTOCLAIM`` entries idle longer than the lease (their worker is silent),
  then acquire them like new ones; also sweeps consumers that left nothing pending;
- promote: dispatch due retries and reject promises whose timeout passed.

The reclaim loop also reconciles: a few pending promises of the group per tick are
checked for a dispatch entry that vanished (trim, failover) and re-dispatched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from typing import Any, Final

from redpromise.core.codec import as_text, decode, encode_error
from redpromise.core.errors import LeaseLost, NondeterminismError, PayloadError
from redpromise.core.hooks import Hooks
from redpromise.core.options import Settings
from redpromise.redis.classify import cause_of
from redpromise.redis.kinds import is_cluster
from redpromise.redis.replies import CONNECTION_LOST, ErrorReply, error_reply
from redpromise.store.scripts import CODES, refusal
from redpromise.store.store import Call, Store
from redpromise.worker.acquisition import Acquirer
from redpromise.worker.context import Context, Suspend
from redpromise.worker.execution import ChildPromises, Execution, Runtime, Slots, worth_waiting_out
from redpromise.worker.outcomes import Outcomes
from redpromise.worker.protocol_tasks import ProtocolExecution, ProtocolTasks
from redpromise.worker.reads import GroupReads, PartitionReads, StreamReads
from redpromise.worker.registry import Function, Registry
from redpromise.worker.supervise import Supervisor
from redpromise.worker.upkeep import SCHEDULE_TICK, Upkeep

__all__ = ["Worker"]

log = logging.getLogger("redpromise.worker")


class Worker:
    """Runs the registered functions of one group. Use through :class:`Redpromise`.

    Receives what it uses: the store, the functions, who it is (``group``,
    ``consumer``), the observers (``hooks``) and a way to start child promises
    (``children``); it knows nothing of the client that made it.
    """

    def __init__(
        self,
        store: Store,
        registry: Registry,
        *,
        group: str,
        consumer: str,
        hooks: Hooks,
        children: ChildPromises,
    ) -> None:
        self.redis = store.redis
        self.store = store
        self.registry = registry
        self.group = group
        self.consumer = consumer
        self.metrics = hooks.metrics
        self.tracer = hooks.tracer
        self.settings: Settings = store.settings
        self.runtime = Runtime(store, self.settings, group, hooks, children)
        self.keys = store.keys
        self._inflight: dict[tuple[int, str], Execution] = {}
        self._slots = Slots(self.settings.concurrency)
        self._room = asyncio.Event()
        self._room.set()
        self._stopping = False
        self.streams = [self.keys.stream(k, group) for k in range(self.keys.partitions)]
        # Partitions whose stream key holds something else (WRONGTYPE): left out of
        # every read until the key is fixed, so the other partitions go on being served.
        # Final: the upkeep holds this same set, so it is only ever updated in place.
        self.bad_partitions: Final[set[int]] = set()
        self._poison = encode_error(
            "PoisonError",
            f"delivered more than {self.settings.max_deliveries} times without completing "
            "(the worker running it died or stalled every time)",
            self.settings.max_payload_bytes,
        )
        head: list[Any] = ["XREADGROUP", "GROUP", group, self.consumer]
        block_ms = int(self.settings.block.total_seconds() * 1000)
        reads = PartitionReads if is_cluster(self.redis) else StreamReads
        self.reads: GroupReads = reads(
            self.redis, head, self.streams, block_ms, self._take_call
        )
        self.reads.use(range(self.keys.partitions))
        self.protocol_tasks = ProtocolTasks(
            self.runtime, registry, consumer=consumer, start=self._begin
        )
        self.acquirer = Acquirer(
            self.runtime,
            consumer=consumer,
            poison=self._poison,
            start=self._begin,
            offered=self.protocol_tasks.offered,
        )
        self.outcomes = Outcomes(self.runtime)
        self.supervisor = Supervisor(log, hooks.metrics)
        self.upkeep = Upkeep(
            store,
            consumer=consumer,
            group=group,
            streams=self.streams,
            bad_partitions=self.bad_partitions,
            inflight=lambda: len(self._inflight),
            stopping=lambda: self._stopping,
            acquire=self.acquirer.acquire,
            ensure_groups=self.ensure_groups,
            metrics=hooks.metrics,
        )

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    @property
    def completed(self) -> int:
        """Completions this worker wrote (see :attr:`Outcomes.completed`)."""
        return self.outcomes.completed

    @property
    def slots(self) -> int:
        """Functions this worker may run at once (``Settings.concurrency``)."""
        return self.settings.concurrency

    @property
    def stopping(self) -> bool:
        return self._stopping

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        await self.ensure_groups()
        s, sup = self.settings, self.supervisor
        sup.spawn("read", self._read_once, 0)
        sup.spawn("heartbeat", self.heartbeat, s.heartbeat_every.total_seconds())
        sup.spawn("reclaim", self.upkeep.reclaim_round, s.reclaim_every.total_seconds())
        sup.spawn("promote", self.upkeep.promote, s.poll_interval.total_seconds())
        sup.spawn("schedules", self.upkeep.fire_schedules, SCHEDULE_TICK)
        self.metrics.watch_worker(self)

    async def stop(self, grace: float) -> None:
        """Stop reading, let in-flight functions finish for ``grace`` s, leave the rest.

        What is left stays in this consumer's pending list with its lease lapsing, so
        another worker of the group reclaims it: nothing is lost.
        """
        self._stopping = True
        # Bounded waits throughout: a cancel landing inside a pending read must not be
        # able to hold the shutdown (entries left behind are reclaimed anyway).
        await self.supervisor.stop(("read",), timeout=5)
        await self.reads.close()
        tasks = [ex.task for ex in self._inflight.values() if ex.task is not None]
        if tasks:
            log.info("waiting up to %.1fs for %d in-flight functions", grace, len(tasks))
            _, late = await asyncio.wait(tasks, timeout=grace)
            for t in late:
                t.cancel()
            if late:
                log.warning("left %d functions for other workers to reclaim", len(late))
                await asyncio.wait(late, timeout=5)
        await self.supervisor.stop(timeout=5)
        # Leaving is a courtesy (idle consumers are swept anyway): never hang on it.
        with contextlib.suppress(*CONNECTION_LOST, ErrorReply, TimeoutError):
            await asyncio.wait_for(self._leave(), 5)

    async def _leave(self) -> None:
        """Delete this consumer from streams where it holds nothing pending."""
        pipe = self.redis.pipeline(transaction=False)
        for s in self.streams:
            pipe.xpending_range(s, self.group, "-", "+", 1, consumername=self.consumer)
        pending = await pipe.execute(raise_on_error=False)
        pipe = self.redis.pipeline(transaction=False)
        for s, p in zip(self.streams, pending, strict=True):
            if isinstance(p, list) and not p:
                pipe.xgroup_delconsumer(s, self.group, self.consumer)
        await pipe.execute(raise_on_error=False)

    async def ensure_groups(self) -> None:
        """Create the group on every partition's stream (from the start: nothing missed).

        Also how the worker recovers from a wiped dataset (``NOGROUP``). A stream key
        holding another type is logged and its partition left out of reads until fixed.
        """
        pipe = self.redis.pipeline(transaction=False)
        for s in self.streams:
            pipe.xgroup_create(s, self.group, id="0", mkstream=True)
        first: BaseException | None = None
        bad = set()
        for k, r in enumerate(await pipe.execute(raise_on_error=False)):
            if not isinstance(r, Exception) or "BUSYGROUP" in str(r):
                continue
            if cause_of(r) == "WRONGTYPE":
                bad.add(k)
                self.upkeep.key_fault(self.streams[k], r)
            else:
                first = first or r
        if first is not None:
            raise first
        if bad != self.bad_partitions:
            if self.bad_partitions - bad:
                log.info("streams usable again: %s", sorted(self.bad_partitions - bad))
            self.bad_partitions.clear()
            self.bad_partitions.update(bad)
            self._use_partitions()

    # -- reading and acquiring ----------------------------------------------------------

    def _take_call(self, k: int, count: int) -> Call:
        return self.store.take_call(k, self.group, self.consumer, count, self._poison)

    async def _read_once(self) -> None:
        """One iteration of the read loop: wait for a free slot, read and acquire."""
        free = self.settings.concurrency - len(self._inflight)
        if free <= 0:
            self._room.clear()
            self.supervisor.idle("read", True)
            await self._room.wait()
            self.supervisor.idle("read", False)
            return
        try:
            batch = await self.reads.read(free)
        except ErrorReply as exc:
            cause = cause_of(exc)
            if cause == "NOGROUP":
                await self.ensure_groups()
            elif cause == "WRONGTYPE":
                await self._find_bad_streams()
            raise
        try:
            if batch.taken:
                await self.acquirer.took(batch.taken, batch.sent)
        finally:
            await self.acquirer.acquire(batch.deliveries)

    def _use_partitions(self) -> None:
        self.reads.use([k for k in range(self.keys.partitions) if k not in self.bad_partitions])

    async def _find_bad_streams(self) -> None:
        """Which partition's stream key holds another type (one WRONGTYPE fails a read of
        every stream): log it and leave it out of reads until it is fixed."""
        pipe = self.redis.pipeline(transaction=False)
        for s in self.streams:
            pipe.type(s)
        types = [as_text(t) for t in await pipe.execute()]
        bad = {k for k, t in enumerate(types) if t not in ("stream", "none")}
        for k in bad - self.bad_partitions:
            self.upkeep.key_fault(
                self.streams[k],
                error_reply(f"WRONGTYPE {self.streams[k]} holds a {types[k]}, not a stream"),
            )
        self.bad_partitions.update(bad)
        self._use_partitions()

    def _begin(self, ex: Execution) -> None:
        """Run an acquisition in its own task, in flight until it ends."""
        old = self._inflight.get((ex.k, ex.entry))
        if old is not None and old.lost is None:
            # We reclaimed our own entry (this process stalled past its lease): the
            # newer acquisition fences the older execution out.
            old.lost = "reacquired by a newer delivery"
            if old.task is not None:
                old.task.cancel()
        self._inflight[(ex.k, ex.entry)] = ex
        ex.task = asyncio.create_task(self._execute(ex), name=f"redpromise:{ex.id}")

    # -- executing ----------------------------------------------------------------------

    async def _execute(self, ex: Execution) -> None:
        try:
            if not self._slots.take():
                await self._slots.wait()
            try:
                await self._start(ex)
            finally:
                self._slots.give()
        except asyncio.CancelledError:
            if ex.lost is None and self._stopping:
                log.info("left %r to be reclaimed (shutdown)", ex.id)
            elif ex.lost is not None:
                log.warning("stopped %r: %s", ex.id, ex.lost)
            else:
                raise
        except LeaseLost as exc:
            log.warning("%s", exc)
        except Exception:
            log.exception("internal error while running %r", ex.id)
        finally:
            if self._inflight.get((ex.k, ex.entry)) is ex:
                del self._inflight[(ex.k, ex.entry)]
            self._room.set()

    def _start(self, ex: Execution) -> Awaitable[None]:
        """What runs ``ex`` (its function, or the write that settles why it cannot run),
        returned to be awaited by :meth:`_execute`: one coroutine less per execution."""
        if isinstance(ex, ProtocolExecution):
            return self.protocol_tasks.run(ex)
        func = self.registry.get(ex.func)
        if func is None:
            return self._unknown(ex)
        try:
            payload = decode(ex.args)
            args, kwargs = payload["a"], payload["k"]
            if not isinstance(args, list) or not isinstance(kwargs, dict):
                raise PayloadError("arguments are not a list and a dict")
        except (PayloadError, KeyError, TypeError) as exc:
            return self.outcomes.reject(ex, "PayloadError", f"unreadable arguments: {exc}")
        if not self.tracer.active():
            return self._invoke(ex, func, args, kwargs)
        return self._traced(ex, func, payload, args, kwargs)

    async def _traced(
        self,
        ex: Execution,
        func: Function,
        payload: dict[str, Any],
        args: list[Any],
        kwargs: dict[str, Any],
    ) -> None:
        attributes = {
            "redpromise.promise_id": ex.id,
            "redpromise.group": self.group,
            "redpromise.version": ex.version,
            "redpromise.attempt": ex.attempt,
            "redpromise.deliveries": ex.deliveries,
        }
        # The trace context begin_rpc put in the payload: this span joins the caller's trace.
        parent = payload.get("tc") if isinstance(payload.get("tc"), dict) else None
        with self.tracer.span(f"execute {ex.func}", "consumer", attributes, parent=parent):
            await self._invoke(ex, func, args, kwargs)

    async def _invoke(
        self, ex: Execution, func: Function, args: list[Any], kwargs: dict[str, Any]
    ) -> None:
        ex.ensure_alive()
        try:
            value = await self.runtime.attempt(func, Context(ex), args, kwargs)
        except (asyncio.CancelledError, LeaseLost):
            raise
        except Suspend as sus:
            await self.outcomes.suspend(ex, sus.wake_at)
            return
        except NondeterminismError as exc:
            self.tracer.failed(exc)
            await self.outcomes.reject(ex, "NondeterminismError", str(exc))
            return
        except Exception as exc:
            if ex.lost is not None:
                raise LeaseLost(f"execution of {ex.id!r} lost its lease: {ex.lost}") from exc
            self.tracer.failed(exc)
            await self.outcomes.failed(ex, func, exc)
            return
        await self.outcomes.resolve(ex, func, value)

    async def _unknown(self, ex: Execution) -> None:
        if ex.deliveries >= self.settings.unknown_function_deliveries:
            await self.outcomes.reject(
                ex,
                "UnknownFunction",
                f"no worker of group {self.group!r} has a function named {ex.func!r}",
            )
            return
        # Leave the entry unrenewed: after the lease any worker of the group (one that
        # may know the function) reclaims it; each delivery counts toward the bound.
        log.warning(
            "%r needs function %r, not registered here (%s); leaving it for another worker",
            ex.id,
            ex.func,
            ", ".join(self.registry.names()),
        )

    # -- leases -------------------------------------------------------------------------

    async def heartbeat(self) -> None:
        """Renew every in-flight lease once; cancel executions whose renewal is refused."""
        items = list(self._inflight.values())
        protocol = [ex for ex in items if isinstance(ex, ProtocolExecution)]
        if protocol:
            items = [ex for ex in items if not isinstance(ex, ProtocolExecution)]
            await self.protocol_tasks.heartbeat(protocol)
        if not items:
            return
        sent = time.monotonic()
        calls = [
            self.store.heartbeat_call(ex.id, self.group, self.consumer, ex.version, ex.entry)
            for ex in items
        ]
        results = await self.store.run_calls(calls)
        for ex, res in zip(items, results, strict=True):
            if isinstance(res, BaseException):
                if not worth_waiting_out(res):
                    self.upkeep.key_fault(self.keys.promise(ex.id), res)
                continue
            code = int(res[0])
            if code == 1:
                ex.last_hb = sent
            elif ex.lost is None:
                ex.lost = refusal(code, res[1] if len(res) > 1 else None)
                if not ex.finishing:
                    self.metrics.refused(self.group, "heartbeat", CODES.get(code, str(code)))
                    if ex.task is not None:
                        ex.task.cancel()
                # A finishing execution's outcome is its final write's (complete, retry,
                # suspend), which counts its own refusal: a heartbeat racing it mostly
                # sees that write already landed ("not pending"), no refusal at all.
        # One log line for Redis as a whole, not one per execution.
        down = next(
            (r for r in results if isinstance(r, BaseException) and worth_waiting_out(r)), None
        )
        if down is not None:
            raise down

