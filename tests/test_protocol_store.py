"""ProtocolStore's transitions of the Resonate protocol, each kind's main paths, on
fakeredis and a real Redis (the differential test, test_protocol_conformance.py, checks
them against the reference server at random)."""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from redpromise import Redpromise
from redpromise.client.inspect import Inspector
from redpromise.core.errors import PromiseRejected, PromiseTimedOut
from redpromise.core.keys import Keys
from redpromise.core.options import Settings
from redpromise.store.protocol import ProtocolStore
from redpromise.store.store import Store

ANY = "poll://any@g"
UNI = "poll://uni@g/p1"
HEAD = {"corrId": "c1", "version": "2026-04-01"}


@pytest.fixture
def ps(redis: Redis, namespace: str) -> ProtocolStore:
    return ProtocolStore(Store(redis, Keys(namespace), Settings(namespace=namespace)))


def b64(value: Any) -> str:
    return base64.b64encode(json.dumps(value).encode()).decode()


def create(id: str, timeout_at: int = 10**9, **tags: str) -> dict[str, Any]:
    return {"id": id, "timeoutAt": timeout_at, "tags": tags,
            "param": {"headers": {}, "data": b64({"func": "foo", "args": [1], "version": 1})}}


def target(id: str, timeout_at: int = 10**9, **tags: str) -> dict[str, Any]:
    return create(id, timeout_at, **{"resonate:target": ANY, **tags})


def settle(id: str, state: str = "resolved", value: Any = 42) -> dict[str, Any]:
    return {"id": id, "state": state, "value": {"headers": {}, "data": b64(value)}}


async def stream(ps: ProtocolStore, id: str, group: str = "g") -> list[dict[bytes, bytes]]:
    key = f"{ps.keys.tag(ps.keys.family_partition(id))}:q:{group}"
    return [fields for _, fields in await ps.store.redis.xrange(key)]


# ---------------------------------------------------------------- promises


async def test_create_is_idempotent_and_get_reads_the_record(ps: ProtocolStore) -> None:
    status, data = await ps.apply("promise.create", create("a"), 1000)
    assert status == 200
    rec = data["promise"]
    assert rec == {"id": "a", "state": "pending", "param": create("a")["param"], "value": {},
                   "tags": {}, "timeoutAt": 10**9, "createdAt": 1000}
    again = await ps.apply("promise.create", create("a", 5), 2000)
    assert again == (200, {"promise": rec})
    assert await ps.apply("promise.get", {"id": "a"}, 3000) == (200, {"promise": rec})
    assert await ps.apply("promise.get", {"id": "zz"}, 3000) == (404, "Promise not found")


async def test_create_with_a_target_makes_a_pending_task_and_an_execute_message(
    ps: ProtocolStore,
) -> None:
    await ps.apply("promise.create", target("a"), 1000)
    assert await ps.apply("task.get", {"id": "a"}, 1000) == (
        200, {"task": {"id": "a", "version": 0, "state": "pending", "resumes": []}})
    assert await stream(ps, "a") == [{b"id": b"a", b"k": b"e", b"v": b"0"}]
    snap = await ps.snap()
    assert snap["promiseTimeouts"] == [{"id": "a", "timeout": 10**9}]
    assert snap["taskTimeouts"] == [{"id": "a", "type": 0, "timeout": 31000}]


async def test_create_past_its_timeout_is_born_settled(ps: ProtocolStore) -> None:
    _, data = await ps.apply("promise.create", target("t", 500, **{"resonate:timer": "true"}),
                             1000)
    assert data["promise"]["state"] == "resolved"
    assert (data["promise"]["createdAt"], data["promise"]["settledAt"]) == (500, 500)
    _, task = await ps.apply("task.get", {"id": "t"}, 1000)
    assert task["task"]["state"] == "fulfilled"


