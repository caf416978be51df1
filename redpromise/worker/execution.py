"""One acquired delivery of a promise (:class:`Execution`), and how its writes wait out
a Redis outage (:func:`retry_through_outage`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, ClassVar, Protocol

from redpromise.core.backoff import Backoff
from redpromise.core.errors import LeaseLost
from redpromise.core.hooks import Hooks
from redpromise.core.options import Settings
from redpromise.redis.classify import cause_of, retryable
from redpromise.store.scripts import CODES, refusal
from redpromise.store.store import Store
from redpromise.worker.registry import Function

__all__ = ["ChildPromises", "Execution", "Runtime", "Slots", "id_field", "retry_through_outage",
           "worth_waiting_out"]  # fmt: skip

log = logging.getLogger("redpromise.worker")


async def retry_through_outage(op: Callable[[], Awaitable[Any]], lease: float) -> Any:
    """Run a fenced write, retrying through a Redis outage for up to one ``lease``.

    Every transition is safe to replay, so an ambiguous failure is simply repeated.
    Returns ``None`` when Redis stayed unavailable: the execution's entry is then
    reclaimed after its lease and the promise runs again (nothing is lost).
    """
    started = time.monotonic()
    try:
        return await op()  # the usual case: no deadline or backoff to set up
    except Exception as exc:
        if not worth_waiting_out(exc):
            raise
        failure = exc
    deadline = started + max(lease, 1.0)
    backoff = Backoff(0.05, 1.0)
    while time.monotonic() <= deadline:
        await asyncio.sleep(backoff.next())
        try:
            return await op()
        except Exception as exc:
            if not worth_waiting_out(exc):
                raise
            failure = exc
    log.error(
        "gave up writing after Redis stayed unavailable for a lease (%s: %s); "
        "the promise will be redelivered",
        cause_of(failure),
        failure,
    )
    return None


def worth_waiting_out(exc: BaseException) -> bool:
    """A failure a write should wait out: Redis down or refusing for now, or a right
    an operator is expected to grant back."""
    return retryable(exc) or cause_of(exc) == "NOPERM"


class ChildPromises(Protocol):
    """How an execution starts and awaits promises of its own (``ctx.rpc``,
    ``ctx.promise``): the client implements it and hands it to the worker."""

    async def adopt(self, parent: str, child: str) -> None:
        """Remember ``child`` as ``parent``'s (for cancellation), before creating it."""

    async def begin(
        self,
        id: str,
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        target: str | None,
        timeout: timedelta,
    ) -> None:
        """Create promise ``id`` and dispatch ``name(*args, **kwargs)`` to ``target``."""

    async def create_latent(self, id: str, timeout: timedelta) -> None:
        """Create promise ``id`` with no function: something outside completes it."""

    async def wait_outcome(self, id: str) -> Any:
        """Wait for promise ``id``; its value, or raise its rejection."""


@dataclass(frozen=True, slots=True)
class Runtime:
    """What an execution (and its :class:`~redpromise.Context`) uses of the worker
    running it, handed over once by the worker: no reference back to the worker."""

    store: Store
    settings: Settings
    group: str
    hooks: Hooks
    children: ChildPromises

    @property
    def lease(self) -> float:
        return self.settings.lease.total_seconds()

    async def retry_through_outage(self, op: Callable[[], Awaitable[Any]]) -> Any:
        """See :func:`retry_through_outage` (bounded by the lease)."""
        return await retry_through_outage(op, self.lease)

    async def attempt(
        self, func: Function, ctx: Any, args: list[Any], kwargs: dict[str, Any]
    ) -> Any:
        """One attempt of ``func``: its value, or what it raised (``TimeoutError`` past
        the function's own timeout). Its run time is reported to the metrics either way.
        Every kind of execution runs its function through here."""
        started = time.monotonic()
        try:
            call = func.invoke(ctx, args, kwargs)
            if func.timeout is not None:
                return await asyncio.wait_for(call, func.timeout.total_seconds())
            return await call
        finally:
            self.hooks.metrics.executed(self.group, func.name, time.monotonic() - started)


