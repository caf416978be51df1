"""OpenTelemetry spans (``pip install redpromise[tracing]``); no-ops when it is absent.

The spans of one promise form one trace, across processes::

    POST /begin           (SERVER, the gateway; continues an incoming ``traceparent``)
    └─ begin <function>   (PRODUCER, whoever calls begin_rpc)
       └─ execute <function>        (CONSUMER, the worker; one per delivery)
          ├─ step <name>            (INTERNAL, each ctx.run / ctx.time / ctx.random run)
          ├─ begin <child>          (a ctx.rpc child: its own execute joins here too)
          └─ complete <function>    (INTERNAL, the fenced completion write)

The begin span's context travels inside the promise: ``begin_rpc`` adds the propagator's
carrier (W3C ``traceparent``/``tracestate`` by default) under the key ``"tc"`` of the
msgpack arguments payload, which every script treats as opaque and which is deleted on
completion. Nothing is added when no span is active, so a process without a configured
``TracerProvider`` writes exactly what it wrote before, and pays one ``isinstance``.

redpromise uses only ``opentelemetry-api``; the application installs and configures the
SDK (provider, exporter, sampler) as for any other library.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from typing import Any

try:
    from opentelemetry import propagate as _propagate
    from opentelemetry import trace as _trace
except ImportError:  # the `tracing` extra is not installed: every hook is a no-op
    _trace = None  # type: ignore[assignment]

__all__ = [
    "AVAILABLE",
    "TRACER",
    "active",
    "annotate",
    "begin_span",
    "carrier",
    "failed",
    "span",
    "with_context",
]

AVAILABLE = _trace is not None
_UNKNOWN = object()
# A provider named by the environment is made by the API on first use.
_FROM_ENV = bool(os.environ.get("OTEL_PYTHON_TRACER_PROVIDER"))
_NULL: contextlib.nullcontext[None] = contextlib.nullcontext()
_PLACEHOLDERS: tuple[type, ...] = (
    (_trace.ProxyTracerProvider, _trace.NoOpTracerProvider) if _trace is not None else ()
)
_KINDS: dict[str, Any] = (
    {
        "server": _trace.SpanKind.SERVER,
        "producer": _trace.SpanKind.PRODUCER,
        "consumer": _trace.SpanKind.CONSUMER,
        "internal": _trace.SpanKind.INTERNAL,
    }
    if _trace is not None
    else {}
)


def active() -> bool:
    """Whether spans are recorded: the API is installed and a real provider is set.

    Called on every begin, execution and step: reads the API's global directly when it
    can (``get_tracer_provider()`` consults the environment on each call while unset).
    """
    if not AVAILABLE:
        return False
    provider = getattr(_trace, "_TRACER_PROVIDER", _UNKNOWN)
    if provider is None and not _FROM_ENV:
        return False
    if provider is _UNKNOWN or provider is None:
        provider = _trace.get_tracer_provider()
    return not isinstance(provider, _PLACEHOLDERS)


def carrier() -> dict[str, str] | None:
    """The current span's context as propagation headers, or ``None`` when there is none."""
    if not active():
        return None
    if not _trace.get_current_span().get_span_context().is_valid:
        return None
    out: dict[str, str] = {}
    _propagate.inject(out)
    return out or None


def span(
    name: str,
    kind: str = "internal",
    attributes: Mapping[str, Any] | None = None,
    *,
    parent: Mapping[str, Any] | None = None,
) -> contextlib.AbstractContextManager[Any]:
    """A current span for the ``with`` block (``None`` inside when tracing is off).

    ``parent``: propagation headers (a carrier from :func:`carrier`, an HTTP request's
    headers) whose context becomes the parent instead of the current span. An exception
    leaving the block is recorded on the span and sets its status to error.
    """
    if not active():
        return _NULL
    ctx = None
    if parent is not None:
        ctx = _propagate.extract({str(k): str(v) for k, v in parent.items()})
    return _trace.get_tracer("redpromise").start_as_current_span(
        name, context=ctx, kind=_KINDS[kind], attributes=dict(attributes or {})
    )


def failed(exc: BaseException) -> None:
    """Record ``exc`` on the current span and mark it failed (a handled failure)."""
    if active():
        current = _trace.get_current_span()
        current.record_exception(exc)
        current.set_status(_trace.Status(_trace.StatusCode.ERROR, f"{type(exc).__name__}"))


def annotate(target: Any, **attributes: Any) -> None:
    """Set attributes on ``target`` (a span from :func:`span`; ``None`` is ignored)."""
    if target is not None:
        for key, value in attributes.items():
            target.set_attribute(f"redpromise.{key}", value)



def with_context(call: dict[str, Any]) -> dict[str, Any]:
    """``call`` (a promise's arguments payload) with the current trace context under
    ``"tc"`` when there is one: the execution of the promise joins this trace."""
    tc = carrier()
    if tc:
        call["tc"] = tc
    return call


def begin_span(id: object, name: object) -> contextlib.AbstractContextManager[Any]:
    """The ``begin <name>`` producer span a ``begin_rpc`` runs inside (a no-op when
    tracing is off). A context manager in the method rather than a decorator around it:
    a wrapping coroutine per begin costs more than the check."""
    if not active():
        return _NULL
    return span(f"begin {name}", "producer", {"redpromise.promise_id": str(id)})


class OpenTelemetryTracer:
    """The :class:`~redpromise.core.hooks.Tracer` hooks on the OpenTelemetry API (no-ops
    without it, or without a configured provider)."""

    active = staticmethod(active)
    span = staticmethod(span)
    failed = staticmethod(failed)
    annotate = staticmethod(annotate)
    with_context = staticmethod(with_context)
    begin_span = staticmethod(begin_span)


TRACER = OpenTelemetryTracer()
