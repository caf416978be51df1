"""``services.worker:rp`` with an OpenTelemetry SDK exporting every span to a file.

``python -m redpromise worker tests.traced_worker:rp`` with ``TEST_OTEL_SPANS=<path>``:
each finished span is appended to the file as one JSON object per line (the SDK's own
``ConsoleSpanExporter`` writing to that file), for a test in another process to read.
"""

from __future__ import annotations

import os

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

_out = open(os.environ["TEST_OTEL_SPANS"], "a", encoding="utf-8")  # noqa: SIM115
_provider = TracerProvider(resource=Resource.create({"service.name": "worker"}))
_provider.add_span_processor(
    SimpleSpanProcessor(
        ConsoleSpanExporter(out=_out, formatter=lambda span: span.to_json(indent=None) + "\n")
    )
)
trace.set_tracer_provider(_provider)

from services.worker import rp  # noqa: E402  (spans are configured before it starts)

__all__ = ["rp"]
