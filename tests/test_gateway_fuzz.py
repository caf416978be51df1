"""Property: whatever ids, query strings, headers and bodies arrive, the gateway answers
with JSON and never with a 5xx (503 aside: Redis unavailable, which neither backend
causes here), and keeps serving.

One gateway app (bearer-token-free configuration, small body limit) per backend, on
fakeredis[lua] and on a real redis-server, lives for the whole module in its own event
loop; hypothesis drives it.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import test_utils, web
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from yarl import URL

from redpromise import Context, Redpromise
from redpromise.aiohttp import add_routes
from services.gateway import JSONFallback
from tests.conftest import Backend, fast_settings

ROUTES = ["/begin", "/wait", "/resolve", "/reject", "/cancel", "/healthz", "/openapi.json"]
VALID = [("POST", "/begin"), ("GET", "/wait"), ("POST", "/resolve"), ("POST", "/reject"),
         ("POST", "/cancel"), ("GET", "/healthz"), ("GET", "/openapi.json")]  # fmt: skip


class Harness:
    def __init__(self, backend: Backend) -> None:
        self.runner = asyncio.Runner()
        self.client: test_utils.TestClient[web.Request, web.Application] | None = None
        self.rps: list[Redpromise] = []
        self.backend = backend

    async def start(self) -> None:
        settings = fast_settings(f"fuzz{uuid.uuid4().hex[:8]}", max_payload_bytes=4096)
        # One client per Redpromise, as separate processes would have.
        gateway = Redpromise(group="gateway", settings=settings, redis=self.backend.client())
        worker = Redpromise(group="worker", settings=settings, redis=self.backend.client())
        self.keys = gateway.keys

        @worker.register
        async def foo(ctx: Context, data: Any) -> Any:
            return await ctx.run(lambda: data)

        await worker.start()
        self.rps = [gateway, worker]
        app = web.Application()
        add_routes(app, gateway, "foo", max_body=2048, max_wait=0.05, manage=False)
        app.router.register_resource(JSONFallback(app.router))  # as services/gateway.py
        self.client = test_utils.TestClient(test_utils.TestServer(app))
        await self.client.start_server()

    async def request(
        self, method: str, url: URL, headers: dict[str, str], data: bytes
    ) -> tuple[int, str, str]:
        assert self.client is not None
        async with self.client.request(method, url, headers=headers, data=data) as resp:
            return resp.status, resp.content_type, await resp.text()

    async def stop(self) -> None:
        if self.client is not None:
            await self.client.close()
        for rp in self.rps:
            await rp.stop(grace=1)
        await self.backend.close()


@pytest.fixture(scope="module", params=["fake", pytest.param("real", marks=pytest.mark.real)])
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    url = request.getfixturevalue("real_url") if request.param == "real" else None
    h = Harness(Backend(request.param, url))
    h.runner.run(h.start())
    try:
        yield h
    finally:
        h.runner.run(h.stop())
        h.runner.close()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
bodies = st.one_of(
    st.just(b""),
    st.binary(max_size=3000),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
)
ids = st.one_of(
    st.text(max_size=20),
    st.text(min_size=500, max_size=600),
    st.sampled_from(["p", "a b", "%", "%zz", "\x00", "é", "../x", "p&id=q"]),
)
timeouts = st.one_of(
    st.none(),
    st.sampled_from(["", "0", "0.01", "1e9", "-1", "nan", "inf", "x", "1e999"]),
    st.text(max_size=8),
)
raw_queries = st.text(alphabet=st.characters(codec="utf-8"), max_size=60).map(
    lambda q: quote(q, safe="=&;%+/?:@!$'()*,")
)


def _query(id: str | None, timeout: str | None) -> str:
    parts = []
    if id is not None:
        parts.append("id=" + quote(id.encode("utf-8", "surrogatepass"), safe=""))
    if timeout is not None:
        parts.append("timeout=" + quote(timeout.encode("utf-8", "surrogatepass"), safe=""))
    return "&".join(parts)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    endpoint=st.one_of(
        st.sampled_from(VALID),
        st.sampled_from(VALID),
        st.sampled_from(VALID),
        st.tuples(
            st.sampled_from(["GET", "POST", "PUT", "HEAD"]),
            st.one_of(
                st.sampled_from(ROUTES), st.text(max_size=10).map(lambda t: "/" + quote(t, safe=""))
            ),
        ),
    ),
    id=st.one_of(st.none(), ids, ids, ids),
    timeout=timeouts,
    raw=st.one_of(st.none(), raw_queries),
    body=bodies,
    content_type=st.sampled_from(["application/json", "text/plain", "", "application/x-www"]),
    auth=st.sampled_from([None, "Bearer x", "Basic Zm9v"]),
)
def test_gateway_never_answers_5xx_other_than_503(
    harness: Harness,
    endpoint: tuple[str, str],
    id: str | None,
    timeout: str | None,
    raw: str | None,
    body: bytes,
    content_type: str,
    auth: str | None,
) -> None:
    method, route = endpoint
    query = raw if raw is not None else _query(id, timeout)
    url = URL(f"{route}?{query}" if query else route, encoded=True)
    headers = {"Content-Type": content_type} if content_type else {}
    if auth:
        headers["Authorization"] = auth
    status, ctype, text = harness.runner.run(harness.request(method, url, headers, body))
    event(f"{route if route in ROUTES else 'other'} {status}")
    assert status < 500 or status == 503, (status, text)
    if method != "HEAD":
        assert ctype == "application/json", (status, ctype, text)
        json.loads(text)


def test_gateway_still_serves_after_the_fuzzing(harness: Harness) -> None:
    status, _, text = harness.runner.run(harness.request("GET", URL("/healthz"), {}, b""))
    assert status == 200, text
    status, _, text = harness.runner.run(
        harness.request("POST", URL("/begin?id=after-fuzz"), {}, b'{"a": 1}')
    )
    assert status == 200, text
    status, _, text = harness.runner.run(
        harness.request("GET", URL("/wait?id=after-fuzz&timeout=0.05"), {}, b"")
    )
    assert status == 200 and json.loads(text)["promise_id"] == "after-fuzz"
    # The promise lives in the backend's Redis (fakeredis or the real redis-server).
    promise = harness.keys.promise("after-fuzz")
    assert harness.runner.run(harness.backend.client().exists(promise)) == 1
