"""Every Lua transition through ``Store``, on fakeredis and a real Redis: writes, no-ops,
refusals, and the memory bound of a completed promise."""

from __future__ import annotations

from datetime import timedelta

import pytest
from redis.asyncio import Redis

from redpromise.core.codec import decode, decode_error
from redpromise.core.keys import Keys
from redpromise.core.options import Settings
from redpromise.store.store import Store
from tests.helpers import assert_eventually
from tests.storeops import (
    HOUR_MS,
    G,
    acquire,
    claim,
    create,
    deliver,
    dkey,
    fields,
    heartbeat,
    pel,
    promote,
    running,
    stream,
    text,
    tkey,
    xrange,
)


@pytest.fixture
def store(redis: Redis, namespace: str) -> Store:
    return Store(redis, Keys(namespace), Settings(namespace=namespace, max_deliveries=3))


# ---------------------------------------------------------------- create


async def test_create_writes_pending_hash_one_entry_and_timeout(store: Store) -> None:
    created, state, timeout_at = await create(store, "p1")
    assert (created, state) == (True, "pending")
    f = await fields(store, "p1")
    assert f["state"] == b"pending" and f["group"] == b"g" and "version" not in f
    assert int(f["timeout_at"]) - int(f["created_at"]) == HOUR_MS
    assert await xrange(store, stream(store, "p1")) == [(text(f["entry"]), {b"id": b"p1"})]
    assert await store.redis.zscore(tkey(store, "p1"), "g|p1") == timeout_at


ALWAYS = ["state", "func", "args", "group", "created_at", "timeout_at"]


async def test_create_stores_no_field_that_holds_its_default(store: Store) -> None:
    # The record layout: version, attempt, deliveries (0), an empty entry, tags and retry
    # ('') are left out (every reader takes a missing field as its default), so the
    # listpack every later transition scans is as short as it can be.
    await create(store, "dispatched")
    assert list(await fields(store, "dispatched")) == [*ALWAYS, "entry"]
    await create(store, "latent", group="")
    assert list(await fields(store, "latent")) == ALWAYS
    await store.create("full", "fn", b"\x90", G, HOUR_MS, b"tags", b"retry")
    f = await fields(store, "full")
    assert list(f) == [*ALWAYS, "entry", "tags", "retry"]
    assert (f["tags"], f["retry"]) == (b"tags", b"retry")
    await store.create("latent-tagged", "fn", b"\x90", "", HOUR_MS, b"tags", b"")
    assert list(await fields(store, "latent-tagged")) == [*ALWAYS, "tags"]


async def test_create_reads_the_clock_from_its_stream_entry_id(store: Store) -> None:
    await create(store, "p1")
    f = await fields(store, "p1")
    assert f["created_at"] == f["entry"].split(b"-")[0]
    # Entry ids only grow within a stream: behind a last id from the future (a clock that
    # went back), created_at is that id's time, ahead of TIME, as create.lua documents.
    future = int(f["created_at"]) + HOUR_MS
    await store.redis.xadd(stream(store, "p2"), {"id": "x"}, id=f"{future}-0")
    await create(store, "p2", timeout_ms=5)
    f2 = await fields(store, "p2")
    assert f2["entry"] == f"{future}-1".encode()
    assert (int(f2["created_at"]), int(f2["timeout_at"])) == (future, future + 5)


async def test_times_are_stored_as_plain_integer_text(store: Store) -> None:
    # The scripts format millisecond times themselves (includes/text.lua) instead of
    # letting Redis print a Lua number: the stored text must be what Redis would store.
    await create(store, "lat", group="")
    _, v = await running(store, "p1")
    await store.complete("p1", G, v, "resolved", b"v")
    await store.complete("lat", None, None, "resolved", b"v")
    for id in ("lat", "p1"):
        f = await fields(store, id)
        for name in ("created_at", "timeout_at", "completed_at"):
            assert f[name].isdigit() and str(int(f[name])).encode() == f[name], (id, name)
        k = store.keys.partition(id)
        member = f"{text(f['group'])}|{id}"
        assert await store.redis.zscore(store.keys.index(k, "resolved"), member) == int(
            f["created_at"]
        )


