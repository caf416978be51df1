"""Work crosses languages (issue 21): a promise begun by redpromise runs on a TypeScript
Resonate worker connected through ``redpromise serve``, and redpromise's workers leave the
protocol's dispatches alone. Real processes on a real Redis.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
from aiohttp import test_utils, web

from redpromise import Context, Options, Redpromise, Settings
from redpromise.aiohttp import add_routes
from redpromise.core.errors import ConfigurationError, InvalidId, PayloadError, PromiseRejected
from tests.helpers import assert_eventually
from tests.procs import WorkerProcess
from tests.resonate.fixtures import ledger, resonate_programs, rp, serve  # noqa: F401  (fixtures)
from tests.resonate.programs import Program, Programs
from tests.resonate.seed import Gateway, entries_of, steps_of, unrepeated_except_in_flight

pytestmark = [pytest.mark.resonate, pytest.mark.real]

JSON = Options(target="poll://any@worker", codec="json")


@pytest.fixture
def ts_worker(
    resonate_programs: Programs,
    serve: Program,
    ledger: Path,
) -> Program:
    """The seed's TypeScript worker (group "worker", ``foo``) on ``serve``."""
    return resonate_programs.start_ts_worker(serve.url, env={"STEP_LEDGER": str(ledger)})


async def test_a_json_call_begun_by_redpromise_runs_on_the_typescript_worker(
    rp: Redpromise, ts_worker: Program, ledger: Path
) -> None:
    handle = await rp.begin_rpc("x-1", "foo", {"input": "from python"}, options=JSON)
    result = await handle.result(timeout=30)
    assert result == {
        "result": 'Processed: "from python"',
        "steps": ["step 1 done", "step 2 done"],
    }
    assert steps_of(ledger, "x-1") == [1, 2]


async def test_a_typescript_rejection_raises_promise_rejected_with_its_message(
    rp: Redpromise, ts_worker: Program
) -> None:
    handle = await rp.begin_rpc("x-2", "foo", {"fail": "card declined"}, options=JSON)
    with pytest.raises(PromiseRejected) as info:
        await handle.result(timeout=30)
    assert info.value.message == "card declined"


async def test_the_same_id_begun_twice_runs_once(
    rp: Redpromise, ts_worker: Program, ledger: Path
) -> None:
    first = await rp.begin_rpc("x-3", "foo", {"input": "a"}, options=JSON)
    again = await rp.begin_rpc("x-3", "foo", {"input": "b"}, options=JSON)
    assert await again.result(timeout=30) == await first.result(timeout=30)
    assert steps_of(ledger, "x-3") == [1, 2]


async def test_arguments_json_cannot_carry_are_refused_saying_why(
    rp: Redpromise, serve: Program
) -> None:
    with pytest.raises(PayloadError, match="not JSON"):
        await rp.begin_rpc("x-4", "foo", b"bytes", options=JSON)
    with pytest.raises(PayloadError, match="not JSON"):
        await rp.begin_rpc("x-4", "foo", math.nan, options=JSON)
    with pytest.raises(PayloadError, match="positional arguments only"):
        await rp.begin_rpc("x-4", "foo", options=JSON, data=1)
    with pytest.raises(InvalidId, match="':'"):
        await rp.begin_rpc("x:4", "foo", 1, options=JSON)
    with pytest.raises(ConfigurationError, match="codec"):
        Options(codec="xml")


async def test_redpromises_gateway_begins_and_waits_on_the_typescript_worker(
    real_url: str, namespace: str, ts_worker: Program, ledger: Path
) -> None:
    app = web.Application()
    rp = Redpromise(real_url, group="gateway", settings=Settings(namespace=namespace))
    add_routes(app, rp, "foo", target="poll://any@worker", codec="json")
    try:
        async with test_utils.TestClient(test_utils.TestServer(app)) as client:
            begun = await client.post("/begin?id=gw-1", json={"input": "via gateway"})
            assert begun.status == 200
            assert (await begun.json())["status"] == "pending"

            async def settled() -> dict[str, object] | None:
                resp = await client.get("/wait?id=gw-1")
                body: dict[str, object] = await resp.json()
                return None if body["status"] == "pending" else body

            outcome = await assert_eventually(settled, timeout=30)
    finally:
        await rp.stop()  # the routes leave their client to its owner
    assert outcome == {
        "status": "resolved",
        "promise_id": "gw-1",
        "result": {"result": 'Processed: "via gateway"', "steps": ["step 1 done", "step 2 done"]},
    }
    assert steps_of(ledger, "gw-1") == [1, 2]


