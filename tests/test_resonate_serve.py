"""``redpromise serve`` under the faults and uses the reference server has no answer for: real
processes on a real Redis, killed with SIGKILL and restarted; two replicas sharing one
namespace; a token; hostile bodies; and the promises the SDKs make, read by redpromise's own
client, CLI and dashboard.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import test_utils, web

from redpromise import Redpromise, Settings
from redpromise.aiohttp import add_routes
from tests.helpers import assert_eventually
from tests.resonate.fixtures import ledger, resonate_programs, rp, serve  # noqa: F401  (fixtures)
from tests.resonate.programs import Program, Programs
from tests.resonate.seed import Gateway, entries_of, steps_of

pytestmark = [pytest.mark.resonate, pytest.mark.real]

ROOT = Path(__file__).resolve().parents[1]
VERSION = "2026-04-01"
FOO_2_STEPS = {"result": 'Processed: "x"', "steps": ["step 1 done", "step 2 done"]}


def request(kind: str, data: Any, corr: str = "c1") -> dict[str, Any]:
    return {"kind": kind, "head": {"corrId": corr, "version": VERSION}, "data": data}


async def post(
    http: aiohttp.ClientSession, url: str, body: bytes | Any, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """POST ``body`` (bytes as they are, anything else as JSON) to the protocol route."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with http.post(f"{url}/", data=io.BytesIO(raw), headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


def create(id: str, **tags: str) -> dict[str, Any]:
    return request(
        "promise.create",
        {"id": id, "timeoutAt": 2**52, "param": {"headers": {}, "data": ""}, "tags": tags},
    )


async def settle_all(gateway: Gateway, ids: list[str], timeout: float = 60) -> dict[str, Any]:
    """Every id's /wait body once all are settled."""

    async def all_settled() -> dict[str, Any] | None:
        found = {id: await gateway.settled(id) for id in ids}
        return found if all(found.values()) else None

    result: dict[str, Any] = await assert_eventually(all_settled, timeout=timeout, interval=0.2)
    return result


# -- crashes and restarts -----------------------------------------------------------------


async def test_a_gateway_killed_between_begin_and_wait_is_answered_by_its_restart(
    resonate_programs: Programs,
    serve: Program,
    http: aiohttp.ClientSession,
) -> None:
    resonate_programs.start_ts_worker(serve.url)
    first = resonate_programs.start_ts_gateway(serve.url)
    status, _ = await Gateway(http, first.url).begin("g-1", {"input": "x", "stepMs": 200})
    assert status == 200
    first.kill()
    again = Gateway(http, resonate_programs.start_ts_gateway(serve.url, port=first.port or 0).url)
    assert await assert_eventually(lambda: again.settled("g-1"), timeout=30) == {
        "status": "resolved",
        "result": FOO_2_STEPS,
    }


async def test_serve_killed_mid_run_and_restarted_on_its_port_loses_nothing(
    resonate_programs: Programs,
    real_url: str,
    namespace: str,
    ledger: Path,
    http: aiohttp.ClientSession,
) -> None:
    serve = resonate_programs.start_serve(real_url, namespace)
    env = {"STEP_LEDGER": str(ledger), "WORKER_TTL_MS": "1000"}
    resonate_programs.start_ts_worker(serve.url, env=env)
    gateway = Gateway(http, resonate_programs.start_ts_gateway(serve.url).url)
    ids = [f"crash-{n}" for n in range(30)]
    for id in ids:
        assert (await gateway.begin(id, {"input": id, "steps": 2, "stepMs": 300}))[0] == 200
    # Killed once every task is acquired, in the middle of the steps. (A kill that makes
    # a task.acquire fail is survived too, but slowly: the SDK drops that execute, and the
    # pending task's message is sent again after the protocol's 30 s retry.)
    await assert_eventually(lambda: all(1 in steps_of(ledger, id) for id in ids), timeout=30)
    serve.kill()
    restarted = resonate_programs.start_serve(real_url, namespace, port=serve.port or 0)
    assert restarted.url == serve.url
    settled = await settle_all(gateway, ids)
    assert {id: body["status"] for id, body in settled.items()} == dict.fromkeys(ids, "resolved")
    for id in ids:
        assert settled[id]["result"]["result"] == f"Processed: {json.dumps(id)}"
        assert set(steps_of(ledger, id)) == {1, 2}
    # Both SDKs reconnected their SSE streams to the restarted server by themselves: an
    # execute (the worker's stream) for a promise begun after the restart reaches the worker.
    assert (await gateway.begin("after-restart", {"input": "x"}))[0] == 200
    assert await assert_eventually(lambda: gateway.settled("after-restart"), timeout=30) == {
        "status": "resolved",
        "result": FOO_2_STEPS,
    }