@dataclass(eq=False, slots=True)
class Execution:
    """One acquired delivery of a promise, owned by this worker until it completes."""

    runtime: Runtime
    id: str
    k: int
    entry: str
    version: int
    func: str
    args: bytes
    attempt: int
    timeout_at: int
    retry: bytes
    deliveries: int
    steps: dict[int, bytes]
    last_hb: float = field(default_factory=time.monotonic)
    lost: str | None = None
    finishing: bool = False
    task: asyncio.Task[None] | None = None

    # Whether a long sleep may hand the promise back (Suspend) instead of waiting here.
    suspends: ClassVar[bool] = True

    @property
    def limit(self) -> int:
        return self.runtime.settings.max_payload_bytes

    @property
    def children(self) -> ChildPromises:
        """How this execution's ``ctx.rpc`` and ``ctx.promise`` make and await promises."""
        return self.runtime.children

    def child_id(self, seq: int) -> str:
        """The id of the promise step ``seq`` makes: ``<id>.<seq>``."""
        return f"{self.id}.{seq}"

    def ensure_alive(self) -> None:
        """Raise :class:`LeaseLost` unless this execution may still start a step."""
        if self.lost is not None:
            raise LeaseLost(f"execution of {self.id!r} lost its lease: {self.lost}")
        if time.monotonic() - self.last_hb > self.runtime.lease:
            raise LeaseLost(f"execution of {self.id!r} has not renewed its lease in time")

    async def checkpoint(self, seq: int, blob: bytes) -> int:
        """Record step ``seq``; the fence's reply code. Waits out a Redis outage for up
        to one lease, then gives the execution up (:class:`LeaseLost`): it is redelivered
        and replays to the last recorded step."""
        rt = self.runtime
        reply = await rt.retry_through_outage(
            lambda: rt.store.checkpoint_reply(self.id, self.version, seq, blob)
        )
        if reply is None:
            self.lost = "Redis unavailable for a whole lease"
            raise LeaseLost(f"execution of {self.id!r} could not checkpoint: {self.lost}")
        code = int(reply[0])
        if code == 1:
            rt.hooks.metrics.step(rt.group, self.func)
        else:
            rt.hooks.metrics.refused(rt.group, "checkpoint", CODES.get(code, str(code)))
            if self.lost is None:
                self.lost = refusal(code, reply[1] if len(reply) > 1 else None)
        return code

    def stop_reason(self, code: int) -> None:
        """Record why the fence refused this execution (it must stop), in words."""
        if self.lost is None:
            self.lost = refusal(code)


class Slots:
    """At most ``n`` functions run at once, first come first served: what an
    ``asyncio.Semaphore`` guarantees, without the coroutines and the generator its
    ``async with`` costs per execution when a slot is free (the usual case).

    ``if not slots.take(): await slots.wait()`` gets a slot; ``give()`` returns it.
    """

    __slots__ = ("_free", "_waiters")

    def __init__(self, n: int) -> None:
        self._free = n
        self._waiters: deque[asyncio.Future[None]] = deque()

    def take(self) -> bool:
        """Take a free slot now, unless none is free or others wait for one first."""
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return True
        return False

    async def wait(self) -> None:
        """Wait for a slot (after :meth:`take` failed); the slot is ours on return."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.give()  # handed a slot as we were cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(fut)
            raise

    def give(self) -> None:
        """Return a slot: straight to the first live waiter, else to the free count."""
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        self._free += 1


def id_field(fields: Any) -> Any:
    """The ``id`` field of a stream entry: a dict (parsed by redis-py) or a flat list."""
    if isinstance(fields, dict):
        return fields.get(b"id", fields.get("id"))
    if isinstance(fields, list):
        for i in range(0, len(fields) - 1, 2):
            if fields[i] in (b"id", "id"):
                return fields[i + 1]
    return None