async def test_settle_then_settle_again_answers_the_first_outcome(ps: ProtocolStore) -> None:
    await ps.apply("promise.create", create("a"), 1000)
    status, data = await ps.apply("promise.settle", settle("a"), 2000)
    assert status == 200 and data["promise"]["settledAt"] == 2000
    assert data["promise"]["value"] == settle("a")["value"]
    again = await ps.apply("promise.settle", settle("a", "rejected"), 3000)
    assert again == (200, data)
    assert await ps.apply("promise.settle", settle("zz"), 3000) == (404, "Promise not found")


async def test_a_read_past_the_timeout_settles_the_promise_eagerly(ps: ProtocolStore) -> None:
    await ps.apply("promise.create", create("a", 5000), 1000)
    _, data = await ps.apply("promise.get", {"id": "a"}, 5000)
    assert data["promise"]["state"] == "rejected_timedout"
    assert data["promise"]["settledAt"] == 5000


async def test_register_callback_checks_both_sides(ps: ProtocolStore) -> None:
    await ps.apply("promise.create", create("a:1"), 1000)
    await ps.apply("promise.create", create("b"), 1000)
    cb = "promise.register_callback"
    assert await ps.apply(cb, {"awaited": "a:1", "awaiter": "a:1"}, 1) == (
        400, "Awaited and awaiter must be different")
    assert await ps.apply(cb, {"awaited": "x", "awaiter": "b"}, 1) == (
        404, "Awaited promise not found")
    assert await ps.apply(cb, {"awaited": "a:1", "awaiter": "x"}, 1) == (
        422, "Awaiter promise not found")
    assert await ps.apply(cb, {"awaited": "a:1", "awaiter": "b"}, 1) == (
        422, "Awaiter has no address")
    await ps.apply("promise.create", target("a"), 1000)
    status, _ = await ps.apply(cb, {"awaited": "a:1", "awaiter": "a"}, 1000)
    assert status == 200
    assert (await ps.snap())["callbacks"] == [{"awaiter": "a", "awaited": "a:1"}]


async def test_a_listener_gets_one_unblock_message_on_settlement(ps: ProtocolStore) -> None:
    await ps.apply("promise.create", create("a"), 1000)
    assert await ps.apply("promise.register_listener", {"awaited": "a", "address": UNI},
                          1000) == (422, "Awaited promise is not awaitable")
    await ps.apply("promise.create", create("g", **{"resonate:scope": "global"}), 1000)
    pubsub = ps.store.redis.pubsub()
    await pubsub.subscribe(ps.keys.rs_channel())
    await pubsub.get_message(timeout=1)
    status, _ = await ps.apply("promise.register_listener", {"awaited": "g", "address": UNI},
                               1000)
    assert status == 200
    await ps.apply("promise.settle", settle("g"), 2000)
    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2)
    assert msg is not None and msg["data"] == f"u\n0\n{UNI}\ng".encode()
    assert (await ps.snap())["listeners"] == []
    await pubsub.aclose()


# ---------------------------------------------------------------- tasks


async def test_acquire_suspend_resume_and_fulfill(ps: ProtocolStore) -> None:
    await ps.apply("promise.create", target("a", **{"resonate:branch": "a"}), 1000)
    status, data = await ps.apply("task.acquire", {"id": "a", "version": 0, "pid": "p",
                                                   "ttl": 5000}, 1000)
    assert status == 200
    assert data["task"] == {"id": "a", "version": 1, "state": "acquired", "resumes": [],
                            "pid": "p", "ttl": 5000}
    fence = {"id": "a", "version": 1, "action": {"kind": "promise.create", "head": HEAD,
             "data": create("a:1", **{"resonate:branch": "a"})}}
    status, data = await ps.apply("task.fence", fence, 1100)
    assert status == 200 and data["preload"] == []
    assert data["action"]["head"] == {"corrId": "c1", "status": 200, "version": "2026-04-01"}
    assert data["action"]["data"]["promise"]["id"] == "a:1"
    suspend = {"id": "a", "version": 1, "actions": [
        {"kind": "promise.register_callback", "head": HEAD,
         "data": {"awaited": "a:1", "awaiter": "a"}}]}
    assert await ps.apply("task.suspend", suspend, 1200) == (200, {})
    await ps.apply("promise.settle", settle("a:1"), 1300)
    _, data = await ps.apply("task.get", {"id": "a"}, 1300)
    assert data["task"] == {"id": "a", "version": 1, "state": "pending", "resumes": ["a:1"]}
    assert [m[b"k"] for m in await stream(ps, "a")] == [b"e", b"e"]
    status, data = await ps.apply("task.acquire", {"id": "a", "version": 1, "pid": "p",
                                                   "ttl": 5000}, 1400)
    assert [p["id"] for p in data["preload"]] == ["a:1"]
    fulfill = {"id": "a", "version": 2, "action": {"kind": "promise.settle", "head": HEAD,
               "data": settle("a", value={"ok": True})}}
    status, data = await ps.apply("task.fulfill", fulfill, 1500)
    assert status == 200 and data["promise"]["state"] == "resolved"
    _, data = await ps.apply("task.get", {"id": "a"}, 1500)
    assert data["task"]["state"] == "fulfilled"


