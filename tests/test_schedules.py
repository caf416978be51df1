"""Schedules in redpromise's own API (redpromise/client/schedules.py, store/schedules.py):
stored beside the protocol's schedules, each run one redpromise promise ``<id>.<run ms>``
run by a worker, on fakeredis and on a real Redis."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from redpromise import ConfigurationError, Context, InvalidCron, InvalidId, Redpromise
from redpromise.store.protocol import ProtocolStore
from redpromise.store.protocol_schedules import ProtocolSchedules
from tests.helpers import assert_eventually

MakeRp = Callable[..., Awaitable[Redpromise]]


async def _no_protocol_create(data: dict[str, Any]) -> None:
    raise AssertionError(f"a redpromise schedule fired a protocol promise: {data}")


async def test_schedule_stores_a_record_that_list_get_and_the_protocol_show(
    make_rp: MakeRp,
) -> None:
    rp = await make_rp()
    made = await rp.schedule("nightly", "0 3 * * *", "report", 1, "two", target="reports", x=3)
    assert made["id"] == "nightly" and made["kind"] == "redpromise"
    assert (made["function"], made["group"]) == ("report", "reports")
    assert (made["args"], made["kwargs"]) == ([1, "two"], {"x": 3})
    assert made["timeout_ms"] == int(rp.settings.timeout.total_seconds() * 1000)
    assert made["next_run_at"] % 86_400_000 == 3 * 3_600_000
    assert made["next_run_at"] > made["created_at"] and made["last_run_at"] is None
    assert await rp.schedule_get("nightly") == made
    assert await rp.schedules() == [made]
    record = await ProtocolSchedules(rp.store).read("nightly")
    assert record is not None
    assert record["cron"] == "0 3 * * *" and record["nextRunAt"] == made["next_run_at"]
    assert record["promiseId"] == "{{.id}}.{{.timestamp}}"
    assert record["promiseTags"] == {"redpromise:function": "report", "redpromise:group": "reports"}


async def test_schedule_is_idempotent_by_id(make_rp: MakeRp) -> None:
    rp = await make_rp()
    first = await rp.schedule("s", "* * * * *", "f", target="poll://any@g", timeout=30)
    again = await rp.schedule("s", "0 0 * * *", "other", 9)
    assert again == first and first["group"] == "g" and first["timeout_ms"] == 30_000
    assert len(await rp.schedules()) == 1


async def test_schedule_refuses_bad_input_before_writing(make_rp: MakeRp) -> None:
    rp = await make_rp()
    with pytest.raises(InvalidCron):
        await rp.schedule("s", "not a cron", "f")
    with pytest.raises(InvalidCron):
        await rp.schedule("s", "0 0 31 2 *", "f")  # never fires
    with pytest.raises(InvalidId):
        await rp.schedule("", "* * * * *", "f")
    with pytest.raises(InvalidId):
        await rp.schedule("bad\nid", "* * * * *", "f")
    with pytest.raises(InvalidId):
        await rp.schedule("s", "* * * * *", "no spaces allowed")
    with pytest.raises(ConfigurationError):
        await rp.schedule("s", "* * * * *", "f", target="poll://uni@g/p")
    with pytest.raises(ConfigurationError):
        await rp.schedule("s", "* * * * *", "f", timeout=-1)
    assert await rp.schedules() == []


async def test_unschedule_deletes_once_and_nothing_fires_after(make_rp: MakeRp) -> None:
    rp = await make_rp()
    made = await rp.schedule("s", "* * * * * *", "f")
    assert await rp.unschedule("s") is True
    assert await rp.unschedule("s") is False
    assert await rp.schedule_get("s") is None and await rp.schedules() == []
    fired = await ProtocolSchedules(rp.store).fire_due(made["next_run_at"], _no_protocol_create)
    assert fired == 0


async def test_a_due_run_makes_one_redpromise_promise_a_worker_resolves(make_rp: MakeRp) -> None:
    worker = await make_rp()
    seen: list[tuple[Any, ...]] = []

    @worker.register
    async def tally(ctx: Context, a: int, b: str, *, c: bool) -> str:
        seen.append((a, b, c))
        return f"{a}{b}{c}"

    await worker.start()
    rp = await make_rp()
    made = await rp.schedule("tick", "0 * * * *", "tally", 1, "x", c=True, timeout=60)
    run = made["next_run_at"]
    sched = ProtocolSchedules(rp.store)
    # Two tickers on the same run (the second reads it due too): one promise, one step.
    assert await sched.fire_due(run, _no_protocol_create) == 1
    handle = await rp.get(f"tick.{run}")
    assert await handle.result(timeout=10) == "1xTrue"
    info = (await rp.search(tags={"redpromise:schedule": "tick"})).records
    assert [r.id for r in info] == [f"tick.{run}"] and info[0].group == "worker"
    after = await rp.schedule_get("tick")
    assert after is not None
    assert after["last_run_at"] == run and after["next_run_at"] == run + 3_600_000
    assert await sched.fire_due(run, _no_protocol_create) == 0  # not due again
    assert seen == [(1, "x", True)]


async def test_workers_fire_schedules_of_both_kinds_by_themselves(make_rp: MakeRp) -> None:
    worker = await make_rp()

    @worker.register
    async def ping(ctx: Context) -> str:
        return "pong"

    await worker.start()
    rp = await make_rp()
    await rp.schedule("ours", "* * * * * *", "ping")
    protocol = ProtocolStore(rp.store, ProtocolSchedules(rp.store))
    status, _ = await protocol.apply(
        "schedule.create",
        {
            "id": "theirs",
            "cron": "* * * * * *",
            "promiseId": "theirs.{{.timestamp}}",
            "promiseTimeout": 60_000,
            "promiseTags": {"resonate:target": "poll://any@g"},
        },
        None,
    )
    assert status == 200

    async def both_ran() -> bool:
        ours = await rp.schedule_get("ours")
        theirs = await rp.schedule_get("theirs")
        assert ours is not None and theirs is not None and theirs["kind"] == "protocol"
        if ours["last_run_at"] is None or theirs["last_run_at"] is None:
            return False
        handle = await rp.get(f"ours.{ours['last_run_at']}")
        assert await handle.result(timeout=5) == "pong"
        got, reply = await protocol.apply(
            "promise.get", {"id": f"theirs.{theirs['last_run_at']}"}, None
        )
        return got == 200 and reply["promise"]["tags"]["resonate:schedule"] == "theirs"

    await assert_eventually(both_ran, timeout=15)


async def test_serves_tick_fires_a_redpromise_schedule_as_a_redpromise_promise(
    make_rp: MakeRp,
) -> None:
    rp = await make_rp()
    made = await rp.schedule("s", "* * * * *", "f", 5, target="g")
    run = made["next_run_at"]
    protocol = ProtocolStore(rp.store, ProtocolSchedules(rp.store))
    await protocol.tick(run)  # what each `redpromise serve` replica runs every second
    record = await rp.store.read(f"s.{run}")
    assert record is not None and (record.func, record.group) == ("f", "g")
    assert record.pending
    after = await rp.schedule_get("s")
    assert after is not None and after["last_run_at"] == run
