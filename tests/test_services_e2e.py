"""The seed's failure modes, end to end: real gateway and worker processes, real HTTP, a
real redis-server.

Processes: ``python services/gateway.py`` and ``python -m redpromise worker
services.worker:rp`` (tests/services.py). Which worker runs a promise is read from the
worker logs (``processing <id> on worker pid <pid>``, logged by the ``process`` step).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.helpers import assert_eventually
from tests.procs import WorkerProcess
from tests.redis_server import RedisServer
from tests.services import GatewayProcess, service_worker

pytestmark = pytest.mark.real


def executions(workers: list[WorkerProcess], id: str) -> int:
    """How many times the ``process`` step started for ``id``, over all worker logs."""
    pattern = re.compile(rf"processing {re.escape(id)} on worker pid")
    return sum(len(pattern.findall(w.output())) for w in workers)


class Stack:
    """A gateway and workers on one Redis and namespace; everything killed at the end."""

    def __init__(self, url: str, log_dir: Path) -> None:
        self.url = url
        self.namespace = f"e2e{uuid.uuid4().hex[:10]}"
        self.log_dir = log_dir
        self.gateways: list[GatewayProcess] = []
        self.workers: list[WorkerProcess] = []

    def gateway(self, port: int | None = None) -> GatewayProcess:
        gw = GatewayProcess(self.url, self.namespace, self.log_dir)
        if port is not None:
            gw.port = port
            gw.env["REDPROMISE_GATEWAY_PORT"] = str(port)
        self.gateways.append(gw.start())
        return gw

    def worker(self, process_seconds: float = 0.0) -> WorkerProcess:
        wp = service_worker(self.url, self.namespace, self.log_dir, process_seconds=process_seconds)
        self.workers.append(wp.start())
        return wp

    def close(self) -> None:
        for gw in self.gateways:
            gw.close()
        for wp in self.workers:
            wp.close()


@pytest.fixture
def stack(redis_url: str, tmp_path: Path) -> Iterator[Stack]:
    s = Stack(redis_url, tmp_path)
    try:
        yield s
    finally:
        s.close()


async def call(
    http: aiohttp.ClientSession, method: str, url: str, **kwargs: Any
) -> tuple[int, Any]:
    async with http.request(method, url, **kwargs) as resp:
        return resp.status, await resp.json()


async def wait_done(http: aiohttp.ClientSession, gw: GatewayProcess, id: str) -> dict[str, Any]:
    """Poll /wait (long-polling 2 s at a time) until the promise is no longer pending."""

    async def done() -> dict[str, Any] | None:
        status, data = await call(http, "GET", f"{gw.base}/wait", params={"id": id, "timeout": "2"})
        assert status == 200, data
        return data if data["status"] != "pending" else None

    result: dict[str, Any] = await assert_eventually(done, timeout=30)
    return result


@pytest.mark.on_cluster
async def test_begin_then_wait_ends_resolved(stack: Stack, http: aiohttp.ClientSession) -> None:
    gw = stack.gateway()
    stack.worker()
    status, data = await call(http, "POST", f"{gw.base}/begin?id=task-001", json={"hello": "world"})
    assert (status, data) == (
        200,
        {"promise": "task-001", "status": "pending", "wait": "/wait?id=task-001"},
    )
    done = await wait_done(http, gw, "task-001")
    assert done["status"] == "resolved"
    assert done["result"]["result"] == 'Processed: {"hello":"world"}'


async def test_rejected_function_is_reported_rejected(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    gw = stack.gateway()
    stack.worker()
    await call(http, "POST", f"{gw.base}/begin?id=bad", json="not an object")
    done = await wait_done(http, gw, "bad")
    assert done == {
        "status": "rejected",
        "promise_id": "bad",
        "error": "expected a JSON object, got str",
        "error_type": "ValidationError",
    }


async def test_unknown_id_is_404(stack: Stack, http: aiohttp.ClientSession) -> None:
    gw = stack.gateway()
    assert await call(http, "GET", f"{gw.base}/wait?id=ghost") == (
        404,
        {"error": "ghost not found"},
    )


@pytest.mark.on_cluster
async def test_same_id_twice_executes_once(stack: Stack, http: aiohttp.ClientSession) -> None:
    gw = stack.gateway()
    workers = [stack.worker(process_seconds=0.5), stack.worker(process_seconds=0.5)]
    first = await call(http, "POST", f"{gw.base}/begin?id=dup", json={"n": 1})
    second = await call(http, "POST", f"{gw.base}/begin?id=dup", json={"n": 2})
    assert first == second
    done = await wait_done(http, gw, "dup")
    assert done["result"]["result"] == 'Processed: {"n":1}'
    third = await call(http, "POST", f"{gw.base}/begin?id=dup", json={"n": 3})
    assert third == first
    assert (await wait_done(http, gw, "dup")) == done
    assert executions(workers, "dup") == 1


@pytest.mark.on_cluster
async def test_worker_killed_while_holding_the_promise_still_ends_resolved(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    gw = stack.gateway()
    workers = [stack.worker(process_seconds=3.0), stack.worker(process_seconds=3.0)]
    await call(http, "POST", f"{gw.base}/begin?id=crash", json={"k": "v"})
    holder = await assert_eventually(
        lambda: next((w for w in workers if executions([w], "crash")), None)
    )
    holder.kill()
    (survivor,) = (w for w in workers if w is not holder)
    done = await wait_done(http, gw, "crash")
    assert done["status"] == "resolved"
    assert done["result"]["result"] == 'Processed: {"k":"v"}'
    assert "resolved crash" in survivor.output()
    assert "resolved crash" not in holder.output()
    assert executions([survivor], "crash") == 1


async def test_gateway_killed_and_restarted_between_begin_and_wait(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    gw = stack.gateway()
    stack.worker(process_seconds=0.5)
    await call(http, "POST", f"{gw.base}/begin?id=gw-crash", json={"a": 1})
    gw.kill()
    with pytest.raises(aiohttp.ClientConnectionError):
        await call(http, "GET", f"{gw.base}/wait?id=gw-crash")
    again = stack.gateway(port=gw.port)
    done = await wait_done(http, again, "gw-crash")
    assert done["result"]["result"] == 'Processed: {"a":1}'


async def test_redis_down_for_seconds_gives_503_then_everything_recovers(
    own_redis_server: RedisServer, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    stack = Stack(own_redis_server.url, tmp_path)
    try:
        gw = stack.gateway()
        workers = [stack.worker(process_seconds=1.0), stack.worker(process_seconds=1.0)]
        await call(http, "POST", f"{gw.base}/begin?id=before", json={"t": 0})
        assert (await wait_done(http, gw, "before"))["status"] == "resolved"
        await call(http, "POST", f"{gw.base}/begin?id=during", json={"t": 1})

        own_redis_server.kill()  # a crash: AOF (appendfsync always) keeps what was acked
        for method, path in (("POST", "/begin?id=x"), ("GET", "/wait?id=during")):
            status, data = await call(http, method, f"{gw.base}{path}")
            assert status == 503, data
            assert data == {"error": "Redis unavailable (ConnectionError), try again"}
        health_status, _ = await call(http, "GET", f"{gw.base}/healthz")
        assert health_status == 503
        await asyncio.sleep(2)  # Redis stays down for a few seconds (the scenario itself)
        assert all(w.proc is not None and w.proc.poll() is None for w in workers)
        assert gw.alive

        own_redis_server.start()
        await assert_eventually(lambda: _status(http, f"{gw.base}/healthz", 200), timeout=30)
        assert (await wait_done(http, gw, "during"))["status"] == "resolved"
        assert (await wait_done(http, gw, "before"))["status"] == "resolved"
        status, _ = await call(http, "POST", f"{gw.base}/begin?id=after", json={"t": 2})
        assert status == 200
        assert (await wait_done(http, gw, "after"))["result"]["result"] == 'Processed: {"t":2}'
        assert all(w.proc is not None and w.proc.poll() is None for w in workers)
    finally:
        stack.close()


async def _status(http: aiohttp.ClientSession, url: str, expected: int) -> bool:
    async with http.get(url) as resp:
        return resp.status == expected
