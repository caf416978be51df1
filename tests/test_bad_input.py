"""Garbage in Redis, unknown functions, oversized results: a clear error, nothing else hurt.

Each test also proves the worker keeps serving: a healthy promise begun after the
garbage still resolves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest
from redis.asyncio import Redis

from redpromise import Context, CorruptRecord, PayloadTooLarge, PromiseRejected, Redpromise
from redpromise.testing import FaultyRedis
from tests.conftest import Backend
from tests.helpers import assert_eventually

MakeRp = Callable[..., Awaitable[Redpromise]]


async def started_worker(make_rp: MakeRp, **overrides: object) -> Redpromise:
    rp = await make_rp(**overrides)

    @rp.register
    async def echo(ctx: Context, x: object) -> object:
        return x

    @rp.register
    async def big(ctx: Context, n: int) -> str:
        return "x" * n

    await rp.start()
    return rp


async def still_serving(rp: Redpromise, id: str = "healthy") -> None:
    assert await rp.rpc(id, "echo", {"ok": 1}) == {"ok": 1}


async def test_garbage_arguments_reject_the_promise_with_a_clear_error(
    make_rp: MakeRp, redis: Redis
) -> None:
    gateway = await make_rp(group="gateway")
    handle = await gateway.begin_rpc("bad-args", "echo", 1)
    await redis.hset(gateway.keys.promise("bad-args"), "args", b"\xc1\xff not msgpack")
    rp = await started_worker(make_rp)
    with pytest.raises(PromiseRejected) as info:
        await handle.result(timeout=10)
    assert info.value.type == "PayloadError"
    assert "unreadable arguments" in info.value.message
    await still_serving(rp)


async def test_stream_entry_without_a_promise_id_goes_to_dead(
    make_rp: MakeRp, redis: Redis
) -> None:
    rp = await started_worker(make_rp)
    keys = rp.keys
    await redis.xadd(keys.stream(0, "worker"), {"junk": "yes"})
    dead = keys.dead(0)
    await assert_eventually(lambda: redis.xlen(dead))
    entry = (await redis.xrange(dead))[0][1]
    assert entry[b"reason"] == b"entry without a promise id"
    await assert_eventually(lambda: _stream_empty(redis, keys.stream(0, "worker")))
    await still_serving(rp)


async def _stream_empty(redis: Redis, stream: str) -> bool:
    return await redis.xlen(stream) == 0


async def test_promise_key_of_the_wrong_type_is_buried_and_reported_corrupt(
    make_rp: MakeRp, redis: Redis
) -> None:
    rp = await started_worker(make_rp)
    keys = rp.keys
    k = keys.partition("wrong-type")
    await redis.set(keys.promise("wrong-type"), "a string, not a hash")
    await redis.xadd(keys.stream(k, "worker"), {"id": "wrong-type"})
    await assert_eventually(lambda: redis.xlen(keys.dead(k)))
    reason = (await redis.xrange(keys.dead(k)))[0][1][b"reason"]
    assert reason.startswith(b"acquire failed")
    with pytest.raises(CorruptRecord):
        await rp.get("wrong-type")
    await still_serving(rp)


async def test_hash_with_an_unknown_state_is_reported_corrupt(
    make_rp: MakeRp, redis: Redis
) -> None:
    rp = await make_rp(group="gateway")
    await rp.begin_rpc("odd-state", "echo", 1)
    await redis.hset(rp.keys.promise("odd-state"), "state", "exploded")
    with pytest.raises(CorruptRecord):
        await (await rp.get("odd-state")).done()


async def test_unknown_function_is_rejected_after_a_bounded_wait(make_rp: MakeRp) -> None:
    rp = await started_worker(make_rp, lease=timedelta(milliseconds=300))
    handle = await rp.begin_rpc("nobody", "no_such_function", 1)
    with pytest.raises(PromiseRejected) as info:
        await handle.result(timeout=15)
    assert info.value.type == "UnknownFunction"
    assert "no_such_function" in info.value.message
    await still_serving(rp)


async def test_oversized_argument_is_refused_before_any_write(
    make_rp: MakeRp, redis: Redis
) -> None:
    rp = await make_rp(group="gateway", max_payload_bytes=4096)
    with pytest.raises(PayloadTooLarge):
        await rp.begin_rpc("too-big", "echo", "x" * 10_000)
    assert await redis.exists(rp.keys.promise("too-big")) == 0


async def test_oversized_result_rejects_the_promise(make_rp: MakeRp) -> None:
    rp = await started_worker(make_rp, max_payload_bytes=4096)
    with pytest.raises(PromiseRejected) as info:
        await rp.rpc("big-result", "big", 10_000)
    assert info.value.type == "PayloadTooLarge"
    await still_serving(rp)


async def test_a_failed_bury_holds_back_none_of_the_promises_acquired_with_it(
    make_rp: MakeRp, faulty: FaultyRedis
) -> None:
    """One read delivers a corrupt entry (its promise key a string) and, after it, two
    healthy ones, acquired in the same batch; the bury of the corrupt one fails (its
    reply lost). The healthy ones still run on that acquisition (version 1), not only
    after their lease lapsed and a reclaim acquired them again."""
    redis = faulty.redis
    rp = await make_rp(redis=redis, partitions=1, lease=timedelta(seconds=3))

    @rp.register
    async def echo(ctx: Context, x: object) -> object:
        return x

    keys = rp.keys
    await redis.set(keys.promise("corrupt"), "a string, not a hash")
    await redis.xadd(keys.stream(0, "worker"), {"id": "corrupt"})
    handles = [await rp.begin_rpc(f"ok{i}", "echo", i) for i in range(2)]
    faulty.lose_reply("bury")
    await rp.start()
    assert [await h.result(timeout=15) for h in handles] == [0, 1]
    assert faulty.lost == ["bury"]
    versions = [await redis.hget(keys.promise(f"ok{i}"), "version") for i in range(2)]
    assert versions == [b"1", b"1"]
    await assert_eventually(lambda: redis.xlen(keys.dead(0)))  # the bury ran, all the same


async def test_an_acquire_call_that_fails_never_buries_its_entry_the_poison_bound_ends_it(
    make_rp: MakeRp, redis: Redis
) -> None:
    """Its steps key holds a string, so every acquire of this once-acquired promise fails
    as a whole (Redis' error reply, not the { 0, error } that blames the promise key).
    Burying the entry would leave the promise pending with no dispatch; instead it stays
    pending, each reclaim counts a delivery, and past max_deliveries it is rejected as
    poison: settled, with its dead record."""
    gateway = await make_rp(group="gateway")
    handle = await gateway.begin_rpc("bad-steps", "echo", 1)
    await redis.hset(gateway.keys.promise("bad-steps"), "version", 1)  # acquired before
    await redis.set(gateway.keys.steps("bad-steps"), "a string, not a hash")
    rp = await started_worker(make_rp, max_deliveries=2, lease=timedelta(milliseconds=300))
    with pytest.raises(PromiseRejected) as info:
        await handle.result(timeout=15)
    assert info.value.type == "PoisonError"
    dead = await redis.xrange(rp.keys.dead(rp.keys.partition("bad-steps")))
    assert [f[b"id"] for _, f in dead] == [b"bad-steps"]  # the poison record, no bury
    await still_serving(rp)


def _id_on(rp: Redpromise, k: int, prefix: str) -> str:
    return next(f"{prefix}{i}" for i in range(1000) if rp.keys.partition(f"{prefix}{i}") == k)


async def test_a_stream_key_repaired_after_reads_found_it_wrong_gets_its_lost_dispatches_back(
    backend: Backend, make_rp: MakeRp, redis: Redis
) -> None:
    """A promise is dispatched to partition 1 while the worker is busy; then partition 1's
    stream key is overwritten with a string (its entry lost) and the worker's reads find it
    WRONGTYPE and leave it out. Once an operator deletes the key, the upkeep takes the
    partition back (reconcile re-dispatches the lost entry) and the promise runs."""
    if backend.kind == "fake":
        pytest.skip("fakeredis answers XREADGROUP on a string with AttributeError")
    rp = await started_worker(make_rp, partitions=2, concurrency=1)
    release = asyncio.Event()

    @rp.register
    async def hold(ctx: Context) -> str:
        await release.wait()
        return "held"

    held = await rp.begin_rpc(_id_on(rp, 0, "hold"), "hold")
    worker = rp.worker
    assert worker is not None
    await assert_eventually(lambda: worker.inflight == 1)  # its one slot taken: no reads
    lost = await rp.begin_rpc(_id_on(rp, 1, "lost"), "echo", "back")
    stream = rp.keys.stream(1, "worker")
    await redis.delete(stream)
    await redis.set(stream, "not a stream")
    release.set()
    assert await held.result(timeout=15) == "held"
    await assert_eventually(lambda: worker.bad_partitions == {1})  # found by a read
    await redis.delete(stream)  # the operator's repair
    assert await lost.result(timeout=15) == "back"
    await still_serving(rp)
