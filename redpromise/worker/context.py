"""The Context a registered function receives: durable steps, children, timers, promises.

Every durable operation takes the next step number (``seq``) when it is *called*, so
steps started together (``asyncio.gather``) get deterministic numbers. Each records its
outcome through the fenced checkpoint script; a replay (after a crash, a retry or a
suspension) returns the recorded outcome instead of doing the work again, and refuses
with :class:`NondeterminismError` when the code now asks for a different operation at
that number than the one recorded. A step is recognised by its kind and name: a step
function's qualified name (a ``functools.partial`` by the function it wraps, a callable
object by its class), or the ``name=`` given to :meth:`Context.run`.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import math
import random as _random
import time
from collections.abc import Callable, Generator
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from redpromise.core.codec import decode, encode, error_of
from redpromise.core.errors import (
    LeaseLost,
    NondeterminismError,
    PayloadError,
    PromiseCanceled,
    PromiseRejected,
    PromiseTimedOut,
)
from redpromise.core.options import Timeout, as_timeout

if TYPE_CHECKING:
    from redpromise.worker.execution import Execution

__all__ = ["Context", "DurablePromise", "Suspend"]


class Suspend(BaseException):
    """Unwinds a function that hands itself back until ``wake_at`` (ms, wall clock).

    A BaseException so user code's ``except Exception`` cannot swallow it.
    """

    def __init__(self, wake_at: int) -> None:
        super().__init__(wake_at)
        self.wake_at = wake_at


def _name(fn: Callable[..., Any]) -> str:
    """A step's name, the same in every process and every run (never a ``repr`` with a
    memory address): the qualified name of the function, of the function a
    ``functools.partial`` wraps, or of a callable object's class."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    qualname = getattr(fn, "__qualname__", None)
    if isinstance(qualname, str) and qualname:
        return qualname
    return type(fn).__qualname__


# Rejections replayed as their own class, as on the first run.
_REJECTED_AS: dict[str, Callable[[str], PromiseRejected]] = {
    "rejected_canceled": PromiseCanceled,
    "rejected_timedout": PromiseTimedOut,
}


def _failure(exc: PromiseRejected) -> dict[str, Any]:
    """The checkpointed form of a child's or a latent promise's rejection."""
    out: dict[str, Any] = {"e": error_of(exc), "c": exc.id}
    if isinstance(exc, PromiseCanceled):
        out["s"] = "rejected_canceled"
    elif isinstance(exc, PromiseTimedOut):
        out["s"] = "rejected_timedout"
    return out


class DurablePromise:
    """A promise created by :meth:`Context.promise`, completed from outside by id.

    ``await p`` (or ``yield p``) waits for it and returns its value, or raises its
    rejection, like :meth:`Handle.result`. Each ``await`` is a durable step of its own:
    it takes the next step number when it starts and checkpoints the outcome, so a
    replay returns that outcome without reading the promise again (it may have expired
    after its retention by then).
    """

    def __init__(self, ctx: Context, id: str) -> None:
        self._ctx = ctx
        self.id = id

    def __repr__(self) -> str:
        return f"DurablePromise({self.id!r})"

    def __await__(self) -> Generator[Any, None, Any]:
        seq = self._ctx._next()
        return self._ctx._await_promise(seq, self.id).__await__()


