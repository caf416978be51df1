"""OpenTelemetry: a gateway request's trace contains the worker's spans.

The gateway runs in this process with the SDK's in-memory exporter; the worker is a real
``python -m redpromise worker`` process whose SDK exports to a file (tests/traced_worker.py).
The trace context crosses Redis inside the promise.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util._once import Once

from redpromise import Context, Options, Redpromise
from redpromise.aiohttp import add_routes
from tests.conftest import fast_settings
from tests.helpers import assert_eventually
from tests.procs import WorkerProcess
from tests.redis_server import free_port

pytestmark = pytest.mark.real


@pytest.fixture
def exporter(monkeypatch: pytest.MonkeyPatch) -> InMemorySpanExporter:
    """An SDK provider with an in-memory exporter, as this process's tracer provider for
    this test only: OpenTelemetry allows setting it once per process, so its globals are
    swapped and restored (as OpenTelemetry's own test utilities do), and the rest of the
    session runs without spans."""
    monkeypatch.setattr(trace, "_TRACER_PROVIDER_SET_ONCE", Once())
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return exporter


def worker_spans(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def hex_id(value: int) -> str:
    return f"0x{value:016x}"


async def test_worker_spans_join_the_gateway_requests_trace(
    exporter: InMemorySpanExporter, real_url: str, namespace: str, tmp_path: Path
) -> None:
    spans_file = tmp_path / "worker-spans.jsonl"
    wp = WorkerProcess(
        real_url,
        namespace,
        tmp_path,
        target="tests.traced_worker:rp",
        env={"TEST_OTEL_SPANS": str(spans_file), "REDPROMISE_WORKER_PROCESS_SECONDS": "0"},
    ).start()
    rp = Redpromise(real_url, group="gateway", settings=fast_settings(namespace))
    app = web.Application()
    add_routes(app, rp, "foo")
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with aiohttp.ClientSession() as http:
            base = f"http://127.0.0.1:{port}"
            async with http.post(f"{base}/begin?id=traced-1", json={"a": 1}) as resp:
                assert resp.status == 200
            async with http.get(f"{base}/wait?id=traced-1&timeout=20") as resp:
                assert (await resp.json())["status"] == "resolved"
    finally:
        await runner.cleanup()

    try:
        mine: list[ReadableSpan] = list(exporter.get_finished_spans())
        server = next(s for s in mine if s.name == "POST /begin")
        begin = next(s for s in mine if s.name == "begin foo")
        assert server.kind == trace.SpanKind.SERVER and begin.kind == trace.SpanKind.PRODUCER
        assert begin.parent is not None and begin.parent.span_id == server.context.span_id
        trace_id = f"0x{server.context.trace_id:032x}"

        def theirs() -> dict[str, dict[str, Any]] | None:
            by_name = {s["name"]: s for s in worker_spans(spans_file)}
            return by_name if "complete foo" in by_name else None

        spans = await assert_eventually(theirs, timeout=20)
        execute = spans["execute foo"]
        assert execute["kind"] == "SpanKind.CONSUMER"
        assert execute["context"]["trace_id"] == trace_id
        assert execute["parent_id"] == hex_id(begin.context.span_id)
        execute_id = execute["context"]["span_id"]
        steps = [s for s in worker_spans(spans_file) if s["name"].startswith("step ")]
        assert sorted(s["name"] for s in steps) == ["step build", "step process", "step validate"]
        for child in [*steps, spans["complete foo"]]:
            assert child["context"]["trace_id"] == trace_id
            assert child["parent_id"] == execute_id
        assert spans["complete foo"]["attributes"]["redpromise.state"] == "resolved"
        assert execute["attributes"]["redpromise.promise_id"] == "traced-1"
    finally:
        wp.close()


async def test_a_protocol_task_run_by_a_python_worker_is_an_execute_span_with_its_steps(
    exporter: InMemorySpanExporter, real_url: str, namespace: str
) -> None:
    rp = Redpromise(real_url, settings=fast_settings(namespace))

    @rp.register
    async def traced(ctx: Context, data: Any) -> Any:
        return await ctx.run(lambda: data["n"] + 1, name="add")

    try:
        await rp.start()
        handle = await rp.begin_rpc(
            "tr-1", "traced", {"n": 41}, options=Options(target="poll://any@worker", codec="json")
        )
        assert await handle.result(timeout=10) == 42

        def spans() -> list[ReadableSpan] | None:
            found = [s for s in exporter.get_finished_spans() if s.name == "execute traced"]
            return list(exporter.get_finished_spans()) if found else None

        finished = await assert_eventually(spans, timeout=10)
    finally:
        await rp.stop()
    [execute] = [s for s in finished if s.name == "execute traced"]
    assert execute.attributes is not None
    assert execute.attributes["redpromise.promise_id"] == "tr-1"
    assert execute.attributes["redpromise.protocol"] == "resonate"
    steps = [s for s in finished if s.name == "step add"]
    assert [s.parent.span_id for s in steps if s.parent] == [execute.context.span_id]


def test_without_a_configured_provider_no_span_and_no_context_is_added() -> None:
    from redpromise.observe import tracing as _tracing

    assert _tracing.AVAILABLE and not _tracing.active()
    assert _tracing.with_context({"a": [], "k": {}}) == {"a": [], "k": {}}


NO_EXTRAS = """
import asyncio, sys
sys.modules["prometheus_client"] = None
sys.modules["opentelemetry"] = None
import fakeredis
from aiohttp import test_utils, web
from redpromise import Context, Redpromise
from redpromise.observe import metrics as _metrics
from redpromise.observe import tracing as _tracing
from redpromise.aiohttp import add_routes
from tests.conftest import fast_settings

async def main() -> None:
    assert not _metrics.AVAILABLE and not _tracing.AVAILABLE
    server = fakeredis.FakeServer()
    settings = fast_settings("noextras")
    worker = Redpromise(settings=settings, redis=fakeredis.FakeAsyncRedis(server=server))

    @worker.register
    async def double(ctx: Context, x: int) -> int:
        return await ctx.run(lambda: 2 * x)

    await worker.start()
    gateway = Redpromise(group="gateway", settings=settings,
                         redis=fakeredis.FakeAsyncRedis(server=server))
    app = web.Application()
    add_routes(app, gateway, "double", manage=False)
    async with test_utils.TestClient(test_utils.TestServer(app)) as client:
        resp = await client.post("/begin?id=p", json=21)
        assert resp.status == 200
        resp = await client.get("/wait?id=p&timeout=10")
        assert (await resp.json())["result"] == 42
        resp = await client.get("/metrics")
        assert resp.status == 404, resp.status  # no route, rather than a 5xx one
        assert "/metrics" not in (await (await client.get("/openapi.json")).json())["paths"]
    await worker.stop()
    await gateway.stop()
    print("ok")

asyncio.run(main())
"""


def test_redpromise_works_without_prometheus_client_and_opentelemetry() -> None:
    import subprocess
    import sys

    from tests.procs import ROOT

    proc = subprocess.run(
        [sys.executable, "-c", NO_EXTRAS], cwd=ROOT, capture_output=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.decode().strip() == "ok"
