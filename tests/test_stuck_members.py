"""Members of the timeouts and delayed sets that no transition can act on are removed.

promote reads at most 100 due members per partition and set; a member left in place
after its transition refused would hold one of those slots forever, and a hundred of
them would freeze every timeout (or retry) of the partition behind them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest
from redis.asyncio import Redis

from redpromise import Redpromise
from redpromise.core.keys import Keys
from redpromise.core.options import Settings
from redpromise.store.store import Store
from tests.helpers import assert_eventually
from tests.storeops import G, create, dkey, fields, promote, running, stream, tkey

MakeRp = Callable[..., Awaitable[Redpromise]]


@pytest.fixture
def store(redis: Redis, namespace: str) -> Store:
    return Store(redis, Keys(namespace), Settings(namespace=namespace))


def ids_in_partition(keys: Keys, k: int, n: int, prefix: str) -> list[str]:
    out: list[str] = []
    i = 0
    while len(out) < n:
        if keys.partition(f"{prefix}-{i}") == k:
            out.append(f"{prefix}-{i}")
        i += 1
    return out


async def test_orphaned_timeout_members_do_not_freeze_the_partitions_timeouts(
    make_rp: MakeRp, redis: Redis
) -> None:
    rp = await make_rp(group="gateway")
    await rp.begin_rpc("real", "work", target="worker", timeout=timedelta(milliseconds=1))
    keys = rp.keys
    k = keys.partition("real")
    # 150 members whose hash is gone (expired, deleted), all due before the real one.
    orphans = ids_in_partition(keys, k, 150, "orphan")
    await redis.zadd(keys.timeouts(k), {f"worker|{o}": i for i, o in enumerate(orphans)})
    worker = rp._new_worker()  # its loops are not started: promote runs only when called here

    async def timed_out() -> bool:
        await worker.upkeep.promote()
        # Read the hash itself: a client read would apply the timeout on its own.
        return await redis.hget(keys.promise("real"), "state") == b"rejected_timedout"

    await assert_eventually(timed_out, timeout=10)
    assert await redis.zcard(keys.timeouts(k)) == 0


async def test_timeout_of_a_missing_promise_removes_its_member(store: Store) -> None:
    await store.redis.zadd(tkey(store, "gone"), {"g|gone": 0})
    script, keys, args = store.timeout_call("gone", G)
    assert await script(store.redis, keys, args) == [-1]
    assert await store.redis.zscore(tkey(store, "gone"), "g|gone") is None


async def test_timeout_of_a_completed_promise_removes_a_leftover_member(store: Store) -> None:
    await create(store, "p1")
    await store.complete("p1", None, None, "resolved", b"v")
    await store.redis.zadd(tkey(store, "p1"), {"g|p1": 0})  # left behind by a bug
    script, keys, args = store.timeout_call("p1", G)
    assert (await script(store.redis, keys, args))[:2] == [0, b"resolved"]
    assert await store.redis.zscore(tkey(store, "p1"), "g|p1") is None


async def test_timeout_member_naming_another_group_is_moved_to_the_promises_group(
    store: Store,
) -> None:
    _, _, timeout_at = await create(store, "p1")
    await store.redis.zrem(tkey(store, "p1"), "g|p1")
    await store.redis.zadd(tkey(store, "p1"), {"h|p1": 0})
    script, keys, args = store.timeout_call("p1", "h")
    assert await script(store.redis, keys, args) == [-5, b"g"]
    members = await store.redis.zrange(tkey(store, "p1"), 0, -1, withscores=True)
    assert members == [(b"g|p1", float(timeout_at))]
    assert (await fields(store, "p1"))["state"] == b"pending"


async def test_timeout_member_due_too_early_is_rescored_to_the_promises_timeout(
    store: Store,
) -> None:
    _, _, timeout_at = await create(store, "p1")
    await store.redis.zadd(tkey(store, "p1"), {"g|p1": 0})
    script, keys, args = store.timeout_call("p1", G)
    assert await script(store.redis, keys, args) == [-8]
    assert await store.redis.zscore(tkey(store, "p1"), "g|p1") == timeout_at


async def test_orphaned_delayed_members_do_not_freeze_the_partitions_retries(
    make_rp: MakeRp, redis: Redis
) -> None:
    rp = await make_rp(group="gateway")
    keys = rp.keys
    store = rp.store
    await create(store, "real")
    k = keys.partition("real")
    await store.redis.zadd(keys.delayed(k), {"g|real": 1000})
    await store.redis.hset(keys.promise("real"), "entry", "")  # waiting in delayed
    orphans = ids_in_partition(keys, k, 150, "orphan")
    await redis.zadd(keys.delayed(k), {f"g|{o}": i for i, o in enumerate(orphans)})
    worker = rp._new_worker()

    async def dispatched() -> bool:
        await worker.upkeep.promote()
        return (await fields(store, "real"))["entry"] != b""

    await assert_eventually(dispatched, timeout=10)
    assert await redis.zcard(keys.delayed(k)) == 0


async def test_promote_of_a_member_naming_another_group_dispatches_nothing(
    store: Store,
) -> None:
    entry, v = await running(store, "p1")
    await store.retry("p1", G, v, 0, b"err", entry=entry)
    await store.redis.zadd(dkey(store, "p1"), {"h|p1": 0})
    script, keys, args = store.promote_call(store.keys.partition("p1"), "h", "p1")
    assert await script(store.redis, keys, args) == [-5]
    assert await store.redis.zscore(dkey(store, "p1"), "h|p1") is None
    assert await store.redis.xlen(stream(store, "p1", "h")) == 0
    # The promise's own member still dispatches it to its group.
    assert await promote(store, "p1") == [1]
    assert await store.redis.xlen(stream(store, "p1")) == 1
