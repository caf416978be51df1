"""Protocol schedules on Redis (redpromise/store/protocol_schedules.py): the replies of the
reference server, one promise and one step per due run however many replicas fire.

The differential test runs random request sequences (creates, gets, deletes, ticks) through
the reference ``Server`` (``tests/resonate/oracle_schedules.mjs``) and through
:class:`ProtocolSchedules`, and compares every reply and the id, timeout, param and tags of
every promise a tick fires. ``REDPROMISE_SCHEDULE_SCENARIOS`` (default 40) sizes it.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
from pathlib import Path
from typing import Any

import pytest

from redpromise.core.keys import Keys
from redpromise.core.options import Settings
from redpromise.store.protocol_schedules import ProtocolSchedules
from redpromise.store.store import Store
from tests.conftest import Backend
from tests.resonate.env import node_bin, node_dir

ORACLE = Path(__file__).parent / "resonate" / "oracle_schedules.mjs"
SCENARIOS = int(os.environ.get("REDPROMISE_SCHEDULE_SCENARIOS", "40"))

T0 = 1_700_000_000_000  # 2023-11-14 22:13:20 UTC
MINUTE = 60_000
TAGS = {"resonate:target": "poll://any@g"}


class Promises:
    """A fake promise.create: idempotent by id, like ProtocolStore's; records each call."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.made: dict[str, dict[str, Any]] = {}

    async def create(self, data: dict[str, Any]) -> None:
        self.calls.append(data)
        await asyncio.sleep(0)  # let a concurrent replica interleave here
        self.made.setdefault(data["id"], data)


def schedules_of(backend: Backend, namespace: str) -> ProtocolSchedules:
    """A replica: its own client of the shared Redis."""
    store = Store(backend.client(), Keys(namespace, 4), Settings(namespace=namespace))
    return ProtocolSchedules(store)


def create_data(id: str = "s", cron: str = "* * * * *", **over: Any) -> dict[str, Any]:
    data = {
        "id": id,
        "cron": cron,
        "promiseId": "{{.id}}.{{.timestamp}}",
        "promiseTimeout": 5 * MINUTE,
        "promiseParam": {"data": "x", "headers": {}},
        "promiseTags": TAGS,
    }
    data.update(over)
    return data


@pytest.fixture
def sched(backend: Backend, namespace: str) -> ProtocolSchedules:
    return schedules_of(backend, namespace)


async def test_create_answers_the_record_and_get_reads_it(sched: ProtocolSchedules) -> None:
    status, data = await sched.apply("schedule.create", create_data(), T0)
    record = {
        "id": "s",
        "cron": "* * * * *",
        "promiseId": "{{.id}}.{{.timestamp}}",
        "promiseTimeout": 5 * MINUTE,
        "promiseParam": {"data": "x", "headers": {}},
        "promiseTags": TAGS,
        "createdAt": T0,
        "nextRunAt": T0 - T0 % MINUTE + MINUTE,
    }
    assert (status, data) == (200, {"schedule": record})
    assert await sched.apply("schedule.get", {"id": "s"}, T0) == (200, {"schedule": record})
    assert await sched.apply("schedule.get", {"id": "other"}, T0) == (404, "Schedule not found")


async def test_create_is_idempotent_by_id(sched: ProtocolSchedules) -> None:
    _, first = await sched.apply("schedule.create", create_data(), T0)
    again = await sched.apply("schedule.create", create_data(cron="0 0 * * *"), T0 + 5)
    assert again == (200, first)
    # Even with a cron it would refuse: the reference looks the id up first.
    assert await sched.apply("schedule.create", create_data(cron="nope"), T0) == (200, first)


async def test_create_refuses_tags_without_target_and_bad_crons(sched: ProtocolSchedules) -> None:
    no_target = create_data(promiseTags={"a": "b"})
    assert await sched.apply("schedule.create", no_target, T0) == (
        400,
        "promiseTags must include a resonate:target tag",
    )
    for cron in ("61 * * * *", "* * * * * * *", "0 0 31 2 *", "H * * * *"):
        reply = await sched.apply("schedule.create", create_data(cron=cron), T0)
        assert reply == (400, "Invalid cron expression")
    assert await sched.apply("schedule.get", {"id": "s"}, T0) == (404, "Schedule not found")


