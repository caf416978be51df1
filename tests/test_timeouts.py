"""Every public timeout takes seconds (int or float) or a timedelta, and refuses nonsense."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest

from redpromise import ConfigurationError, Context, Never, Options, PromiseRejected, Redpromise
from redpromise.store.store import Record
from tests.helpers import assert_eventually

MakeRp = Callable[..., Awaitable[Redpromise]]

BAD = [0, -1, -0.5, float("nan"), float("inf"), 1e300, True, "30", timedelta(0), timedelta(-1)]


async def _record(rp: Redpromise, id: str) -> Record:
    rec = await rp.store.read(id)
    assert rec is not None
    return rec


def _span(rec: Record) -> int:
    return rec.timeout_at - rec.created_at


@pytest.mark.parametrize(
    ("given", "ms"), [(30, 30_000), (2.5, 2_500), (timedelta(seconds=7), 7_000)]
)
async def test_begin_rpc_takes_seconds_or_timedelta(make_rp: MakeRp, given: Any, ms: int) -> None:
    rp = await make_rp(group="gateway")
    await rp.begin_rpc("direct", "f", target="nobody", timeout=given)
    await rp.begin_rpc("bag", "f", options=rp.options(target="nobody", timeout=given))
    await rp.begin_rpc("cls", "f", options=Options(target="nobody", timeout=given))
    for id in ("direct", "bag", "cls"):
        assert _span(await _record(rp, id)) == ms


def test_options_store_a_timedelta() -> None:
    assert Options(timeout=30).timeout == timedelta(seconds=30)
    assert Options(timeout=0.25).timeout == timedelta(milliseconds=250)
    assert Options(timeout=timedelta(minutes=1)).timeout == timedelta(minutes=1)
    assert Options().timeout is None
    merged = Options(target="a").merge(timeout=5)
    assert merged == Options(target="a", timeout=timedelta(seconds=5))
    with pytest.raises(AttributeError):  # still frozen
        merged.timeout = None  # type: ignore[misc]


@pytest.mark.parametrize("bad", BAD, ids=repr)
def test_bad_timeouts_are_refused_where_given(bad: Any) -> None:
    rp = Redpromise(group="gateway")
    with pytest.raises(ConfigurationError, match="timeout"):
        Options(timeout=bad)
    with pytest.raises(ConfigurationError, match="timeout"):
        rp.options(timeout=bad)
    with pytest.raises(ConfigurationError, match="timeout"):
        rp.register(timeout=bad)
    with pytest.raises(ConfigurationError, match="timeout"):
        asyncio.run(rp.begin_rpc("x", "f", timeout=bad))


async def test_context_rpc_and_promise_take_seconds(make_rp: MakeRp) -> None:
    rp = await make_rp()
    gateway = await make_rp(group="gateway")

    @rp.register
    async def flow(ctx: Context) -> str:
        p = await ctx.promise(timeout=7)  # step 1
        child = ctx.rpc("anything", target="nobody", timeout=5.5)  # step 2
        value = str(await p)
        child.cancel()
        return value

    await rp.start()
    handle = await gateway.begin_rpc("ctx-t", "flow", timeout=timedelta(minutes=5))
    await assert_eventually(lambda: rp.store.read("ctx-t.2"))
    assert _span(await _record(rp, "ctx-t.1")) == 7_000
    assert _span(await _record(rp, "ctx-t.2")) == 5_500
    await gateway.resolve("ctx-t.1", "ok")
    assert await handle.result(timeout=10) == "ok"


@pytest.mark.parametrize("bad", [0, float("nan"), "5"], ids=repr)
async def test_context_refuses_a_bad_timeout(make_rp: MakeRp, bad: Any) -> None:
    rp = await make_rp()

    @rp.register(retry=Never())
    async def flow(ctx: Context) -> None:
        await ctx.rpc("anything", target="nobody", timeout=bad)

    await rp.start()
    with pytest.raises(PromiseRejected) as info:
        await (await rp.begin_rpc("ctx-bad", "flow")).result(timeout=10)
    assert info.value.type == "ConfigurationError"


async def test_register_timeout_in_seconds_bounds_an_attempt(make_rp: MakeRp) -> None:
    rp = await make_rp()

    @rp.register(timeout=0.2, retry=Never())
    async def slow(ctx: Context) -> None:
        await asyncio.sleep(30)

    await rp.start()
    with pytest.raises(PromiseRejected) as info:
        await (await rp.begin_rpc("slow-1", "slow")).result(timeout=10)
    assert info.value.type == "TimeoutError"
