"""take.lua: one partition's new entries read and acquired in one script call, exactly as
acquire.lua acquires each (the fence, refusals, poison), on fakeredis and a real Redis;
and never resent: a take whose reply was lost acquires nothing a second time."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from redpromise import Context, Redpromise
from redpromise.core.codec import decode_error
from redpromise.core.keys import Keys
from redpromise.core.options import Settings
from redpromise.store.store import Store
from redpromise.testing import FaultyRedis
from redpromise.worker.reads import parse_take
from tests.helpers import Counted, CuttingProxy, assert_eventually
from tests.redis_server import RedisServer
from tests.storeops import (
    POISON,
    G,
    acquire,
    claim,
    create,
    fields,
    pel,
    running,
    stream,
    text,
    xrange,
)

MakeRp = Callable[..., Awaitable[Redpromise]]


@pytest.fixture
def store(faulty: FaultyRedis, namespace: str) -> Store:
    # One partition: every promise's entry is in the stream one take reads.
    return Store(faulty.redis, Keys(namespace, 1), Settings(namespace=namespace, max_deliveries=3))


async def take(
    store: Store, count: int = 10, consumer: str = "c1", group: str = G
) -> list[tuple[int, str, str | None, Any]]:
    """One take of partition 0, sent as the worker sends it; its entries parsed."""
    s = store.keys.stream(0, group)
    if not any(text(g["name"]) == group for g in await store.redis.xinfo_groups(s)):
        await store.redis.xgroup_create(s, group, id="0")
    [resp] = await store.take([store.take_call(0, group, consumer, count, POISON)])
    if isinstance(resp, BaseException):
        raise resp
    return parse_take(0, resp)


async def test_take_acquires_every_entry_it_reads_and_the_fence_refuses_the_old_holder(
    store: Store,
) -> None:
    await create(store, "p1")
    await create(store, "p2", arg=2)
    got = await take(store)
    assert [(k, id) for k, _, id, _ in got] == [(0, "p1"), (0, "p2")]
    entries = [e for _, e, _, _ in got]
    assert entries == [e for e, _ in await xrange(store, stream(store, "p1"))]
    for _, _, id, res in got:
        f = await fields(store, id or "")
        # acquire.lua's reply: acquired, version 1, function, args, ..., 1 delivery, no steps
        assert res[:3] == [1, 1, b"fn"] and res[3] == f["args"] and res[7:] == [1, []]
        assert (f["version"], f["deliveries"], f["owner"]) == (b"1", b"1", b"c1")
    assert sorted(text(p["message_id"]) for p in await pel(store, "p1")) == sorted(entries)
    assert {text(p["consumer"]) for p in await pel(store, "p1")} == {"c1"}
    assert await take(store) == []  # nothing new: nothing read, nothing acquired

    # The lease of p1 lapsed: another worker reclaims and acquires it (version 2).
    assert await store.checkpoint("p1", 1, 1, b"step") == 1
    await claim(store, "p1", entries[0], "c2")
    res = await acquire(store, "p1", entries[0], "c2")
    assert (res[0], res[1], res[7], res[8]) == (1, 2, 2, [b"1", b"step"])
    assert await store.complete("p1", G, 1, "resolved", b"zombie") == [-3]
    assert await store.checkpoint("p1", 1, 2, b"zombie") == -3
    assert (await store.complete("p1", G, 2, "resolved", b"v"))[0] == 1


async def test_take_refusals_ack_and_delete_their_entries(store: Store, redis: Redis) -> None:
    s = store.keys.stream(0, G)
    await redis.xgroup_create(s, G, id="0", mkstream=True)
    ghost = text(await redis.xadd(s, {"id": "ghost"}))  # missing promise
    await create(store, "done")
    await store.complete("done", None, None, "resolved", b"v")
    late = text(await redis.xadd(s, {"id": "done"}))  # completed promise
    await create(store, "other", group="h")
    foreign = text(await redis.xadd(s, {"id": "other"}))  # promise of another group
    await create(store, "p1")
    stale = text(await redis.xadd(s, {"id": "p1"}))  # not p1's current dispatch
    got = {entry: (id, res) for _, entry, id, res in await take(store)}
    assert got[ghost] == ("ghost", [-1])
    assert got[late] == ("done", [-2])
    assert got[foreign] == ("other", [-5])
    assert got[stale] == ("p1", [-4])
    (real,) = [e for e, (id, res) in got.items() if id == "p1" and res[0] == 1]
    assert [e for e, _ in await xrange(store, s)] == [real]
    assert [text(p["message_id"]) for p in await pel(store, "p1")] == [real]
    # Never acquired: no version field (create writes no defaults), no owner, no delivery.
    assert not {"version", "owner", "deliveries"} & set(await fields(store, "other"))


async def test_entries_take_cannot_acquire_stay_pending_for_the_worker_to_bury(
    store: Store, redis: Redis
) -> None:
    s = store.keys.stream(0, G)
    await redis.xgroup_create(s, G, id="0", mkstream=True)
    no_id = text(await redis.xadd(s, {"x": "y"}))
    await redis.set(store.keys.promise("bad"), "not a hash")
    bad = text(await redis.xadd(s, {"id": "bad"}))
    got = {entry: (id, res) for _, entry, id, res in await take(store)}
    assert got[no_id] == (None, [0])
    assert got[bad][0] == "bad" and "WRONGTYPE" in str(got[bad][1])
    assert sorted(text(p["message_id"]) for p in await pel(store, "bad")) == sorted([no_id, bad])


async def test_poison_through_take_rejects_and_keeps_the_dead_record(
    store: Store, redis: Redis
) -> None:
    entry, _ = await running(store, "p1")
    for consumer in ("c2", "c3"):  # deliveries 2 and 3: within max_deliveries=3
        await claim(store, "p1", entry, consumer)
        assert (await acquire(store, "p1", entry, consumer))[0] == 1
    # The group is moved back (XGROUP SETID): its fourth delivery comes through take.
    await redis.xgroup_setid(stream(store, "p1"), G, "0")
    [(_, got, id, res)] = await take(store, consumer="c4")
    f = await fields(store, "p1")
    assert (got, id) == (entry, "p1")
    assert res == [-7, b"fn", f["created_at"], f["completed_at"]]
    rec = await store.read("p1")
    assert rec is not None and rec.state == "rejected" and rec.value is not None
    assert decode_error(rec.value)[0] == "PoisonError"
    dead = await xrange(store, store.keys.dead(0))
    assert len(dead) == 1 and dead[0][1][b"deliveries"] == b"4"
    assert await pel(store, "p1") == []
    assert await redis.xlen(stream(store, "p1")) == 0


async def test_take_resent_after_a_lost_reply_acquires_nothing_twice(
    store: Store, faulty: FaultyRedis
) -> None:
    await create(store, "p1")
    await create(store, "p2")
    await take(store, count=1)  # creates the group; takes p1 only
    faulty.lose_reply("take", resend=True)  # p2's take runs, its reply is lost, resent
    assert await take(store) == []  # the resend reads nothing new
    assert faulty.lost == ["take"]
    for id in ("p1", "p2"):
        f = await fields(store, id)
        assert (f["version"], f["deliveries"], f["owner"]) == (b"1", b"1", b"c1")
    # The lost acquisition sits in c1's pending list; after the lease it is reclaimed,
    # and that counts as the second delivery, fencing the lost one out.
    [p2] = [text(p["message_id"]) for p in await pel(store, "p2")][1:]
    await claim(store, "p2", p2, "c2")
    res = await acquire(store, "p2", p2, "c2")
    assert (res[0], res[1], res[7]) == (1, 2, 2)


async def test_a_take_whose_reply_is_lost_raises_and_is_not_resent(
    redis_server: RedisServer, namespace: str
) -> None:
    proxy = CuttingProxy("127.0.0.1", redis_server.port)
    url = await proxy.start()
    client = Redis.from_url(url)
    store = Store(client, Keys(namespace, 1), Settings(namespace=namespace))
    try:
        await create(store, "p1")
        await client.xgroup_create(store.keys.stream(0, G), G, id="0")
        await client.script_load(store.scripts["take"].source)
        proxy.cut(store.scripts["take"].sha.encode(), after_reply=True)
        with pytest.raises(RedisConnectionError):
            await store.take([store.take_call(0, G, "c1", 10, POISON)])
        assert proxy.cuts == 1
        f = await fields(store, "p1")  # the take ran once: one delivery, one version
        assert (f["version"], f["deliveries"]) == (b"1", b"1")
        # ... and it was not sent again: nothing is left to read, nobody else holds p1.
        assert await client.xreadgroup(G, "c2", {store.keys.stream(0, G): ">"}) == []
        assert [text(p["consumer"]) for p in await pel(store, "p1")] == ["c1"]
    finally:
        await client.aclose()
        await proxy.close()


# ---------------------------------------------------------------- the worker


async def test_worker_takes_while_entries_flow_and_only_blocks_when_idle(
    make_rp: MakeRp, redis: Redis
) -> None:
    """concurrency 4, one partition: the first read is a blocking XREADGROUP (4 entries,
    acquired); the other 16 promises are taken as slots free up; idle, only blocking
    reads are sent."""
    counted = Counted(redis)
    worker = await make_rp(redis=redis, concurrency=4, partitions=1)
    runs: list[str] = []

    @worker.register
    async def work(ctx: Context, x: int) -> int:
        runs.append(ctx.id)
        return x + 1

    handles = [await worker.begin_rpc(f"p{i}", "work", i) for i in range(20)]
    for script in worker.store.scripts.values():  # no NOSCRIPT resends in the counts
        await redis.script_load(script.source)
    await worker.start()
    assert [await h.result(timeout=10) for h in handles] == list(range(1, 21))
    assert sorted(runs) == sorted(f"p{i}" for i in range(20))
    assert counted.sent["acquire"] == 4  # the rest were taken, not acquired one by one
    assert counted.sent["take"] >= 1
    # Idle: once a take pass finds nothing, only blocking reads are sent.
    await assert_eventually(lambda: counted.sent["XREADGROUP"] >= 2)
    idle_takes = counted.sent["take"]
    reads = counted.sent["XREADGROUP"]
    await assert_eventually(lambda: counted.sent["XREADGROUP"] >= reads + 3)
    assert counted.sent["take"] == idle_takes


async def test_worker_whose_take_reply_is_lost_runs_those_promises_once_after_the_lease(
    make_rp: MakeRp, faulty: FaultyRedis
) -> None:
    """The lost take's entries wait in the worker's pending list, acquired; after the
    lease the reclaim acquires them again (version 2) and they run, once each."""
    worker = await make_rp(redis=faulty.redis, concurrency=2, partitions=1)
    runs: list[tuple[str, int]] = []

    @worker.register
    async def work(ctx: Context, x: int) -> int:
        runs.append((ctx.id, x))
        return x

    handles = [await worker.begin_rpc(f"p{i}", "work", i) for i in range(6)]
    faulty.lose_reply("take")
    await worker.start()
    assert [await h.result(timeout=15) for h in handles] == list(range(6))
    assert faulty.lost == ["take"]
    assert sorted(runs) == [(f"p{i}", i) for i in range(6)]  # each ran once
    versions = [
        int(await faulty.redis.hget(worker.store.keys.promise(f"p{i}"), "version") or 0)
        for i in range(6)
    ]
    assert 2 in versions  # the lost take's promises were acquired again, fencing it out
