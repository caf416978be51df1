"""A reshard under a running worker: while a partition's slot is migrating between two
masters (MIGRATING on the source, IMPORTING on the target, its keys moving one by one),
no entry is buried or dropped for a script error that is not the entry's fault; every
promise resolves once the slot has moved. Only a truly corrupt entry (its promise key of
another type) goes to the dead stream.

A real 2-master cluster (redis-cli refuses to create one: built by hand, see
tests/redis_cluster.py) and a real worker process.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from redpromise import Redpromise
from tests.conftest import fast_settings
from tests.helpers import assert_eventually
from tests.procs import WorkerProcess
from tests.redis_cluster import RedisCluster, async_client

pytestmark = [pytest.mark.real, pytest.mark.cluster]

N = 12  # promises begun before the migration


@pytest.fixture
def two_masters(tmp_path: Path) -> Iterator[RedisCluster]:
    cluster = RedisCluster(tmp_path / "cluster", masters=2, replicas=0, node_timeout_ms=2000)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.mark.parametrize("moved_first", ["half the promises", "the partition's keys"])
async def test_no_entry_of_a_migrating_slot_is_buried_and_all_resolve_once_it_moved(
    two_masters: RedisCluster, namespace: str, tmp_path: Path, moved_first: str
) -> None:
    """Keys move one by one: a take on the source finds half the promises gone (main:
    buried as "acquire failed"); one redirected to the target, which holds the
    partition's keys already, finds the promises not there yet (main: dropped as
    missing, the promises left pending with no dispatch)."""
    cluster = two_masters
    # One partition: every promise, its stream and the partition's keys share one slot.
    settings = fast_settings(namespace, partitions=1)
    redis = async_client(cluster.url)
    client = Redpromise(group="gateway", settings=settings, redis=redis)
    keys = client.keys
    slot = keys.slot(0)
    source = cluster.master_of(slot)
    (target,) = [n for n in cluster.nodes if n is not source]
    worker: WorkerProcess | None = None
    try:
        handles = [await client.begin_rpc(f"p{i}", "echo", i) for i in range(N)]
        # A partition in use holds all its keys, which is when take.lua runs on the
        # source (a key take declares missing there, Redis redirects the whole call):
        # a rejected promise (rejected index), a retry waiting (delayed), a dead record.
        await client.begin_rpc("refused", "echo", -1)
        await client.reject("refused", "no")
        await redis.zadd(keys.delayed(0), {"worker|later": 2**50})
        await redis.xadd(keys.dead(0), {"reason": "an earlier dead record"})
        # And one truly corrupt entry: its promise key holds a string, not a hash.
        await redis.set(keys.promise_in(0, "corrupt"), "not a hash")
        corrupt = (await redis.xadd(keys.stream(0, "worker"), {"id": "corrupt"})).decode()
        dead_before = await redis.xlen(keys.dead(0))
        stream = keys.stream(0, "worker")
        entries = await redis.xlen(stream)  # the refused promise's entry is gone already

        # The reshard begins, and some keys have moved to the target already.
        cluster.migrate(slot, source, target)
        if moved_first == "half the promises":
            moving = [keys.promise(f"p{i}") for i in range(0, N, 2)]
        else:
            moving = [keys.stream(0, "worker")]
            moving += [keys.dead(0), keys.timeouts(0), keys.delayed(0), keys.counts(0)]
            moving += [keys.index(0, "pending"), keys.index(0, "rejected")]
        cluster.move_keys(moving, source, target)

        # Concurrency 2: after the first read (2 entries), the worker takes (take.lua).
        worker = WorkerProcess(
            cluster.url,
            namespace,
            tmp_path,
            concurrency=2,
            env={"REDPROMISE_PARTITIONS": "1"},
        ).start()

        async def every_entry_read() -> bool:
            groups = await redis.xinfo_groups(stream)
            return bool(groups) and groups[0]["entries-read"] >= N + 2

        # Every entry was delivered while the slot was still migrating.
        await assert_eventually(every_entry_read, timeout=30)
        assert await redis.xlen(keys.dead(0)) == dead_before  # nothing buried meanwhile
        # Nor dropped: no acquire can run while the slot migrates, so all are still there.
        assert await redis.xlen(stream) == entries

        cluster.finish_migration(slot, source, target)
        assert [await h.result(timeout=30) for h in handles] == list(range(N))
        # The corrupt entry, and only it, went to the dead stream.
        await assert_eventually(lambda: _dead_entries(redis, keys.dead(0)), timeout=30)
        assert await _dead_entries(redis, keys.dead(0)) == [corrupt]
        assert worker.proc is not None and worker.proc.poll() is None
    finally:
        if worker is not None:
            worker.close()
        await client.stop()
        await redis.aclose()


async def _dead_entries(redis: Redis, dead: str) -> list[str]:
    """The stream entries buried in ``dead`` (records that name one)."""
    records = await redis.xrange(dead)
    return [f[b"entry"].decode() for _, f in records if b"entry" in f]
