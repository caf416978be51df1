"""Garbage in Redis, unknown functions, oversized results: a clear error, nothing else hurt.

Each test also proves the worker keeps serving: a healthy promise begun after the
garbage still resolves.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest
from redis.asyncio import Redis

from redpromise import Context, CorruptRecord, PayloadTooLarge, PromiseRejected, Redpromise
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
