"""Replays return what the first run saw: stable step names, rejection classes, latent awaits.

A retry (the function raises after a checkpoint) stands in for a crash: it replays
exactly like a redelivery to another worker. Runs on both backends.
"""

from __future__ import annotations

import asyncio
import functools
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest

from redpromise import Constant, Context, PromiseNotFound, PromiseRejected, Redpromise
from redpromise.worker.context import _name
from tests.helpers import assert_eventually

MakeRp = Callable[..., Awaitable[Redpromise]]
FAST_RETRY = Constant(delay=timedelta(milliseconds=50), max_retries=3)


class Charger:
    """A callable object: its repr() holds a memory address that differs per instance."""

    def __init__(self, calls: Counter[str]) -> None:
        self.calls = calls

    def __call__(self, amount: int) -> int:
        self.calls["charge"] += 1
        return amount * 2


def add(a: int, b: int) -> int:
    return a + b


def test_step_names_are_stable_qualnames() -> None:
    calls: Counter[str] = Counter()
    assert _name(add) == "add"
    assert _name(functools.partial(add, 1)) == "add"
    assert _name(functools.partial(functools.partial(add, 1), 2)) == "add"
    assert _name(Charger(calls)) == "Charger"
    assert _name(functools.partial(Charger(calls), 3)) == "Charger"
    assert _name(Charger(calls).__call__) == "Charger.__call__"


async def test_partial_and_callable_object_steps_replay_after_a_retry(make_rp: MakeRp) -> None:
    rp = await make_rp()
    calls: Counter[str] = Counter()
    # Every attempt builds new step objects; keeping the old ones alive guarantees new
    # addresses, so a name built from repr() would differ between attempts.
    alive: list[Any] = []

    @rp.register(retry=FAST_RETRY)
    async def flow(ctx: Context) -> list[int]:
        charger = Charger(calls)
        adder = functools.partial(Charger(calls), 5)
        alive.extend([charger, adder])
        a = await ctx.run(charger, 10)
        b = await ctx.run(adder)
        if ctx.attempt == 0:
            raise RuntimeError("crash after two steps")
        c = await ctx.run(functools.partial(add, 1), 2)
        return [a, b, c]

    await rp.start()
    assert await rp.rpc("named-1", "flow") == [20, 10, 3]
    assert calls == {"charge": 2}  # each step ran once: the retry replayed both


async def test_explicit_step_name_replays_whatever_the_callable(make_rp: MakeRp) -> None:
    rp = await make_rp()
    ran: list[str] = []

    def first() -> str:
        ran.append("first")
        return "one"

    def second() -> str:
        ran.append("second")
        return "two"

    @rp.register(retry=FAST_RETRY)
    async def flow(ctx: Context) -> str:
        # A lambda per attempt: the explicit name is what the replay matches on.
        step = (lambda: first()) if ctx.attempt == 0 else (lambda: second())
        value = str(await ctx.run(step, name="fetch"))
        if ctx.attempt == 0:
            raise RuntimeError("crash")
        return value

    await rp.start()
    assert await rp.rpc("named-2", "flow") == "one"
    assert ran == ["first"]


async def test_explicit_step_name_is_not_passed_to_the_step(make_rp: MakeRp) -> None:
    rp = await make_rp()

    def greet(greeting: str, *, name: str) -> str:
        return f"{greeting} {name}"

    @rp.register
    async def flow(ctx: Context) -> str:
        return str(await ctx.run(functools.partial(greet, name="ada"), "hi", name="greet"))

    await rp.start()
    assert await rp.rpc("named-3", "flow") == "hi ada"


@pytest.mark.parametrize("how", ["canceled", "timedout"])
async def test_child_rejection_replays_as_the_same_exception_class(
    make_rp: MakeRp, how: str
) -> None:
    rp = await make_rp()
    gateway = await make_rp(group="gateway")
    seen: list[str] = []

    @rp.register(retry=FAST_RETRY)
    async def parent(ctx: Context) -> list[str]:
        # "nobody" has no worker: the child stays pending until canceled or timed out.
        timeout = timedelta(milliseconds=300) if how == "timedout" else None
        try:
            await ctx.rpc("anything", target="nobody", timeout=timeout)
        except PromiseRejected as exc:
            seen.append(type(exc).__name__)
        if ctx.attempt == 0:
            raise RuntimeError("crash after the child step")
        return seen

    await rp.start()
    handle = await gateway.begin_rpc(f"par-{how}", "parent")
    if how == "canceled":
        await assert_eventually(lambda: _exists(gateway, f"par-{how}.1"))
        await gateway.cancel(f"par-{how}.1")
    expected = "PromiseCanceled" if how == "canceled" else "PromiseTimedOut"
    assert await handle.result(timeout=20) == [expected, expected]


