"""The observers' hooks: what the store and the worker tell metrics and tracing.

The store and the worker receive a :class:`Hooks` (the client builds it and passes it
down, as Temporal passes its interceptors); they never import an observer.
:mod:`redpromise.observe` implements these protocols with Prometheus and OpenTelemetry;
:data:`NO_HOOKS` observes nothing. A new observer implements :class:`Metrics` and/or
:class:`Tracer` in the observe wing and is wired in by the client (``Redpromise(hooks=)``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["NO_HOOKS", "Hooks", "Metrics", "QueueSource", "Tracer", "WorkerGauge"]


class WorkerGauge(Protocol):
    """What a running worker shows its observers (its slots)."""

    @property
    def group(self) -> str: ...
    @property
    def slots(self) -> int: ...
    @property
    def inflight(self) -> int: ...
    @property
    def stopping(self) -> bool: ...


class QueueSource(Protocol):
    """Reads a group's queue state: ``(depth, in_flight, oldest_age_seconds)``."""

    def queue_state(self, group: str) -> Awaitable[tuple[int, int, float]]: ...


class Metrics(Protocol):
    """Events counted where they happen (each call must be cheap: no I/O, no lock)."""

    def begun(self, group: str, function: str) -> None: ...
    def completed(
        self, group: str, function: Any, state: Any, created_at: Any, completed_at: Any
    ) -> None: ...
    def completed_reply(self, group: str, reply: Any) -> None: ...
    def executed(self, group: str, function: str, seconds: float) -> None: ...
    def step(self, group: str, function: str) -> None: ...
    def redelivered(self, group: str, function: str) -> None: ...
    def refused(self, group: str, operation: str, code: str) -> None: ...
    def retried(self, group: str, function: str) -> None: ...
    def redis_failure(self, loop: str, cause: str) -> None: ...
    def watch(self, source: QueueSource, group: str) -> None: ...
    def watch_worker(self, worker: WorkerGauge) -> None: ...


class Tracer(Protocol):
    """Spans around begins, executions, steps and completions."""

    def active(self) -> bool: ...
    def span(
        self,
        name: str,
        kind: str = "internal",
        attributes: Mapping[str, Any] | None = None,
        *,
        parent: Mapping[str, Any] | None = None,
    ) -> contextlib.AbstractContextManager[Any]: ...
    def failed(self, exc: BaseException) -> None: ...
    def annotate(self, target: Any, **attributes: Any) -> None: ...
    def with_context(self, call: dict[str, Any]) -> dict[str, Any]: ...
    def begin_span(self, id: object, name: object) -> contextlib.AbstractContextManager[Any]: ...


_NULL: contextlib.nullcontext[None] = contextlib.nullcontext()


class _NoMetrics:
    def begun(self, group: str, function: str) -> None:
        pass

    def completed(
        self, group: str, function: Any, state: Any, created_at: Any, completed_at: Any
    ) -> None:
        pass

    def completed_reply(self, group: str, reply: Any) -> None:
        pass

    def executed(self, group: str, function: str, seconds: float) -> None:
        pass

    def step(self, group: str, function: str) -> None:
        pass

    def redelivered(self, group: str, function: str) -> None:
        pass

    def refused(self, group: str, operation: str, code: str) -> None:
        pass

    def retried(self, group: str, function: str) -> None:
        pass

    def redis_failure(self, loop: str, cause: str) -> None:
        pass

    def watch(self, source: QueueSource, group: str) -> None:
        pass

    def watch_worker(self, worker: WorkerGauge) -> None:
        pass


class _NoTracer:
    def active(self) -> bool:
        return False

    def span(
        self,
        name: str,
        kind: str = "internal",
        attributes: Mapping[str, Any] | None = None,
        *,
        parent: Mapping[str, Any] | None = None,
    ) -> contextlib.AbstractContextManager[Any]:
        return _NULL

    def failed(self, exc: BaseException) -> None:
        pass

    def annotate(self, target: Any, **attributes: Any) -> None:
        pass

    def with_context(self, call: dict[str, Any]) -> dict[str, Any]:
        return call

    def begin_span(self, id: object, name: object) -> contextlib.AbstractContextManager[Any]:
        return _NULL


@dataclass(frozen=True, slots=True)
class Hooks:
    """The observers a store and a worker report to."""

    metrics: Metrics
    tracer: Tracer


NO_HOOKS = Hooks(_NoMetrics(), _NoTracer())
"""Observes nothing (a store or worker built without its client's hooks)."""