async def test_a_message_for_a_group_nobody_is_connected_to_waits_for_its_first_member(
    resonate_programs: Programs,
    serve: Program,
    http: aiohttp.ClientSession,
) -> None:
    gateway = Gateway(http, resonate_programs.start_ts_gateway(serve.url).url)
    assert (await gateway.begin("lonely-1", {"input": "x"}))[0] == 200
    await asyncio.sleep(1.5)  # the point: ticks pass while nobody of "worker" is connected
    assert await gateway.settled("lonely-1") is None
    worker = resonate_programs.start_ts_worker(serve.url)
    assert await assert_eventually(lambda: gateway.settled("lonely-1"), timeout=30) == {
        "status": "resolved",
        "result": FOO_2_STEPS,
    }
    # And once the group had members and has none again.
    worker.kill()
    assert (await gateway.begin("lonely-2", {"input": "x"}))[0] == 200
    resonate_programs.start_ts_worker(serve.url)
    assert await assert_eventually(lambda: gateway.settled("lonely-2"), timeout=30) == {
        "status": "resolved",
        "result": FOO_2_STEPS,
    }


# -- replicas -----------------------------------------------------------------------------


async def test_a_worker_on_one_replica_serves_a_gateway_and_a_client_on_another(
    resonate_programs: Programs,
    real_url: str,
    namespace: str,
    http: aiohttp.ClientSession,
) -> None:
    a = resonate_programs.start_serve(real_url, namespace)
    b = resonate_programs.start_serve(real_url, namespace)
    assert a.url != b.url
    resonate_programs.start_ts_worker(a.url)  # the executes cross through the group stream
    gateway = Gateway(http, resonate_programs.start_ts_gateway(b.url).url)
    assert (await gateway.begin("rep-1", {"input": "x"}))[0] == 200
    assert await assert_eventually(lambda: gateway.settled("rep-1"), timeout=30) == {
        "status": "resolved",
        "result": FOO_2_STEPS,
    }
    # The Python client waits for its unblock message: the worker settles on A, the
    # client listens on B, so the unblock crosses through the pub/sub channel. No
    # re-registration in the test's time (refresh 60 s) hides a lost unblock.
    data = {"input": "x", "stepMs": 300}
    outcome = await asyncio.to_thread(
        resonate_programs.run_py_client, b.url, "rep-2", data, env={"CLIENT_REFRESH_SECS": "60"}
    )
    assert outcome == {"id": "rep-2", "status": "resolved", "result": FOO_2_STEPS}


async def test_two_replicas_share_the_workers_and_gateways_of_one_run(
    resonate_programs: Programs,
    real_url: str,
    namespace: str,
    ledger: Path,
    http: aiohttp.ClientSession,
) -> None:
    a = resonate_programs.start_serve(real_url, namespace)
    b = resonate_programs.start_serve(real_url, namespace)
    env = {"STEP_LEDGER": str(ledger)}
    on_a = resonate_programs.start_ts_worker(a.url, env=env)
    on_b = resonate_programs.start_ts_worker(b.url, env=env)
    gateways = [
        Gateway(http, resonate_programs.start_ts_gateway(replica.url).url) for replica in (a, b)
    ]
    ids = [f"split-{n}" for n in range(20)]
    for n, id in enumerate(ids):
        assert (await gateways[n % 2].begin(id, {"input": "x", "stepMs": 50}))[0] == 200
    for gateway in gateways:  # either gateway answers for every promise
        settled = await settle_all(gateway, ids)
        assert all(
            body == {"status": "resolved", "result": FOO_2_STEPS} for body in settled.values()
        )
    for id in ids:
        assert steps_of(ledger, id) == [1, 2]  # one execution each
    workers = {e["pid"] for id in ids for e in entries_of(ledger, id)}
    assert workers == {on_a.pid, on_b.pid}  # both replicas' workers took a share


