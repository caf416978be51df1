"""A process whose wall clock is an hour off still waits, times out and retries on time.

The Lua scripts read Redis ``TIME``; every due time computed in Python must be on the
same clock. These tests skew the wall clock redpromise's modules see (``time.time``) by
an hour either way, while fakeredis and the real redis-server keep the true time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

import redpromise.client.client
import redpromise.client.waiter
import redpromise.redis.clock
import redpromise.worker.context
import redpromise.worker.upkeep
import redpromise.worker.worker
from redpromise import Constant, Context, PromiseTimedOut, Redpromise
from tests.helpers import assert_eventually

MakeRp = Callable[..., Awaitable[Redpromise]]

_MODULES = (
    redpromise.client.client,
    redpromise.redis.clock,
    redpromise.worker.context,
    redpromise.worker.upkeep,
    redpromise.client.waiter,
    redpromise.worker.worker,
)


class _SkewedTime:
    """The ``time`` module, with a wall clock ``skew`` seconds off (monotonic untouched)."""

    def __init__(self, skew: float) -> None:
        self.skew = skew

    def time(self) -> float:
        return time.time() + self.skew

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


@pytest.fixture(params=[3600.0, -3600.0], ids=["ahead", "behind"])
def skew(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[float]:
    """This process's wall clock, as redpromise sees it, an hour ahead of or behind Redis."""
    value: float = request.param
    for module in _MODULES:
        monkeypatch.setattr(module, "time", _SkewedTime(value), raising=False)
    yield value


def _count_calls(rp: Redpromise) -> list[int]:
    """Count every read and script call ``rp`` sends through its store."""
    count = [0]
    call = rp.store.batch.call

    async def counted(*args: Any, **kwargs: Any) -> Any:
        count[0] += 1
        return await call(*args, **kwargs)

    rp.store.batch.call = counted  # type: ignore[method-assign]
    return count


async def test_clock_reads_redis_time_without_a_round_trip_per_reading(
    make_rp: MakeRp, skew: float
) -> None:
    rp = await make_rp(group="gateway")
    await rp._ready()
    clock = rp.store.clock
    assert abs(clock.offset_ms + skew * 1000) < 1000  # offset = Redis - local wall clock
    secs, micros = await rp.redis.time()
    assert abs(clock.now_ms() - (int(secs) * 1000 + int(micros) // 1000)) < 1000
    samples = [0]
    time_call = rp.redis.time

    async def counted_time() -> Any:
        samples[0] += 1
        return await time_call()

    rp.redis.time = counted_time  # type: ignore[method-assign]
    for _ in range(10_000):
        clock.now_ms()
    assert samples[0] == 0
    clock._next_sync = 0.0  # the sample is now stale
    clock.now_ms()
    await assert_eventually(lambda: samples[0] == 1)
    clock.now_ms()
    assert samples[0] == 1  # one refresh at a time, then not again until stale


async def test_result_waits_on_the_notification_not_in_a_loop(make_rp: MakeRp, skew: float) -> None:
    rp = await make_rp(group="gateway")
    handle = await rp.begin_rpc("skew-wait", "f", target="nobody", timeout=timedelta(seconds=60))
    calls = _count_calls(rp)
    result = asyncio.create_task(handle.result(timeout=30))
    try:
        await assert_eventually(lambda: rp._waiter.waiting == 1)
        before = calls[0]
        # A measured window, not synchronisation: a waiter on a promise due in a minute
        # must not read Redis in it (a skewed clock made it read every 50 ms).
        await asyncio.sleep(1.0)
        assert calls[0] - before <= 1, f"{calls[0] - before} reads/scripts while waiting 1 s"
        await rp.resolve("skew-wait", "done")
        assert await asyncio.wait_for(result, 10) == "done"
    finally:
        result.cancel()


async def test_lazy_timeout_fires_on_time_without_a_worker(make_rp: MakeRp, skew: float) -> None:
    rp = await make_rp(group="gateway")
    handle = await rp.begin_rpc("skew-to", "f", target="nobody", timeout=timedelta(seconds=1))
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(PromiseTimedOut):
        await handle.result(timeout=15)
    assert loop.time() - started < 10


async def test_worker_promotes_timeouts_on_redis_time(make_rp: MakeRp, skew: float) -> None:
    rp = await make_rp()

    @rp.register
    async def noop(ctx: Context) -> None:
        return None

    await rp.start()
    await rp.begin_rpc("skew-promote", "f", target="nobody", timeout=timedelta(seconds=1))
    key = rp.keys.promise("skew-promote")

    async def timed_out() -> bool:
        return await rp.redis.hget(key, "state") == b"rejected_timedout"

    # Only the worker's promote loop applies it: nobody reads the promise.
    await assert_eventually(timed_out, timeout=10)


async def test_worker_retries_a_failed_attempt_on_redis_time(make_rp: MakeRp, skew: float) -> None:
    rp = await make_rp()
    attempts: list[int] = []

    @rp.register(retry=Constant(delay=timedelta(milliseconds=50)))
    async def flaky(ctx: Context) -> str:
        attempts.append(ctx.attempt)
        if ctx.attempt == 0:
            raise RuntimeError("fails once")
        await ctx.sleep(0.2)
        return "ok"

    await rp.start()
    handle = await rp.begin_rpc("skew-retry", "flaky", timeout=timedelta(minutes=5))
    # Ahead, the retry looked too late for the timeout; behind, it was promoted an hour late.
    assert await handle.result(timeout=20) == "ok"
    assert attempts == [0, 1]


async def test_child_gets_the_parent_remaining_time(make_rp: MakeRp, skew: float) -> None:
    rp = await make_rp()
    children = await make_rp(group="children")

    @children.register
    async def double(ctx: Context, x: int) -> int:
        return 2 * x

    @rp.register
    async def parent(ctx: Context, x: int) -> int:
        return int(await ctx.rpc("double", x, target="children"))

    await children.start()
    await rp.start()
    handle = await rp.begin_rpc("skew-par", "parent", 21, timeout=timedelta(minutes=5))
    assert await handle.result(timeout=20) == 42
    child = await rp.redis.hget(rp.keys.promise("skew-par.1"), "timeout_at")
    par = await rp.redis.hget(rp.keys.promise("skew-par"), "timeout_at")
    # The child's timeout is the parent's remaining time (give or take the clock's
    # estimate, a few ms): not 1 ms (ahead), and not an hour more (behind).
    assert child is not None and par is not None
    assert -1_000 < int(par) - int(child) < 10_000
