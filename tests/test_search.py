"""Search and counts: the indexes the transition scripts keep, on both backends."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis.asyncio import Redis

from redpromise import Context, PromiseInfo, Redpromise, SearchPage
from redpromise.core.keys import Keys
from redpromise.core.options import Settings
from redpromise.store.index_sweep import IndexSweep
from redpromise.store.store import Store
from tests.helpers import assert_eventually
from tests.redis_cluster import RedisCluster
from tests.redis_server import RedisServer
from tests.storeops import G, acquire, claim, running

MakeRp = Callable[..., Awaitable[Redpromise]]


async def walk(rp: Redpromise, limit: int, **filters: Any) -> list[list[str]]:
    """Every page of a search, as lists of ids."""
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        page = await rp.search(limit=limit, cursor=cursor, **filters)
        pages.append([r.id for r in page.records])
        if page.cursor is None:
            return pages
        cursor = page.cursor


async def ids_of(rp: Redpromise, **filters: Any) -> list[str]:
    return [id for page in await walk(rp, 1000, **filters) for id in page]


async def settled_mix(rp: Redpromise) -> dict[str, list[str]]:
    """Two promises in each state, begun in this order (created_at ties are broken by id)."""
    by_state: dict[str, list[str]] = {}
    for n in range(2):
        for state in ("pending", "resolved", "rejected", "rejected_canceled"):
            id = f"{state}-{n}"
            await rp.begin_rpc(id, "work", n, tags={"n": str(n), "kind": state})
            by_state.setdefault(state, []).append(id)
        await rp.resolve(f"resolved-{n}", {"n": n})
        await rp.reject(f"rejected-{n}", ValueError(f"bad {n}"))
        await rp.cancel(f"rejected_canceled-{n}")
        id = f"rejected_timedout-{n}"
        await rp.begin_rpc(id, "slow", n, timeout=timedelta(milliseconds=30))
        by_state.setdefault("rejected_timedout", []).append(id)
    for id in by_state["rejected_timedout"]:
        handle = await rp.get(id)
        await assert_eventually(lambda h=handle: _is(h.state(), "rejected_timedout"))
    return by_state


async def _is(value: Awaitable[str], expected: str) -> bool:
    return await value == expected


# ---------------------------------------------------------------- filters


async def test_search_by_state_finds_exactly_the_promises_in_that_state(make_rp: MakeRp) -> None:
    rp = await make_rp()
    by_state = await settled_mix(rp)
    for state, ids in by_state.items():
        assert sorted(await ids_of(rp, state=state)) == sorted(ids), state
    everything = await ids_of(rp)
    assert sorted(everything) == sorted(id for ids in by_state.values() for id in ids)


async def test_records_carry_the_promise_and_its_outcome(make_rp: MakeRp) -> None:
    rp = await make_rp()
    await settled_mix(rp)
    page = await rp.search(state="resolved", limit=1)
    assert isinstance(page, SearchPage) and page.cursor is not None
    [r] = page.records
    assert (r.id, r.state, r.function, r.group) == ("resolved-0", "resolved", "work", "worker")
    assert r.value == {"n": 0} and r.error is None and not r.pending
    assert r.tags == {"n": "0", "kind": "resolved"} and r.attempt == 0
    assert r.created_at.tzinfo is UTC and r.completed_at is not None
    assert r.created_at <= r.completed_at and r.timeout_at > r.created_at
    [bad] = (await rp.search(state="rejected", limit=1)).records
    assert bad.error == ("ValueError", "bad 0") and bad.value is None
    [pending] = (await rp.search(state="pending", limit=1)).records
    assert pending.pending and pending.completed_at is None and pending.value is None
    assert pending.to_dict()["created_at"] == round(pending.created_at.timestamp() * 1000)


async def test_search_by_group_function_and_tags(make_rp: MakeRp) -> None:
    rp = await make_rp()
    await rp.begin_rpc("a1", "ship", target="poll://any@orders", tags={"tenant": "a", "x": "1"})
    await rp.begin_rpc("a2", "bill", target="poll://any@orders", tags={"tenant": "a"})
    await rp.begin_rpc("b1", "ship", target="poll://any@mail", tags={"tenant": "b", "x": "1"})
    await rp.begin_rpc("n1", "ship")
    assert sorted(await ids_of(rp, group="orders")) == ["a1", "a2"]
    assert sorted(await ids_of(rp, group="mail")) == ["b1"]
    assert await ids_of(rp, group="nobody") == []
    assert sorted(await ids_of(rp, function="ship")) == ["a1", "b1", "n1"]
    assert sorted(await ids_of(rp, tags={"tenant": "a"})) == ["a1", "a2"]
    assert sorted(await ids_of(rp, tags={"x": "1"})) == ["a1", "b1"]
    assert await ids_of(rp, tags={"tenant": "a", "x": "1"}) == ["a1"]
    assert await ids_of(rp, tags={"tenant": "a", "x": "2"}) == []
    assert await ids_of(rp, group="orders", function="ship", state="pending") == ["a1"]


async def test_search_since_and_until_bound_created_at_inclusively(make_rp: MakeRp) -> None:
    rp = await make_rp()
    created: dict[str, int] = {}
    for i in range(3):
        await rp.begin_rpc(f"t{i}", "work")
        [r] = (await rp.search(limit=1, newest_first=True)).records
        ms = created[r.id] = round(r.created_at.timestamp() * 1000)
        # The next promise must be created in a later millisecond of the Redis clock.
        await assert_eventually(lambda ms=ms: _later_ms(rp, ms))
    t0, t1, t2 = created["t0"], created["t1"], created["t2"]
    assert await ids_of(rp, since=t1) == ["t1", "t2"]
    assert await ids_of(rp, until=t1) == ["t0", "t1"]
    assert await ids_of(rp, since=t1, until=t1) == ["t1"]
    assert await ids_of(rp, since=t2 + 1) == []
    as_dt = datetime.fromtimestamp(t1 / 1000, UTC)
    assert await ids_of(rp, since=as_dt, until=datetime.fromtimestamp(t2 / 1000, UTC)) == [
        "t1",
        "t2",
    ]
    assert t0 < t1


async def _later_ms(rp: Redpromise, ms: int) -> bool:
    seconds, micros = await rp.redis.time()
    return bool(seconds * 1000 + micros // 1000 > ms)


async def test_bad_arguments_are_refused(make_rp: MakeRp) -> None:
    rp = await make_rp()
    for kwargs in (
        {"state": "done"},
        {"limit": 0},
        {"limit": 1001},
        {"cursor": "garbage!"},
        {"since": "yesterday"},
        {"group": "no spaces"},
    ):
        with pytest.raises(ValueError):
            await rp.search(**kwargs)
    await rp.begin_rpc("p1", "work")
    await rp.begin_rpc("p2", "work")
    page = await rp.search(limit=1)
    with pytest.raises(ValueError, match="other order"):
        await rp.search(limit=1, cursor=page.cursor, newest_first=True)


# ---------------------------------------------------------------- pagination


async def begin_many(rp: Redpromise, n: int, prefix: str = "o") -> list[str]:
    ids = [f"{prefix}{i:05d}" for i in range(n)]
    for start in range(0, n, 500):
        await asyncio.gather(*(rp.begin_rpc(id, "work") for id in ids[start : start + 500]))
    return ids


async def test_pagination_through_thousands_never_repeats_or_skips(make_rp: MakeRp) -> None:
    rp = await make_rp()
    ids = await begin_many(rp, 3000)
    for newest_first in (False, True):
        pages = await walk(rp, 97, newest_first=newest_first)
        seen = [id for page in pages for id in page]
        assert len(seen) == len(set(seen)) == 3000 and set(seen) == set(ids)
        assert all(len(p) == 97 for p in pages[:-1])
        records: list[PromiseInfo] = []
        cursor: str | None = None
        while True:
            page = await rp.search(limit=1000, cursor=cursor, newest_first=newest_first)
            records += page.records
            if (cursor := page.cursor) is None:
                break
        assert [r.id for r in records] == seen
        keys = [(r.created_at, r.id) for r in records]
        assert keys == sorted(keys, reverse=newest_first)


async def test_a_walk_finds_every_promise_once_while_they_change_state(make_rp: MakeRp) -> None:
    rp = await make_rp()
    ids = await begin_many(rp, 1200)
    seen: list[str] = []
    cursor: str | None = None
    turn = 0
    while True:
        page = await rp.search(limit=50, cursor=cursor)
        seen += [r.id for r in page.records]
        # Between pages, promises on both sides of the cursor move to other indexes.
        await asyncio.gather(
            *(rp.resolve(id, 1) for id in ids[turn * 37 % 1200 :: 97][:8]),
            *(rp.cancel(id) for id in ids[turn * 53 % 1200 :: 89][:8]),
        )
        turn += 1
        if page.cursor is None:
            break
        cursor = page.cursor
    assert len(seen) == len(set(seen)) == 1200


async def test_a_rare_filter_returns_short_pages_with_a_cursor_and_finds_all(
    make_rp: MakeRp,
) -> None:
    rp = await make_rp()
    # ids ordered as created_at ties are broken: "a-rare" before every "o…", "z-rare" after
    await rp.begin_rpc("a-rare", "work", tags={"rare": "yes"})
    await begin_many(rp, 1500)
    await rp.begin_rpc("z-rare", "work", tags={"rare": "yes"})
    pages = await walk(rp, 10, function="work", tags=None, state=None, group="worker")
    assert sum(len(p) for p in pages) == 1502
    # 1502 candidates, a page reads at most max(1000, 10 * limit) of them: a filter that
    # matches none gives one empty page with a cursor, then the empty end.
    assert await walk(rp, 1, tags={"none": "x"}) == [[], []]
    found = await walk(rp, 1, tags={"rare": "yes"})
    assert found[:3] == [["a-rare"], [], ["z-rare"]]  # the middle page: short, with a cursor
    assert found[3:] in ([], [[]])  # the last match may end the walk, or an empty page does


# ---------------------------------------------------------------- counts


async def test_counts_follow_every_transition(make_rp: MakeRp) -> None:
    rp = await make_rp()
    await settled_mix(rp)
    await rp.begin_rpc("m1", "work", target="poll://any@mail")
    await rp.resolve("resolved-0", 2)  # a second completion changes nothing
    assert await rp.counts() == {
        "pending": {"worker": 2, "mail": 1},
        "resolved": {"worker": 2},
        "rejected": {"worker": 2},
        "rejected_canceled": {"worker": 2},
        "rejected_timedout": {"worker": 2},
    }


@pytest.fixture
def store(redis: Redis, namespace: str) -> Store:
    return Store(redis, Keys(namespace), Settings(namespace=namespace, max_deliveries=1))


async def test_poison_rejection_moves_the_index_entry_and_counts(store: Store) -> None:
    entry, _ = await running(store, "p1")
    await claim(store, "p1", entry, "c2")
    assert (await acquire(store, "p1", entry, "c2"))[:1] == [-7]
    k = store.keys.partition("p1")
    assert await store.redis.zrange(store.keys.index(k, "pending"), 0, -1) == []
    assert await store.redis.zrange(store.keys.index(k, "rejected"), 0, -1) == [b"g|p1"]
    assert await store.redis.hgetall(store.keys.counts(k)) == {
        b"pending|" + G.encode(): b"0",
        b"rejected|" + G.encode(): b"1",
    }


# ---------------------------------------------------------------- retention


async def test_entries_leave_search_and_counts_when_retention_ends(make_rp: MakeRp) -> None:
    rp = await make_rp(retention=timedelta(milliseconds=200))
    ids = await begin_many(rp, 40)
    for id in ids[:30]:
        await rp.resolve(id, 1)
    assert (await rp.counts())["resolved"] == {"worker": 30}
    await assert_eventually(lambda: _gone(rp, ids[:30]))
    # The hashes expired behind the indexes' back: searches skip their entries, and
    # counts lag (a search writes nothing) until the upkeep's sweep drops them.
    assert (await rp.counts())["resolved"] == {"worker": 30}
    assert await ids_of(rp, state="resolved") == []
    assert sorted(await ids_of(rp)) == ids[30:]
    assert (await rp.counts())["resolved"] == {"worker": 30}
    assert await IndexSweep(rp.store).run() == 30
    assert await rp.counts() == {
        "pending": {"worker": 10},
        "resolved": {},
        "rejected": {},
        "rejected_canceled": {},
        "rejected_timedout": {},
    }


async def _gone(rp: Redpromise, ids: list[str]) -> bool:
    return all([not await rp.redis.exists(rp.keys.promise(id)) for id in ids])


async def test_the_sweep_drops_expired_entries_without_a_search(make_rp: MakeRp) -> None:
    rp = await make_rp(retention=timedelta(milliseconds=200))
    ids = await begin_many(rp, 25)
    for id in ids[:20]:
        await rp.cancel(id)
    await rp.begin_rpc("late", "work")  # completed later: still retained after the others
    await assert_eventually(lambda: _gone(rp, ids[:20]))
    await rp.resolve("late", 1)
    sweep = IndexSweep(rp.store)
    assert await sweep.run(budget=7) + await sweep.run(budget=7) + await sweep.run(7) == 20
    assert await sweep.run(budget=7) == 0
    counts = await rp.counts()
    assert counts["rejected_canceled"] == {} and counts["resolved"] == {"worker": 1}
    assert await ids_of(rp, state="resolved") == ["late"]


async def test_a_workers_upkeep_sweeps_expired_entries(make_rp: MakeRp) -> None:
    worker = await make_rp(retention=timedelta(milliseconds=200))

    @worker.register
    async def work(ctx: Context) -> int:
        return 1

    await worker.start()
    for i in range(10):
        await (await worker.begin_rpc(f"w{i}", "work")).result(timeout=10)
    assert (await worker.counts())["resolved"] == {"worker": 10}
    await assert_eventually(
        lambda: _counted(worker, "resolved", {}), timeout=20, message="upkeep never swept"
    )


async def test_a_count_follows_each_records_own_retention_not_the_sweepers(
    make_rp: MakeRp,
) -> None:
    """Records canceled by a client whose retention is 200 ms leave the counts at their
    own expiry, swept by a worker that keeps its own records for a day, and by one that
    keeps them forever; a record kept forever stays counted."""
    day = await make_rp(retention=timedelta(days=1))
    forever = await make_rp(retention=None)
    for w in (day, forever):
        w.register(lambda ctx: 1, name="work")
        await w.start()
    client = await make_rp(group="gateway", retention=timedelta(milliseconds=200))
    keeper = await make_rp(group="gateway", retention=None)
    for i in range(5):
        await client.begin_rpc(f"c{i}", "work", target="elsewhere")
        await client.cancel(f"c{i}")
    await keeper.begin_rpc("kept", "work", target="elsewhere")
    await keeper.cancel("kept")
    assert (await client.counts())["rejected_canceled"] == {"elsewhere": 6}
    await assert_eventually(
        lambda: _counted(client, "rejected_canceled", {"elsewhere": 1}),
        timeout=20,
        message="the workers' upkeep never swept the expired records",
    )
    assert await ids_of(client, state="rejected_canceled") == ["kept"]


async def _counted(rp: Redpromise, state: str, expected: dict[str, int]) -> bool:
    return (await rp.counts())[state] == expected


async def test_an_id_used_again_after_retention_is_indexed_once(make_rp: MakeRp) -> None:
    rp = await make_rp(retention=timedelta(milliseconds=100))
    await rp.begin_rpc("again", "work")
    await rp.resolve("again", 1)
    await assert_eventually(lambda: _gone(rp, ["again"]))
    await rp.begin_rpc("again", "work")
    assert await ids_of(rp) == ["again"]
    await rp.resolve("again", 2)
    [r] = (await rp.search()).records
    assert r.state == "resolved" and r.value == 2
    assert (await rp.counts())["resolved"] == {"worker": 1}


@pytest.mark.real
async def test_a_search_sends_redis_no_write_command(own_redis_server: RedisServer) -> None:
    from tests.conftest import fast_settings

    # A private server: its command statistics count this test's commands only.
    settings = fast_settings("nowrite", retention=timedelta(milliseconds=100))
    rp = Redpromise(own_redis_server.url, settings=settings)
    try:
        ids = await begin_many(rp, 60)
        for id in ids[:40]:
            await rp.resolve(id, 1)
        await assert_eventually(lambda: _gone(rp, ids[:40]))  # 40 stale index entries
        await rp.begin_rpc(ids[0], "work")  # an id used again: its old entry is stale too
        await rp.redis.config_resetstat()
        assert sorted(await ids_of(rp)) == sorted(ids[40:] + ids[:1])
        assert await ids_of(rp, state="resolved") == []
        assert len(await ids_of(rp, tags={"none": "x"}, newest_first=True)) == 0
        stats = await rp.redis.info("commandstats")
        ran = [name.removeprefix("cmdstat_") for name in stats]
        flags = await rp.redis.execute_command("COMMAND", "INFO", *ran)
        writes = [n for n in ran if "write" in {as_str(f) for f in flags[n]["flags"]}]
        assert "evalsha" in ran and writes == []
        assert (await rp.counts())["resolved"] == {"worker": 40}  # left to the upkeep's sweep
    finally:
        await rp.stop()


def as_str(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


# ---------------------------------------------------------------- memory


async def namespace_bytes(redis: Any, namespace: str) -> int:
    """MEMORY USAGE (exact: SAMPLES 0) of every key of the namespace, indexes included."""
    total = 0
    async for key in redis.scan_iter(match=f"*{namespace}*", count=1000):
        total += int(await redis.memory_usage(key, samples=0) or 0)
    return total


@pytest.mark.real
async def test_a_completed_promise_with_its_index_entry_stays_under_500_bytes(
    real_url: str, namespace: str
) -> None:
    from tests.conftest import fast_settings

    n = 1000
    # Two partitions: each index holds ~500 members, past zset-max-listpack-entries (128),
    # so the zsets use their large encoding (skiplist), as in any namespace of real size.
    settings = fast_settings(namespace, partitions=2)
    client = Redpromise(settings=settings, redis=Redis.from_url(real_url))
    worker = Redpromise(settings=settings, redis=Redis.from_url(real_url))

    @worker.register
    async def noop(ctx: Context, x: int) -> int:
        return x + 1

    try:
        handles = [await client.begin_rpc(f"order-{i:06d}", "noop", i) for i in range(n)]
        pending = await namespace_bytes(client.redis, namespace) / n
        await worker.start()
        for h in handles:
            await h.result(timeout=30)
        completed = await namespace_bytes(client.redis, namespace) / n
        print(f"bytes per promise (N={n}): pending {pending:.0f}, completed {completed:.0f}")
        assert (await client.counts())["resolved"] == {"worker": n}
        assert completed <= 500
        assert pending <= 600
    finally:
        await worker.stop()
        await client.stop()
        # Clients handed in with redis= are the caller's to close.
        await worker.redis.aclose()
        await client.redis.aclose()


@pytest.mark.real
async def test_search_and_counts_on_a_cluster(redis_cluster: RedisCluster, namespace: str) -> None:
    from tests.conftest import fast_settings

    rp = Redpromise(redis_cluster.url, settings=fast_settings(namespace))
    try:
        ids = await begin_many(rp, 120)
        for id in ids[:20]:
            await rp.resolve(id, 1)
        seen = [id for page in await walk(rp, 7) for id in page]
        assert sorted(seen) == ids
        assert sorted(await ids_of(rp, state="resolved")) == ids[:20]
        counts = await rp.counts()
        assert counts["pending"] == {"worker": 100} and counts["resolved"] == {"worker": 20}
    finally:
        await rp.stop()