async def test_create_same_id_again_writes_nothing(store: Store) -> None:
    first = await create(store, "p1", arg=1)
    before = await fields(store, "p1")
    again = await create(store, "p1", arg=2, timeout_ms=5)
    assert again == (False, "pending", first[2])
    assert await fields(store, "p1") == before
    assert await store.redis.xlen(stream(store, "p1")) == 1


async def test_create_latent_promise_dispatches_nothing(store: Store) -> None:
    assert (await create(store, "p1", group=""))[0] is True
    assert "entry" not in await fields(store, "p1")
    assert await store.redis.exists(stream(store, "p1", "")) == 0
    assert await store.redis.zscore(tkey(store, "p1"), "|p1") is not None


# ---------------------------------------------------------------- acquire


async def test_acquire_bumps_version_and_records_owner(store: Store) -> None:
    await create(store, "p1")
    entry = await deliver(store, "p1")
    res = await acquire(store, "p1", entry)
    assert res[:3] == [1, 1, b"fn"] and res[7] == 1 and res[8] == []
    assert (await fields(store, "p1"))["owner"] == b"c1"


async def test_second_acquire_of_same_entry_bumps_again(store: Store) -> None:
    entry, v1 = await running(store, "p1")
    await store.checkpoint("p1", v1, 1, b"step-one")
    await claim(store, "p1", entry, "c2")
    res = await acquire(store, "p1", entry, "c2")
    assert res[0] == 1 and res[1] == v1 + 1 and res[7] == 2
    assert res[8] == [b"1", b"step-one"]
    assert (await fields(store, "p1"))["owner"] == b"c2"


async def test_acquire_starts_the_lease_in_redis_when_it_runs_not_at_delivery(
    store: Store,
) -> None:
    # Found by the chaos run in CI: a worker whose acquire went out well after its
    # XREADGROUP delivered the entry counted its lease from the acquire, while Redis
    # counted it from the delivery; another worker reclaimed it inside the first one's
    # lease and step 1 ran twice. Acquiring restarts the entry's idle time, so the lease
    # Redis enforces never ends before the one the worker counts.
    await create(store, "p1")
    entry = await deliver(store, "p1")

    async def idle_for_a_while() -> int:
        [p] = await pel(store, "p1")
        return int(p["time_since_delivered"]) if p["time_since_delivered"] >= 300 else 0

    idle_before = await assert_eventually(idle_for_a_while)
    assert (await acquire(store, "p1", entry))[0] == 1
    [p] = await pel(store, "p1")
    assert p["time_since_delivered"] < idle_before - 200
    assert (p["times_delivered"], text(p["consumer"])) == (1, "c1")


async def test_acquire_of_an_entry_another_consumer_reclaimed_is_refused(store: Store) -> None:
    # c1's delivery is reclaimed by c2 (XAUTOCLAIM after the lease) before c1's acquire
    # runs: c1 must neither bump the version nor take the entry back.
    await create(store, "p1")
    entry = await deliver(store, "p1")
    await claim(store, "p1", entry, "c2")
    assert (await acquire(store, "p1", entry, "c2"))[:2] == [1, 1]
    before = await fields(store, "p1")
    assert await acquire(store, "p1", entry, "c1") == [-6]
    assert await fields(store, "p1") == before
    [p] = await pel(store, "p1")
    assert text(p["consumer"]) == "c2"


async def test_acquire_of_completed_promise_acks_and_deletes_entry(store: Store) -> None:
    await create(store, "p1")
    await store.complete("p1", None, None, "resolved", b"v")
    # An entry written after completion (an operator requeue or a reconciler race).
    await store.redis.xadd(stream(store, "p1"), {"id": "p1"})
    entry = await deliver(store, "p1")
    assert await acquire(store, "p1", entry) == [-2]
    assert await store.redis.xlen(stream(store, "p1")) == 0
    assert await pel(store, "p1") == []


