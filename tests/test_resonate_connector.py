"""Python Resonate programs with no server process: the SDK's ``Network`` and ``Source`` on
Redis (``redpromise.resonate.connector``), real processes on a real Redis. The programs of
tests/resonate/py run with ``REDPROMISE_URL`` and no ``RESONATE_URL``; every process ticks
the timers itself. The same records serve ``redpromise serve`` and the TypeScript SDK.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from redis.asyncio import Redis

from redpromise.core.errors import StoreUnavailable
from redpromise.core.keys import Keys
from redpromise.core.options import Settings
from redpromise.resonate.connector import RedisNetwork, RedisSource, redis_connections
from tests.helpers import assert_eventually
from tests.resonate.fixtures import ledger, resonate_programs  # noqa: F401  (fixtures)
from tests.resonate.programs import Programs, connector_env
from tests.resonate.seed import entries_of, steps_of, unrepeated_except_in_flight

pytestmark = [pytest.mark.resonate, pytest.mark.real]

VERSION = "2026-04-01"


@pytest.fixture
def on_redis(real_url: str, namespace: str) -> dict[str, str]:
    """The env of a Python program on the connector (this test's namespace)."""
    return connector_env(real_url, namespace)


async def test_a_connector_worker_and_client_resolve_and_reject_foo_without_a_server(
    resonate_programs: Programs,
    on_redis: dict[str, str],
    ledger: Path,
    real_url: str,
    namespace: str,
) -> None:
    resonate_programs.start_py_worker(None, env={**on_redis, "STEP_LEDGER": str(ledger)})
    outcome = await asyncio.to_thread(
        resonate_programs.run_py_client, None, "c-1", {"input": [1, 2]}, env=on_redis
    )
    assert outcome == {
        "id": "c-1",
        "status": "resolved",
        "result": {"result": "Processed: [1,2]", "steps": ["step 1 done", "step 2 done"]},
    }
    assert steps_of(ledger, "c-1") == [1, 2]
    rejected = await asyncio.to_thread(
        resonate_programs.run_py_client, None, "c-2", {"fail": "no stock"}, env=on_redis
    )
    assert rejected == {"id": "c-2", "status": "rejected", "error": "no stock"}
    assert steps_of(ledger, "c-2") == [1, 2]
    # The clients left their group's consumer list when they stopped.
    keys = Keys(namespace, Settings().partitions)
    redis = Redis.from_url(real_url)
    try:
        for k in range(keys.partitions):
            assert await redis.xinfo_consumers(keys.stream(k, "client"), "client") == []
    finally:
        await redis.aclose()


async def test_a_killed_connector_workers_function_finishes_on_another_connector_worker(
    resonate_programs: Programs,
    on_redis: dict[str, str],
    ledger: Path,
) -> None:
    # A short lease: the task of the dead worker lapses soon, and a live process's tick
    # offers it again (no server ticks here: the connected processes do).
    env = {**on_redis, "STEP_LEDGER": str(ledger), "WORKER_TTL_MS": "1000"}
    first = resonate_programs.start_py_worker(None, env=env)
    data = {"input": "crash", "steps": 4, "stepMs": 300}
    client = asyncio.create_task(
        asyncio.to_thread(resonate_programs.run_py_client, None, "c-3", data, env=on_redis)
    )
    await assert_eventually(lambda: 2 in steps_of(ledger, "c-3"), timeout=30)
    first.kill()
    second = resonate_programs.start_py_worker(None, env=env)
    outcome = await asyncio.wait_for(client, 60)
    assert outcome["status"] == "resolved", outcome
    assert outcome["result"]["result"] == 'Processed: "crash"'
    assert unrepeated_except_in_flight(ledger, "c-3", first.pid, steps=4)
    by_step = {e["step"]: e["pid"] for e in entries_of(ledger, "c-3")}
    assert by_step[4] == second.pid  # the steps the first worker never reached


async def test_a_python_sdk_schedule_fires_on_connector_processes_alone(
    resonate_programs: Programs,
    on_redis: dict[str, str],
    ledger: Path,
) -> None:
    worker = resonate_programs.start_py_worker(None, env={**on_redis, "STEP_LEDGER": str(ledger)})
    data = json.dumps({"input": "tick", "steps": 1})
    await asyncio.to_thread(
        resonate_programs.run_py_schedule,
        None,
        "create",
        "every",
        "* * * * * *",
        data,
        env=on_redis,
    )

    def fired() -> list[str]:
        lines = ledger.read_text().splitlines() if ledger.exists() else []
        ids = sorted({json.loads(line)["id"] for line in lines})
        assert len(ids) >= 2, ids
        return ids

    ids = await assert_eventually(fired, timeout=30)
    await asyncio.to_thread(
        resonate_programs.run_py_schedule, None, "delete", "every", env=on_redis
    )
    for id in ids:
        assert id.startswith("every-")
        assert all(e["pid"] == worker.pid for e in entries_of(ledger, id))


async def test_a_ts_worker_on_serve_runs_the_promise_a_connector_client_began(
    resonate_programs: Programs,
    real_url: str,
    namespace: str,
    on_redis: dict[str, str],
    ledger: Path,
) -> None:
    serve = resonate_programs.start_serve(real_url, namespace)
    ts = resonate_programs.start_ts_worker(serve.url, env={"STEP_LEDGER": str(ledger)})
    outcome = await asyncio.to_thread(
        resonate_programs.run_py_client, None, "c-4", {"input": "inter"}, env=on_redis
    )
    assert outcome == {
        "id": "c-4",
        "status": "resolved",
        "result": {"result": 'Processed: "inter"', "steps": ["step 1 done", "step 2 done"]},
    }
    assert {e["pid"] for e in entries_of(ledger, "c-4")} == {ts.pid}


async def test_send_answers_the_envelope_serve_answers(real_url: str, namespace: str) -> None:
    network, source = redis_connections(real_url, "g", "p1", namespace)
    assert isinstance(network, RedisNetwork) and isinstance(source, RedisSource)
    assert (source.unicast(), source.resolve_target("w")) == ("poll://uni@g/p1", "poll://any@w")
    await network.start()
    try:
        req = {"kind": "promise.get", "head": {"corrId": "c1", "version": VERSION}, "data": {}}
        reply = json.loads(await network.send(json.dumps({**req, "data": {"id": "nope"}})))
        assert reply["kind"] == "promise.get"
        assert reply["head"] == {"corrId": "c1", "status": 404, "version": VERSION}
        bad = json.loads(await network.send("{"))
        assert bad["head"]["status"] == 400
        debug = json.loads(await network.send(json.dumps({**req, "kind": "debug.reset"})))
        assert debug["head"]["status"] == 403
    finally:
        await network.stop()


async def test_a_request_waits_while_redis_is_unreachable_and_fails_once_stopped(
    namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    network, _ = redis_connections("redis://127.0.0.1:1/0", "g", "p1", namespace)
    req = {"kind": "promise.get", "head": {"corrId": "c1", "version": VERSION}, "data": {}}
    sending = asyncio.create_task(network.send(json.dumps({**req, "data": {"id": "x"}})))

    def retrying() -> bool:
        assert not sending.done()
        return "Redis unavailable, retrying" in caplog.text

    await assert_eventually(retrying, timeout=10)
    await network.stop()
    # Without the SDK installed (this interpreter) the error is redpromise's own; with it,
    # the SDK's ConnectorError (what its seam expects).
    with pytest.raises((RuntimeError, StoreUnavailable), match=r"stopped|unavailable"):
        await asyncio.wait_for(sending, 10)