async def test_suspend_on_a_settled_promise_answers_300(ps: ProtocolStore) -> None:
    await ps.apply("task.create", {"pid": "p", "ttl": 5000, "action": {
        "kind": "promise.create", "head": HEAD, "data": target("a")}}, 1000)
    await ps.apply("promise.create", create("a:1"), 1000)
    await ps.apply("promise.settle", settle("a:1"), 1000)
    suspend = {"id": "a", "version": 1, "actions": [{"data": {"awaited": "a:1",
                                                              "awaiter": "a"}}]}
    assert await ps.apply("task.suspend", suspend, 1100) == (300, {"preload": []})
    bad = {"id": "a", "version": 1, "actions": []}
    assert await ps.apply("task.suspend", bad, 1100) == (400, "Actions list must not be empty")


async def test_task_create_acquires_at_version_1_and_refuses_twice(ps: ProtocolStore) -> None:
    req = {"pid": "p", "ttl": 5000, "action": {"kind": "promise.create", "head": HEAD,
                                               "data": target("a")}}
    status, data = await ps.apply("task.create", req, 1000)
    assert status == 200 and data["task"]["version"] == 1
    assert await ps.apply("task.create", req, 1000) == (409, "Task already exists")
    no_target = {"pid": "p", "ttl": 1, "action": {"data": create("b")}}
    assert await ps.apply("task.create", no_target, 1000) == (
        400, "Action must have a resonate:target tag")


async def test_release_halt_continue_and_heartbeat(ps: ProtocolStore) -> None:
    await ps.apply("promise.create", target("a"), 1000)
    await ps.apply("task.acquire", {"id": "a", "version": 0, "pid": "p", "ttl": 5000}, 1000)
    assert await ps.apply("task.release", {"id": "a", "version": 0}, 1000) == (
        409, "Version mismatch")
    assert await ps.apply("task.heartbeat", {"pid": "p", "tasks": [
        {"id": "a", "version": 1}]}, 3000) == (200, {})
    assert (await ps.snap())["taskTimeouts"] == [{"id": "a", "type": 1, "timeout": 8000}]
    assert await ps.apply("task.release", {"id": "a", "version": 1}, 3000) == (200, {})
    assert await ps.apply("task.halt", {"id": "a"}, 3000) == (200, {})
    assert (await ps.snap())["taskTimeouts"] == []
    assert await ps.apply("task.continue", {"id": "a"}, 3000) == (200, {})
    assert await ps.apply("task.continue", {"id": "a"}, 3000) == (409, "Task is not halted")


async def test_tick_times_out_promises_and_releases_lapsed_leases(ps: ProtocolStore) -> None:
    await ps.apply("promise.create", target("a", 50_000), 1000)
    await ps.apply("promise.create", target("b"), 1000)
    await ps.apply("task.acquire", {"id": "b", "version": 0, "pid": "p", "ttl": 5000}, 1000)
    assert await ps.tick(10_000) == 1  # b's lease lapsed (a's retry is due at 31 s)
    _, b = await ps.apply("task.get", {"id": "b"}, 10_000)
    assert b["task"] == {"id": "b", "version": 1, "state": "pending", "resumes": []}
    assert await ps.tick(60_000) == 2  # a timed out; b's retry (due at 40 s) sent again
    snap = await ps.snap()
    assert [p["state"] for p in snap["promises"]] == ["rejected_timedout", "pending"]