async def test_acquire_of_stale_entry_drops_it_and_keeps_the_promise(store: Store) -> None:
    await create(store, "p1")
    real = await deliver(store, "p1")
    await store.redis.xadd(stream(store, "p1"), {"id": "p1"})
    stale = await deliver(store, "p1")
    assert await acquire(store, "p1", stale) == [-4]
    assert [e for e, _ in await xrange(store, stream(store, "p1"))] == [real]
    assert [text(p["message_id"]) for p in await pel(store, "p1")] == [real]
    assert "version" not in await fields(store, "p1")


async def test_acquire_of_missing_or_foreign_promise_drops_entry(store: Store) -> None:
    await store.redis.xadd(stream(store, "ghost"), {"id": "ghost"})
    assert await acquire(store, "ghost", await deliver(store, "ghost")) == [-1]
    assert await store.redis.xlen(stream(store, "ghost")) == 0
    await create(store, "p1")  # targets group g; an entry shows up in group h's stream
    await store.redis.xadd(stream(store, "p1", "h"), {"id": "p1"})
    entry = await deliver(store, "p1", group="h")
    assert await acquire(store, "p1", entry, group="h") == [-5]
    assert await store.redis.xlen(stream(store, "p1", "h")) == 0
    assert "version" not in await fields(store, "p1")


async def test_acquire_past_max_deliveries_rejects_as_poison(store: Store) -> None:
    entry, _ = await running(store, "p1")
    for consumer in ("c2", "c3"):  # deliveries 2 and 3: still within max_deliveries=3
        await claim(store, "p1", entry, consumer)
        assert (await acquire(store, "p1", entry, consumer))[0] == 1
    await claim(store, "p1", entry, "c4")
    assert (await acquire(store, "p1", entry, "c4"))[:1] == [-7]
    rec = await store.read("p1")
    assert rec is not None and rec.state == "rejected" and rec.value is not None
    assert decode_error(rec.value)[0] == "PoisonError"
    dead = await xrange(store, store.keys.dead(store.keys.partition("p1")))
    assert len(dead) == 1
    record = dict(dead[0][1])
    # The record keeps the function and arguments: a requeue needs them, and the
    # completed promise's hash no longer has them.
    assert decode(record.pop(b"args")) == {"a": [1]}
    assert record == {
        b"id": b"p1",
        b"group": b"g",
        b"entry": entry.encode(),
        b"deliveries": b"4",
        b"func": b"fn",
    }
    assert await store.redis.hget(store.keys.promise("p1"), "args") is None
    assert await pel(store, "p1") == []
    assert await store.redis.xlen(stream(store, "p1")) == 0


# ---------------------------------------------------------------- complete


async def test_complete_is_fenced_by_version(store: Store) -> None:
    entry, v1 = await running(store, "p1")
    await claim(store, "p1", entry, "c2")
    v2 = int((await acquire(store, "p1", entry, "c2"))[1])
    before = await fields(store, "p1")
    assert await store.complete("p1", G, v1, "resolved", b"zombie") == [-3]
    assert await fields(store, "p1") == before
    assert await store.redis.xlen(stream(store, "p1")) == 1
    assert (await store.complete("p1", G, v2, "resolved", b"live"))[:2] == [1, b"resolved"]
    rec = await store.read("p1")
    assert rec is not None and rec.value == b"live"


async def test_complete_reply_carries_the_stored_timestamps_and_function(store: Store) -> None:
    # complete.lua builds this reply from its own read and its `now`, not by reading the
    # hash again: it must still be exactly what the record holds.
    _, v = await running(store, "p1")
    res = await store.complete("p1", G, v, "resolved", b"v")
    f = await fields(store, "p1")
    assert res == [1, b"resolved", f["created_at"], f["completed_at"], b"fn"]


