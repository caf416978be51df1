"""PartitionReads (a cluster's reads, one stream per command), on one server for speed:
entries taken in bulk while they flow, none lost around an error."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from redpromise._reads import PartitionReads
from tests.conftest import Backend


async def _setup(redis: Redis, ns: str, n: int) -> list[str]:
    streams = [f"{{{ns}:{k}}}:q:g" for k in range(n)]
    for s in streams:
        await redis.xgroup_create(s, "g", id="0", mkstream=True)
    return streams


async def test_every_entry_is_delivered_once_across_wake_ups_and_polls(
    redis: Redis, namespace: str
) -> None:
    streams = await _setup(redis, namespace, 4)
    reads = PartitionReads(redis, ["XREADGROUP", "GROUP", "g", "c"], streams, 100)
    reads.use(range(4))
    for s in streams:
        for i in range(3):
            await redis.xadd(s, {"id": f"{s}-{i}"})
    got = []
    for _ in range(10):
        got += await reads.read(100)
        if len(got) == 12:
            break
    await reads.close()
    written = [e.decode() for s in streams for e, _ in await redis.xrange(s)]
    assert sorted(e for _, e, _ in got) == sorted(written)
    assert len(got) == 12  # each entry delivered once


async def test_entries_delivered_beside_an_error_are_handed_over_first(
    backend: Backend, redis: Redis, namespace: str
) -> None:
    if backend.kind == "fake":
        pytest.skip("fakeredis answers XREADGROUP on a string with AttributeError")
    streams = await _setup(redis, namespace, 3)
    await redis.delete(streams[1])
    await redis.set(streams[1], "not a stream")  # WRONGTYPE for that partition's read
    reads = PartitionReads(redis, ["XREADGROUP", "GROUP", "g", "c"], streams, 100)
    reads.use(range(3))
    await redis.xadd(streams[0], {"id": "a"})
    await redis.xadd(streams[2], {"id": "b"})
    got: list[str] = []
    errors: list[Exception] = []
    for _ in range(10):
        try:
            got += [e for _, e, _ in await reads.read(100)]
        except Exception as exc:  # kept for the call after the entries: raised once
            errors.append(exc)
        if len(got) == 2 and errors:
            break
    await reads.close()
    assert len(got) == 2  # both good partitions' entries, none lost around the error
    assert errors and "WRONGTYPE" in str(errors[0])