async def test_delete_removes_the_schedule_and_it_never_fires(sched: ProtocolSchedules) -> None:
    await sched.apply("schedule.create", create_data(), T0)
    assert await sched.apply("schedule.delete", {"id": "s"}, T0) == (200, {})
    assert await sched.apply("schedule.delete", {"id": "s"}, T0) == (404, "Schedule not found")
    promises = Promises()
    assert await sched.fire_due(T0 + 10 * MINUTE, promises.create) == 0
    assert promises.calls == []


async def test_search_is_not_implemented(sched: ProtocolSchedules) -> None:
    assert await sched.apply("schedule.search", {}, T0) == (501, "Not implemented")


async def test_a_due_run_creates_its_promise_then_advances(sched: ProtocolSchedules) -> None:
    await sched.apply("schedule.create", create_data(), T0)
    run = T0 - T0 % MINUTE + MINUTE
    promises = Promises()
    assert await sched.fire_due(run - 1, promises.create) == 0
    assert await sched.fire_due(run, promises.create) == 1
    assert promises.calls == [
        {
            "id": f"s.{run}",
            "timeoutAt": run + 5 * MINUTE,
            "param": {"data": "x", "headers": {}},
            "tags": {**TAGS, "resonate:schedule": "s"},
        }
    ]
    _, data = await sched.apply("schedule.get", {"id": "s"}, run)
    assert data["schedule"]["lastRunAt"] == run
    assert data["schedule"]["nextRunAt"] == run + MINUTE
    assert await sched.fire_due(run, promises.create) == 0  # not due again


async def test_missed_runs_fire_one_step_per_call_like_the_reference(
    sched: ProtocolSchedules,
) -> None:
    await sched.apply("schedule.create", create_data(), T0)
    first = T0 - T0 % MINUTE + MINUTE
    promises = Promises()
    late = first + 10 * MINUTE
    for _ in range(3):
        assert await sched.fire_due(late, promises.create) == 1
    assert [c["id"] for c in promises.calls] == [f"s.{first + i * MINUTE}" for i in range(3)]
    _, data = await sched.apply("schedule.get", {"id": "s"}, late)
    assert data["schedule"]["nextRunAt"] == first + 3 * MINUTE


async def test_concurrent_replicas_fire_each_run_exactly_once(
    backend: Backend, namespace: str
) -> None:
    a, b = schedules_of(backend, namespace), schedules_of(backend, namespace)
    ids = [f"s{i}" for i in range(24)]  # spread over the 4 partitions
    for id in ids:
        await a.apply("schedule.create", create_data(id, "*/10 * * * * *"), T0)
    promises = Promises()
    first = T0 - T0 % 10_000 + 10_000
    advanced = 0
    for step in range(3):
        now = first + step * 10_000
        got = await asyncio.gather(
            a.fire_due(now, promises.create), b.fire_due(now, promises.create)
        )
        advanced += sum(got)
    assert advanced == 3 * len(ids)
    want = {f"{id}.{first + step * 10_000}" for id in ids for step in range(3)}
    assert set(promises.made) == want
    for id in ids:
        _, data = await b.apply("schedule.get", {"id": id}, first)
        assert data["schedule"]["nextRunAt"] == first + 30_000


async def test_now_none_reads_redis_clock(sched: ProtocolSchedules) -> None:
    status, data = await sched.apply("schedule.create", create_data(), None)
    assert status == 200
    record = data["schedule"]
    assert record["createdAt"] < record["nextRunAt"] <= record["createdAt"] + MINUTE
    assert record["nextRunAt"] % MINUTE == 0
    assert await sched.fire_due(None, Promises().create) == 0


# ------------------------------------------------------------------ differential