async def test_bad_shapes_answer_400_with_a_text(ps: ProtocolStore) -> None:
    for kind, data in [
        ("promise.create", {"id": "a"}),
        ("promise.create", {"id": "a", "timeoutAt": "soon", "tags": {}}),
        ("promise.settle", {"id": "a", "state": "pending", "value": {}}),
        ("task.acquire", {"id": "a"}),
        ("task.fence", {"id": "a", "version": 1, "action": {"kind": "x", "head": HEAD}}),
        ("task.heartbeat", {"pid": "p", "tasks": [{"id": 3}]}),
        ("promise.get", []),
        ("nope", {}),
    ]:
        status, text = await ps.apply(kind, data, 1000)  # type: ignore[arg-type]
        assert status == 400 and isinstance(text, str), (kind, data)
    assert await ps.apply("promise.search", {}, 1) == (501, "Not implemented")
    assert await ps.apply("schedule.get", {"id": "s"}, 1) == (501, "Not implemented")


async def test_reset_empties_the_namespace(ps: ProtocolStore) -> None:
    await ps.apply("promise.create", target("a"), 1000)
    await ps.reset()
    assert (await ps.snap())["promises"] == []


# ---------------------------------------------------------------- redpromise's view


async def test_redpromise_reads_a_resolved_protocol_promise_as_its_json(
    ps: ProtocolStore, make_rp: Callable[..., Awaitable[Redpromise]]
) -> None:
    rp = await make_rp()
    await ps.apply("promise.create", target("root"), 1000)
    await ps.apply("promise.settle", settle("root", value={"n": [1, 2]}), 2000)
    handle = await rp.get("root")
    assert await handle.result() == {"n": [1, 2]}
    counts = await rp.counts()
    assert counts is not None


async def test_redpromise_sees_protocol_rejections_and_timeouts(
    ps: ProtocolStore, make_rp: Callable[..., Awaitable[Redpromise]]
) -> None:
    rp = await make_rp()
    await ps.apply("promise.create", create("r"), 1000)
    await ps.apply("promise.settle", settle("r", "rejected", {"message": "boom"}), 2000)
    with pytest.raises(PromiseRejected, match="boom"):
        await (await rp.get("r")).result()
    await ps.apply("promise.create", create("t", 1500), 1000)
    await ps.apply("promise.get", {"id": "t"}, 2000)
    with pytest.raises(PromiseTimedOut):
        await (await rp.get("t")).result()


async def test_the_inspector_shows_a_protocol_promise_as_the_sdk_passed_it(
    ps: ProtocolStore, make_rp: Callable[..., Awaitable[Redpromise]]
) -> None:
    # The CLI's `promises get` and the dashboard's detail read through the Inspector: a
    # protocol promise shows the SDK's function, arguments and tags, not the internal
    # encoding (no redpromise `args` field exists for it).
    rp = await make_rp()
    data = target("insp", 4 * 10**12, **{"resonate:origin": "insp"})
    data["param"] = {"headers": {}, "data": b64({"func": "foo", "args": [{"x": 1}, "y"]})}
    assert (await ps.apply("promise.create", data, None))[0] == 200
    detail = await Inspector(rp).detail("insp")
    assert detail["function"] == "foo"
    assert detail["protocol"] == "resonate"
    assert detail["args"] == {"args": [{"x": 1}, "y"], "kwargs": {}}
    assert detail["tags"] == {"resonate:target": ANY, "resonate:origin": "insp"}
    assert (await ps.apply("promise.settle", settle("insp", value={"ok": True}), None))[0] == 200
    settled = await Inspector(rp).detail("insp")
    assert (settled["state"], settled["result"]) == ("resolved", {"ok": True})