async def _exists(rp: Redpromise, id: str) -> bool:
    try:
        await rp.get(id)
    except PromiseNotFound:
        return False
    return True


async def test_awaited_latent_promise_replays_after_it_expired(make_rp: MakeRp) -> None:
    rp = await make_rp()
    gateway = await make_rp(group="gateway")
    reached = asyncio.Event()
    go_on = asyncio.Event()
    steps: Counter[str] = Counter()

    def after(decision: str) -> str:
        steps["after"] += 1
        return decision.upper()

    @rp.register(retry=FAST_RETRY)
    async def approval(ctx: Context) -> str:
        p = await ctx.promise()
        decision = await p
        shout = str(await ctx.run(after, decision))
        if ctx.attempt == 0:
            reached.set()
            await go_on.wait()
            raise RuntimeError("crash after the await")
        return f"{decision} {shout}"

    await rp.start()
    handle = await gateway.begin_rpc("appr", "approval")
    await assert_eventually(lambda: _exists(gateway, "appr.1"))
    await gateway.resolve("appr.1", "yes")
    await asyncio.wait_for(reached.wait(), 10)
    # The latent promise's retention passes before the replay: its record is gone.
    await rp.redis.delete(rp.keys.promise("appr.1"))
    go_on.set()
    assert await handle.result(timeout=20) == "yes YES"
    assert steps == {"after": 1}


@pytest.mark.parametrize("how", ["rejected", "canceled"])
async def test_awaited_latent_rejection_replays_as_the_same_exception_after_expiry(
    make_rp: MakeRp, how: str
) -> None:
    rp = await make_rp()
    gateway = await make_rp(group="gateway")
    reached = asyncio.Event()
    go_on = asyncio.Event()
    seen: list[tuple[str, str]] = []

    @rp.register(retry=FAST_RETRY)
    async def approval(ctx: Context) -> list[tuple[str, str]]:
        p = await ctx.promise(timeout=timedelta(seconds=30))
        try:
            await p
        except PromiseRejected as exc:
            seen.append((type(exc).__name__, exc.message))
        await ctx.run(add, 1, 1)
        if ctx.attempt == 0:
            reached.set()
            await go_on.wait()
            raise RuntimeError("crash after the await")
        return seen

    await rp.start()
    handle = await gateway.begin_rpc(f"lr-{how}", "approval")
    pid = f"lr-{how}.1"
    await assert_eventually(lambda: _exists(gateway, pid))
    if how == "canceled":
        await gateway.cancel(pid)
        first = ("PromiseCanceled", "Promise canceled")
    else:
        await gateway.reject(pid, ValueError("no budget"))
        first = ("PromiseRejected", "no budget")
    await asyncio.wait_for(reached.wait(), 10)
    await rp.redis.delete(rp.keys.promise(pid))
    go_on.set()
    assert [tuple(x) for x in await handle.result(timeout=20)] == [first, first]


async def test_each_await_of_a_latent_promise_takes_the_next_step_number(
    make_rp: MakeRp,
) -> None:
    rp = await make_rp()
    gateway = await make_rp(group="gateway")
    keys: list[str] = []

    @rp.register
    async def flow(ctx: Context) -> str:
        p = await ctx.promise()  # step 1
        value = str(await p)  # step 2
        keys.append(ctx.idempotency_key())  # the next step is 3
        return value

    await rp.start()
    handle = await gateway.begin_rpc("seq", "flow")
    await assert_eventually(lambda: _exists(gateway, "seq.1"))
    await gateway.resolve("seq.1", "ok")
    assert await handle.result(timeout=10) == "ok"
    assert keys == ["seq.3"]