async def test_a_worker_without_the_function_leaves_a_protocol_entry_for_resonate_workers(
    rp: Redpromise,
    real_url: str,
    namespace: str,
    resonate_programs: Programs,
    ledger: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A redpromise worker of the group without the promise's function reads the protocol
    entry first: it neither runs, drops nor counts it, says why, and a Resonate worker that
    connects later still gets it (serve claims it from the redpromise worker's pending
    list)."""
    caplog.set_level(logging.ERROR, logger="redpromise.worker")
    ran: list[object] = []
    worker = Redpromise(real_url, group="worker", settings=Settings(namespace=namespace))

    @worker.register(name="bar")
    async def bar(ctx: Context, data: object) -> object:
        ran.append(data)
        return "python"

    await worker.start()
    try:
        handle = await rp.begin_rpc("left-1", "foo", {"input": "for ts"}, options=JSON)
        stream = worker.keys.stream(worker.keys.family_partition("left-1"), "worker")

        async def held() -> bool:
            pending = await worker.redis.xpending(stream, "worker")
            said = "function 'foo' is not registered" in caplog.text and "left-1" in caplog.text
            return pending["pending"] == 1 and said

        await assert_eventually(held, timeout=15)
        assert await worker.redis.xlen(stream) == 1
        assert (await handle.state()) == "pending"

        serve = resonate_programs.start_serve(real_url, namespace)
        resonate_programs.start_ts_worker(serve.url, env={"STEP_LEDGER": str(ledger)})
        result = await handle.result(timeout=60)
    finally:
        await worker.stop(grace=1)
    assert result["result"] == 'Processed: "for ts"'
    assert ran == []
    assert steps_of(ledger, "left-1") == [1, 2]


# -- forward: the TypeScript gateway begins, redpromise's Python workers run -----------------


@pytest.fixture
def py_workers(
    real_url: str, namespace: str, tmp_path: Path, ledger: Path
) -> Iterator[Callable[[], WorkerProcess]]:
    """Starts redpromise worker processes of group "worker" with ``foo`` (lease 2 s, the
    protocol task's ttl too); kills every one at the end."""
    started: list[WorkerProcess] = []

    def start() -> WorkerProcess:
        worker = WorkerProcess(
            real_url,
            namespace,
            tmp_path,
            lease=2.0,
            target="tests.resonate.py_foo_worker:make",
            env={"STEP_LEDGER": str(ledger)},
        )
        started.append(worker)
        return worker.start()

    try:
        yield start
    finally:
        for worker in started:
            worker.close()


@pytest.fixture
def ts_gateway(
    resonate_programs: Programs,
    serve: Program,
    http: aiohttp.ClientSession,
) -> Gateway:
    """The seed's TypeScript gateway on ``serve`` (no TypeScript worker)."""
    return Gateway(http, resonate_programs.start_ts_gateway(serve.url).url)


async def test_a_typescript_begun_promise_runs_on_a_python_worker(
    ts_gateway: Gateway, py_workers: Callable[[], WorkerProcess], ledger: Path
) -> None:
    py_workers()
    status, _ = await ts_gateway.begin("py-1", {"input": "hello"})
    assert status == 200
    outcome = await assert_eventually(lambda: ts_gateway.settled("py-1"), timeout=30)
    assert outcome == {
        "status": "resolved",
        "result": {"result": 'Processed: "hello"', "steps": ["step 1 done", "step 2 done"]},
    }
    assert steps_of(ledger, "py-1") == [1, 2]


async def test_a_python_exception_rejects_with_its_message_in_typescript(
    ts_gateway: Gateway, py_workers: Callable[[], WorkerProcess]
) -> None:
    py_workers()
    await ts_gateway.begin("py-2", {"fail": "card declined"})
    outcome = await assert_eventually(lambda: ts_gateway.settled("py-2"), timeout=30)
    assert outcome == {"status": "rejected", "error": "card declined"}


async def test_a_typescript_callers_retry_policy_retries_the_python_workers_failures(
    ts_gateway: Gateway, py_workers: Callable[[], WorkerProcess], ledger: Path
) -> None:
    py_workers()  # foo is registered without a policy: the caller's must be the one applied
    retry = {"type": "constant", "data": {"delay": 50, "maxRetries": 2}}
    status, _ = await ts_gateway.begin("py-5", {"input": "again", "failUntilAttempt": 2}, retry)
    assert status == 200
    outcome = await assert_eventually(lambda: ts_gateway.settled("py-5"), timeout=30)
    assert outcome == {
        "status": "resolved",
        "result": {"result": 'Processed: "again"', "steps": ["step 1 done", "step 2 done"]},
    }
    assert steps_of(ledger, "py-5") == [1, 2]  # three attempts, each step run once


async def test_a_killed_python_workers_successor_does_not_rerun_completed_steps(
    ts_gateway: Gateway, py_workers: Callable[[], WorkerProcess], ledger: Path
) -> None:
    first = py_workers()
    await ts_gateway.begin("py-3", {"input": "x", "steps": 4, "stepMs": 600})

    async def two_steps_done() -> bool:
        return len(entries_of(ledger, "py-3")) >= 2

    await assert_eventually(two_steps_done, timeout=30)
    killed = first.pid
    first.kill()
    py_workers()
    outcome = await assert_eventually(lambda: ts_gateway.settled("py-3"), timeout=60)
    assert outcome is not None and outcome["status"] == "resolved", outcome
    assert unrepeated_except_in_flight(ledger, "py-3", killed, 4)
    assert {e["pid"] for e in entries_of(ledger, "py-3")} - {killed}


async def test_serve_leaves_a_redpromise_dispatch_for_redpromise_workers(
    rp: Redpromise,
    real_url: str,
    namespace: str,
    serve: Program,
    ts_worker: Program,
) -> None:
    """A redpromise (msgpack) promise of a group a Resonate worker is connected for: serve
    neither offers nor deletes its entry, says why, and a redpromise worker that starts
    later reclaims and runs it."""
    handle = await rp.begin_rpc("rp-1", "echo", "hi", target="poll://any@worker")
    stream = rp.keys.stream(rp.keys.partition("rp-1"), "worker")

    async def refused() -> bool:
        pending = await rp.redis.xpending(stream, "worker")
        return pending["pending"] == 1 and "'rp-1'" in serve.output()

    await assert_eventually(refused, timeout=15)
    assert "is a redpromise promise (msgpack)" in serve.output()
    assert await rp.redis.xlen(stream) == 1

    worker = Redpromise(
        real_url, group="worker", settings=Settings(namespace=namespace, lease=timedelta(seconds=1))
    )

    @worker.register(name="echo")
    async def echo(ctx: Context, value: object) -> object:
        return value

    await worker.start()
    try:
        assert await handle.result(timeout=30) == "hi"
    finally:
        await worker.stop(grace=1)
