"""The dead stream of a partition stays bounded: at most ``dead_max_entries`` records, none
older than ``dead_max_age`` (by the Redis clock) once a new one is written."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from redis.asyncio import Redis

from redpromise import ConfigurationError
from redpromise.core.keys import Keys
from redpromise.core.options import Settings
from redpromise.store.store import Store
from redpromise.testing import FaultyRedis
from tests.helpers import assert_eventually
from tests.storeops import G, acquire, claim, create, deliver, text


def make_store(redis: Redis, namespace: str, **overrides: Any) -> Store:
    settings = Settings(namespace=namespace, max_deliveries=1, **overrides)
    return Store(redis, Keys(namespace), settings)


def ids_in_partition(keys: Keys, k: int, n: int) -> list[str]:
    out, i = [], 0
    while len(out) < n:
        if keys.partition(f"p{i}") == k:
            out.append(f"p{i}")
        i += 1
    return out


async def poison(store: Store, id: str) -> None:
    """Create ``id`` and deliver it twice (max_deliveries=1): rejected as poison."""
    await create(store, id)
    entry = await deliver(store, id)
    assert (await acquire(store, id, entry))[0] == 1
    await claim(store, id, entry, "c2")
    assert (await acquire(store, id, entry, "c2"))[:1] == [-7]


async def dead_ids(store: Store, k: int) -> list[str]:
    raw: Any = await store.redis.xrange(store.keys.dead(k))
    return [text(f.get(b"id", b"")) for _, f in raw]


async def test_poison_records_keep_at_most_dead_max_entries(redis: Redis, namespace: str) -> None:
    store = make_store(redis, namespace, dead_max_entries=5)
    ids = ids_in_partition(store.keys, 0, 12)
    for id in ids:
        await poison(store, id)
    assert await dead_ids(store, 0) == ids[-5:]


async def test_buried_entries_keep_at_most_dead_max_entries(redis: Redis, namespace: str) -> None:
    store = make_store(redis, namespace, dead_max_entries=3)
    s = store.keys.stream(0, G)
    await redis.xgroup_create(s, G, id="0", mkstream=True)
    entries = [text(await redis.xadd(s, {"junk": "1"})) for _ in range(8)]
    calls = [store.bury_call(0, G, e, "entry without a promise id") for e in entries]
    assert await store.run_calls(calls) == [[1]] * 8
    raw: Any = await redis.xrange(store.keys.dead(0))
    assert [text(f[b"entry"]) for _, f in raw] == entries[-3:]
    assert await redis.xlen(s) == 0


async def test_dead_records_older_than_dead_max_age_are_dropped(
    redis: Redis, namespace: str
) -> None:
    store = make_store(redis, namespace, dead_max_age=timedelta(hours=1))
    [first, second] = ids_in_partition(store.keys, 0, 2)
    dead = store.keys.dead(0)
    await redis.xadd(dead, {"id": "ancient"}, id="1-1")  # written long ago
    await poison(store, first)
    assert await dead_ids(store, 0) == [first]
    # A tiny age: once the server clock has moved on, the next write drops the older one.
    store = make_store(redis, namespace, dead_max_age=timedelta(milliseconds=1))
    [(last_id, _)] = await redis.xrevrange(dead, count=1)
    written_ms = int(text(last_id).split("-")[0])

    async def clock_moved_on() -> bool:
        secs, micros = await redis.time()
        return secs * 1000 + micros // 1000 > written_ms + 1

    await assert_eventually(clock_moved_on, timeout=5, interval=0.005)
    await poison(store, second)
    assert await dead_ids(store, 0) == [second]


async def test_bury_resent_by_transport_writes_one_dead_record(
    redis: Redis, namespace: str
) -> None:
    faulty = FaultyRedis(redis)
    store = make_store(faulty.redis, namespace)
    s = store.keys.stream(0, G)
    await redis.xgroup_create(s, G, id="0", mkstream=True)
    entry = text(await redis.xadd(s, {"junk": "1"}))
    faulty.lose_reply("bury", resend=True)
    assert await store.run_calls([store.bury_call(0, G, entry, "junk")]) == [[0]]
    assert faulty.lost == ["bury"]
    assert await redis.xlen(store.keys.dead(0)) == 1
    assert await redis.xlen(s) == 0


@pytest.mark.parametrize(
    "overrides",
    [{"dead_max_entries": 0}, {"dead_max_age": timedelta(0)}],
    ids=["entries", "age"],
)
def test_dead_stream_bounds_must_be_positive(overrides: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        Settings(**overrides)