# -- the token ----------------------------------------------------------------------------


async def test_with_a_token_only_healthz_is_open_and_the_sdks_carrying_it_work(
    resonate_programs: Programs,
    real_url: str,
    namespace: str,
    http: aiohttp.ClientSession,
) -> None:
    serve = resonate_programs.start_serve(real_url, namespace, token="s3cret")
    body = request("promise.get", {"id": "x"})
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
        status, reply = await post(http, serve.url, body, headers)
        assert status == 401, headers
        assert reply["head"]["status"] == 401 and isinstance(reply["data"], str)
        async with http.get(f"{serve.url}/poll/worker/p1", headers=headers) as resp:
            assert resp.status == 401
            assert resp.content_type == "application/json"
    async with http.get(f"{serve.url}/healthz") as resp:
        assert (resp.status, await resp.json()) == (200, {"status": "ok"})
    ok = {"Authorization": "Bearer s3cret"}
    status, reply = await post(http, serve.url, body, ok)
    assert (status, reply["head"]["corrId"]) == (404, "c1")
    env = {"RESONATE_TOKEN": "s3cret"}
    resonate_programs.start_ts_worker(serve.url, env=env)
    gateway = Gateway(http, resonate_programs.start_ts_gateway(serve.url, env=env).url)
    assert (await gateway.begin("tok-1", {"input": "x"}))[0] == 200
    assert await assert_eventually(lambda: gateway.settled("tok-1"), timeout=30) == {
        "status": "resolved",
        "result": FOO_2_STEPS,
    }


# -- bad input ----------------------------------------------------------------------------


def _deep(n: int) -> str:
    return "[" * n + "]" * n


BAD_BODIES: list[tuple[str, bytes]] = [
    ("not JSON", b"nope"),
    ("empty", b""),
    ("not UTF-8", b"\xff\xfe{}"),
    ("a JSON array", b"[1, 2]"),
    ("a JSON string", b'"promise.get"'),
    ("no kind", json.dumps({"head": {}, "data": {}}).encode()),
    ("unknown kind", json.dumps(request("promise.explode", {"id": "x"})).encode()),
    ("head not an object", json.dumps({"kind": "promise.get", "head": [], "data": {}}).encode()),
    ("data not an object", json.dumps({"kind": "promise.get", "head": {}, "data": 1}).encode()),
    ("no id", json.dumps(request("promise.get", {})).encode()),
    ("id not a string", json.dumps(request("promise.get", {"id": 5})).encode()),
    ("create without timeoutAt", json.dumps(request("promise.create", {"id": "x"})).encode()),
    (
        "tags not strings",
        json.dumps(
            request("promise.create", {"id": "x", "timeoutAt": 1, "param": {}, "tags": {"a": 1}})
        ).encode(),
    ),
    (
        "settle to an unknown state",
        json.dumps(request("promise.settle", {"id": "x", "state": "odd", "value": {}})).encode(),
    ),
    (
        "acquire with a text version",
        json.dumps(
            request("task.acquire", {"id": "x", "version": "1", "pid": "p", "ttl": 1})
        ).encode(),
    ),
    ("NaN", b'{"kind":"promise.get","head":{},"data":{"id":"x","n":NaN}}'),
    # Python's parser recurses: nesting deeper than its stack must be a 400, not a crash.
    (
        "nested 100000 deep",
        b'{"kind":"promise.get","head":{},"data":{"x":' + _deep(100000).encode() + b"}}",
    ),
    (
        "nested 990 deep",
        b'{"kind":"promise.get","head":{},"data":{"x":' + _deep(990).encode() + b"}}",
    ),
    # A number JSON cannot write back (1e400 is Infinity): it would poison every later read.
    (
        "a number beyond double",
        b'{"kind":"promise.create","head":{},"data":{"id":"inf","timeoutAt":4503599627370495,'
        b'"param":{"headers":{},"data":1e400},"tags":{}}}',
    ),
    # A lone surrogate is valid JSON escape syntax but no UTF-8 text.
    (
        "a lone surrogate in a param",
        b'{"kind":"promise.create","head":{},"data":{"id":"sur","timeoutAt":4503599627370495,'
        b'"param":{"headers":{},"data":"\\ud800"},"tags":{}}}',
    ),
    (
        "a lone surrogate in the head",
        b'{"kind":"promise.get","head":{"corrId":"\\udfff"},"data":{"id":"x"}}',
    ),
    (
        "a lone surrogate in a tag",
        b'{"kind":"promise.create","head":{},"data":{"id":"sur2","timeoutAt":4503599627370495,'
        b'"param":{"headers":{},"data":""},"tags":{"a":"\\udfff"}}}',
    ),
]


