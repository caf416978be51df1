"""The reconciler re-dispatches pending promises whose stream entry vanished."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import pytest
from redis.asyncio import Redis

from redpromise import Context, Redpromise

MakeRp = Callable[..., Awaitable[Redpromise]]


async def test_promise_whose_entry_was_trimmed_is_dispatched_again(
    make_rp: MakeRp, redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = await make_rp(group="gateway")
    handle = await gateway.begin_rpc("lost-entry", "echo", 42)
    keys = gateway.keys
    k = keys.partition("lost-entry")
    stream = keys.stream(k, "worker")
    # An operator trims the stream before any worker has read it.
    await redis.xtrim(stream, maxlen=0)
    assert await redis.xlen(stream) == 0

    worker = await make_rp()

    @worker.register
    async def echo(ctx: Context, x: int) -> int:
        return x

    caplog.set_level(logging.WARNING, logger="redpromise.worker")
    await worker.start()
    assert worker.worker is not None
    # The worker's own reclaim loop reconciles too, from its start: whichever of it and
    # these calls reaches the partition first re-dispatches, the other finds nothing.
    for _ in range(keys.partitions):
        await worker.worker.upkeep.reconcile(200)
    assert await handle.result(timeout=10) == 42
    redispatched = [
        r.getMessage() for r in caplog.records if "whose entry had vanished" in r.getMessage()
    ]
    assert len(redispatched) == 1 and "'lost-entry'" in redispatched[0], redispatched


async def test_reconcile_leaves_healthy_promises_alone(make_rp: MakeRp, redis: Redis) -> None:
    gateway = await make_rp(group="gateway")
    for i in range(20):
        await gateway.begin_rpc(f"ok-{i}", "echo", i)
    worker = await make_rp()
    worker.register(lambda ctx, x: x, name="echo")
    # Delivered (in the PEL) or not yet read: either way every entry is live.
    await worker.start()
    assert worker.worker is not None
    assert sum([await worker.worker.upkeep.reconcile(200) for _ in range(16)]) == 0
