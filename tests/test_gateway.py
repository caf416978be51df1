"""The aiohttp integration (redpromise.aiohttp) and the gateway app, in process.

Every route and every error answer, on both backends (fakeredis and a real redis-server),
through aiohttp's test client. The worker runs in the same process and serves the real
``services.worker.foo``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import fakeredis
import pytest
from aiohttp import test_utils, web

from redpromise import Context, Redpromise
from redpromise.aiohttp import GATEWAYS, REDPROMISE, Gateway, add_routes, openapi
from redpromise.observe import metrics as _metrics
from services import gateway as gateway_service
from services import worker as worker_service
from tests.conftest import fast_settings
from tests.helpers import assert_eventually

MakeRp = Callable[..., Awaitable[Redpromise]]
Client = test_utils.TestClient[web.Request, web.Application]


@pytest.fixture(autouse=True)
def _fast_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDPROMISE_WORKER_PROCESS_SECONDS", "0")


class Env:
    """A gateway app on the test backend, optionally with an in-process worker."""

    def __init__(self, make_rp: MakeRp) -> None:
        self.make_rp = make_rp
        self.clients: list[Client] = []
        self.calls: list[Any] = []

    async def worker(self, **overrides: Any) -> Redpromise:
        rp = await self.make_rp(**overrides)
        rp.register(worker_service.foo)
        calls = self.calls

        @rp.register
        async def tally(ctx: Context, data: Any) -> int:
            calls.append(data)
            return len(calls)

        await rp.start()
        return rp

    async def client(
        self, app: web.Application | None = None, **kwargs: Any
    ) -> tuple[Client, Gateway]:
        gw_settings = {k: kwargs.pop(k) for k in ("timeout", "max_payload_bytes") if k in kwargs}
        if app is None:
            app = web.Application()
            function = kwargs.pop("function", "foo")
            rp = await self.make_rp(group="gateway", **gw_settings)
            add_routes(app, rp, function, **kwargs)
        client: Client = test_utils.TestClient(test_utils.TestServer(app))
        await client.start_server()
        self.clients.append(client)
        return client, app[GATEWAYS][-1]

    async def close(self) -> None:
        for c in self.clients:
            await c.close()


@pytest.fixture
async def env(make_rp: MakeRp) -> AsyncIterator[Env]:
    e = Env(make_rp)
    yield e
    await e.close()


async def body(resp: Any) -> Any:
    assert resp.content_type == "application/json", await resp.text()
    return await resp.json()


# ---------------------------------------------------------------- begin / wait


async def test_begin_then_wait_long_poll_returns_the_resolved_result(env: Env) -> None:
    await env.worker()
    client, _ = await env.client()
    resp = await client.post("/begin?id=task-001", json={"hello": "world"})
    assert resp.status == 200
    assert await body(resp) == {
        "promise": "task-001",
        "status": "pending",
        "wait": "/wait?id=task-001",
    }
    resp = await client.get("/wait", params={"id": "task-001", "timeout": "10"})
    data = await body(resp)
    assert resp.status == 200
    assert data["status"] == "resolved"
    assert data["promise_id"] == "task-001"
    assert data["result"]["result"] == 'Processed: {"hello":"world"}'
    assert isinstance(data["result"]["timestamp"], int)


async def test_begin_without_id_generates_a_uuid_and_empty_body_uses_default(env: Env) -> None:
    await env.worker()
    client, _ = await env.client()
    data = await body(await client.post("/begin"))
    id = data["promise"]
    assert len(id) == 36 and id.count("-") == 4
    assert data["wait"] == f"/wait?id={id}"
    done = await body(await client.get(data["wait"] + "&timeout=10"))
    assert done["result"]["result"] == 'Processed: {"foo":"bar"}'


async def test_wait_url_is_percent_encoded_for_unusual_ids(env: Env) -> None:
    client, _ = await env.client()
    data = await body(await client.post("/begin", params={"id": "a b&c=d/é"}))
    assert data["promise"] == "a b&c=d/é"
    assert data["wait"] == "/wait?id=a%20b%26c%3Dd%2F%C3%A9"
    pending = await body(await client.get(data["wait"]))
    assert pending["promise_id"] == "a b&c=d/é"


@pytest.mark.parametrize("prefix", ["", '/a"b\\é'])
async def test_begin_answers_exactly_the_encoders_bytes_and_headers_for_every_id_shape(
    env: Env, prefix: str
) -> None:
    # begin writes the answer of a plain id (and of a generated UUID) by hand: it must be
    # byte for byte what json.dumps gives, with the same headers, as for any other id
    client, _ = await env.client(prefix=prefix)
    for params in ({"id": "Plain_id-1.2~3"}, {"id": "a b&c"}, {"id": "x", "y": "1"}, {}):
        resp = await client.post(f"{prefix}/begin", params=params)
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "application/json; charset=utf-8"
        assert list(resp.headers) == ["Content-Type", "Content-Length", "Date", "Server"]
        raw = await resp.read()
        id = json.loads(raw)["promise"]
        assert id == params.get("id", id)
        wait = f"{prefix}/wait?id={quote(id, safe='')}"
        expected = {"promise": id, "status": "pending", "wait": wait}
        assert raw == json.dumps(expected, ensure_ascii=False).encode()


async def test_same_id_twice_is_one_promise_and_one_execution(env: Env) -> None:
    await env.worker()
    client, _ = await env.client(function="tally")
    first = await body(await client.post("/begin?id=dup", json={"n": 1}))
    second = await body(await client.post("/begin?id=dup", json={"n": 2}))
    assert first == second == {"promise": "dup", "status": "pending", "wait": "/wait?id=dup"}
    done = await body(await client.get("/wait?id=dup&timeout=10"))
    assert done["result"] == 1
    # Again after completion: still the same promise, still "pending" as the seed answers.
    third = await body(await client.post("/begin?id=dup", json={"n": 3}))
    assert third["promise"] == "dup"
    assert (await body(await client.get("/wait?id=dup")))["result"] == 1
    assert env.calls == [{"n": 1}]


async def test_wait_on_pending_promise_says_pending_with_retry_after(env: Env) -> None:
    client, _ = await env.client()  # no worker: stays pending
    await client.post("/begin?id=p")
    resp = await client.get("/wait?id=p")
    assert resp.status == 200
    assert resp.headers["Retry-After"] == "1"
    assert await body(resp) == {
        "status": "pending",
        "promise_id": "p",
        "message": "Processing in progress",
    }


async def test_long_poll_returns_pending_after_its_timeout(env: Env) -> None:
    client, _ = await env.client(max_wait=0.2)
    await client.post("/begin?id=p")
    # asks for 60 s; capped at max_wait=0.2 s (the test timeout would fail it otherwise)
    resp = await client.get("/wait?id=p&timeout=60")
    assert (await body(resp))["status"] == "pending"


async def test_long_poll_returns_as_soon_as_the_promise_completes(env: Env) -> None:
    client, gw = await env.client(max_wait=600)
    await client.post("/begin?id=p")
    poll = asyncio.ensure_future(client.get("/wait?id=p&timeout=600"))
    await assert_eventually(lambda: gw.waiting == 1)
    await gw.rp.resolve("p", {"ok": True})
    data = await body(await poll)
    assert data == {"status": "resolved", "promise_id": "p", "result": {"ok": True}}


async def test_rejected_function_shows_as_rejected_with_its_error(env: Env) -> None:
    await env.worker()
    client, _ = await env.client()
    await client.post("/begin?id=bad", json=[1, 2])
    data = await body(await client.get("/wait?id=bad&timeout=10"))
    assert data == {
        "status": "rejected",
        "promise_id": "bad",
        "error": "expected a JSON object, got list",
        "error_type": "ValidationError",
    }


async def test_timed_out_promise_shows_as_rejected_promise_timedout(env: Env) -> None:
    client, _ = await env.client(timeout=timedelta(milliseconds=200))
    await client.post("/begin?id=late")
    data = await body(await client.get("/wait?id=late&timeout=10"))
    assert data == {"status": "rejected", "promise_id": "late", "error": "Promise timedout"}


async def test_wait_unknown_id_is_404(env: Env) -> None:
    client, _ = await env.client()
    resp = await client.get("/wait?id=nope")
    assert resp.status == 404
    assert await body(resp) == {"error": "nope not found"}
    resp = await client.get("/wait?id=nope&timeout=5")
    assert resp.status == 404


async def test_wait_without_id_is_400(env: Env) -> None:
    client, _ = await env.client()
    resp = await client.get("/wait")
    assert resp.status == 400
    assert await body(resp) == {"error": "id query parameter is required"}


@pytest.mark.parametrize("bad", ["", "a\nb", "x" * 513, "é" * 257, "nul\x00"])
async def test_invalid_ids_are_400(env: Env, bad: str) -> None:
    client, _ = await env.client()
    for resp in (
        await client.post("/begin", params={"id": bad}),
        await client.get("/wait", params={"id": bad}),
        await client.post("/resolve", params={"id": bad}),
    ):
        assert resp.status == 400
        assert "id" in (await body(resp))["error"]


@pytest.mark.parametrize("bad", ["abc", "-1", "nan", "inf", "1e999", "", " 1", "1_0", "0x1"])
async def test_bad_wait_timeout_is_400(env: Env, bad: str) -> None:
    client, _ = await env.client()
    await client.post("/begin?id=p")
    resp = await client.get("/wait", params={"id": "p", "timeout": bad})
    assert resp.status == 400
    assert "timeout" in (await body(resp))["error"]


@pytest.mark.parametrize(
    "raw",
    [b"{", b"{'a': 1}", b"\xff\xfe", b"NaN", b"[Infinity]", b"1e400", b"[" * 100_000],
    ids=["truncated", "single-quotes", "not-utf8", "nan", "infinity", "overflow", "deep"],
)
async def test_malformed_json_body_is_400(env: Env, raw: bytes) -> None:
    client, _ = await env.client()
    resp = await client.post("/begin?id=j", data=raw)
    assert resp.status == 400
    assert "JSON" in (await body(resp))["error"]
    assert (await client.get("/wait?id=j")).status == 404  # nothing was created


async def test_body_over_max_body_is_413_with_or_without_content_length(env: Env) -> None:
    client, _ = await env.client(max_body=100)
    resp = await client.post("/begin?id=big", json={"x": "y" * 200})
    assert resp.status == 413
    assert "larger than 100 bytes" in (await body(resp))["error"]

    async def chunks() -> AsyncIterator[bytes]:  # chunked: no Content-Length
        for _ in range(10):
            yield b'"' + b"y" * 20 + b'"'

    resp = await client.post("/begin?id=big", data=chunks())
    assert resp.status == 413
    assert (await client.get("/wait?id=big")).status == 404


async def test_payload_over_the_library_limit_is_413(env: Env) -> None:
    client, _ = await env.client(max_payload_bytes=1024)
    resp = await client.post("/begin?id=big", json={"x": "y" * 2000})
    assert resp.status == 413
    assert "limit" in (await body(resp))["error"]


async def test_json_that_msgpack_cannot_carry_is_400(env: Env) -> None:
    client, _ = await env.client()
    resp = await client.post("/begin?id=sur", data=b'"\\ud800"')
    assert resp.status == 400
    resp = await client.post("/begin?id=inf", data=b'{"n": 1' + b"0" * 400 + b"}")
    assert resp.status == 400


async def test_an_integer_beyond_64_bits_reads_as_the_nearest_double(env: Env) -> None:
    """As JSON.parse reads it: the OpenAPI document judges numbers by value, so must we."""
    client, _ = await env.client()
    await client.post("/begin?id=huge")
    resp = await client.post("/resolve?id=huge", data=b'{"n": 123456789012345678901234567890}')
    assert resp.status == 200
    assert (await body(resp))["result"] == {"n": 1.2345678901234568e29}
    resp = await client.post("/resolve?id=huge", data=b"18446744073709551615")
    assert (await body(resp))["result"] == {"n": 1.2345678901234568e29}  # first one won


# ---------------------------------------------------------------- settle from outside


async def test_resolve_reject_cancel_settle_and_first_completion_wins(env: Env) -> None:
    client, _ = await env.client()
    for id in ("r", "j", "c", "e"):
        await client.post(f"/begin?id={id}")
    resolved = await body(await client.post("/resolve?id=r", json={"v": 1}))
    assert resolved == {"status": "resolved", "promise_id": "r", "result": {"v": 1}}
    rejected = await body(await client.post("/reject?id=j", json={"error": "nope"}))
    assert rejected == {
        "status": "rejected",
        "promise_id": "j",
        "error": "nope",
        "error_type": "Error",
    }
    canceled = await body(await client.post("/cancel?id=c"))
    assert canceled == {"status": "rejected", "promise_id": "c", "error": "Promise canceled"}
    empty = await body(await client.post("/resolve?id=e"))
    assert empty == {"status": "resolved", "promise_id": "e", "result": None}
    # Later completions are no-ops that report the stored outcome.
    assert await body(await client.post("/reject?id=r", json="late")) == resolved
    assert await body(await client.post("/resolve?id=c", json=2)) == canceled
    assert (await body(await client.get("/wait?id=j")))["error"] == "nope"


@pytest.mark.parametrize("route", ["resolve", "reject", "cancel"])
async def test_settling_an_unknown_id_is_404(env: Env, route: str) -> None:
    client, _ = await env.client()
    resp = await client.post(f"/{route}?id=ghost", json="x")
    assert resp.status == 404
    assert await body(resp) == {"error": "ghost not found"}


async def test_reject_with_a_body_that_is_not_an_error_is_400(env: Env) -> None:
    client, _ = await env.client()
    await client.post("/begin?id=p")
    resp = await client.post("/reject?id=p", json=42)
    assert resp.status == 400
    assert (await body(await client.get("/wait?id=p")))["status"] == "pending"


async def test_resolve_of_a_running_promise_wins_over_the_worker(env: Env) -> None:
    """A latent promise settled from outside: the worker's later result is not recorded."""
    client, _ = await env.client(function="tally")
    await client.post("/begin?id=h", json="x")
    await body(await client.post("/resolve?id=h", json="by hand"))
    await env.worker()
    assert (await body(await client.get("/wait?id=h")))["result"] == "by hand"