async def test_bad_bodies_are_answered_4xx_with_a_json_reason_and_serving_goes_on(
    serve: Program, http: aiohttp.ClientSession
) -> None:
    for name, body in BAD_BODIES:
        status, reply = await post(http, serve.url, body)
        assert 400 <= status < 500, (name, status, reply)
        assert reply["head"]["status"] == status, name
        assert isinstance(reply["data"], str) and reply["data"], name
    # Still serving, and none of those wrote a promise.
    for id in ("inf", "sur", "sur2"):
        assert (await post(http, serve.url, request("promise.get", {"id": id})))[0] == 404
    status, reply = await post(http, serve.url, create("fine"))
    assert (status, reply["data"]["promise"]["state"]) == (200, "pending")
    # An emoji is a surrogate pair in JSON's escapes: valid, and kept.
    status, reply = await post(http, serve.url, create("emoji", note="\U0001f600"))
    assert (status, reply["data"]["promise"]["tags"]) == (200, {"note": "\U0001f600"})


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8", "surrogatepass")).decode()


# Values as an SDK may send them (base64 of JSON text) that Python cannot hold as it holds
# other values: nested deeper than its parser recurses, a lone surrogate in a string, a
# number beyond double. The protocol keeps any value as given; only redpromise's own copy
# (for Redpromise.result) falls back to the value's JSON text.
ODD_VALUES = {
    "deep": _deep(3000),
    "deep-func": '{"func":' + _deep(3000) + "}",
    "deep-message": '{"message":' + _deep(900) + "}",
    "surrogate": '"\\ud800"',
    "surrogate-message": '{"message":"\\udfff"}',
    "beyond-double": "1e400",
}


async def test_values_python_cannot_decode_are_kept_as_given(
    serve: Program, http: aiohttp.ClientSession
) -> None:
    for name, text in ODD_VALUES.items():
        for state in ("resolved", "rejected"):
            id = f"odd-{name}-{state}"
            value = {"headers": {}, "data": _b64(text)}
            created = request(
                "promise.create", {"id": id, "timeoutAt": 2**52, "param": value, "tags": {}}
            )
            assert (await post(http, serve.url, created))[0] == 200, id
            settle = request("promise.settle", {"id": id, "state": state, "value": value})
            status, reply = await post(http, serve.url, settle)
            assert status == 200, (id, reply)
            status, reply = await post(http, serve.url, request("promise.get", {"id": id}))
            assert status == 200, (id, reply)
            record = reply["data"]["promise"]
            assert (record["state"], record["param"], record["value"]) == (state, value, value)


