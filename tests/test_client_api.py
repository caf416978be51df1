"""The client API on both backends: creating, reading, settling and waiting on promises,
and the errors bad input gets before anything is written."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import fakeredis
import pytest
from redis.asyncio import Redis

from redpromise import (
    ConfigurationError,
    Context,
    InvalidId,
    PayloadError,
    PayloadTooLarge,
    PromiseCanceled,
    PromiseNotFound,
    PromiseRejected,
    PromiseTimedOut,
    Redpromise,
    Settings,
)
from redpromise.core.codec import decode

MakeRp = Callable[..., Awaitable[Redpromise]]


async def keys_of(redis: Redis, namespace: str) -> list[bytes]:
    return [k async for k in redis.scan_iter(match=f"*{namespace}*")]


async def entries(rp: Redpromise, id: str, group: str) -> int:
    return int(await rp.redis.xlen(rp.keys.stream(rp.keys.partition(id), group)))


async def test_get_of_unknown_id_raises_not_found(make_rp: MakeRp) -> None:
    rp = await make_rp()
    with pytest.raises(PromiseNotFound) as info:
        await rp.get("nope")
    assert info.value.id == "nope" and isinstance(info.value, KeyError)
    with pytest.raises(PromiseNotFound):
        await rp.resolve("nope", 1)


async def test_done_on_pending_promise_is_false_without_waiting(make_rp: MakeRp) -> None:
    rp = await make_rp()
    handle = await rp.begin_rpc("p1", "work", 1)
    assert await handle.done() is False
    assert await (await rp.get("p1")).state() == "pending"


@pytest.mark.parametrize(
    "bad",
    ["", "a\x00b", "line\nbreak", "x" * 10_000, 42, None, b"bytes"],
    ids=["empty", "nul", "newline", "10kB", "int", "none", "bytes"],
)
async def test_begin_rpc_with_invalid_id_writes_nothing(
    make_rp: MakeRp, redis: Redis, namespace: str, bad: Any
) -> None:
    rp = await make_rp()
    with pytest.raises(InvalidId):
        await rp.begin_rpc(bad, "work", 1)
    assert await keys_of(redis, namespace) == []


async def test_unicode_id_round_trips_through_a_worker(make_rp: MakeRp) -> None:
    worker = await make_rp()

    @worker.register
    async def echo(ctx: Context, value: str) -> str:
        return f"{ctx.id}:{value}"

    await worker.start()
    gateway = await make_rp(group="gateway")
    id = "заказ/№1 — 東京 🚀"
    handle = await gateway.begin_rpc(id, "echo", "ü")
    assert await handle.result(timeout=10) == f"{id}:ü"
    again = await gateway.get(id)
    assert again.id == id and await again.state() == "resolved"
    assert await gateway.redis.exists(gateway.keys.promise(id)) == 1


async def test_payload_over_limit_is_refused_before_any_write(
    make_rp: MakeRp, redis: Redis, namespace: str
) -> None:
    rp = await make_rp(max_payload_bytes=1024)
    with pytest.raises(PayloadTooLarge):
        await rp.begin_rpc("p1", "work", "x" * 2000)
    assert await keys_of(redis, namespace) == []
    await rp.begin_rpc("p2", "work", "x" * 100)
    with pytest.raises(PayloadTooLarge):
        await rp.resolve("p2", "y" * 2000)
    assert await (await rp.get("p2")).state() == "pending"


async def test_unencodable_argument_is_a_payload_error(
    make_rp: MakeRp, redis: Redis, namespace: str
) -> None:
    rp = await make_rp()
    with pytest.raises(PayloadError) as info:
        await rp.begin_rpc("p1", "work", object())
    assert not isinstance(info.value, PayloadTooLarge)
    assert await keys_of(redis, namespace) == []


async def test_same_id_twice_is_one_promise_with_the_first_arguments(make_rp: MakeRp) -> None:
    rp = await make_rp()
    await rp.begin_rpc("p1", "work", 1)
    await rp.begin_rpc("p1", "work", 2)
    assert await entries(rp, "p1", "worker") == 1
    args: Any = await rp.redis.hget(rp.keys.promise("p1"), "args")
    assert args is not None and decode(args)["a"] == [1]


# ---------------------------------------------------------------- settling from outside


async def test_resolve_from_outside_delivers_the_value(make_rp: MakeRp) -> None:
    rp = await make_rp()
    await rp.begin_rpc("p1", "work")
    handle = await rp.resolve("p1", {"answer": [4, 2]})
    assert await handle.result(timeout=5) == {"answer": [4, 2]}
    assert await entries(rp, "p1", "worker") == 0


async def test_reject_from_outside_carries_type_and_message(make_rp: MakeRp) -> None:
    rp = await make_rp()
    await rp.begin_rpc("p1", "work")
    await rp.begin_rpc("p2", "work")
    await rp.reject("p1", ValueError("bad input"))
    await rp.reject("p2", "plain message")
    with pytest.raises(PromiseRejected) as info:
        await (await rp.get("p1")).result(timeout=5)
    assert type(info.value) is PromiseRejected
    assert (info.value.type, info.value.message) == ("ValueError", "bad input")
    with pytest.raises(PromiseRejected) as info:
        await (await rp.get("p2")).result(timeout=5)
    assert (info.value.type, info.value.message) == ("Error", "plain message")


async def test_cancel_from_outside_raises_promise_canceled(make_rp: MakeRp) -> None:
    rp = await make_rp()
    handle = await rp.begin_rpc("p1", "work")
    await rp.cancel("p1")
    with pytest.raises(PromiseCanceled):
        await handle.result(timeout=5)
    assert await handle.state() == "rejected_canceled"


async def test_first_completion_wins(make_rp: MakeRp) -> None:
    rp = await make_rp()
    handle = await rp.begin_rpc("p1", "work")
    await rp.resolve("p1", "first")
    await rp.reject("p1", "second")
    await rp.cancel("p1")
    assert await handle.state() == "resolved"
    assert await handle.result(timeout=5) == "first"


# ---------------------------------------------------------------- waiting and timeouts


async def test_result_timeout_leaves_promise_pending(make_rp: MakeRp) -> None:
    rp = await make_rp()
    handle = await rp.begin_rpc("p1", "work")
    with pytest.raises(TimeoutError):
        await handle.result(timeout=0.2)
    assert await handle.state() == "pending"


async def test_promise_without_worker_times_out(make_rp: MakeRp) -> None:
    rp = await make_rp()
    handle = await rp.begin_rpc("p1", "work", timeout=timedelta(seconds=0.3))
    with pytest.raises(PromiseTimedOut) as info:
        await handle.result(timeout=10)
    assert isinstance(info.value, PromiseRejected)
    assert await handle.state() == "rejected_timedout"
    assert await handle.done() is True


async def test_zero_timeout_is_a_configuration_error(make_rp: MakeRp) -> None:
    rp = await make_rp()
    with pytest.raises(ConfigurationError):
        await rp.begin_rpc("p1", "work", timeout=timedelta(0))


# ---------------------------------------------------------------- configuration


async def test_partition_count_mismatch_on_one_namespace_is_refused(make_rp: MakeRp) -> None:
    first = await make_rp(partitions=16)
    await first.begin_rpc("p1", "work")
    other = await make_rp(partitions=8)
    with pytest.raises(ConfigurationError):
        await other.begin_rpc("p2", "work")
    with pytest.raises(ConfigurationError):
        await other.start()
    with pytest.raises(PromiseNotFound):
        await first.get("p2")


@pytest.mark.parametrize("target", ["poll://any@g", "g", "poll://any@g/extra"])
async def test_target_names_the_group_dispatched_to(make_rp: MakeRp, target: str) -> None:
    rp = await make_rp()
    await rp.begin_rpc("p1", "work", target=target)
    rec = await rp.store.read("p1")
    assert rec is not None and rec.group == "g"
    assert await entries(rp, "p1", "g") == 1
    assert await entries(rp, "p1", "worker") == 0


@pytest.mark.parametrize(
    ("target", "error"),
    [
        ("poll://uni@g", ConfigurationError),
        ("poll://g", ConfigurationError),
        ("poll://any@", InvalidId),
        ("http://any@g", InvalidId),
    ],
)
async def test_unsupported_target_is_refused_before_any_write(
    make_rp: MakeRp, redis: Redis, namespace: str, target: str, error: type[Exception]
) -> None:
    rp = await make_rp()
    with pytest.raises(error):
        await rp.begin_rpc("p1", "work", target=target)
    assert await keys_of(redis, namespace) == []


async def test_options_bag_merges_with_explicit_arguments(make_rp: MakeRp) -> None:
    rp = await make_rp()
    opts = rp.options(target="g", timeout=timedelta(seconds=30), tags={"k": "v"})
    await rp.begin_rpc("p1", "work", options=opts, timeout=timedelta(seconds=60))
    rec = await rp.store.read("p1")
    assert rec is not None and rec.group == "g"
    assert rec.timeout_at - rec.created_at == 60_000
    assert rec.tags is not None and decode(rec.tags) == {"k": "v"}
    await rp.begin_rpc("p2", "work", options=opts, target="h")
    rec2 = await rp.store.read("p2")
    assert rec2 is not None and rec2.group == "h"
    assert rec2.timeout_at - rec2.created_at == 30_000


async def test_client_that_decodes_responses_is_refused_at_construction(namespace: str) -> None:
    decoding = fakeredis.FakeAsyncRedis(decode_responses=True)
    try:
        with pytest.raises(ConfigurationError, match="decode_responses"):
            Redpromise(group="g", settings=Settings(namespace=namespace), redis=decoding)
    finally:
        await decoding.aclose()