# ---------------------------------------------------------------- auth, health, docs


async def test_bearer_token_is_required_on_every_route_but_healthz_and_openapi(env: Env) -> None:
    client, _ = await env.client(token="s3cret")
    routes = [("POST", "/begin?id=t"), ("GET", "/wait?id=t"), ("POST", "/resolve?id=t"),
              ("POST", "/reject?id=t"), ("POST", "/cancel?id=t"), ("GET", "/metrics")]  # fmt: skip
    for method, path in routes:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            resp = await client.request(method, path, headers=headers)
            assert resp.status == 401, (method, path, headers)
            assert resp.headers["WWW-Authenticate"] == "Bearer"
            assert "token" in (await body(resp))["error"]
    ok = {"Authorization": "Bearer s3cret"}
    assert (await client.post("/begin?id=t", headers=ok)).status == 200
    assert (await client.get("/wait?id=t", headers=ok)).status == 200
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/openapi.json")).status == 200


async def test_healthz_is_ok_while_redis_answers(env: Env) -> None:
    client, _ = await env.client()
    resp = await client.get("/healthz")
    assert resp.status == 200
    assert await body(resp) == {"status": "ok"}


async def test_openapi_document_lists_every_route_under_the_prefix(env: Env) -> None:
    client, _ = await env.client(prefix="/jobs", token="t")
    doc = await body(await client.get("/jobs/openapi.json"))
    assert doc["openapi"].startswith("3.1")
    assert set(doc["paths"]) == {
        f"/jobs/{r}"
        for r in (
            "begin", "wait", "resolve", "reject", "cancel", "healthz", "openapi.json", "metrics"
        )
    }
    assert doc["paths"]["/jobs/wait"]["get"]["security"] == [{"bearer": []}]
    assert doc == json.loads(json.dumps(openapi("/jobs", "foo", True)))


