"""A transition the transport sends twice (redis-py's Retry resends a whole batch after a
lost reply) acts once: a resent acquire counts one delivery, a resent retry leaves the
fresh dispatch that promote wrote in between alone. A genuine redelivery still counts.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from redpromise import Context, Redpromise
from redpromise.core.keys import Keys
from redpromise.core.options import Settings
from redpromise.store.store import Store
from redpromise.testing import FaultyRedis
from tests.storeops import (
    POISON,
    G,
    claim,
    create,
    deliver,
    dkey,
    fields,
    pel,
    promote,
    running,
    stream,
    text,
)

MakeRp = Callable[..., Awaitable[Redpromise]]


@pytest.fixture
def store(faulty: FaultyRedis, namespace: str) -> Store:
    settings = Settings(namespace=namespace, max_deliveries=2)
    return Store(faulty.redis, Keys(namespace), settings)


async def acquire_batched(store: Store, id: str, entry: str, consumer: str = "c1") -> list[Any]:
    """Acquire as the worker does: one call in a batch (the path redis-py's Retry resends)."""
    call = store.acquire_call(store.keys.partition(id), G, entry, id, consumer, POISON)
    [res] = await store.run_calls([call])
    assert not isinstance(res, BaseException), res
    out: list[Any] = res
    return out


# ---------------------------------------------------------------- acquire


async def test_acquire_resent_by_transport_counts_one_delivery(
    store: Store, faulty: FaultyRedis
) -> None:
    await create(store, "p1")
    entry = await deliver(store, "p1")
    faulty.lose_reply("acquire", resend=True)
    res = await acquire_batched(store, "p1", entry)
    assert faulty.lost == ["acquire"]
    assert (res[0], res[1], res[7]) == (1, 1, 1)
    f = await fields(store, "p1")
    assert (f["version"], f["deliveries"]) == (b"1", b"1")
    assert await store.checkpoint("p1", 1, 1, b"step") == 1  # the version we were told holds


async def test_same_acquire_call_sent_twice_returns_the_same_acquisition(store: Store) -> None:
    await create(store, "p1")
    entry = await deliver(store, "p1")
    first = await acquire_batched(store, "p1", entry)
    await store.checkpoint("p1", first[1], 1, b"step")
    await claim(store, "p1", entry, "c2")  # version 2 below: the steps come back too
    script, keys, args = store.acquire_call(
        store.keys.partition("p1"), G, entry, "p1", "c2", POISON
    )
    once = await script(store.redis, keys, args)
    twice = await script(store.redis, keys, args)
    assert once == twice
    assert (once[1], once[7], once[8]) == (2, 2, [b"1", b"step"])
    assert (await fields(store, "p1"))["version"] == b"2"


async def test_resent_acquires_never_make_a_healthy_promise_poison(
    store: Store, faulty: FaultyRedis
) -> None:
    """max_deliveries=2: two real deliveries, each acquire sent twice, are not poison."""
    await create(store, "p1")
    entry = await deliver(store, "p1")
    faulty.lose_reply("acquire", times=10, resend=True)
    assert (await acquire_batched(store, "p1", entry))[:2] == [1, 1]
    await claim(store, "p1", entry, "c2")  # the lease lapsed: XAUTOCLAIM by another worker
    res = await acquire_batched(store, "p1", entry, "c2")
    assert (res[0], res[1], res[7]) == (1, 2, 2)
    assert faulty.lost == ["acquire", "acquire"]
    # A third real delivery is one too many: the bound still holds. The first send
    # rejects it as poison; the resend finds it already rejected (-2), writing nothing.
    await claim(store, "p1", entry, "c3")
    assert await acquire_batched(store, "p1", entry, "c3") == [-2]
    assert faulty.lost == ["acquire"] * 3
    assert (await fields(store, "p1"))["state"] == b"rejected"
    assert await store.redis.xlen(store.keys.dead(store.keys.partition("p1"))) == 1


async def test_redelivery_to_the_same_consumer_counts_and_fences_the_old_execution(
    store: Store,
) -> None:
    await create(store, "p1")
    entry = await deliver(store, "p1")
    assert (await acquire_batched(store, "p1", entry))[:2] == [1, 1]
    # This process stalled past its lease and XAUTOCLAIMed its own entry back.
    await claim(store, "p1", entry, "c1")
    res = await acquire_batched(store, "p1", entry)
    assert (res[0], res[1], res[7]) == (1, 2, 2)
    assert await store.checkpoint("p1", 1, 1, b"stale") == -3


async def test_worker_whose_acquires_are_all_resent_runs_the_function(
    make_rp: MakeRp, faulty: FaultyRedis
) -> None:
    """With max_deliveries=1, a delivery counted twice would reject every promise."""
    worker = await make_rp(redis=faulty.redis, max_deliveries=1)
    runs: list[str] = []

    @worker.register
    async def work(ctx: Context, x: int) -> int:
        runs.append(ctx.id)
        return x + 1

    faulty.lose_reply("acquire", times=100, resend=True)
    await worker.start()
    handle = await worker.begin_rpc("p1", "work", 41)
    assert await handle.result(timeout=10) == 42
    assert runs == ["p1"]
    assert faulty.lost.count("acquire") == 1


# ---------------------------------------------------------------- retry and suspension


@pytest.mark.parametrize("attempt", [True, False], ids=["retry", "suspension"])
async def test_retry_resent_after_promote_leaves_the_fresh_dispatch_alone(
    store: Store, attempt: bool
) -> None:
    entry, v = await running(store, "p1")
    script, keys, args = store.retry_call(
        "p1", G, v, 0, b"err" if attempt else b"", entry=entry, attempt=attempt
    )
    assert (await script(store.redis, keys, args))[0] == 1
    assert await promote(store, "p1") == [1]  # due at once: a fresh entry, same version
    fresh = text((await fields(store, "p1"))["entry"])
    # The first send's reply was lost; the transport sends the very same call again.
    assert await script(store.redis, keys, args) == [0, None]
    f = await fields(store, "p1")
    assert text(f["entry"]) == fresh
    assert f.get("attempt") == (b"1" if attempt else None)
    assert [e for e, _ in await store.redis.xrange(stream(store, "p1"))] == [fresh.encode()]
    assert await store.redis.zscore(dkey(store, "p1"), "g|p1") is None
    # The fresh entry is delivered and acquired as usual.
    new = await deliver(store, "p1")
    assert new == fresh
    assert (await acquire_batched(store, "p1", new))[:2] == [1, v + 1]
    assert [text(p["message_id"]) for p in await pel(store, "p1")] == [fresh]