async def test_poison_reply_carries_the_stored_timestamps(store: Store) -> None:
    entry, _ = await running(store, "p1")
    for consumer in ("c2", "c3", "c4"):
        await claim(store, "p1", entry, consumer)
        res = await acquire(store, "p1", entry, consumer)
    f = await fields(store, "p1")
    assert res == [-7, b"fn", f["created_at"], f["completed_at"]]


async def test_second_complete_reports_first_outcome_and_writes_nothing(store: Store) -> None:
    _, v = await running(store, "p1")
    assert (await store.complete("p1", G, v, "resolved", b"first"))[:2] == [1, b"resolved"]
    before = await fields(store, "p1")
    again = await store.complete("p1", G, v, "rejected", b"second")
    assert again == [0, b"resolved", b"first", str(v).encode()]
    assert await fields(store, "p1") == before


async def test_complete_after_cancel_reports_cancellation(store: Store) -> None:
    _, v = await running(store, "p1")
    cancel = await store.complete("p1", None, None, "rejected_canceled", b"canceled")
    assert cancel[:2] == [1, b"rejected_canceled"]
    res = await store.complete("p1", G, v, "resolved", b"late")
    # Completed from outside: no completing version, so the worker knows it was not it.
    assert res == [0, b"rejected_canceled", b"canceled", b""]


async def test_complete_with_wrong_group_returns_the_real_group(store: Store) -> None:
    await create(store, "p1")
    script, keys, args = store.complete_call("p1", "other", None, "resolved", b"v")
    assert await script(store.redis, keys, args) == [-5, b"g"]
    assert (await fields(store, "p1"))["state"] == b"pending"
    # Store.complete follows the reply to the right stream.
    assert (await store.complete("p1", "other", None, "resolved", b"v"))[:2] == [1, b"resolved"]
    assert await store.redis.xlen(stream(store, "p1")) == 0


async def test_timeout_completion_refused_until_due(store: Store) -> None:
    await create(store, "late")
    res = await store.complete("late", G, None, "rejected_timedout", b"t", require_due=True)
    assert res == [-8]
    assert (await fields(store, "late"))["state"] == b"pending"
    await create(store, "soon", timeout_ms=1)

    async def timed_out() -> bool:
        r = await store.complete("soon", G, None, "rejected_timedout", b"t", require_due=True)
        return bool(r[:2] == [1, b"rejected_timedout"])

    await assert_eventually(timed_out)


# ---------------------------------------------------------------- checkpoint


async def test_checkpoint_owner_records_and_replay_keeps_first_value(store: Store) -> None:
    _, v = await running(store, "p1")
    assert await store.checkpoint("p1", v, 1, b"first") == 1
    assert await store.checkpoint("p1", v, 1, b"second") == 1
    assert await store.redis.hgetall(store.keys.steps("p1")) == {b"1": b"first"}


async def test_checkpoint_of_old_version_is_refused(store: Store) -> None:
    entry, v1 = await running(store, "p1")
    await claim(store, "p1", entry, "c2")
    await acquire(store, "p1", entry, "c2")
    assert await store.checkpoint("p1", v1, 1, b"zombie") == -3
    assert await store.redis.exists(store.keys.steps("p1")) == 0


async def test_checkpoint_after_completion_is_refused(store: Store) -> None:
    _, v = await running(store, "p1")
    await store.complete("p1", None, None, "rejected_canceled", b"c")
    assert await store.checkpoint("p1", v, 1, b"late") == -2
    assert await store.redis.exists(store.keys.steps("p1")) == 0
    assert await store.checkpoint("nope", 1, 1, b"x") == -1


