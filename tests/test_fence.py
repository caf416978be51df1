"""The local lease deadline: a worker that stalls keeps no step it no longer owns.

Found by the chaos run (bench/chaos.py, seed 2): a worker frozen right after Redis ran
its acquire, but before it read the reply, woke up with a lease it counted from the
moment it read the reply, and ran step 1 of a promise another worker had already
completed. The lease must be counted from when the acquire was sent.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redpromise import Context, Redpromise
from redpromise._store import Call

MakeRp = Callable[..., Awaitable[Redpromise]]


async def test_worker_stalled_on_its_acquire_reply_runs_no_step(make_rp: MakeRp) -> None:
    calls: Counter[str] = Counter()

    def step(name: str) -> str:
        calls[name] += 1
        return name

    async def two_steps(ctx: Context) -> list[str]:
        return [await ctx.run(step, "one"), await ctx.run(step, "two")]

    stalled = await make_rp()
    stalled.register(two_steps, name="two_steps")
    acquiring = asyncio.Event()
    original = stalled.store.pipelined

    async def slow_reply(batch: Sequence[Call]) -> list[Any]:
        results = await original(batch)
        if any(script.name == "acquire" for script, _, _ in batch) and not acquiring.is_set():
            acquiring.set()
            # Frozen with the reply unread, for three leases (1 s each in tests).
            await asyncio.sleep(3 * stalled.settings.lease.total_seconds())
        return results

    stalled.store.pipelined = slow_reply  # type: ignore[method-assign]
    await stalled.start()
    handle = await stalled.begin_rpc("p", "two_steps")
    await asyncio.wait_for(acquiring.wait(), 10)

    live = await make_rp()
    live.register(two_steps, name="two_steps")
    await live.start()
    assert await handle.result(timeout=20) == ["one", "two"]
    # Let the stalled worker wake up and try its stale execution.
    await asyncio.sleep(3 * stalled.settings.lease.total_seconds())
    assert calls == {"one": 1, "two": 1}