_CRONS = ["*/5 * * * * *", "* * * * *", "*/7 * * * *", "0 * * * *", "@hourly", "30 */2 * * * *",
          "0 0 * * MON", "15,45 * * * * *", "0 0 L * *", "61 * * * *", "* * *", "nope"]  # fmt: skip
# Each names its schedule, so two schedules never race for one promise id.
_TEMPLATES = ["{{.id}}.{{.timestamp}}", "p-{{.id}}-{{.timestamp}}", "{{.id}}", "{{.id}}{{.id}}"]


def _scenario(r: random.Random) -> list[dict[str, Any]]:
    now = T0 + r.randint(0, 3_600_000)
    steps: list[dict[str, Any]] = []
    ids = ["a", "b", "c.1", "d"]
    for _ in range(r.randint(5, 25)):
        now += r.choice([0, 1, 999, 5_000, 60_000, 3_600_000, r.randint(0, 7_200_000)])
        kind = r.choices(["create", "get", "delete", "tick"], [4, 2, 1, 5])[0]
        id = r.choice(ids)
        if kind == "create":
            tags = dict(TAGS) if r.random() < 0.9 else {"other": "x"}
            data = {
                "id": id,
                "cron": r.choice(_CRONS),
                "promiseId": r.choice(_TEMPLATES),
                "promiseTimeout": r.choice([0, 1_000, 60_000, 86_400_000]),
                "promiseParam": {"data": r.choice(["", "eA==", None]), "headers": {"h": "1"}},
                "promiseTags": tags,
            }
            req = {"kind": "schedule.create", "head": {}, "data": data}
        elif kind == "tick":
            req = {"kind": "debug.tick", "head": {}, "data": {"time": now}}
        else:
            req = {"kind": f"schedule.{kind}", "head": {}, "data": {"id": id}}
        steps.append({"now": now, "req": req})
    return steps


def _fired(promise: dict[str, Any]) -> dict[str, Any]:
    return {k: promise[k] for k in ("id", "timeoutAt", "param", "tags")}


async def test_schedules_agree_with_the_reference_server(backend: Backend) -> None:
    r = random.Random(int(os.environ.get("REDPROMISE_SCHEDULE_SEED", "7")))
    scenarios = [_scenario(r) for _ in range(SCENARIOS)]
    proc = subprocess.run(
        [str(node_bin()), str(ORACLE)],
        input="".join(json.dumps(s) + "\n" for s in scenarios),
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "TZ": "UTC", "RESONATE_NODE_MODULES": str(node_dir() / "node_modules")},
        timeout=600,
    )
    expected = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(expected) == len(scenarios)
    fired = 0
    for n, (steps, replies) in enumerate(zip(scenarios, expected, strict=True)):
        sched = schedules_of(backend, f"diff{os.getpid()}x{n}x{r.random():.6f}")
        for i, (step, want) in enumerate(zip(steps, replies, strict=True)):
            promises = Promises()
            kind, data, now = step["req"]["kind"], step["req"]["data"], step["now"]
            if kind == "debug.tick":
                await sched.fire_due(data["time"], promises.create)
                got: Any = (200, [])
            else:
                got = await sched.apply(kind, data, now)
            where = f"scenario {n} step {i}: {step}"
            assert got == (want["status"], want["data"]), where
            # Promises made by earlier steps: ours calls create again (idempotent); the
            # reference's tick also settles timed-out ones (other promise.set changes).
            before = _made_before(replies[:i])
            # A promise created timed out is set twice (created, settled): keep the first.
            first: dict[str, dict[str, Any]] = {}
            for p in want["fired"]:
                first.setdefault(p["id"], _fired(p))
            theirs = sorted(
                (p for p in first.values() if p["id"] not in before), key=lambda p: p["id"]
            )
            ours = sorted(
                (p for p in promises.made.values() if p["id"] not in before), key=lambda p: p["id"]
            )
            if kind == "debug.tick":
                assert ours == theirs, where
                fired += len(theirs)
    assert fired > SCENARIOS  # the scenarios do fire schedules


def _made_before(replies: list[dict[str, Any]]) -> set[str]:
    return {p["id"] for reply in replies for p in reply["fired"]}
