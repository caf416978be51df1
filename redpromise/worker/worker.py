"""The worker runtime: read the group's streams, run functions, keep leases, reclaim.

One worker per process serves one group. Four supervised loops (see
:mod:`redpromise.worker.supervise`: a Redis failure is logged once per cause and retried with
backoff; any other failure ends the process's worker with a reason) run beside the
executions:

- read: ``XREADGROUP`` on every partition's stream, then one pipelined ``acquire`` per
  entry (the fence advances there), then each function runs in its own task; while
  entries are flowing, ``take`` calls read and acquire in one (see :mod:`._reads`);
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
from collections.abc import Awaitable, Sequence
from typing import Any

from redpromise.core.codec import as_text, decode, encode, encode_error, error_of
from redpromise.core.errors import LeaseLost, NondeterminismError, PayloadError
from redpromise.core.hooks import Hooks
from redpromise.core.options import RetryPolicy, Settings, _policy_from_wire
from redpromise.redis.classify import cause_of
from redpromise.redis.replies import CONNECTION_LOST, ErrorReply, error_reply, is_cluster
from redpromise.store.scripts import CODES, refusal, reply_code
from redpromise.store.store import Call, Store
from redpromise.worker.context import Context, Suspend
from redpromise.worker.execution import (
    ChildPromises,
    Execution,
    Runtime,
    Slots,
    id_field,
    persist,
    waitable,
)
from redpromise.worker.reads import GroupReads, PartitionReads, StreamReads, Taken
from redpromise.worker.registry import Function, Registry
from redpromise.worker.supervise import Supervisor
from redpromise.worker.upkeep import Upkeep

__all__ = ["Worker"]

log = logging.getLogger("redpromise.worker")

_NO_ID = "entry without a promise id"  # the dead record's reason


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
        self.suspend_after = self.settings.suspend_after.total_seconds()
        self.keys = store.keys
        self.lease = self.settings.lease.total_seconds()
        self._inflight: dict[tuple[int, str], Execution] = {}
        self._slots = Slots(self.settings.concurrency)
        self._room = asyncio.Event()
        self._room.set()
        self._stopping = False
        self.streams = [self.keys.stream(k, group) for k in range(self.keys.partitions)]
        # Partitions whose stream key holds something else (WRONGTYPE): left out of
        # every read until the key is fixed, so the other partitions go on being served.
        self.bad_partitions: set[int] = set()
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
        self.supervisor = Supervisor(log, hooks.metrics)
        self.upkeep = Upkeep(
            store,
            consumer=consumer,
            group=group,
            streams=self.streams,
            bad_partitions=self.bad_partitions,
            inflight=lambda: len(self._inflight),
            stopping=lambda: self._stopping,
            acquire=self.acquire,
            ensure_groups=self.ensure_groups,
            metrics=hooks.metrics,
        )
        self.completed = 0

    @property
    def inflight(self) -> int:
        return len(self._inflight)

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
            self.bad_partitions = bad
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
                await self._took(batch.taken, batch.sent)
        finally:
            await self.acquire(batch.deliveries)

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
        self.bad_partitions |= bad
        self._use_partitions()

    async def acquire(self, deliveries: Sequence[tuple[int, str, Any]]) -> None:
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
            await self._bury([(k, entry, _NO_ID) for k, entry in garbage])

    async def _took(self, taken: Sequence[Taken], sent: float) -> None:
        """Start an execution for each entry ``take`` acquired (sent at ``sent``), as
        :meth:`acquire` does; the executions start before any bury can fail."""
        valid = [(k, entry, id) for k, entry, id, _ in taken if id is not None]
        try:
            await self._acquired(valid, [r for _, _, id, r in taken if id is not None], sent)
        finally:
            await self._bury([(k, entry, _NO_ID) for k, entry, id, _ in taken if id is None])

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
                self._start_acquired(k, entry, id, res, sent)
        finally:
            await self._bury(corrupt)
        if deferred is not None:
            raise deferred

    def _start_acquired(self, k: int, entry: str, id: str, res: Any, sent: float) -> None:
        """Start the execution of one acquire reply that is not an error: an acquisition
        runs; a refusal (the entry was dropped) or a poison rejection is only counted."""
        code = int(res[0])
        if code != 1:
            if code == -7:
                log.error("promise %r rejected as poison", id)
                if len(res) >= 4:
                    self.metrics.completed(self.group, res[1], "rejected", res[2], res[3])
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
            steps={int(steps[i]): steps[i + 1] for i in range(0, len(steps), 2)}
            if steps
            else {},
            last_hb=sent,
        )
        if ex.deliveries > 1:
            self.metrics.redelivered(self.group, ex.func)
        old = self._inflight.get((k, entry))
        if old is not None and old.lost is None:
            # We reclaimed our own entry (this process stalled past its lease): the
            # newer acquisition fences the older execution out.
            old.lost = "reacquired by a newer delivery"
            if old.task is not None:
                old.task.cancel()
        self._inflight[(k, entry)] = ex
        ex.task = asyncio.create_task(self._execute(ex), name=f"redpromise:{id}")

    async def _bury(self, entries: Sequence[tuple[int, str, str]]) -> None:
        """Move entries redpromise can never acquire to the dead stream, out of the group:
        ``(partition, entry id, reason)`` each."""
        if not entries:
            return
        calls = [self.store.bury_call(k, self.group, entry, why) for k, entry, why in entries]
        for res in await self.store.run_calls(calls):
            if isinstance(res, BaseException):
                raise res

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
        func = self.registry.get(ex.func)
        if func is None:
            return self._unknown(ex)
        try:
            payload = decode(ex.args)
            args, kwargs = payload["a"], payload["k"]
            if not isinstance(args, list) or not isinstance(kwargs, dict):
                raise PayloadError("arguments are not a list and a dict")
        except (PayloadError, KeyError, TypeError) as exc:
            return self._reject(ex, "PayloadError", f"unreadable arguments: {exc}")
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
        ctx = Context(ex)
        started = time.monotonic()
        try:
            try:
                call = func.invoke(ctx, args, kwargs)
                if func.timeout is not None:
                    value = await asyncio.wait_for(call, func.timeout.total_seconds())
                else:
                    value = await call
            finally:
                self.metrics.executed(self.group, ex.func, time.monotonic() - started)
        except (asyncio.CancelledError, LeaseLost):
            raise
        except Suspend as sus:
            await self._suspend(ex, sus.wake_at)
            return
        except NondeterminismError as exc:
            self.tracer.failed(exc)
            await self._reject(ex, "NondeterminismError", str(exc))
            return
        except Exception as exc:
            if ex.lost is not None:
                raise LeaseLost(f"execution of {ex.id!r} lost its lease: {ex.lost}") from exc
            self.tracer.failed(exc)
            await self._failed(ex, func, exc)
            return
        try:
            blob = encode(value, self.settings.max_payload_bytes)
        except PayloadError as exc:
            await self._reject(ex, type(exc).__name__, f"result of {func.name!r}: {exc}")
            return
        await self._complete(ex, "resolved", blob)

    async def _failed(self, ex: Execution, func: Function, exc: Exception) -> None:
        info = error_of(exc)
        if isinstance(exc, TimeoutError) and func.timeout is not None:
            info = {"type": "TimeoutError", "message": f"attempt exceeded {func.timeout}"}
        policy: RetryPolicy = (
            (_policy_from_wire(decode(ex.retry)) if ex.retry else None)
            or func.retry
            or self.settings.retry
        )
        retryable = policy.retries(exc) and (func.retry is None or func.retry.retries(exc))
        delay = policy.next_delay(ex.attempt + 1) if retryable else None
        error = encode_error(info["type"], info["message"], self.settings.max_payload_bytes)
        if delay is not None:
            delay_ms = int(delay.total_seconds() * 1000)
            if self.store.clock.now_ms() + delay_ms < ex.timeout_at:
                log.info(
                    "%r failed at attempt=%d (%s: %s); retry in %s",
                    ex.id,
                    ex.attempt,
                    info["type"],
                    info["message"],
                    delay,
                )
                ex.finishing = True
                reply = await self.persist(
                    lambda: self.store.retry_reply(
                        ex.id, self.group, ex.version, delay_ms, error, entry=ex.entry
                    )
                )
                code, state = reply_code(reply)
                if code == 1:
                    self.metrics.retried(self.group, ex.func)
                elif code is not None and code < 0:
                    self.metrics.refused(self.group, "retry", CODES.get(code, str(code)))
                    log.warning("retry of %r refused: %s", ex.id, refusal(code, state))
                return
        log.info("%r rejected at attempt=%d: %s", ex.id, ex.attempt, info["type"])
        await self._complete(ex, "rejected", error)

    async def _suspend(self, ex: Execution, wake_at: int) -> None:
        ex.finishing = True
        delay_ms = max(0, wake_at - self.store.clock.now_ms())
        log.info("%r suspended for %.1fs", ex.id, delay_ms / 1000)
        reply = await self.persist(
            lambda: self.store.retry_reply(
                ex.id, self.group, ex.version, delay_ms, b"", entry=ex.entry, attempt=False
            )
        )
        code, state = reply_code(reply)
        if code is not None and code < 0:
            self.metrics.refused(self.group, "suspend", CODES.get(code, str(code)))
            log.warning("suspension of %r refused: %s", ex.id, refusal(code, state))

    async def _reject(self, ex: Execution, type_name: str, message: str) -> None:
        log.error("rejecting %r: %s: %s", ex.id, type_name, message)
        await self._complete(
            ex, "rejected", encode_error(type_name, message, self.settings.max_payload_bytes)
        )

    async def _unknown(self, ex: Execution) -> None:
        if ex.deliveries >= self.settings.unknown_function_deliveries:
            await self._reject(
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

    async def _complete(self, ex: Execution, state: str, blob: bytes) -> None:
        # From here the outcome is being written: a heartbeat that races the completion
        # (and sees "not pending") must not cancel the task writing it.
        ex.finishing = True

        def write() -> Awaitable[list[Any]]:
            return self.store.complete(ex.id, self.group, ex.version, state, blob)

        if self.tracer.active():
            attributes = {"redpromise.promise_id": ex.id, "redpromise.state": state}
            with self.tracer.span(f"complete {ex.func}", "internal", attributes) as span:
                res = await persist(write, self.lease)
                if res is not None:
                    self.tracer.annotate(span, code=int(res[0]))
        else:
            res = await persist(write, self.lease)
        if res is None:
            return
        code = int(res[0])
        if code == 0 and len(res) > 3 and as_text(res[3]) == str(ex.version):
            code = 1  # our own earlier call landed and its reply was lost: a success
            self.metrics.completed(self.group, ex.func, state, None, None)
        elif code < 0:
            self.metrics.refused(self.group, "complete", CODES.get(code, str(code)))
        if code == 1:
            self.completed += 1
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "completed %r as %s",
                    ex.id,
                    state,
                    extra={"redpromise_event": "completed", **self._event(ex, state)},
                )
            return
        # Structured events (``record.redpromise_event``) let an audit or a chaos
        # checker count accepted and refused completions without parsing messages.
        event = self._event(ex, state)
        if code == 0:
            log.info(
                "%r was already completed (%s)",
                ex.id,
                as_text(res[1]),
                extra={"redpromise_event": "already_completed", **event},
            )
        else:
            log.warning(
                "completion of %r refused: %s",
                ex.id,
                refusal(code),
                extra={"redpromise_event": "refused", **event},
            )

    @staticmethod
    def _event(ex: Execution, state: str) -> dict[str, Any]:
        return {"promise_id": ex.id, "state": state, "version": ex.version}

    async def persist(self, op: Any) -> Any:
        """See :func:`redpromise.worker.execution.persist` (bounded by this worker's lease)."""
        return await persist(op, self.lease)

    # -- leases -------------------------------------------------------------------------

    async def heartbeat(self) -> None:
        """Renew every in-flight lease once; cancel executions whose renewal is refused."""
        items = list(self._inflight.values())
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
                if not waitable(res):
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
        down = next((r for r in results if isinstance(r, BaseException) and waitable(r)), None)
        if down is not None:
            raise down

