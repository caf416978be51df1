"""The dashboard's JSON (``/ui/api/``): who may read it, and what it costs Redis.

In process, through aiohttp's test client; the cost is counted by a private
redis-server's own command statistics.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import test_utils, web

from redpromise import Context, Redpromise
from redpromise.aiohttp import add_routes
from redpromise.http import dashboard as ui_module
from tests.conftest import fast_settings
from tests.redis_server import RedisServer

MakeRp = Callable[..., Awaitable[Redpromise]]
Client = test_utils.TestClient[web.Request, web.Application]
OPEN = {"/healthz", "/openapi.json", "/ui", "/ui/app.js"}  # no data: readable by anyone


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[web.Application], Awaitable[Client]]]:
    clients: list[Client] = []

    async def start(app: web.Application) -> Client:
        client: Client = test_utils.TestClient(test_utils.TestServer(app))
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for c in clients:
        await c.close()


async def resolved_promise(make_rp: MakeRp, id: str) -> None:
    worker = await make_rp()

    @worker.register
    async def foo(ctx: Context, data: Any) -> str:
        return f"done {data['x']}"

    await worker.start()
    assert await (await worker.begin_rpc(id, "foo", {"x": 1})).result(timeout=10) == "done 1"


async def test_with_a_token_nothing_but_health_openapi_and_the_bare_page_is_readable(
    make_rp: MakeRp, serve: Callable[[web.Application], Awaitable[Client]]
) -> None:
    await resolved_promise(make_rp, "ui")
    app = web.Application()
    add_routes(app, await make_rp(group="gateway"), "foo", token="t")
    client = await serve(app)
    auth = {"Authorization": "Bearer t"}
    refused = []
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info["formatter"].format(name="app.js")
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            resp = await client.request(route.method, f"{path}?id=ui&key=0:1-0", headers=headers)
            if path in OPEN:
                assert resp.status == 200, (route.method, path)
            else:
                assert resp.status == 401, (route.method, path, headers)
                assert resp.headers["WWW-Authenticate"] == "Bearer"
                refused.append(path)
    assert {"/metrics", "/ui/api/session", "/ui/api/overview", "/ui/api/dead"} <= set(refused)
    # With the token: everything, values included.
    session = await (await client.get("/ui/api/session", headers=auth)).json()
    assert session["token_required"] is True
    detail = await (await client.get("/ui/api/promise?id=ui", headers=auth)).json()
    assert detail["result"] == "done 1"
    found = await (await client.get("/ui/api/promises?state=resolved", headers=auth)).json()
    assert [(r["id"], r["value"]) for r in found["records"]] == [("ui", "done 1")]
    overview = await (await client.get("/ui/api/overview", headers=auth)).json()
    assert overview["counts"]["resolved"] == {"worker": 1}
    assert (await client.post("/ui/api/requeue?key=0:1-0", headers=auth)).status == 409


async def test_without_a_token_the_session_tells_the_page_it_is_unprotected(
    make_rp: MakeRp, serve: Callable[[web.Application], Awaitable[Client]]
) -> None:
    app = web.Application()
    add_routes(app, await make_rp(group="gateway"), "foo")
    client = await serve(app)
    assert (await (await client.get("/ui/api/session")).json())["token_required"] is False
    page = await (await client.get("/ui")).text()
    assert 'id="unprotected"' in page and "anyone who can reach this address" in page


@pytest.mark.real
async def test_concurrent_viewers_share_one_overview_computation(
    own_redis_server: RedisServer,
    namespace: str,
    serve: Callable[[web.Application], Awaitable[Client]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # One interval for the whole test, however slow the machine: the count is exact.
    monkeypatch.setattr(ui_module, "_SAMPLE_EVERY", 3600.0)
    rp = Redpromise(own_redis_server.url, group="gateway", settings=fast_settings(namespace))
    app = web.Application()
    add_routes(app, rp, "foo", token="t")
    client = await serve(app)
    auth = {"Authorization": "Bearer t"}
    await rp.begin_rpc("one", "foo")
    await rp.redis.config_resetstat()
    answers = await asyncio.gather(
        *(client.get("/ui/api/overview", headers=auth) for _ in range(20))
    )
    bodies = [await a.json() for a in answers]
    assert all(b == bodies[0] for b in bodies) and bodies[0]["counts"]["pending"] == {"worker": 1}
    for _ in range(5):  # later viewers within the interval reuse it
        assert (await client.get("/ui/api/overview", headers=auth)).status == 200
    stats = await rp.redis.info("commandstats")
    # One computation reads each partition's stream of the one group once.
    assert stats["cmdstat_xinfo|stream"]["calls"] == rp.keys.partitions
