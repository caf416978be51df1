"""The Resonate face mounted in a user's own aiohttp application (``add_resonate_routes``,
under a prefix, beside redpromise's gateway routes), on a real Redis: a protocol request
and its SSE message, the one-store view (the gateway's ``/metrics`` queue gauge counts the
undelivered dispatch; redpromise's client counts the outcome), and a cron schedule ticked
by two replicas at once making one promise per run, none missed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import test_utils, web
from prometheus_client.parser import text_string_to_metric_families

from redpromise import Redpromise
from redpromise.aiohttp import add_routes
from redpromise.core.options import Settings
from redpromise.resonate import ServeOptions, add_resonate_routes
from tests.helpers import assert_eventually

pytestmark = pytest.mark.real

HEAD = {"corrId": "c", "version": "2026-04-01"}


def request(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"kind": kind, "head": HEAD, "data": data}


@pytest.fixture
async def client(real_url: str, namespace: str) -> AsyncIterator[test_utils.TestClient[Any, Any]]:
    app = web.Application()
    settings = Settings(namespace=namespace)
    add_resonate_routes(
        app,
        Redpromise(real_url, settings=settings),
        ServeOptions(prefix="/resonate", tick_every=0.2),
    )
    gateway = Redpromise(real_url, settings=settings)  # the gateway routes' own client
    add_routes(app, gateway, "foo", target="poll://any@w")
    try:
        async with test_utils.TestClient(test_utils.TestServer(app)) as c:
            yield c
    finally:
        await gateway.stop()  # the routes leave their client to its owner


async def post(c: test_utils.TestClient[Any, Any], kind: str, data: dict[str, Any]) -> Any:
    resp = await c.post("/resonate/", json=request(kind, data))
    body = await resp.json()
    assert resp.status == body["head"]["status"], body
    return body


async def queue_depth(c: test_utils.TestClient[Any, Any]) -> float | None:
    text = await (await c.get("/metrics")).text()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "redpromise_queue_depth" and sample.labels.get("group") == "w":
                return sample.value
    return None


async def test_a_mounted_face_serves_a_request_and_its_message_from_the_one_store(
    client: test_utils.TestClient[Any, Any], real_url: str, namespace: str
) -> None:
    far = 4 * 10**12
    created = await post(
        client,
        "promise.create",
        {"id": "m1", "timeoutAt": far, "param": {}, "tags": {"resonate:target": "poll://any@w"}},
    )
    assert created["head"]["status"] == 200
    assert created["data"]["promise"]["state"] == "pending"
    # Nobody of group w is connected: the dispatch waits in w's stream, which the
    # gateway's /metrics counts as queued work of w.
    assert await assert_eventually(lambda: _is(queue_depth(client), 1.0))

    stream = await client.get("/resonate/poll/w/p1")
    assert stream.headers["Content-Type"] == "text/event-stream"
    message = await asyncio.wait_for(_next_message(stream), 10)
    assert message == {"kind": "execute", "head": {}, "data": {"task": {"id": "m1", "version": 0}}}
    assert await assert_eventually(lambda: _is(queue_depth(client), 0.0))

    acquired = await post(
        client, "task.acquire", {"id": "m1", "version": 0, "pid": "p1", "ttl": 60000}
    )
    assert acquired["data"]["task"]["state"] == "acquired"
    value = {"headers": {}, "data": "eyJvayI6IHRydWV9"}  # base64 of {"ok": true}
    settle = {
        "kind": "promise.settle",
        "head": HEAD,
        "data": {"id": "m1", "state": "resolved", "value": value},
    }
    fulfilled = await post(client, "task.fulfill", {"id": "m1", "version": 1, "action": settle})
    assert fulfilled["data"]["promise"]["state"] == "resolved"
    stream.close()

    rp = Redpromise(real_url, settings=Settings(namespace=namespace))
    try:
        assert await (await rp.get("m1")).result(timeout=5) == {"ok": True}
        counts = await rp.counts()
        assert counts["resolved"]["w"] == 1, counts
    finally:
        await rp.stop()


async def test_two_replicas_ticking_a_schedule_make_one_promise_per_run_and_miss_none(
    real_url: str, namespace: str
) -> None:
    settings = Settings(namespace=namespace)
    apps, clients = [], []
    for _ in range(2):
        app = web.Application()
        add_resonate_routes(
            app, Redpromise(real_url, settings=settings), ServeOptions(tick_every=0.05)
        )
        apps.append(app)
        clients.append(test_utils.TestClient(test_utils.TestServer(app)))
    for c in clients:
        await c.start_server()
    try:
        tags = {"resonate:target": "poll://any@nobody"}
        schedule = {"id": "every-second", "cron": "* * * * * *", "promiseId": "run.{{.timestamp}}",
                    "promiseTimeout": 60000, "promiseParam": {}, "promiseTags": tags}  # fmt: skip
        resp = await clients[0].post("/", json=request("schedule.create", schedule))
        assert resp.status == 200, await resp.text()
        first = (await resp.json())["data"]["schedule"]["nextRunAt"]

        async def runs() -> list[int] | None:
            resp = await clients[1].post("/", json=request("schedule.get", {"id": "every-second"}))
            last = (await resp.json())["data"]["schedule"].get("lastRunAt")
            return None if last is None or last < first + 3000 else [first, last]

        _, last = await assert_eventually(runs, timeout=20)
        rp = Redpromise(real_url, settings=settings)
        try:
            # Every run of the second from the first to the last has its promise (a
            # missed run would leave a gap); one per run by its id, so none twice.
            for run in range(first, last + 1, 1000):
                await rp.get(f"run.{run}")
            found = await rp.search(group="nobody", limit=1000)
            ids = sorted(r.id for r in found.records)
            runs_made = sorted(int(i.removeprefix("run.")) for i in ids)
            assert runs_made == list(range(first, runs_made[-1] + 1, 1000))
        finally:
            await rp.stop()
    finally:
        for c in clients:
            await c.close()


async def _is(value: Any, want: float) -> bool:
    return await value == want


async def _next_message(stream: Any) -> dict[str, Any]:
    while True:
        line = (await stream.content.readline()).decode()
        if line.startswith("data: "):
            parsed: dict[str, Any] = json.loads(line[len("data: ") :])
            return parsed
