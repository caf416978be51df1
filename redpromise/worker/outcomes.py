"""What an execution came to, written: resolved, rejected, retried after a failure, or
suspended until a sleep or a timer is due.

Each write is fenced by the execution's version (a newer delivery's refusal is counted and
logged, never applied) and goes on through a Redis outage for up to one lease
(:meth:`Runtime.retry_through_outage`); when Redis stays down, nothing is written and the
entry is reclaimed and run again. Kept apart from :class:`~redpromise.worker.worker.Worker`,
which decides what runs; :class:`Outcomes` only records how it ended.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any

from redpromise.core.codec import as_text, decode, encode, encode_error, error_of
from redpromise.core.errors import PayloadError
from redpromise.core.options import RetryPolicy, _policy_from_wire
from redpromise.store.scripts import CODES, refusal, reply_code
from redpromise.worker.execution import Execution, Runtime
from redpromise.worker.registry import Function

__all__ = ["Outcomes", "retry_delay_ms"]

log = logging.getLogger("redpromise.worker")


def retry_delay_ms(
    runtime: Runtime,
    ex: Execution,
    func: Function,
    exc: Exception,
    *,
    caller: RetryPolicy | None,
    fallback: RetryPolicy,
) -> int | None:
    """The delay (ms) before ``ex`` runs again after its function raised ``exc``, or
    ``None`` to reject now. The policy is the caller's (``begin_rpc(retry=)``, or the one
    a Resonate SDK put in the param), else the function's, else ``fallback``; no retry for
    an exception that policy or the function names non-retryable, past ``max_retries``,
    or when the retry would come after the promise's timeout. The one retry decision of
    every kind of execution."""
    policy = caller or func.retry or fallback
    retryable = policy.retries(exc) and (func.retry is None or func.retry.retries(exc))
    delay = policy.next_delay(ex.attempt + 1) if retryable else None
    if delay is None:
        return None
    delay_ms = int(delay.total_seconds() * 1000)
    if runtime.store.clock.now_ms() + delay_ms >= ex.timeout_at:
        return None
    return delay_ms


class Outcomes:
    """Writes the outcomes of one worker's executions (its group's, its settings)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.store = runtime.store
        self.group = runtime.group
        self.settings = runtime.settings
        self._metrics = runtime.hooks.metrics
        self._tracer = runtime.hooks.tracer
        self.completed = 0
        """Completions this worker wrote (or found its own earlier call had written)."""

    async def resolve(self, ex: Execution, func: Function, value: Any) -> None:
        """Resolve ``ex`` with the value its function returned; a value that cannot be
        encoded (or is too large) rejects it instead."""
        try:
            blob = encode(value, self.settings.max_payload_bytes)
        except PayloadError as exc:
            await self.reject(ex, type(exc).__name__, f"result of {func.name!r}: {exc}")
            return
        await self.complete(ex, "resolved", blob)

    async def failed(self, ex: Execution, func: Function, exc: Exception) -> None:
        """``ex``'s function raised ``exc``: a retry (after the policy's delay) when the
        policy retries it and the retry is due before the promise times out, else reject."""
        info = error_of(exc)
        if isinstance(exc, TimeoutError) and func.timeout is not None:
            info = {"type": "TimeoutError", "message": f"attempt exceeded {func.timeout}"}
        caller = _policy_from_wire(decode(ex.retry)) if ex.retry else None
        delay_ms = retry_delay_ms(
            self.runtime, ex, func, exc, caller=caller, fallback=self.settings.retry
        )
        error = encode_error(info["type"], info["message"], self.settings.max_payload_bytes)
        if delay_ms is not None:
            log.info(
                "%r failed at attempt=%d (%s: %s); retry in %.3fs",
                ex.id,
                ex.attempt,
                info["type"],
                info["message"],
                delay_ms / 1000,
            )
            ex.finishing = True
            reply = await self.runtime.retry_through_outage(
                lambda: self.store.retry_reply(
                    ex.id, self.group, ex.version, delay_ms, error, entry=ex.entry
                )
            )
            code, state = reply_code(reply)
            if code == 1:
                self._metrics.retried(self.group, ex.func)
            elif code is not None and code < 0:
                self._metrics.refused(self.group, "retry", CODES.get(code, str(code)))
                log.warning("retry of %r refused: %s", ex.id, refusal(code, state))
            return
        log.info("%r rejected at attempt=%d: %s", ex.id, ex.attempt, info["type"])
        await self.complete(ex, "rejected", error)

    async def suspend(self, ex: Execution, wake_at: int) -> None:
        """``ex`` waits (a sleep, a timer) until ``wake_at`` (ms, Redis' clock): its entry is
        dispatched again then, without counting an attempt."""
        ex.finishing = True
        delay_ms = max(0, wake_at - self.store.clock.now_ms())
        log.info("%r suspended for %.1fs", ex.id, delay_ms / 1000)
        reply = await self.runtime.retry_through_outage(
            lambda: self.store.retry_reply(
                ex.id, self.group, ex.version, delay_ms, b"", entry=ex.entry, attempt=False
            )
        )
        code, state = reply_code(reply)
        if code is not None and code < 0:
            self._metrics.refused(self.group, "suspend", CODES.get(code, str(code)))
            log.warning("suspension of %r refused: %s", ex.id, refusal(code, state))

    async def reject(self, ex: Execution, type_name: str, message: str) -> None:
        """Reject ``ex`` with the error ``type_name: message`` (no retry)."""
        log.error("rejecting %r: %s: %s", ex.id, type_name, message)
        await self.complete(
            ex, "rejected", encode_error(type_name, message, self.settings.max_payload_bytes)
        )

    async def complete(self, ex: Execution, state: str, blob: bytes) -> None:
        """Complete ``ex`` as ``state`` with ``blob`` (its value or error, encoded); counted
        in :attr:`completed` when this write (or our own earlier one) is what landed."""
        # From here the outcome is being written: a heartbeat that races the completion
        # (and sees "not pending") must not cancel the task writing it.
        ex.finishing = True

        def write() -> Awaitable[list[Any]]:
            return self.store.complete(ex.id, self.group, ex.version, state, blob)

        if self._tracer.active():
            attributes = {"redpromise.promise_id": ex.id, "redpromise.state": state}
            with self._tracer.span(f"complete {ex.func}", "internal", attributes) as span:
                res = await self.runtime.retry_through_outage(write)
                if res is not None:
                    self._tracer.annotate(span, code=int(res[0]))
        else:
            res = await self.runtime.retry_through_outage(write)
        if res is None:
            return
        code = int(res[0])
        if code == 0 and len(res) > 3 and as_text(res[3]) == str(ex.version):
            code = 1  # our own earlier call landed and its reply was lost: a success
            self._metrics.completed(self.group, ex.func, state, None, None)
        elif code < 0:
            self._metrics.refused(self.group, "complete", CODES.get(code, str(code)))
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