async def test_a_body_over_max_body_is_refused_413(
    serve: Program, http: aiohttp.ClientSession
) -> None:
    huge = json.dumps(create("huge") | {"pad": "x" * (10 * 1024 * 1024)}).encode()
    status, reply = await post(http, serve.url, huge)
    assert status == 413 and isinstance(reply["data"], str)
    assert (await post(http, serve.url, request("promise.get", {"id": "huge"})))[0] == 404
    assert (await post(http, serve.url, create("after-huge")))[0] == 200


async def test_debug_kinds_are_forbidden_without_debug(
    serve: Program, http: aiohttp.ClientSession
) -> None:
    assert (await post(http, serve.url, create("kept")))[0] == 200
    for kind in ("debug.reset", "debug.snap", "debug.tick", "debug.start", "debug.stop"):
        status, reply = await post(http, serve.url, request(kind, {"time": 1}))
        assert (status, reply["head"]["status"]) == (403, 403), kind
        assert isinstance(reply["data"], str)
    status, reply = await post(http, serve.url, request("promise.get", {"id": "kept"}))
    assert (status, reply["data"]["promise"]["state"]) == (200, "pending")  # no reset ran


# -- interop: the SDKs' promises are redpromise promises -----------------------------------


async def test_a_promise_begun_by_the_typescript_gateway_is_read_by_redpromise(
    resonate_programs: Programs,
    serve: Program,
    rp: Redpromise,
    real_url: str,
    namespace: str,
    http: aiohttp.ClientSession,
) -> None:
    resonate_programs.start_ts_worker(serve.url)
    gateway = Gateway(http, resonate_programs.start_ts_gateway(serve.url).url)
    assert (await gateway.begin("inter-1", {"input": "x", "stepMs": 200}))[0] == 200
    # redpromise's client waits on the pending promise and wakes on the protocol settle.
    handle = await rp.get("inter-1")
    assert await handle.result(timeout=30) == FOO_2_STEPS
    # The CLI.
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "redpromise",
            "promises",
            "get",
            "inter-1",
            "--json",
            "--url",
            real_url,
            "--namespace",
            namespace,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cli.returncode == 0, cli.stderr
    shown = json.loads(cli.stdout)
    assert (shown["id"], shown["state"], shown["function"]) == ("inter-1", "resolved", "foo")
    # The dashboard's JSON, from a redpromise gateway on the same namespace.
    app = web.Application()
    add_routes(app, Redpromise(real_url, settings=Settings(namespace=namespace)), "foo")
    async with test_utils.TestClient(test_utils.TestServer(app)) as client:
        detail = await (await client.get("/ui/api/promise", params={"id": "inter-1"})).json()
        assert (detail["id"], detail["state"], detail["function"]) == ("inter-1", "resolved", "foo")
        assert detail["result"] == FOO_2_STEPS
        found = await (await client.get("/ui/api/promises", params={"function": "foo"})).json()
        assert [(r["id"], r["state"]) for r in found["records"]] == [("inter-1", "resolved")]


# -- the Python SDK's schedules ---------------------------------------------------------


async def test_a_python_sdk_schedule_fires_foo_on_the_python_worker_every_second(
    resonate_programs: Programs,
    serve: Program,
    rp: Redpromise,
    ledger: Path,
) -> None:
    worker = resonate_programs.start_py_worker(serve.url, env={"STEP_LEDGER": str(ledger)})
    data = json.dumps({"input": "tick", "steps": 1})
    await asyncio.to_thread(
        resonate_programs.run_py_schedule, serve.url, "create", "every", "* * * * * *", data
    )

    def fired() -> list[str]:
        lines = ledger.read_text().splitlines() if ledger.exists() else []
        ids = sorted({json.loads(line)["id"] for line in lines})
        assert len(ids) >= 2, ids
        return ids

    ids = await assert_eventually(fired, timeout=30)
    await asyncio.to_thread(resonate_programs.run_py_schedule, serve.url, "delete", "every")
    for id in ids:
        assert id.startswith("every-")
        assert all(e["pid"] == worker.pid for e in entries_of(ledger, id))
        handle = await rp.get(id)
        assert await handle.result(timeout=30) == {
            "result": 'Processed: "tick"',
            "steps": ["step 1 done"],
        }
