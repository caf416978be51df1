"""The worker's reads (redpromise.worker.reads), on one server for speed: PartitionReads (a
cluster's, one stream per command) and StreamReads take entries in bulk while they flow
(take.lua: read and acquired in one call), block when quiet, and lose nothing around an
error."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from redpromise.core.keys import LAYOUT_LEGACY, Keys
from redpromise.core.options import Settings
from redpromise.redis.classify import cause_of
from redpromise.store.store import Store
from redpromise.worker.reads import PartitionReads, StreamReads
from tests.conftest import Backend
from tests.helpers import Counted
from tests.storeops import POISON, text

HEAD = ["XREADGROUP", "GROUP", "g", "c"]
Reads = type[PartitionReads] | type[StreamReads]


async def _setup(redis: Redis, ns: str, n: int) -> tuple[list[str], Store]:
    keys = Keys(ns, n, LAYOUT_LEGACY)
    streams = [keys.stream(k, "g") for k in range(n)]
    for s in streams:
        await redis.xgroup_create(s, "g", id="0", mkstream=True)
    store = Store(redis, keys, Settings(namespace=ns))
    for script in store.scripts.values():  # no NOSCRIPT resends in the counts
        await redis.script_load(script.source)
    return streams, store


def _reads(kind: Reads, redis: Redis, streams: list[str], store: Store) -> Any:
    def take(k: int, count: int) -> Any:
        return store.take_call(k, "g", "c", count, POISON)

    return kind(redis, HEAD, streams, 100, take)


@pytest.mark.parametrize("kind", [PartitionReads, StreamReads])
async def test_every_entry_is_delivered_once_across_wake_ups_and_takes(
    redis: Redis, namespace: str, kind: Reads
) -> None:
    streams, store = await _setup(redis, namespace, 4)
    reads = _reads(kind, redis, streams, store)
    reads.use(range(4))
    written = [text(await redis.xadd(s, {"id": f"{s}-{i}"})) for s in streams for i in range(3)]
    got: list[str] = []
    for _ in range(10):
        batch = await reads.read(100)
        got += [e for _, e, _ in batch.deliveries] + [e for _, e, _, _ in batch.taken]
        if len(got) == 12:
            break
    await reads.close()
    assert sorted(got) == sorted(written)
    assert len(got) == 12  # each entry delivered once


async def test_entries_delivered_beside_an_error_are_handed_over_first(
    backend: Backend, redis: Redis, namespace: str
) -> None:
    if backend.kind == "fake":
        pytest.skip("fakeredis answers XREADGROUP on a string with AttributeError")
    streams, store = await _setup(redis, namespace, 3)
    await redis.delete(streams[1])
    await redis.set(streams[1], "not a stream")  # WRONGTYPE for that partition's read
    reads = _reads(PartitionReads, redis, streams, store)
    reads.use(range(3))
    await redis.xadd(streams[0], {"id": "a"})
    await redis.xadd(streams[2], {"id": "b"})
    got: list[str] = []
    errors: list[Exception] = []
    for _ in range(10):
        try:
            got += [e for _, e, _ in (await reads.read(100)).deliveries]
        except Exception as exc:  # kept for the call after the entries: raised once
            errors.append(exc)
        if len(got) == 2 and errors:
            break
    await reads.close()
    assert len(got) == 2  # both good partitions' entries, none lost around the error
    assert errors and "WRONGTYPE" in str(errors[0])


async def _promises(store: Store, per_partition: int, first: int = 0) -> list[str]:
    """Create promises until every partition has ``per_partition`` new ones."""
    made: Counter[int] = Counter()
    ids, i = [], first
    while min(made[k] for k in range(store.keys.partitions)) < per_partition:
        id = f"p{i}"
        i += 1
        k = store.keys.partition(id)
        if made[k] < per_partition:
            await store.create(id, "fn", b"\x90", "g", 60_000, b"", b"")
            made[k] += 1
            ids.append(id)
    return ids


async def test_stream_reads_take_while_entries_flow_and_only_block_when_quiet(
    redis: Redis, namespace: str
) -> None:
    counted = Counted(redis)
    streams, store = await _setup(redis, namespace, 4)
    reads = _reads(StreamReads, redis, streams, store)
    reads.use(range(4))
    first = await _promises(store, 2)
    batch = await reads.read(100)  # one blocking read: several entries, so busy
    assert sorted(id_of(f) for _, _, f in batch.deliveries) == sorted(first)
    assert (counted.sent["take"], counted.sent["XREADGROUP"]) == (0, 1)
    more = await _promises(store, 2, first=1000)
    batch = await reads.read(100)  # entries flowing: one take per partition, no read
    assert not batch.deliveries
    assert sorted(id for _, _, id, _ in batch.taken) == sorted(more)
    assert all(res[0] == 1 for _, _, _, res in batch.taken)  # acquired
    assert (counted.sent["take"], counted.sent["XREADGROUP"]) == (4, 1)
    assert not await reads.read(100)  # a pass with nothing: back to a blocking read
    assert (counted.sent["take"], counted.sent["XREADGROUP"]) == (8, 2)
    assert not await reads.read(100)  # idle: blocking reads only
    assert (counted.sent["take"], counted.sent["XREADGROUP"]) == (8, 3)
    for id in more:
        assert await redis.hget(store.keys.promise(id), "version") == b"1"


async def test_a_take_pass_takes_no_more_entries_than_free_slots(
    redis: Redis, namespace: str
) -> None:
    counted = Counted(redis)
    streams, store = await _setup(redis, namespace, 4)
    reads = _reads(StreamReads, redis, streams, store)
    reads.use(range(4))
    await _promises(store, 1)
    assert len(await reads.read(100)) == 4  # busy from here
    await _promises(store, 6, first=1000)
    for free, most in ((2, 2), (3, 3), (9, 8)):  # 9 free: 4 partitions x 2 each
        batch = await reads.read(free)
        assert len(batch) == most
        touched = {k for k, *_ in batch.taken} | {k for k, *_ in batch.deliveries}
        assert len(touched) == min(free, 4)
    assert counted.sent["take"] > 0  # the partitions that had just delivered were taken
    await reads.close()


def id_of(fields: Any) -> str:
    return text(fields[b"id"] if isinstance(fields, dict) else fields[1])


async def test_a_take_error_reply_is_raised_with_its_cause_after_the_other_entries(
    backend: Backend, redis: Redis, namespace: str
) -> None:
    if backend.kind == "fake":
        pytest.skip("fakeredis answers XREADGROUP on a string with AttributeError")
    streams, store = await _setup(redis, namespace, 3)
    reads = _reads(StreamReads, redis, streams, store)
    reads.use(range(3))
    await _promises(store, 2)
    assert len(await reads.read(100)) == 6  # busy: the next read is a pass of take
    more = await _promises(store, 1, first=1000)
    await redis.delete(streams[1])
    await redis.set(streams[1], "not a stream")  # partition 1's take: WRONGTYPE
    batch = await reads.read(100)
    assert sorted(id for _, _, id, _ in batch.taken) == sorted(
        id for id in more if store.keys.partition(id) != 1
    )
    with pytest.raises(ResponseError) as raised:  # kept for the call after the entries
        await reads.read(100)
    assert cause_of(raised.value) == "WRONGTYPE"
    await redis.delete(streams[1])
    await redis.xgroup_create(streams[1], "g", id="0", mkstream=True)
    await _promises(store, 3, first=2000)
    assert len(await reads.read(100)) > 1  # busy again
    await redis.xgroup_destroy(streams[0], "g")  # a wiped group: the worker recreates it
    await _promises(store, 4, first=3000)
    batch = await reads.read(100)
    assert {k for k, _, _, _ in batch.taken} == {1, 2}
    with pytest.raises(ResponseError) as raised:
        await reads.read(100)
    assert cause_of(raised.value) == "NOGROUP"


async def _in_partition(store: Store, k: int, first: int) -> str:
    """Create one promise of partition ``k`` (the first id from ``p<first>`` that lands there)."""
    i = first
    while store.keys.partition(f"p{i}") != k:
        i += 1
    await store.create(f"p{i}", "fn", b"\x90", "g", 60_000, b"", b"")
    return f"p{i}"


async def test_a_pass_takes_only_where_entries_just_came_and_reads_the_other_streams(
    redis: Redis, namespace: str
) -> None:
    """An empty take is a whole script call: the partitions that gave nothing at the last
    read are read with one plain XREADGROUP instead, their entries acquired as usual."""
    counted = Counted(redis)
    streams, store = await _setup(redis, namespace, 4)
    reads = _reads(StreamReads, redis, streams, store)
    reads.use(range(4))
    for k, first in ((0, 0), (0, 1000), (1, 2000), (1, 3000)):
        await _in_partition(store, k, first)
    assert {k for k, _, _ in (await reads.read(100)).deliveries} == {0, 1}  # busy
    hot = await _in_partition(store, 0, 4000)
    cold = await _in_partition(store, 2, 5000)
    batch = await reads.read(100)
    assert [(k, id) for k, _, id, _ in batch.taken] == [(0, hot)]
    assert [(k, id_of(f)) for k, _, f in batch.deliveries] == [(2, cold)]
    assert (counted.sent["take"], counted.sent["XREADGROUP"]) == (2, 2)  # takes of 0 and 1
