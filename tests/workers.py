"""Worker functions for process tests: ``python -m redpromise worker tests.workers:make``.

Configured by environment: REDPROMISE_URL / REDPROMISE_NAMESPACE / REDPROMISE_LEASE …
(see ``Settings.from_env``), REDPROMISE_GROUP, and TEST_FX_URL: where side effects are
counted (``fx:<name>`` keys), outside redpromise's keys, so a test can count each call.
"""

from __future__ import annotations

import asyncio
import os
import signal
from datetime import timedelta
from typing import Any

from redpromise import ApplicationError, Context, Exponential, Redpromise
from tests.redis_cluster import async_client

FX_PREFIX = "fx:"


async def nap(ctx: Context, seconds: float) -> dict[str, int]:
    """Sleeps without touching Redis; the result names the process that ran it."""
    await asyncio.sleep(seconds)
    return {"pid": os.getpid()}


async def nap_step(ctx: Context, seconds: float) -> dict[str, int]:
    """Sleeps, then records one checkpointed step: a fault meanwhile hits the write."""
    await asyncio.sleep(seconds)
    return {"pid": await ctx.run(os.getpid)}


def make() -> Redpromise:
    rp = Redpromise.from_env()
    fx = async_client(os.environ["TEST_FX_URL"])
    ns = rp.settings.namespace

    async def bump(name: str) -> int:
        return int(await fx.incr(f"{FX_PREFIX}{ns}:{name}"))

    @rp.register
    async def echo(ctx: Context, value: Any) -> Any:
        return value

    @rp.register
    async def count(ctx: Context, key: str) -> int:
        """One side effect per execution."""
        return await bump(key)

    @rp.register
    async def slow(ctx: Context, key: str, seconds: float) -> str:
        """Counts starts and finishes around a sleep: a kill in between shows."""
        await bump(f"{key}:started")
        await asyncio.sleep(seconds)
        await bump(f"{key}:finished")
        return f"{key} done"

    @rp.register
    async def steps(ctx: Context, key: str, n: int, pause: float) -> list[int]:
        """n checkpointed steps, each counted, with a pause after each checkpoint."""
        out = []
        for i in range(1, n + 1):
            out.append(await ctx.run(bump, f"{key}:step{i}"))
            await bump(f"{key}:after{i}")
            await asyncio.sleep(pause)
        return out

    @rp.register(retry=Exponential(delay=timedelta(milliseconds=100), max_retries=2))
    async def fails(ctx: Context, key: str) -> None:
        await bump(key)
        raise ValueError(f"attempt {ctx.attempt} failed")

    @rp.register
    async def fatal(ctx: Context, key: str) -> None:
        await bump(key)
        raise ApplicationError("cannot ever work", type="Fatal", non_retryable=True)

    @rp.register
    async def whoami(ctx: Context, key: str, seconds: float) -> dict[str, int]:
        """Like ``slow``, but the result tells which process and which version ran it."""
        await bump(f"{key}:started")
        await asyncio.sleep(seconds)
        await bump(f"{key}:finished")
        return {"pid": os.getpid(), "version": ctx.version}

    @rp.register
    async def gated(ctx: Context, key: str, gate: str) -> dict[str, int]:
        """Counts its start, then waits for the file ``<gate>.<version>`` without touching
        Redis, so a process frozen while waiting returns (and sends its completion) as
        soon as it is thawed, before any heartbeat reply can stop it."""
        await bump(f"{key}:started")
        while not os.path.exists(f"{gate}.{ctx.version}"):
            await asyncio.sleep(0.02)
        return {"pid": os.getpid(), "version": ctx.version}

    rp.register(nap)
    rp.register(nap_step)

    @rp.register
    async def suicide(ctx: Context, key: str) -> None:
        """Counts the call, then SIGKILLs its own worker process: a poison dispatch."""
        await bump(key)
        os.kill(os.getpid(), signal.SIGKILL)

    rp.register(fragile)
    return rp


async def fragile(ctx: Context, key: str, trap: str) -> str:
    """SIGKILLs its own worker while the file ``trap`` exists (a poison dispatch until the
    operator removes the cause), else returns ``<key> ok``."""
    if os.path.exists(trap):
        os.kill(os.getpid(), signal.SIGKILL)
    return f"{key} ok"


def make_with_promote_bug() -> Redpromise:
    """``make()``, but the worker's promote loop hits a bug (not Redis) on its third
    iteration: the process must exit non-zero with the reason, not live on half-working."""
    from redpromise.worker.upkeep import Upkeep

    original = Upkeep.promote
    calls = 0

    async def promote(self: Upkeep) -> int:
        nonlocal calls
        calls += 1
        if calls >= 3:
            raise TypeError("simulated bug in promote")
        return await original(self)

    Upkeep.promote = promote  # type: ignore[method-assign]
    return make()
