"""The Context a registered function receives: checkpointed steps and execution info."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._codec import decode, encode
from ._errors import LeaseLost, PayloadError

if TYPE_CHECKING:
    from ._worker import Execution

__all__ = ["Context"]


class Context:
    """What a function running on a worker can do durably.

    Steps are numbered in the order they are *started* (``ctx.run`` is called), so
    several steps started together (``asyncio.gather``) get deterministic numbers.
    """

    def __init__(self, execution: Execution) -> None:
        self._ex = execution
        self._seq = 0

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

    def idempotency_key(self, seq: int | None = None) -> str:
        """A key stable across retries and redeliveries: ``<id>.<step seq>``."""
        return f"{self.id}.{self._seq if seq is None else seq}"

    def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
        """Run ``fn(*args, **kwargs)`` as a checkpointed step; await (or yield) the result.

        If this step's outcome was recorded by an earlier execution, it is returned
        without calling ``fn``. Otherwise ``fn`` runs (sync functions in a thread), and
        its value is recorded through the fence before it is returned. An error raised by
        ``fn`` is not recorded: it propagates, and a retry of the function runs the step
        again (at-least-once for steps that did not checkpoint).
        """
        self._seq += 1
        return asyncio.ensure_future(self._step(self._seq, fn, args, kwargs))

    async def _step(
        self, seq: int, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        recorded = self._ex.steps.get(seq)
        if recorded is not None:
            outcome = decode(recorded)
            if not isinstance(outcome, dict) or "v" not in outcome:
                raise PayloadError(f"step {seq} of {self.id!r} has an unreadable checkpoint")
            return outcome["v"]
        self._ex.ensure_alive()
        if inspect.iscoroutinefunction(fn):
            value = await fn(*args, **kwargs)
        else:
            value = await asyncio.to_thread(fn, *args, **kwargs)
            if inspect.isawaitable(value):
                value = await value
        blob = encode({"v": value}, self._ex.limit)
        code = await self._ex.checkpoint(seq, blob)
        if code != 1:
            raise LeaseLost(f"checkpoint of step {seq} of {self.id!r} refused ({code})")
        self._ex.steps[seq] = blob
        return value