async def test_without_prometheus_client_metrics_is_neither_routed_nor_documented(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No 5xx route for a fuzzer to find: /metrics is absent from the app and the document."""
    monkeypatch.setattr(_metrics, "AVAILABLE", False)
    rp = await env.make_rp(group="gateway")
    client, _ = await env.client(gateway_service.init(rp))
    doc = await body(await client.get("/openapi.json"))
    assert "/metrics" not in doc["paths"] and "/begin" in doc["paths"]
    resp = await client.get("/metrics")
    assert resp.status == 404 and "error" in await body(resp)


async def test_prefix_mounts_the_routes_and_the_wait_link(env: Env) -> None:
    client, _ = await env.client(prefix="/jobs")
    data = await body(await client.post("/jobs/begin?id=x"))
    assert data["wait"] == "/jobs/wait?id=x"
    assert (await client.get("/jobs/wait?id=x")).status == 200
    assert (await client.get("/wait?id=x")).status == 404


async def test_add_routes_refuses_bad_configuration(env: Env) -> None:
    rp = await env.make_rp(group="gateway")
    app = web.Application()
    with pytest.raises(ValueError):
        add_routes(app, rp, "bad name")
    with pytest.raises(ValueError):
        add_routes(app, rp, "foo", target="http://elsewhere")
    with pytest.raises(ValueError):
        add_routes(app, rp, "foo", prefix="jobs/")
    gw = add_routes(app, rp, "foo")
    assert app[GATEWAYS] == [gw] and app[REDPROMISE] is rp


# ---------------------------------------------------------------- lifecycle


async def test_shutdown_wakes_long_polls_at_once(env: Env) -> None:
    client, gw = await env.client(max_wait=600)
    await client.post("/begin?id=p")
    poll = asyncio.ensure_future(client.get("/wait?id=p&timeout=600"))
    await assert_eventually(lambda: gw.waiting == 1)
    closing = asyncio.ensure_future(client.server.close())
    resp = await poll
    assert resp.status == 200
    assert (await body(resp))["status"] == "pending"
    await closing
    assert gw.waiting == 0


async def test_managed_app_starts_and_stops_a_worker_rp(env: Env, namespace: str) -> None:
    """manage=True: the app's startup starts rp (its worker too) and cleanup stops it."""
    rp = await env.make_rp()
    rp.register(worker_service.foo)
    app = web.Application()
    add_routes(app, rp, "foo", target="worker")
    client, _ = await env.client(app)
    assert rp.worker is not None
    await client.post("/begin?id=m")
    assert (await body(await client.get("/wait?id=m&timeout=10")))["status"] == "resolved"
    await client.close()
    assert rp.worker is None


# ---------------------------------------------------------------- the gateway service


async def test_gateway_service_answers_unknown_routes_and_methods_in_json(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDPROMISE_GATEWAY_TOKEN", "tok")
    rp = await env.make_rp(group="gateway")
    client, gw = await env.client(gateway_service.init(rp))
    assert gw.token == "tok" and gw.function == "foo" and gw.target == "poll://any@worker"
    resp = await client.get("/nowhere")
    assert resp.status == 404 and "error" in await body(resp)
    resp = await client.get("/begin")
    assert resp.status == 405 and "error" in await body(resp)
    assert "POST" in resp.headers["Allow"]
    assert (await client.post("/begin")).status == 401


async def test_json_fallback_answers_unknown_routes_and_methods_as_the_middleware_does(
    env: Env,
) -> None:
    # The gateway service takes aiohttp's 404/405 as JSON from a last resource instead of
    # the json_errors middleware (no cost per matched request): the same answers.
    requests = [("GET", "/nowhere"), ("HEAD", "/nowhere"), ("GET", "/begin"),
                ("HEAD", "/begin"), ("PUT", "/wait?id=x"), ("DELETE", "/healthz"),
                ("OPTIONS", "/begin"), ("POST", "/ui"), ("POST", "/ui/app.js"),
                ("GET", "/ui/app.jsx"), ("GET", "/begin/"),
                ("PATCH", "/"), ("GET", "/metrics/x"), ("POST", "/healthz")]  # fmt: skip
    answers: list[list[tuple[int, list[tuple[str, str]], bytes]]] = []
    for fallback in (False, True):
        rp = await env.make_rp(group="gateway")
        app = web.Application(middlewares=[] if fallback else [gateway_service.json_errors])
        add_routes(app, rp, "foo", manage=False)
        if fallback:
            app.router.register_resource(gateway_service.JSONFallback(app.router))
        client, _ = await env.client(app)
        got = []
        for method, path in requests:
            resp = await client.request(method, path)
            headers = [(k, v) for k, v in resp.headers.items() if k != "Date"]
            got.append((resp.status, headers, await resp.read()))
        answers.append(got)
    assert answers[0] == answers[1]
    assert {status for status, _, _ in answers[1]} == {404, 405}
    assert all(b == b"" or json.loads(b)["error"] for _, _, b in answers[1])


# ---------------------------------------------------------------- Redis unavailable


async def test_redis_unavailable_is_503_and_recovers() -> None:
    server = fakeredis.FakeServer()
    redis = fakeredis.FakeAsyncRedis(server=server)
    rp = Redpromise(group="gateway", settings=fast_settings("t503"), redis=redis)
    app = web.Application()
    add_routes(app, rp, "foo", manage=False)
    async with test_utils.TestClient(test_utils.TestServer(app)) as client:
        assert (await client.post("/begin?id=a")).status == 200
        server.connected = False
        for resp in (
            await client.post("/begin?id=b"),
            await client.get("/wait?id=a"),
            await client.get("/wait?id=a&timeout=0.2"),
            await client.post("/cancel?id=a"),
        ):
            assert resp.status == 503
            assert resp.headers["Retry-After"] == "1"
            assert (await body(resp))["error"] == "Redis unavailable (ConnectionError), try again"
        health = await client.get("/healthz")
        assert health.status == 503
        assert (await body(health))["status"] == "unavailable"
        server.connected = True
        assert (await client.get("/healthz")).status == 200
        assert (await body(await client.get("/wait?id=a")))["status"] == "pending"
        assert (await client.post("/begin?id=b")).status == 200
    await rp.stop()
    await redis.aclose()
