"""Completion messages that carry the outcome, and waits that need no read at all.

A small outcome comes in the completion message (``lua/includes/settle.lua``): a waiter
that read the promise pending resolves from it without reading again. A promise this
process began while subscribed is not even read first; its completion, when it comes
before ``result()``, is remembered. Every case of doubt falls back to reading: a
reconnect in between, another process's promise, a create that found the id existing, an
id-only message, a message of another promise by the same id.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import msgpack
import pytest
from redis.asyncio import Redis

from redpromise import PromiseNotFound, Redpromise
from redpromise.client import waiter as _waiter
from redpromise.client.client import Handle
from redpromise.store.store import Store
from tests.conftest import fast_settings
from tests.helpers import assert_eventually
from tests.redis_cluster import RedisCluster
from tests.redis_server import RedisServer

MakeRp = Callable[..., Awaitable[Redpromise]]

# Long enough that only a notification (never the safety poll) can end the waits below.
NO_POLL = {"safety_poll": timedelta(seconds=120)}


def count_reads(rp: Redpromise) -> list[str]:
    """Every promise id the store of ``rp`` reads from now on, in order."""
    reads: list[str] = []
    store: Store = rp.store
    read, read_many = store.read, store.read_many

    async def counted_read(id: str) -> Any:
        reads.append(id)
        return await read(id)

    async def counted_read_many(ids: Any) -> Any:
        reads.extend(ids)
        return await read_many(ids)

    store.read = counted_read  # type: ignore[method-assign]
    store.read_many = counted_read_many  # type: ignore[method-assign]
    return reads


async def listening(rp: Redpromise, outsider: Redpromise) -> None:
    """Make ``rp`` hold its subscription, as any process that has waited once does."""
    h = await rp.begin_rpc("warm-up", "f", 0, target="nobody")
    wait = asyncio.create_task(h.result())
    await assert_eventually(lambda: rp._waiter.waiting == 1)
    await outsider.resolve("warm-up", 0)
    assert await asyncio.wait_for(wait, 10) == 0
    assert rp._waiter._subscribed.is_set()


async def waiting_after_a_read(rp: Redpromise, id: str) -> asyncio.Task[Any]:
    """A ``result()`` of ``id`` that has read the promise pending and now waits."""
    task = asyncio.create_task(Handle(rp, id).result())
    await assert_eventually(lambda: id in rp._waiter._expect)
    return task


async def test_message_carries_a_small_outcome_and_only_the_id_of_a_large_one(
    make_rp: MakeRp, redis: Redis
) -> None:
    rp = await make_rp("nobody")
    await rp.begin_rpc("small", "f", 1, target="nobody")
    await rp.begin_rpc("large", "f", 1, target="nobody")
    pubsub = redis.pubsub()
    await pubsub.subscribe(*rp.keys.channels())
    try:
        await rp.resolve("small", "s" * 1000)
        await rp.resolve("large", "l" * 1030)
        got: list[bytes] = []
        deadline = asyncio.get_running_loop().time() + 10
        while len(got) < 2:
            assert asyncio.get_running_loop().time() < deadline, f"only {got} announced"
            msg = await pubsub.get_message(timeout=1)
            if msg is not None and msg["type"] == "message":
                got.append(msg["data"])
    finally:
        await pubsub.aclose()
    rec = await rp.store.read("small")
    assert rec is not None and rec.value == msgpack.packb("s" * 1000)
    retention = int(rp.settings.retention.total_seconds() * 1000)  # type: ignore[union-attr]
    assert got == [
        b"\0resolved\0%d\0%d\0small\0%s" % (rec.created_at, retention, rec.value),
        b"large",  # 1033 bytes of msgpack: over the 1024 bytes a message carries
    ]


async def test_waiter_resolves_from_the_message_without_reading_again(make_rp: MakeRp) -> None:
    rp = await make_rp("nobody", **NO_POLL)
    outsider = await make_rp("other")
    await listening(rp, outsider)  # else the new subscription reads every wait once more
    await outsider.begin_rpc("m1", "f", 1, target="nobody")
    reads = count_reads(rp)
    task = await waiting_after_a_read(rp, "m1")
    await outsider.resolve("m1", {"v": 1})
    assert await asyncio.wait_for(task, 10) == {"v": 1}
    assert reads == ["m1"]  # the first read only
    await outsider.begin_rpc("m2", "f", 1, target="nobody")
    task = await waiting_after_a_read(rp, "m2")
    await outsider.reject("m2", ValueError("no"))
    with pytest.raises(Exception, match="no") as info:
        await asyncio.wait_for(task, 10)
    assert type(info.value).__name__ == "PromiseRejected"
    assert reads == ["m1", "m2"]


async def test_waiter_reads_an_outcome_announced_by_its_id(make_rp: MakeRp) -> None:
    rp = await make_rp("nobody", **NO_POLL)
    outsider = await make_rp("other")
    await listening(rp, outsider)
    await outsider.begin_rpc("big", "f", 1, target="nobody")
    reads = count_reads(rp)
    task = await waiting_after_a_read(rp, "big")
    await outsider.resolve("big", "x" * 5000)
    assert await asyncio.wait_for(task, 10) == "x" * 5000
    assert reads == ["big", "big"]


async def test_promise_begun_here_is_waited_on_without_any_read(make_rp: MakeRp) -> None:
    rp = await make_rp("nobody", **NO_POLL)
    outsider = await make_rp("other")
    await listening(rp, outsider)
    reads = count_reads(rp)
    h = await rp.begin_rpc("b1", "f", 1, target="nobody")
    task = asyncio.create_task(h.result())
    await assert_eventually(lambda: rp._waiter.waiting == 1)
    await outsider.resolve("b1", "done")
    assert await asyncio.wait_for(task, 10) == "done"
    assert reads == []


async def test_completion_before_result_is_remembered(make_rp: MakeRp) -> None:
    rp = await make_rp("nobody", **NO_POLL)
    outsider = await make_rp("other")
    await listening(rp, outsider)
    reads = count_reads(rp)
    h = await rp.begin_rpc("early", "f", 1, target="nobody")
    await outsider.resolve("early", "first")
    await assert_eventually(lambda: rp._waiter._begun["early"].outcome is not None)
    assert await asyncio.wait_for(h.result(), 10) == "first"
    assert reads == []
    # Taken by that result(): a second one reads, as for any promise.
    assert await asyncio.wait_for(h.result(), 10) == "first"
    assert reads == ["early"]


async def test_completion_heard_before_the_create_reply_is_kept(make_rp: MakeRp) -> None:
    # A loaded producer may parse the completion message before the create's reply.
    rp = await make_rp("nobody", **NO_POLL)
    outsider = await make_rp("other")
    await listening(rp, outsider)
    await outsider.begin_rpc("marker", "f", 1, target="nobody")
    marker = await waiting_after_a_read(rp, "marker")
    create = rp.store.create

    async def late_reply(id: str, *args: Any) -> Any:
        res = await create(id, *args)
        await outsider.resolve("raced", "quick")
        await outsider.resolve("marker", "m")
        # One subscription connection, messages in order: "raced"'s was heard first.
        assert await asyncio.wait_for(marker, 10) == "m"
        return res

    rp.store.create = late_reply  # type: ignore[method-assign]
    reads = count_reads(rp)
    h = await rp.begin_rpc("raced", "f", 1, target="nobody")
    assert await asyncio.wait_for(h.result(), 10) == "quick"
    assert reads == []


async def test_message_of_an_earlier_promise_heard_before_the_create_reply_is_not_the_result(
    make_rp: MakeRp, redis: Redis
) -> None:
    # Kept while the create's reply is out (it may be of this promise), then found to
    # name another created_at: result() waits for this promise's own completion.
    rp = await make_rp("nobody", **NO_POLL)
    outsider = await make_rp("other")
    await listening(rp, outsider)
    await outsider.begin_rpc("marker", "f", 1, target="nobody")
    marker = await waiting_after_a_read(rp, "marker")
    create = rp.store.create

    async def late_reply(id: str, *args: Any) -> Any:
        res = await create(id, *args)
        stale = b"\0resolved\0%d\0%d\0dup\0%s" % (res[2] - 10**9, 0, msgpack.packb("stale"))
        await redis.publish(rp.keys.channel(rp.keys.partition("dup")), stale)
        await outsider.resolve("marker", "m")
        assert await asyncio.wait_for(marker, 10) == "m"  # the stale message was heard
        return res

    rp.store.create = late_reply  # type: ignore[method-assign]
    h = await rp.begin_rpc("dup", "f", 1, target="nobody")
    assert rp._waiter._begun["dup"].outcome is not None  # kept, of another created_at
    task = asyncio.create_task(h.result())
    await assert_eventually(lambda: "dup" in rp._waiter._expect)
    assert not task.done()
    await outsider.resolve("dup", "real")
    assert await asyncio.wait_for(task, 10) == "real"


async def test_begun_promises_kept_are_bounded(
    make_rp: MakeRp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_waiter, "_REMEMBER", 2)
    rp = await make_rp("nobody", **NO_POLL)
    outsider = await make_rp("other")
    await listening(rp, outsider)
    handles = [await rp.begin_rpc(f"k{i}", "f", i, target="nobody") for i in range(3)]
    assert list(rp._waiter._begun) == ["k1", "k2"]  # the oldest forgotten
    for i in range(3):
        await outsider.resolve(f"k{i}", i * 10)
    await assert_eventually(lambda: rp._waiter._begun["k2"].outcome is not None)
    reads = count_reads(rp)
    assert [await asyncio.wait_for(h.result(), 10) for h in handles] == [0, 10, 20]
    assert reads == ["k0"]  # the forgotten one is read; the others were remembered


async def test_values_kept_are_bounded(make_rp: MakeRp, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_waiter, "_REMEMBER_BYTES", 250)
    rp = await make_rp("nobody", **NO_POLL)
    outsider = await make_rp("other")
    await listening(rp, outsider)
    handles = [await rp.begin_rpc(f"v{i}", "f", i, target="nobody") for i in range(3)]
    for i in range(3):
        await outsider.resolve(f"v{i}", str(i) * 100)  # 102 bytes of msgpack each
    await assert_eventually(lambda: rp._waiter._begun["v2"].outcome is not None)
    assert list(rp._waiter._begun) == ["v1", "v2"] and rp._waiter._kept == 204
    reads = count_reads(rp)
    assert [await asyncio.wait_for(h.result(), 10) for h in handles] == [
        str(i) * 100 for i in range(3)
    ]
    assert reads == ["v0"] and rp._waiter._kept == 0


async def test_promise_begun_by_another_process_is_read(make_rp: MakeRp) -> None:
    rp = await make_rp("nobody", **NO_POLL)
    outsider = await make_rp("other")
    await listening(rp, outsider)
    await outsider.begin_rpc("elsewhere", "f", 1, target="nobody")
    await outsider.resolve("elsewhere", "theirs")
    # Its message must be behind us (a late one, heard while result() waits on its read,
    # is doubted and read again: correct, but not what this test counts): a later
    # completion on the same subscription connection, heard, proves it.
    await outsider.begin_rpc("heard", "f", 1, target="nobody")
    heard = await waiting_after_a_read(rp, "heard")
    await outsider.resolve("heard", 0)
    assert await asyncio.wait_for(heard, 10) == 0
    reads = count_reads(rp)
    assert await asyncio.wait_for(Handle(rp, "elsewhere").result(), 10) == "theirs"
    assert reads == ["elsewhere"]


async def test_begin_of_an_id_already_completed_reads_it(make_rp: MakeRp) -> None:
    rp = await make_rp("nobody", **NO_POLL)
    outsider = await make_rp("other")
    await listening(rp, outsider)
    await outsider.begin_rpc("dup", "f", 1, target="nobody")
    await outsider.resolve("dup", "before")
    h = await rp.begin_rpc("dup", "f", 2, target="nobody")  # exists: nothing written
    assert await asyncio.wait_for(h.result(), 10) == "before"
    # The same for an id this process began, whose completion it has not heard yet.
    h = await rp.begin_rpc("dup2", "f", 1, target="nobody")
    await outsider.resolve("dup2", "once")
    assert await asyncio.wait_for(
        (await rp.begin_rpc("dup2", "f", 1, target="nobody")).result(), 10
    ) == "once"


async def test_message_of_another_promise_by_the_same_id_does_not_resolve(
    make_rp: MakeRp, redis: Redis
) -> None:
    rp = await make_rp("nobody", **NO_POLL)
    outsider = await make_rp("other")
    await outsider.begin_rpc("same", "f", 1, target="nobody")
    await outsider.begin_rpc("marker", "f", 1, target="nobody")
    rec = await rp.store.read("same")
    assert rec is not None
    same = await waiting_after_a_read(rp, "same")
    marker = await waiting_after_a_read(rp, "marker")
    # A late message of an earlier promise "same" (another created_at), then a real one.
    old = b"\0resolved\0%d\0%d\0same\0%s" % (rec.created_at - 1, 0, msgpack.packb("stale"))
    await redis.publish(rp.keys.channel(rp.keys.partition("same")), old)
    await redis.publish(rp.keys.channel(rp.keys.partition("marker")), b"marker")
    await outsider.resolve("marker", "m")
    assert await asyncio.wait_for(marker, 10) == "m"  # both messages were heard by now
    assert not same.done()
    await outsider.resolve("same", "fresh")
    assert await asyncio.wait_for(same, 10) == "fresh"


async def test_message_of_another_promise_by_an_id_begun_here_is_not_remembered(
    make_rp: MakeRp, redis: Redis
) -> None:
    rp = await make_rp("nobody", **NO_POLL)
    outsider = await make_rp("other")
    await listening(rp, outsider)
    h = await rp.begin_rpc("mine", "f", 1, target="nobody")
    created_at = rp._waiter._begun["mine"].created_at
    old = b"\0resolved\0%d\0%d\0mine\0%s" % (created_at - 1, 0, msgpack.packb("stale"))
    await redis.publish(rp.keys.channel(rp.keys.partition("mine")), old)
    await assert_eventually(lambda: rp._waiter._begun["mine"].read)
    reads = count_reads(rp)
    task = asyncio.create_task(h.result())
    await assert_eventually(lambda: "mine" in rp._waiter._expect)
    assert reads == ["mine"]
    await outsider.resolve("mine", "real")
    assert await asyncio.wait_for(task, 10) == "real"


async def test_malformed_messages_are_ignored_and_logged_once(
    make_rp: MakeRp, redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "redpromise.waiter")
    rp = await make_rp("nobody", **NO_POLL)
    outsider = await make_rp("other")
    await outsider.begin_rpc("x1", "f", 1, target="nobody")
    task = await waiting_after_a_read(rp, "x1")
    channel = rp.keys.channel(rp.keys.partition("x1"))
    for junk in (
        b"\0",
        b"\0nonsense",
        b"\0pending\0" + b"1\x000\0x1\0v",  # not a final state
        b"\0resolved\0abc\0zz\0x1\0v",  # numbers that are not
        b"\xff\xfe not utf-8",
        b"",
    ):
        await redis.publish(channel, junk)
    await outsider.resolve("x1", 5)
    assert await asyncio.wait_for(task, 10) == 5
    warned = [r for r in caplog.records if "did not write" in r.getMessage()]
    assert len(warned) == 1


async def test_remembered_outcome_is_dropped_once_the_record_may_have_expired(
    make_rp: MakeRp, redis: Redis
) -> None:
    rp = await make_rp("nobody", **NO_POLL)
    outsider = await make_rp("other", retention=timedelta(seconds=1))
    await listening(rp, outsider)
    h = await rp.begin_rpc("brief", "f", 1, target="nobody")
    await outsider.resolve("brief", "gone soon")
    await assert_eventually(lambda: rp._waiter._begun["brief"].outcome is not None)
    key = rp.keys.promise("brief")
    await assert_eventually(lambda: redis.exists(key), timeout=5)
    await assert_eventually(lambda: _not(redis.exists(key)), timeout=10)
    with pytest.raises(PromiseNotFound):  # what reading says, not the remembered outcome
        await asyncio.wait_for(h.result(), 10)


async def _not(aw: Awaitable[Any]) -> bool:
    return not await aw


@pytest.mark.real
async def test_reconnect_between_begin_and_result_reads(
    own_redis_server: RedisServer, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with _pair(own_redis_server, namespace) as (rp, outsider, admin):
        await listening(rp, outsider)
        h = await rp.begin_rpc("r1", "f", 1, target="nobody")
        gate = _hold_resubscription(monkeypatch)
        await admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        await assert_eventually(lambda: not rp._waiter._subscribed.is_set())
        await outsider.resolve("r1", "unheard")  # nobody subscribed: the message is lost
        gate.set()
        await assert_eventually(lambda: rp._waiter._subscribed.is_set())
        reads = count_reads(rp)
        assert await asyncio.wait_for(h.result(), 10) == "unheard"
        assert reads == ["r1"]


@pytest.mark.real
async def test_wait_without_a_read_is_served_after_a_reconnect(
    own_redis_server: RedisServer, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with _pair(own_redis_server, namespace) as (rp, outsider, admin):
        await listening(rp, outsider)
        reads = count_reads(rp)
        h = await rp.begin_rpc("r2", "f", 1, target="nobody")
        task = asyncio.create_task(h.result())
        await assert_eventually(lambda: rp._waiter.waiting == 1)
        gate = _hold_resubscription(monkeypatch)
        await admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        await assert_eventually(lambda: not rp._waiter._subscribed.is_set())
        await outsider.resolve("r2", "unheard")
        assert reads == [] and not task.done()
        gate.set()  # the new subscription reads everything waited on
        assert await asyncio.wait_for(task, 10) == "unheard"
        assert reads == ["r2"]


@pytest.mark.real
@pytest.mark.cluster
async def test_sharded_messages_carry_the_outcome(
    redis_cluster: RedisCluster, namespace: str
) -> None:
    settings = fast_settings(namespace, **NO_POLL)
    rp = Redpromise(redis_cluster.url, group="nobody", settings=settings)
    outsider = Redpromise(redis_cluster.url, group="other", settings=settings)
    try:
        await listening(rp, outsider)
        assert rp.store.sharded  # SPUBLISH / SSUBSCRIBE on a Redis >= 7 cluster
        reads = count_reads(rp)
        ids = [f"c{i}" for i in range(40)]  # spread over the partitions, so every node
        handles = [await rp.begin_rpc(id, "f", 1, target="nobody") for id in ids]
        tasks = [asyncio.create_task(h.result()) for h in handles]
        await assert_eventually(lambda: rp._waiter.waiting == len(ids))
        for id in ids:
            await outsider.resolve(id, id.upper())
        assert await asyncio.wait_for(asyncio.gather(*tasks), 10) == [i.upper() for i in ids]
        assert reads == []
        await outsider.begin_rpc("theirs", "f", 1, target="nobody")
        task = await waiting_after_a_read(rp, "theirs")
        await outsider.resolve("theirs", "t")
        assert await asyncio.wait_for(task, 10) == "t"
        assert reads == ["theirs"]
    finally:
        await rp.stop()
        await outsider.stop()


class _pair:
    """Two Redpromise instances on one private server, and an admin client."""

    def __init__(self, server: RedisServer, namespace: str) -> None:
        settings = fast_settings(namespace, **NO_POLL)
        self.rp = Redpromise(server.url, group="nobody", settings=settings)
        self.outsider = Redpromise(server.url, group="other", settings=settings)
        self.admin = Redis.from_url(server.url)

    async def __aenter__(self) -> tuple[Redpromise, Redpromise, Redis]:
        return self.rp, self.outsider, self.admin

    async def __aexit__(self, *exc: object) -> None:
        await self.rp.stop()
        await self.outsider.stop()
        await self.admin.aclose()


def _hold_resubscription(monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """From now on a (re)subscription waits until the returned event is set."""
    gate = asyncio.Event()
    subscribe = _waiter.Waiter._subscribe

    async def held(self: _waiter.Waiter, conns: list[Any]) -> None:
        await gate.wait()
        await subscribe(self, conns)

    monkeypatch.setattr(_waiter.Waiter, "_subscribe", held)
    return gate