class Context:
    """What a function running on a worker can do durably.

    Step functions are called as ``fn(*args, **kwargs)``: they do not receive the
    context. A step that raises is not recorded; the error propagates to the function.
    """

    def __init__(self, execution: Execution) -> None:
        self._ex = execution
        self._seq = 0
        rt = execution.runtime
        self._children = execution.children
        self._clock = rt.store.clock
        self._tracer = rt.hooks.tracer
        # An execution that cannot hand itself back waits out every sleep (math.inf).
        self._suspend_after = (
            rt.settings.suspend_after.total_seconds() if execution.suspends else math.inf
        )

    @property
    def id(self) -> str:
        """The promise id this execution works on."""
        return self._ex.id

    @property
    def attempt(self) -> int:
        """Retries before this one (0 on the first attempt)."""
        return self._ex.attempt

    @property
    def version(self) -> int:
        """This execution's fencing token: it rises with every delivery of the promise.

        Downstream systems can compare-and-set on ``(id, version)`` to refuse writes of
        a zombie execution.
        """
        return self._ex.version

    def idempotency_key(self) -> str:
        """A key for the *next* step, stable across retries and redeliveries: the id a
        promise made by that step would have (``id.seq``; ``id:seq`` in a Resonate task)."""
        return self._ex.child_id(self._seq + 1)

    # -- steps --------------------------------------------------------------------------

    def run(
        self, fn: Callable[..., Any], /, *args: Any, name: str | None = None, **kwargs: Any
    ) -> asyncio.Future[Any]:
        """Run ``fn(*args, **kwargs)`` as a checkpointed step; await (or yield) the result.

        If an earlier execution recorded this step, its value is returned and ``fn`` is
        not called. Otherwise ``fn`` runs (sync functions in a thread) and its value is
        recorded through the fence before it is returned. A step that ran but whose
        checkpoint was not written (the worker died in between) runs again: steps are
        at-least-once, completions exactly-once.

        The step is recorded under ``name``, by default the qualified name of ``fn`` (of
        the function a ``functools.partial`` wraps; of a callable object's class). A
        replay refuses a step of another name (:class:`NondeterminismError`). ``name`` is
        keyword-only and not passed to ``fn``; a step function that takes a keyword
        argument called ``name`` gets it through ``functools.partial(fn, name=…)``.
        """
        seq = self._next()
        return asyncio.ensure_future(self._run(seq, fn, args, kwargs, name))

    begin_run = run

    async def _run(
        self,
        seq: int,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        step_name: str | None,
    ) -> Any:
        """The step, inside a ``step <name>`` span unless it is replayed from its
        checkpoint (then nothing runs, and no span is made)."""
        tracer = self._tracer
        if not tracer.active() or seq in self._ex.steps:
            return await self._run_step(seq, fn, args, kwargs, step_name)
        # The span is named as the step is recorded when the caller named it (name=).
        label = step_name or getattr(fn, "__qualname__", None) or getattr(fn, "__name__", "step")
        attributes = {"redpromise.promise_id": self.id, "redpromise.step": seq}
        with tracer.span(f"step {label}", "internal", attributes):
            return await self._run_step(seq, fn, args, kwargs, step_name)

    async def _run_step(
        self,
        seq: int,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        step_name: str | None,
    ) -> Any:
        name = step_name if step_name is not None else _name(fn)
        recorded = self._recorded(seq, "run", name)
        if recorded is not None:
            return recorded["v"]
        self._ex.ensure_alive()
        if inspect.iscoroutinefunction(fn):
            value = await fn(*args, **kwargs)
        else:
            value = await asyncio.to_thread(fn, *args, **kwargs)
            if inspect.isawaitable(value):
                value = await value
        await self._record(seq, {"k": "run", "n": name, "v": value})
        return value

    def time(self) -> asyncio.Future[float]:
        """The wall clock (seconds), recorded on first execution and replayed after."""
        return self._value_step("time", time.time)

    def random(self) -> asyncio.Future[float]:
        """A random float in [0, 1), recorded on first execution and replayed after."""
        return self._value_step("random", _random.random)

    def _value_step(self, kind: str, make: Callable[[], float]) -> asyncio.Future[Any]:
        seq = self._next()

        async def step() -> Any:
            recorded = self._recorded(seq, kind, kind)
            if recorded is not None:
                return recorded["v"]
            self._ex.ensure_alive()
            value = make()
            await self._record(seq, {"k": kind, "n": kind, "v": value})
            return value

        return asyncio.ensure_future(step())

    # -- timers -------------------------------------------------------------------------

    def sleep(self, seconds: float | timedelta) -> asyncio.Future[None]:
        """A durable timer: the wake-up time is recorded, so a restart keeps the clock.

        Short sleeps wait in the worker. A sleep longer than the worker's suspension
        threshold hands the promise back to the delayed set and frees the worker; it is
        dispatched again when due and replays to here. A Resonate protocol task waits out
        every sleep in the worker, holding its task (its wake-up time recorded all the same).
        """
        secs = seconds.total_seconds() if isinstance(seconds, timedelta) else float(seconds)
        seq = self._next()
        return asyncio.ensure_future(self._sleep(seq, secs))

    async def _sleep(self, seq: int, secs: float) -> None:
        recorded = self._recorded(seq, "sleep", "sleep")
        if recorded is None:
            self._ex.ensure_alive()
            wake_at = self._clock.now_ms() + int(max(0.0, secs) * 1000)
            await self._record(seq, {"k": "sleep", "n": "sleep", "v": None, "w": wake_at})
        else:
            wake_at = int(recorded.get("w", 0))
        # Redis' clock: the wake-up time survives a move to a worker whose clock differs.
        left = (wake_at - self._clock.now_ms()) / 1000
        if left <= 0:
            return
        if left > self._suspend_after:
            raise Suspend(wake_at)
        await asyncio.sleep(left)
        self._ex.ensure_alive()

    # -- child and latent promises ------------------------------------------------------

    def rpc(
        self,
        name: str,
        *args: Any,
        target: str | None = None,
        timeout: Timeout | None = None,
        **kwargs: Any,
    ) -> asyncio.Future[Any]:
        """Dispatch ``name`` as a child promise ``<id>.<seq>`` and wait for its result.

        The child id is deterministic: a replayed parent re-attaches to the same child and
        never creates a second one. The child's timeout (seconds or a ``timedelta``) is
        capped at the parent's. Awaiting the returned future gives the child's value or
        raises its rejection; a replay raises the same class (:class:`PromiseCanceled`,
        :class:`PromiseTimedOut` or :class:`PromiseRejected`) as the first run.
        """
        child_timeout = as_timeout(timeout)
        seq = self._next()
        return asyncio.ensure_future(self._rpc(seq, name, args, kwargs, target, child_timeout))

    begin_rpc = rpc

    async def _rpc(
        self,
        seq: int,
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        target: str | None,
        timeout: timedelta | None,
    ) -> Any:
        recorded = self._recorded(seq, "rpc", name)
        if recorded is not None:
            return self._replay_outcome(recorded)
        child = self._ex.child_id(seq)
        self._ex.ensure_alive()
        await self._children.adopt(self.id, child)
        await self._children.begin(
            child, name, args, kwargs, target, self._child_timeout(timeout)
        )
        try:
            value = await self._children.wait_outcome(child)
        except PromiseRejected as exc:
            await self._record(seq, {"k": "rpc", "n": name, **_failure(exc)})
            raise
        await self._record(seq, {"k": "rpc", "n": name, "v": value, "c": child})
        return value

    def promise(self, timeout: Timeout | None = None) -> asyncio.Future[DurablePromise]:
        """Create a promise ``<id>.<seq>`` that something outside completes by id.

        Give its ``id`` to a person or a system; ``Redpromise.resolve(id, value)`` (or the
        gateway's ``/resolve`` route) completes it; ``await p`` waits for it. For
        human-in-the-loop steps that may wait for days. ``timeout`` (seconds or a
        ``timedelta``) is capped at this promise's.
        """
        latent_timeout = as_timeout(timeout)
        seq = self._next()

        async def create() -> DurablePromise:
            pid = self._ex.child_id(seq)
            if self._recorded(seq, "promise", "promise") is None:
                self._ex.ensure_alive()
                await self._children.adopt(self.id, pid)
                await self._children.create_latent(pid, self._child_timeout(latent_timeout))
                await self._record(seq, {"k": "promise", "n": "promise", "v": pid})
            return DurablePromise(self, pid)

        return asyncio.ensure_future(create())

    async def _await_promise(self, seq: int, pid: str) -> Any:
        recorded = self._recorded(seq, "await", pid)
        if recorded is not None:
            return self._replay_outcome(recorded)
        self._ex.ensure_alive()
        try:
            value = await self._children.wait_outcome(pid)
        except PromiseRejected as exc:
            await self._record(seq, {"k": "await", "n": pid, **_failure(exc)})
            raise
        await self._record(seq, {"k": "await", "n": pid, "v": value})
        return value

    # -- internals ----------------------------------------------------------------------

    def _next(self) -> int:
        self._seq += 1
        return self._seq

    def _child_timeout(self, timeout: timedelta | None) -> timedelta:
        left = timedelta(milliseconds=max(1, self._ex.timeout_at - self._clock.now_ms()))
        return min(timeout, left) if timeout is not None else left

    def _recorded(self, seq: int, kind: str, name: str) -> dict[str, Any] | None:
        blob = self._ex.steps.get(seq)
        if blob is None:
            return None
        outcome = decode(blob)
        if not isinstance(outcome, dict) or ("v" not in outcome and "e" not in outcome):
            raise PayloadError(f"step {seq} of {self.id!r} has an unreadable checkpoint")
        was = (outcome.get("k", "run"), outcome.get("n", name))
        if was != (kind, name):
            raise NondeterminismError(
                f"step {seq} of {self.id!r} replays as {kind} {name!r}, but the recorded "
                f"step {seq} is {was[0]} {was[1]!r}: the function's code changed while "
                "this promise was in flight"
            )
        return outcome

    @staticmethod
    def _replay_outcome(outcome: dict[str, Any]) -> Any:
        if "e" in outcome:
            err = outcome["e"]
            child = str(outcome.get("c", ""))
            as_class = _REJECTED_AS.get(str(outcome.get("s", "")))
            if as_class is not None:
                raise as_class(child)
            raise PromiseRejected(child, err.get("type", ""), err.get("message", ""))
        return outcome["v"]

    async def _record(self, seq: int, outcome: dict[str, Any]) -> None:
        blob = encode(outcome, self._ex.limit)
        code = await self._ex.checkpoint(seq, blob)
        if code != 1:
            self._ex.stop_reason(code)
            raise LeaseLost(f"checkpoint of step {seq} of {self.id!r} refused: {self._ex.lost}")
        self._ex.steps[seq] = blob
