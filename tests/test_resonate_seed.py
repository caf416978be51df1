"""The seed, end to end on two protocol servers: the seed's TypeScript gateway and worker,
and the Python SDK's worker and client, run as real processes against the SDK's in-memory
reference server (tests/resonate/node/oracle_server.mjs) and against ``redpromise serve``
on a real Redis. Every test of this file runs on both (the ``server_url`` fixture): whatever
the reference does for the seed, redpromise does too.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.helpers import assert_eventually
from tests.resonate.fixtures import ledger, resonate_programs  # noqa: F401  (fixtures)
from tests.resonate.programs import OracleStdio, Programs, oracle_stdio  # noqa: F401
from tests.resonate.seed import Gateway, entries_of, steps_of, unrepeated_except_in_flight

pytestmark = pytest.mark.resonate

VERSION = "2026-04-01"


@pytest.fixture(params=["reference", pytest.param("redpromise", marks=pytest.mark.real)])
def server_url(
    request: pytest.FixtureRequest,
    resonate_programs: Programs,
    namespace: str,
) -> str:
    """The protocol server under test: the reference oracle over HTTP + SSE, or
    ``redpromise serve`` on the session's real Redis (a fresh namespace)."""
    if request.param == "reference":
        return resonate_programs.start_oracle().url
    real_url: str = request.getfixturevalue("real_url")
    return resonate_programs.start_serve(real_url, namespace).url


@pytest.fixture
def seed(
    resonate_programs: Programs,
    server_url: str,
    ledger: Path,
    http: aiohttp.ClientSession,
) -> Gateway:
    """The seed running on ``server_url``: one TypeScript worker and one gateway."""
    resonate_programs.start_ts_worker(server_url, env={"STEP_LEDGER": str(ledger)})
    gateway = resonate_programs.start_ts_gateway(server_url)
    return Gateway(http, gateway.url)


async def test_begin_answers_pending_and_wait_reports_the_workers_result(
    seed: Gateway, ledger: Path
) -> None:
    status, body = await seed.begin("order-1", {"input": "hello"})
    assert (status, body) == (
        200,
        {"promise": "order-1", "status": "pending", "wait": "/wait?id=order-1"},
    )
    outcome = await assert_eventually(lambda: seed.settled("order-1"), timeout=30)
    assert outcome == {
        "status": "resolved",
        "result": {"result": 'Processed: "hello"', "steps": ["step 1 done", "step 2 done"]},
    }
    assert steps_of(ledger, "order-1") == [1, 2]


async def test_the_same_id_begun_three_times_runs_foo_once(seed: Gateway, ledger: Path) -> None:
    # The steps take a moment, so the repeats find the first run in flight.
    data = {"input": "once", "steps": 3, "stepMs": 100}
    for _ in range(3):
        status, body = await seed.begin("order-2", data)
        assert (status, body["promise"], body["status"]) == (200, "order-2", "pending")
    outcome = await assert_eventually(lambda: seed.settled("order-2"), timeout=30)
    assert outcome["status"] == "resolved"
    assert outcome["result"]["result"] == 'Processed: "once"'
    status, body = await seed.begin("order-2", data)  # and once more after it settled
    assert status == 200
    assert await seed.settled("order-2") == outcome
    assert steps_of(ledger, "order-2") == [1, 2, 3]


async def test_a_rejected_function_is_reported_with_its_message(
    seed: Gateway, ledger: Path
) -> None:
    status, _ = await seed.begin("order-3", {"fail": "card declined"})
    assert status == 200
    outcome = await assert_eventually(lambda: seed.settled("order-3"), timeout=30)
    assert outcome == {"status": "rejected", "error": "card declined"}
    assert steps_of(ledger, "order-3") == [1, 2]  # the error came after the steps


async def test_wait_on_an_unknown_id_answers_404(seed: Gateway) -> None:
    assert await seed.wait("never-begun") == (404, {"error": "never-begun not found"})


