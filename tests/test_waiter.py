"""Completion notifications: one subscription per process, resubscribed when it breaks."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import NoPermissionError

from redpromise import Redpromise
from redpromise.client import subscription as _subscription
from redpromise.client import waiter as _waiter
from tests.conftest import fast_settings
from tests.helpers import assert_eventually
from tests.redis_server import RedisServer

MakeRp = Callable[..., Awaitable[Redpromise]]

# Long enough that only a notification (never the safety poll) can end the waits below.
NO_POLL = {"safety_poll": timedelta(seconds=120)}


async def pubsub_clients(redis: Redis) -> list[dict[str, Any]]:
    clients: Any = await redis.client_list(_type="pubsub")
    return list(clients)


async def test_burst_of_completions_wakes_every_waiter(make_rp: MakeRp) -> None:
    rp = await make_rp("nobody", **NO_POLL)
    handles = [await rp.begin_rpc(f"b{i}", "f", i, target="nobody") for i in range(300)]
    waits = [asyncio.create_task(h.result()) for h in handles]
    await assert_eventually(lambda: rp._waiter.waiting == 300)
    outsider = await make_rp("other")
    for chunk in range(0, 300, 50):  # the test client's pool holds 100 connections at most
        await asyncio.gather(*(outsider.resolve(f"b{i}", i * 2) for i in range(chunk, chunk + 50)))
    done = await asyncio.wait_for(asyncio.gather(*waits), 10)
    assert done == [i * 2 for i in range(300)]


@pytest.mark.real
async def test_waiter_resubscribes_after_its_connection_is_killed(
    own_redis_server: RedisServer, namespace: str
) -> None:
    settings = fast_settings(namespace, **NO_POLL)
    admin = Redis.from_url(own_redis_server.url)
    rp = Redpromise(own_redis_server.url, group="nobody", settings=settings)
    outsider = Redpromise(own_redis_server.url, group="other", settings=settings)
    try:
        await rp.begin_rpc("k1", "f", 1, target="nobody")
        await rp.begin_rpc("k2", "f", 2, target="nobody")
        first = asyncio.create_task((await rp.get("k1")).result())
        await assert_eventually(lambda: rp._waiter.waiting == 1)
        before = {c["id"] for c in await pubsub_clients(admin)}
        assert len(before) == 1, "the waiter should hold exactly one subscription"
        await admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")

        async def resubscribed() -> bool:
            now = {c["id"] for c in await pubsub_clients(admin)}
            return len(now) == 1 and not now & before

        await assert_eventually(resubscribed)
        await outsider.resolve("k1", "one")
        assert await asyncio.wait_for(first, 10) == "one"
        # A later wait is served by the new subscription too.
        second = asyncio.create_task((await rp.get("k2")).result())
        await assert_eventually(lambda: rp._waiter.waiting == 1)
        await outsider.resolve("k2", "two")
        assert await asyncio.wait_for(second, 10) == "two"
    finally:
        await rp.stop()
        await outsider.stop()
        await admin.aclose()


@pytest.mark.real
async def test_quiet_subscription_is_pinged_without_being_dropped(
    own_redis_server: RedisServer,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A client with a short health check: redis-py's own check must not race the
    # listener for the PONG of the listener's ping (it did, and dropped the link).
    monkeypatch.setattr(_subscription, "_PING_AFTER", 0.3)
    admin = Redis.from_url(own_redis_server.url)
    client = Redis.from_url(own_redis_server.url, health_check_interval=1)
    rp = Redpromise(group="nobody", settings=fast_settings(namespace, **NO_POLL), redis=client)
    try:
        await rp.begin_rpc("quiet", "f", 1, target="nobody")
        waiting = asyncio.create_task((await rp.get("quiet")).result())
        await assert_eventually(lambda: rp._waiter.waiting == 1)
        before = {c["id"] for c in await pubsub_clients(admin)}
        pings = int((await admin.info("commandstats"))["cmdstat_ping"]["calls"])
        await asyncio.sleep(3.5)  # several quiet periods, each answered by a ping
        after = {c["id"] for c in await pubsub_clients(admin)}
        stats = await admin.info("commandstats")
        assert int(stats["cmdstat_ping"]["calls"]) - pings >= 2
        assert after == before, "the subscription was dropped and re-made"
        assert "lost its subscription" not in caplog.text
        await rp.resolve("quiet", "heard")
        assert await asyncio.wait_for(waiting, 10) == "heard"
    finally:
        await rp.stop()
        await client.aclose()
        await admin.aclose()


async def test_result_does_not_hang_while_the_subscription_is_refused(
    make_rp: MakeRp, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # As for a Redis user without channel rights: every SUBSCRIBE answers NOPERM.
    async def refused(self: _waiter.Waiter, conns: list[Any]) -> None:
        raise NoPermissionError("this user has no permissions to access one of the channels")

    monkeypatch.setattr(_waiter.Waiter, "_subscribe", refused)
    rp = await make_rp("nobody", **NO_POLL)
    h = await rp.begin_rpc("refused", "f", 1, target="nobody")
    wait = asyncio.create_task(h.result(timeout=30))
    await assert_eventually(lambda: rp._waiter.waiting == 1)
    outsider = await make_rp("other")
    await outsider.resolve("refused", "done")
    # Read again within the unsubscribed poll interval, not at the 120 s safety poll.
    assert await asyncio.wait_for(wait, 5) == "done"
    refusals = [
        r for r in caplog.records if getattr(r, "redpromise_event", None) == "redis_failure"
    ]
    assert refusals and all(r.cause == "NOPERM" for r in refusals)  # type: ignore[attr-defined]
    assert len(refusals) == 1  # logged once per cause, not once per attempt