async def test_checkpoint_heartbeat_retry_and_reconcile_share_one_fence(store: Store) -> None:
    """All four open with includes/fenced_read.lua: a missing version reads as 0 for each
    fenced one, and each refuses a completed promise naming its state."""
    await create(store, "p1")
    entry = await deliver(store, "p1")  # delivered, never acquired: no version stored
    assert "version" not in await fields(store, "p1")
    assert await store.checkpoint("p1", 1, 1, b"x") == -3
    assert await heartbeat(store, "p1", "c1", 1, entry) == [-3]
    assert await store.retry("p1", G, 1, 60_000, b"err", entry=entry) == -3
    assert await store.checkpoint("p1", 0, 1, b"x") == 1
    assert await heartbeat(store, "p1", "c1", 0, entry) == [1]
    assert await store.retry("p1", G, 0, 60_000, b"err", entry=entry) == 1

    await store.complete("p1", None, None, "resolved", b"v")
    reconcile = store.reconcile_call(store.keys.partition("p1"), G, "p1", "")
    replies = [
        await store.checkpoint_reply("p1", 0, 2, b"late"),
        await heartbeat(store, "p1", "c1", 0, entry),
        await store.retry_reply("p1", G, 0, 60_000, b"err", entry=entry),
        *(await store.run_calls([reconcile])),
    ]
    assert replies == [[-2, b"resolved"]] * 4


# ---------------------------------------------------------------- heartbeat


async def test_heartbeat_resets_idle_without_counting_a_delivery(store: Store) -> None:
    entry, v = await running(store, "p1")

    async def idle_for_a_while() -> int:
        [p] = await pel(store, "p1")
        return int(p["time_since_delivered"]) if p["time_since_delivered"] >= 200 else 0

    idle_before = await assert_eventually(idle_for_a_while)
    assert await heartbeat(store, "p1", "c1", v, entry) == [1]
    [p] = await pel(store, "p1")
    assert p["time_since_delivered"] < idle_before
    assert (p["times_delivered"], text(p["consumer"])) == (1, "c1")


async def test_heartbeat_of_stale_version_is_refused(store: Store) -> None:
    entry, v = await running(store, "p1")
    assert await heartbeat(store, "p1", "c1", v - 1, entry) == [-3]
    await store.complete("p1", None, None, "resolved", b"v")
    # Refused, with the state the promise ended in.
    assert await heartbeat(store, "p1", "c1", v, entry) == [-2, b"resolved"]


async def test_heartbeat_never_claims_another_consumers_entry(store: Store) -> None:
    entry, v = await running(store, "p1")
    assert await heartbeat(store, "p1", "c2", v, entry) == [-6]
    [p] = await pel(store, "p1")
    assert text(p["consumer"]) == "c1"


# ---------------------------------------------------------------- retry and promote


async def test_retry_acks_entry_and_schedules_next_attempt(store: Store) -> None:
    entry, v = await running(store, "p1")
    assert await store.retry("p1", G, v - 1, 60_000, b"err", entry=entry) == -3
    assert await store.retry("p1", "other", v, 60_000, b"err", entry=entry) == -5
    assert await store.retry("p1", G, v, 60_000, b"err", entry=entry) == 1
    assert await store.redis.xlen(stream(store, "p1")) == 0
    assert await pel(store, "p1") == []
    f = await fields(store, "p1")
    assert (f["attempt"], "entry" in f, f["last_error"]) == (b"1", False, b"err")
    due = await store.redis.zscore(dkey(store, "p1"), "g|p1")
    assert due is not None
    assert await store.retry("p1", G, v, 60_000, b"err", entry=entry) == 0
    assert (await fields(store, "p1"))["attempt"] == b"1"
    assert await store.redis.zscore(dkey(store, "p1"), "g|p1") == due


async def test_suspension_hands_back_without_counting_an_attempt(store: Store) -> None:
    entry, v = await running(store, "p1")
    assert await store.retry("p1", G, v, 60_000, b"", entry=entry, attempt=False) == 1
    f = await fields(store, "p1")
    assert ("attempt" in f, "entry" in f, "last_error" in f) == (False, False, False)
    assert await store.redis.zscore(dkey(store, "p1"), "g|p1") is not None
    assert await store.redis.xlen(stream(store, "p1")) == 0


