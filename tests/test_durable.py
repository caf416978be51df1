"""Durable execution inside one worker: replay, children, timers, latent promises, cancel.

Runs on both backends. Crashes are stood in for by a retry (the function raises after a
checkpoint), which replays exactly like a redelivery to another worker; the real-process
versions with SIGKILL are in test_durable_processes.py.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Generator
from datetime import timedelta
from typing import Any

import pytest

from redpromise import Constant, Context, Never, PromiseCanceled, PromiseRejected, Redpromise
from tests.conftest import Backend
from tests.helpers import assert_eventually

MakeRp = Callable[..., Awaitable[Redpromise]]
FAST_RETRY = Constant(delay=timedelta(milliseconds=50))


async def test_replay_skips_checkpointed_steps_after_a_retry(make_rp: MakeRp) -> None:
    rp = await make_rp()
    calls: Counter[str] = Counter()

    def step(name: str) -> str:
        calls[name] += 1
        return name.upper()

    @rp.register(retry=FAST_RETRY)
    async def four(ctx: Context) -> list[str]:
        a = await ctx.run(step, "a")
        b = await ctx.run(step, "b")
        if ctx.attempt == 0:
            raise RuntimeError("crash after step 2")
        c = await ctx.run(step, "c")
        d = await ctx.run(step, "d")
        return [a, b, c, d]

    await rp.start()
    assert await rp.rpc("w1", "four") == ["A", "B", "C", "D"]
    assert calls == {"a": 1, "b": 1, "c": 1, "d": 1}


async def test_generator_and_async_styles_give_the_same_results(make_rp: MakeRp) -> None:
    rp = await make_rp()
    calls: Counter[str] = Counter()

    def step(x: int) -> int:
        calls[f"s{x}"] += 1
        return x * 10

    @rp.register(retry=FAST_RETRY)
    async def as_async(ctx: Context, n: int) -> int:
        total = 0
        for i in range(n):
            total += await ctx.run(step, i)
            if ctx.attempt == 0 and i == 1:
                raise RuntimeError("crash")
        return total

    @rp.register(retry=FAST_RETRY)
    def as_gen(ctx: Context, n: int) -> Generator[Any, Any, int]:
        total = 0
        for i in range(n):
            total += yield ctx.run(step, i)
            if ctx.attempt == 0 and i == 1:
                raise RuntimeError("crash")
        return total

    await rp.start()
    first = await rp.rpc("a", "as_async", 4)
    by_async = dict(calls)
    calls.clear()
    assert await rp.rpc("g", "as_gen", 4) == first == 60
    assert dict(calls) == by_async == {"s0": 1, "s1": 1, "s2": 1, "s3": 1}


async def test_concurrent_steps_get_deterministic_numbers(make_rp: MakeRp) -> None:
    rp = await make_rp()
    calls: Counter[int] = Counter()

    async def step(x: int) -> int:
        calls[x] += 1
        await asyncio.sleep(0.01 * (5 - x))  # finish in reverse order of start
        return x

    @rp.register(retry=FAST_RETRY)
    async def fan(ctx: Context) -> list[int]:
        values = await asyncio.gather(*(ctx.run(step, i) for i in range(5)))
        if ctx.attempt == 0:
            raise RuntimeError("crash after the fan-out")
        return list(values)

    await rp.start()
    assert await rp.rpc("f", "fan") == [0, 1, 2, 3, 4]
    assert calls == dict.fromkeys(range(5), 1)


async def test_time_and_random_are_replayed(make_rp: MakeRp) -> None:
    rp = await make_rp()
    seen: list[tuple[float, float]] = []

    @rp.register(retry=FAST_RETRY)
    async def clocky(ctx: Context) -> list[float]:
        t = await ctx.time()
        r = await ctx.random()
        seen.append((t, r))
        if ctx.attempt == 0:
            raise RuntimeError("crash")
        return [t, r]

    await rp.start()
    result = await rp.rpc("c", "clocky")
    assert len(seen) == 2 and seen[0] == seen[1] == tuple(result)


async def test_child_rpc_is_created_once_across_parent_replays(make_rp: MakeRp) -> None:
    parent_rp = await make_rp()
    child_rp = await make_rp(group="children")
    runs: Counter[str] = Counter()

    @child_rp.register
    async def double(ctx: Context, x: int) -> int:
        runs[ctx.id] += 1
        return x * 2

    @parent_rp.register(retry=FAST_RETRY)
    async def parent(ctx: Context, x: int) -> int:
        y = await ctx.rpc("double", x, target="poll://any@children")
        if ctx.attempt == 0:
            raise RuntimeError("crash after the child")
        return int(y) + 1

    await child_rp.start()
    await parent_rp.start()
    assert await parent_rp.rpc("p", "parent", 20) == 41
    assert runs == {"p.1": 1}


async def test_child_rejection_reaches_the_parent(make_rp: MakeRp) -> None:
    rp = await make_rp()

    @rp.register(retry=Never())
    async def bad(ctx: Context) -> None:
        raise ValueError("child failed")

    @rp.register(retry=FAST_RETRY)
    async def parent(ctx: Context) -> str:
        try:
            await ctx.rpc("bad")
        except PromiseRejected as exc:
            return f"caught {exc.type}: {exc.message}"
        return "no error"

    await rp.start()
    assert await rp.rpc("p", "parent", timeout=timedelta(seconds=20)) == (
        "caught ValueError: child failed"
    )


async def test_durable_sleep_keeps_its_wake_time_across_a_replay(make_rp: MakeRp) -> None:
    rp = await make_rp()
    starts: list[float] = []

    @rp.register(retry=FAST_RETRY)
    async def napper(ctx: Context) -> float:
        starts.append(time.monotonic())
        await ctx.sleep(0.6)
        if ctx.attempt == 0:
            raise RuntimeError("crash after waking")
        return await ctx.time()

    await rp.start()
    t0 = time.monotonic()
    await rp.rpc("n", "napper")
    # The replay does not sleep again: the recorded wake-up time has passed.
    assert len(starts) == 2
    assert time.monotonic() - t0 < 0.6 + 1.0


async def test_long_sleep_frees_the_worker_and_resumes_when_due(make_rp: MakeRp) -> None:
    rp = await make_rp(suspend_after=timedelta(milliseconds=100), concurrency=1)
    order: list[str] = []

    @rp.register
    async def sleeper(ctx: Context) -> str:
        await ctx.run(order.append, "sleeper-start")
        await ctx.sleep(0.8)
        order.append("sleeper-end")
        return "woke"

    @rp.register
    async def quick(ctx: Context) -> str:
        order.append("quick")
        return "done"

    await rp.start()
    sleeping = await rp.begin_rpc("s", "sleeper")
    await assert_eventually(lambda: "sleeper-start" in order)
    # concurrency is 1: quick only runs because the sleeper handed its slot back.
    assert await rp.rpc("q", "quick") == "done"
    assert await sleeping.result(timeout=10) == "woke"
    assert order == ["sleeper-start", "quick", "sleeper-end"]


async def test_latent_promise_resolved_from_outside_unblocks_the_function(
    make_rp: MakeRp,
) -> None:
    rp = await make_rp()
    gateway = await make_rp(group="gateway")
    created: list[str] = []

    @rp.register
    async def approval(ctx: Context, amount: int) -> str:
        p = await ctx.promise()
        created.append(p.id)
        decision = await p
        return f"{amount} {decision}"

    await rp.start()
    handle = await gateway.begin_rpc("order-7", "approval", 100)
    await assert_eventually(lambda: created)
    assert created == ["order-7.1"]
    assert await handle.done() is False
    await gateway.resolve("order-7.1", "approved")
    assert await handle.result(timeout=10) == "100 approved"


async def test_cancel_stops_the_function_at_its_next_step(make_rp: MakeRp) -> None:
    rp = await make_rp()
    gateway = await make_rp(group="gateway")
    ran: list[int] = []
    in_step_two = asyncio.Event()
    release = asyncio.Event()

    async def step(i: int) -> int:
        ran.append(i)
        if i == 2:
            in_step_two.set()
            await release.wait()
        return i

    @rp.register
    async def four(ctx: Context) -> list[int]:
        return [await ctx.run(step, i) for i in range(1, 5)]

    await rp.start()
    handle = await gateway.begin_rpc("c", "four")
    await asyncio.wait_for(in_step_two.wait(), 10)
    await gateway.cancel("c")
    release.set()
    with pytest.raises(PromiseCanceled):
        await handle.result(timeout=10)
    await asyncio.sleep(0.3)  # give a (wrong) step 3 the chance to run
    assert ran == [1, 2]
    assert await handle.state() == "rejected_canceled"


async def test_cancel_of_a_parent_cancels_its_children(make_rp: MakeRp) -> None:
    rp = await make_rp()
    gateway = await make_rp(group="gateway")
    child_started = asyncio.Event()

    @rp.register
    async def forever(ctx: Context) -> None:
        child_started.set()
        await asyncio.sleep(3600)

    @rp.register
    async def parent(ctx: Context) -> Any:
        return await ctx.rpc("forever")

    await rp.start()
    await gateway.begin_rpc("par", "parent")
    await asyncio.wait_for(child_started.wait(), 10)
    await gateway.cancel("par")
    assert await (await gateway.get("par.1")).state() == "rejected_canceled"


async def test_cancel_reaches_children_for_as_long_as_the_parent_is_pending(
    make_rp: MakeRp, backend: Backend
) -> None:
    """The adopting worker's own timeout and retention (here 0.3 s each) do not bound how
    long a parent's children are known: the parent (60 s timeout) is canceled after
    both have passed, and its child is canceled too. Then the set follows the parent's
    record: it expires with the canceling client's retention."""
    rp = await make_rp(timeout=timedelta(milliseconds=300), retention=timedelta(milliseconds=300))
    gateway = await make_rp(group="gateway", retention=timedelta(seconds=30))
    raw = backend.client()
    child_started = asyncio.Event()

    @rp.register
    async def forever(ctx: Context) -> None:
        child_started.set()
        await asyncio.sleep(3600)

    @rp.register
    async def parent(ctx: Context) -> Any:
        return await ctx.rpc("forever", timeout=60)

    await rp.start()
    await gateway.begin_rpc("par", "parent", timeout=60)
    await asyncio.wait_for(child_started.wait(), 10)
    adopted = await raw.time()

    async def passed() -> bool:  # on Redis' clock, which expires keys
        now = await raw.time()
        return (now[0] - adopted[0]) * 1000 + (now[1] - adopted[1]) // 1000 > 700

    await assert_eventually(passed)
    await gateway.cancel("par")
    assert await (await gateway.get("par.1")).state() == "rejected_canceled"
    ttl = await raw.pttl(gateway.keys.children("par"))
    assert 0 < ttl <= 30_000
    await raw.aclose()


async def test_changed_code_on_replay_rejects_with_nondeterminism_error(
    make_rp: MakeRp,
) -> None:
    rp = await make_rp()

    def fetch() -> int:
        return 1

    def charge() -> int:
        return 2

    @rp.register(retry=FAST_RETRY)
    async def flow(ctx: Context) -> int:
        # The first attempt records step 1 as `fetch`; the retry asks for `charge`.
        first = fetch if ctx.attempt == 0 else charge
        value = int(await ctx.run(first))
        if ctx.attempt == 0:
            raise RuntimeError("crash")
        return value

    await rp.start()
    with pytest.raises(PromiseRejected) as info:
        await rp.rpc("nd", "flow")
    assert info.value.type == "NondeterminismError"
    assert "step 1" in info.value.message and "fetch" in info.value.message
