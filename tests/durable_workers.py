"""Durable functions for process tests: ``python -m redpromise worker tests.durable_workers:make``.

Configured like tests/workers.py: REDPROMISE_URL / REDPROMISE_NAMESPACE / REDPROMISE_LEASE …,
REDPROMISE_GROUP, and TEST_FX_URL, where every step call is counted with ``INCR
fx:<namespace>:<name>`` — outside redpromise's keys and outside the worker, so the counts
survive a SIGKILL and a test can assert exact numbers of calls.

Functions wait at *gates*: ``gate(name)`` blocks until the test sets ``fx:<namespace>:<name>``.
A gate is not a step, so a test decides exactly where a worker is when it is killed.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Generator
from typing import Any

from redpromise import Context, Redpromise
from tests.redis_cluster import async_client

FX_PREFIX = "fx:"
GATE_POLL = 0.05


class Fx:
    """Side-effect counters and gates of one namespace, in the test's Redis."""

    def __init__(self, url: str, namespace: str) -> None:
        self.redis = async_client(url)
        self.namespace = namespace

    def key(self, name: str) -> str:
        return f"{FX_PREFIX}{self.namespace}:{name}"

    async def bump(self, name: str) -> int:
        return int(await self.redis.incr(self.key(name)))

    async def gate(self, name: str) -> None:
        """Wait until the test opens gate ``name`` (sets its key)."""
        while not await self.redis.exists(self.key(name)):
            await asyncio.sleep(GATE_POLL)

    async def step(self, key: str, i: int, block: bool) -> str:
        """Step ``i``: counted; with ``block``, waits at gate ``<key>:go`` before returning.

        The value tells which call of the step produced it: ``s<i>#<calls so far>``.
        """
        n = await self.bump(f"{key}:step{i}")
        if block:
            await self.gate(f"{key}:go")
        return f"s{i}#{n}"


def make() -> Redpromise:
    rp = Redpromise.from_env()
    fx = Fx(os.environ["TEST_FX_URL"], rp.settings.namespace)
    bump, gate, step = fx.bump, fx.gate, fx.step

    @rp.register
    async def four(ctx: Context, key: str, hold_after: int = 0, block_in: int = 0) -> list[str]:
        """Four checkpointed steps (async style).

        ``hold_after=i``: wait at gate ``<key>:go`` after step i checkpointed (not a step).
        ``block_in=i``: step i waits at that gate after counting, before it returns.
        """
        await bump(f"{key}:started")
        out: list[str] = []
        for i in range(1, 5):
            out.append(await ctx.run(step, key, i, i == block_in))
            if i == hold_after:
                await gate(f"{key}:go")
        return out

    @rp.register
    def four_gen(
        ctx: Context, key: str, hold_after: int = 0, block_in: int = 0
    ) -> Generator[Any, Any, list[str]]:
        """:func:`four` in Resonate's generator style (``x = yield ctx.run(...)``)."""
        yield bump(f"{key}:started")
        out: list[str] = []
        for i in range(1, 5):
            out.append((yield ctx.run(step, key, i, i == block_in)))
            if i == hold_after:
                yield gate(f"{key}:go")
        return out

    @rp.register
    async def nap(ctx: Context, key: str, seconds: float) -> list[str]:
        """A step, a durable sleep, a step."""
        first = await ctx.run(step, key, 1, False)
        await ctx.sleep(seconds)
        second = await ctx.run(step, key, 2, False)
        return [first, second]

    @rp.register
    async def child(ctx: Context, key: str, x: int) -> dict[str, Any]:
        """Counts each execution, waits at gate ``<key>:release``, returns its id and 2x."""
        await bump(f"{key}:child")
        await gate(f"{key}:release")
        return {"id": ctx.id, "value": x * 2}

    @rp.register
    async def parent(ctx: Context, key: str, x: int) -> dict[str, Any]:
        """Counts each execution, calls ``child`` on group ``children``, adds one."""
        await bump(f"{key}:parent")
        got = await ctx.rpc("child", key, x, target="poll://any@children")
        return {"child": got["id"], "result": got["value"] + 1}

    @rp.register
    async def approval(ctx: Context, key: str, amount: int) -> str:
        """Waits for a latent promise (``<id>.1``) that someone outside resolves."""
        await bump(f"{key}:started")
        p = await ctx.promise()
        decision = await p
        await bump(f"{key}:decided")
        return f"{amount} {decision}"

    return rp