async def test_promote_refuses_before_due(store: Store) -> None:
    entry, v = await running(store, "p1")
    await store.retry("p1", G, v, 60_000, b"err", entry=entry)
    assert await promote(store, "p1") == [-8]
    assert await store.redis.zscore(dkey(store, "p1"), "g|p1") is not None
    assert await store.redis.xlen(stream(store, "p1")) == 0


async def test_promote_when_due_dispatches_fresh_entry(store: Store) -> None:
    old, v = await running(store, "p1")
    await store.retry("p1", G, v, 0, b"err", entry=old)
    assert await promote(store, "p1") == [1]
    f = await fields(store, "p1")
    assert f["deliveries"] == b"0" and text(f["entry"]) not in ("", old)
    assert await store.redis.zscore(dkey(store, "p1"), "g|p1") is None
    assert await promote(store, "p1") == [0]
    new = await deliver(store, "p1")
    assert new == text(f["entry"])
    res = await acquire(store, "p1", new)
    assert (res[0], res[1], res[4], res[7]) == (1, v + 1, b"1", 1)


async def test_promote_of_completed_promise_removes_member(store: Store) -> None:
    entry, v = await running(store, "p1")
    await store.retry("p1", G, v, 0, b"err", entry=entry)
    await store.complete("p1", None, None, "rejected_canceled", b"c")
    assert await store.redis.zscore(dkey(store, "p1"), "g|p1") is None  # settle dropped it
    # A member left behind (e.g. its record expired): promote drops it, dispatches nothing.
    await store.redis.zadd(dkey(store, "p1"), {"g|p1": 0})
    assert await promote(store, "p1") == [-2]
    assert await store.redis.zscore(dkey(store, "p1"), "g|p1") is None
    assert await store.redis.xlen(stream(store, "p1")) == 0


# ---------------------------------------------------------------- memory bound


async def assert_nothing_left_but_the_record(store: Store, id: str) -> None:
    assert await store.redis.xlen(stream(store, id)) == 0
    assert (await store.redis.xpending(stream(store, id), G))["pending"] == 0
    assert await store.redis.exists(store.keys.steps(id)) == 0
    assert await store.redis.zscore(tkey(store, id), f"g|{id}") is None
    assert await store.redis.zscore(dkey(store, id), f"g|{id}") is None
    f = await fields(store, id)
    assert not {"args", "entry", "owner", "deliveries", "retry"} & f.keys()


async def test_completed_promise_keeps_only_its_record_with_retention_ttl(store: Store) -> None:
    _, v = await running(store, "p1")
    await store.checkpoint("p1", v, 1, b"step")
    assert (await store.complete("p1", G, v, "resolved", b"v"))[:2] == [1, b"resolved"]
    await assert_nothing_left_but_the_record(store, "p1")
    ttl = await store.redis.pttl(store.keys.promise("p1"))
    retention = int(store.settings.retention.total_seconds() * 1000)  # type: ignore[union-attr]
    assert retention - 60_000 < ttl <= retention


async def test_retention_none_keeps_completed_record_forever(redis: Redis, namespace: str) -> None:
    store = Store(redis, Keys(namespace), Settings(namespace=namespace, retention=None))
    entry, v = await running(store, "p1")
    await store.retry("p1", G, v, 0, b"err", entry=entry)  # a member in delayed, too
    assert (await store.complete("p1", None, None, "rejected", b"e"))[:2] == [1, b"rejected"]
    await assert_nothing_left_but_the_record(store, "p1")
    assert await store.redis.pttl(store.keys.promise("p1")) == -1


async def test_short_retention_expires_completed_record(redis: Redis, namespace: str) -> None:
    settings = Settings(namespace=namespace, retention=timedelta(milliseconds=100))
    store = Store(redis, Keys(namespace), settings)
    await create(store, "p1")
    await store.complete("p1", None, None, "resolved", b"v")

    async def gone() -> bool:
        return await store.read("p1") is None

    await assert_eventually(gone)