async def test_a_killed_workers_function_finishes_on_another_worker(
    resonate_programs: Programs,
    server_url: str,
    ledger: Path,
    http: aiohttp.ClientSession,
) -> None:
    # A short lease, so the server offers the dead worker's task again soon.
    env = {"STEP_LEDGER": str(ledger), "WORKER_TTL_MS": "1000"}
    first = resonate_programs.start_ts_worker(server_url, env=env)
    seed = Gateway(http, resonate_programs.start_ts_gateway(server_url).url)
    await seed.begin("order-4", {"input": "crash", "steps": 4, "stepMs": 300})
    await assert_eventually(lambda: 2 in steps_of(ledger, "order-4"), timeout=30)
    first.kill()
    second = resonate_programs.start_ts_worker(server_url, env=env)
    outcome = await assert_eventually(lambda: seed.settled("order-4"), timeout=30)
    assert outcome["status"] == "resolved"
    assert outcome["result"]["result"] == 'Processed: "crash"'
    assert unrepeated_except_in_flight(ledger, "order-4", first.pid, steps=4)
    by_step = {e["step"]: e["pid"] for e in entries_of(ledger, "order-4")}
    assert by_step[4] == second.pid  # the steps the first worker never reached


async def test_the_python_sdk_worker_and_client_resolve_foo(
    resonate_programs: Programs,
    server_url: str,
    ledger: Path,
) -> None:
    resonate_programs.start_py_worker(server_url, env={"STEP_LEDGER": str(ledger)})
    outcome = resonate_programs.run_py_client(server_url, "py-order-1", {"input": [1, 2]})
    assert outcome == {
        "id": "py-order-1",
        "status": "resolved",
        "result": {"result": "Processed: [1,2]", "steps": ["step 1 done", "step 2 done"]},
    }
    assert steps_of(ledger, "py-order-1") == [1, 2]
    rejected = resonate_programs.run_py_client(server_url, "py-order-2", {"fail": "no stock"})
    assert rejected == {"id": "py-order-2", "status": "rejected", "error": "no stock"}


def test_the_stdio_oracle_answers_each_request_at_the_time_given(
    oracle_stdio: OracleStdio,
) -> None:
    def req(kind: str, data: dict[str, Any]) -> dict[str, Any]:
        return {"kind": kind, "head": {"corrId": kind, "version": VERSION}, "data": data}

    created = oracle_stdio.apply(
        1_000,
        req(
            "promise.create",
            {
                "id": "p",
                "timeoutAt": 5_000,
                "param": {"headers": {}, "data": ""},
                "tags": {"resonate:target": "poll://any@worker"},
            },
        ),
    )
    assert created["status"] == 200
    assert created["data"]["promise"]["state"] == "pending"
    assert created["messages"] == [
        {
            "address": "poll://any@worker",
            "message": {"kind": "execute", "head": {}, "data": {"task": {"id": "p", "version": 0}}},
        }
    ]
    late = oracle_stdio.apply(6_000, req("promise.get", {"id": "p"}))
    assert late["status"] == 200
    assert late["data"]["promise"]["state"] == "rejected_timedout"
    assert late["data"]["promise"]["settledAt"] == 5_000
    assert oracle_stdio.apply(6_000, req("promise.get", {"id": "q"}))["status"] == 404


async def test_a_killed_python_workers_function_finishes_on_another_python_worker(
    resonate_programs: Programs,
    server_url: str,
    ledger: Path,
) -> None:
    env = {"STEP_LEDGER": str(ledger), "WORKER_TTL_MS": "1000"}
    first = resonate_programs.start_py_worker(server_url, env=env)
    data = {"input": "py-crash", "steps": 4, "stepMs": 300}
    client = asyncio.create_task(
        asyncio.to_thread(resonate_programs.run_py_client, server_url, "py-order-3", data)
    )
    await assert_eventually(lambda: 2 in steps_of(ledger, "py-order-3"), timeout=30)
    first.kill()
    second = resonate_programs.start_py_worker(server_url, env=env)
    outcome = await asyncio.wait_for(client, 60)
    assert outcome["status"] == "resolved", outcome
    assert outcome["result"]["result"] == 'Processed: "py-crash"'
    assert unrepeated_except_in_flight(ledger, "py-order-3", first.pid, steps=4)
    by_step = {e["step"]: e["pid"] for e in entries_of(ledger, "py-order-3")}
    assert by_step[4] == second.pid
