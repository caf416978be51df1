"""The ambiguous-write trap: a script runs, its reply is lost, and it runs again.

Each transition is replayed after a lost reply (the caller repeats it, or redis-py
resends it on its own) and must leave the same final state as one clean call.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError

from redpromise import Context, Redpromise, StoreUnavailable
from redpromise.core.codec import encode
from redpromise.core.keys import Keys
from redpromise.core.options import Settings
from redpromise.store.store import Store
from redpromise.testing import FaultyRedis
from tests.conftest import Backend
from tests.helpers import assert_eventually
from tests.storeops import (
    G,
    acquire,
    create,
    deliver,
    dkey,
    fields,
    heartbeat,
    pel,
    promote,
    running,
    stream,
)

MakeRp = Callable[..., Awaitable[Redpromise]]


@pytest.fixture
def store(faulty: FaultyRedis, namespace: str) -> Store:
    return Store(faulty.redis, Keys(namespace), Settings(namespace=namespace))


async def test_fault_wrapper_runs_the_command_before_losing_the_reply(
    faulty: FaultyRedis,
) -> None:
    faulty.lose_reply("SET")
    with pytest.raises(ConnectionError):
        await faulty.redis.set("fx:k", "v")
    assert await faulty.redis.get("fx:k") == b"v"
    assert faulty.lost == ["SET"]
    await faulty.redis.set("fx:k", "w")  # only the armed number of replies is lost
    assert faulty.lost == ["SET"]


async def test_fault_wrapper_loses_the_reply_of_a_client_that_retries(
    backend: Backend, namespace: str
) -> None:
    """A client that retries (as redpromise's own do) resends a command after a lost
    connection: the reply the test chose to lose still reaches the caller as lost, and
    the command ran once, for one command and for one of redpromise's batches."""
    retrying = backend.client(retry=Retry(NoBackoff(), 3))
    faulty = FaultyRedis(retrying)
    faulty.lose_reply("RPUSH")
    with pytest.raises(ConnectionError):
        await retrying.rpush(f"{namespace}:l", "x")
    assert await retrying.lrange(f"{namespace}:l", 0, -1) == [b"x"]  # ran once
    store = Store(retrying, Keys(namespace), Settings(namespace=namespace))
    _, v = await running(store, "p1")
    faulty.lose_reply("checkpoint")
    with pytest.raises(ConnectionError):
        await store.checkpoint("p1", v, 1, b"outcome")
    assert faulty.lost == ["RPUSH", "checkpoint"]


# ---------------------------------------------------------------- the caller repeats


async def test_create_replayed_after_lost_reply_is_one_promise_one_entry(
    store: Store, faulty: FaultyRedis
) -> None:
    faulty.lose_reply("create")
    with pytest.raises(ConnectionError):
        await create(store, "p1")
    before = await fields(store, "p1")
    again = await create(store, "p1")
    assert again == (False, "pending", int(before["timeout_at"]))
    assert await fields(store, "p1") == before
    assert await store.redis.xlen(stream(store, "p1")) == 1


async def test_complete_replayed_after_lost_reply_completes_once(
    store: Store, faulty: FaultyRedis
) -> None:
    _, v = await running(store, "p1")
    faulty.lose_reply("complete")
    with pytest.raises(ConnectionError):
        await store.complete("p1", G, v, "resolved", b"value")
    before = await fields(store, "p1")
    assert before["state"] == b"resolved"
    # The replay writes nothing and names the completing version: "already done by me".
    replay = await store.complete("p1", G, v, "resolved", b"value")
    assert replay == [0, b"resolved", b"value", str(v).encode()]
    assert await fields(store, "p1") == before


async def test_checkpoint_replayed_after_lost_reply_keeps_one_value(
    store: Store, faulty: FaultyRedis
) -> None:
    _, v = await running(store, "p1")
    faulty.lose_reply("checkpoint")
    with pytest.raises(ConnectionError):
        await store.checkpoint("p1", v, 1, b"outcome")
    assert await store.checkpoint("p1", v, 1, b"outcome") == 1
    assert await store.redis.hgetall(store.keys.steps("p1")) == {b"1": b"outcome"}


async def test_acquire_replayed_after_lost_reply_fences_out_the_lost_version(
    store: Store, faulty: FaultyRedis
) -> None:
    await create(store, "p1")
    entry = await deliver(store, "p1")
    faulty.lose_reply("acquire")
    with pytest.raises(ConnectionError):
        await acquire(store, "p1", entry)  # version 1 was granted; nobody heard it
    res = await acquire(store, "p1", entry)
    assert res[:2] == [1, 2]
    assert await store.checkpoint("p1", 1, 1, b"ghost") == -3
    assert await store.complete("p1", G, 1, "resolved", b"ghost") == [-3]
    assert await store.checkpoint("p1", 2, 1, b"real") == 1
    assert (await store.complete("p1", G, 2, "resolved", b"real"))[:2] == [1, b"resolved"]


async def test_retry_replayed_after_lost_reply_schedules_one_attempt(
    store: Store, faulty: FaultyRedis
) -> None:
    entry, v = await running(store, "p1")
    faulty.lose_reply("retry")
    with pytest.raises(ConnectionError):
        await store.retry("p1", G, v, 60_000, b"err", entry=entry)
    due = await store.redis.zscore(dkey(store, "p1"), "g|p1")
    assert await store.retry("p1", G, v, 60_000, b"err", entry=entry) == 0
    assert (await fields(store, "p1"))["attempt"] == b"1"
    assert await store.redis.zscore(dkey(store, "p1"), "g|p1") == due


async def test_promote_replayed_after_lost_reply_dispatches_once(
    store: Store, faulty: FaultyRedis
) -> None:
    entry, v = await running(store, "p1")
    await store.retry("p1", G, v, 0, b"err", entry=entry)
    faulty.lose_reply("promote")
    with pytest.raises(ConnectionError):
        await promote(store, "p1")
    assert await promote(store, "p1") == [0]
    assert await store.redis.xlen(stream(store, "p1")) == 1


async def test_heartbeat_replayed_after_lost_reply_still_owns_the_entry(
    store: Store, faulty: FaultyRedis
) -> None:
    entry, v = await running(store, "p1")
    faulty.lose_reply("heartbeat")
    with pytest.raises(ConnectionError):
        await heartbeat(store, "p1", "c1", v, entry)
    assert await heartbeat(store, "p1", "c1", v, entry) == [1]
    [p] = await pel(store, "p1")
    assert (p["times_delivered"], p["consumer"]) == (1, b"c1")


# ---------------------------------------------------------------- through the client


async def test_begin_rpc_repeated_after_store_unavailable_runs_once(
    make_rp: MakeRp, faulty: FaultyRedis
) -> None:
    worker = await make_rp()
    runs: list[str] = []

    @worker.register
    async def work(ctx: Context, x: int) -> int:
        runs.append(ctx.id)
        return x * 2

    gateway = await make_rp(group="gateway", redis=faulty.redis)
    faulty.lose_reply("create")
    with pytest.raises(StoreUnavailable):
        await gateway.begin_rpc("p1", "work", 21)
    handle = await gateway.begin_rpc("p1", "work", 21)
    await worker.start()
    assert await handle.result(timeout=10) == 42
    assert runs == ["p1"]
    assert await faulty.redis.xlen(gateway.keys.stream(gateway.keys.partition("p1"), "worker")) == 0


async def test_outside_resolve_resent_by_transport_reports_success(
    make_rp: MakeRp, faulty: FaultyRedis
) -> None:
    rp = await make_rp(group="gateway", redis=faulty.redis)
    await rp.begin_rpc("p1", "work", target="worker")
    faulty.lose_reply("complete", resend=True)
    handle = await rp.resolve("p1", {"ok": True})
    assert faulty.lost == ["complete"]
    assert await handle.result(timeout=5) == {"ok": True}


async def test_worker_whose_writes_are_all_resent_completes_once(
    make_rp: MakeRp, faulty: FaultyRedis, caplog: pytest.LogCaptureFixture
) -> None:
    """Every checkpoint and completion the worker sends runs twice in Redis.

    The resent completion finds the promise already completed ({0, state, value, by})
    by this very version: the worker must count it as its own success, not as somebody
    else's completion.
    """
    caplog.set_level(logging.DEBUG, logger="redpromise.worker")
    worker = await make_rp(redis=faulty.redis)
    step_runs: list[int] = []

    def step(n: int) -> int:
        step_runs.append(n)
        return n + 1

    @worker.register
    async def work(ctx: Context) -> list[int]:
        return [await ctx.run(step, 1), await ctx.run(step, 2)]

    replies: list[list[Any]] = []
    complete = worker.store.complete

    async def recorded(*args: Any, **kwargs: Any) -> list[Any]:
        replies.append(reply := await complete(*args, **kwargs))
        return reply

    worker.store.complete = recorded  # type: ignore[method-assign]
    faulty.lose_reply("checkpoint", times=100, resend=True)
    faulty.lose_reply("complete", times=100, resend=True)
    await worker.start()
    handle = await worker.begin_rpc("p1", "work")
    assert await handle.result(timeout=10) == [2, 3]
    # result() can return from the completion message while the worker's resent
    # completion is still on its way back to it.
    await assert_eventually(
        lambda: replies and worker._worker is not None and worker._worker.completed,
        message="the worker handled its completion call's reply",
    )
    assert step_runs == [1, 2]
    assert faulty.lost.count("checkpoint") == 2
    assert faulty.lost.count("complete") == 1
    assert await worker.redis.hgetall(worker.keys.steps("p1")) == {}
    # The resend was answered "already completed, by version 1" (this execution)…
    value = encode([2, 3], worker.settings.max_payload_bytes)
    assert replies == [[0, b"resolved", value, b"1"]]
    # …which the worker counted as its own completion, not as somebody else's.
    assert completion_events(caplog) == [("completed", "p1", "resolved", 1)]
    assert worker._worker is not None and worker._worker.completed == 1


def completion_events(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str, str, int]]:
    """The worker's structured completion events: (event, promise id, state, version)."""
    fields = ("redpromise_event", "promise_id", "state", "version")
    return [
        tuple(getattr(r, f) for f in fields)
        for r in caplog.records
        if hasattr(r, "redpromise_event")
    ]
