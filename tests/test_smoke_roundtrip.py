"""The basic round trip on both backends: begin → worker runs → result."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from redpromise import Context, Redpromise


async def test_begin_rpc_result_round_trip(make_rp: Callable[..., Awaitable[Redpromise]]) -> None:
    worker = await make_rp()

    @worker.register
    async def add(ctx: Context, a: int, b: int) -> int:
        return int(await ctx.run(lambda: a + b))

    await worker.start()
    gateway = await make_rp(group="gateway")
    handle = await gateway.begin_rpc("p1", "add", 2, 3)
    assert await handle.result(timeout=10) == 5
    assert await (await gateway.get("p1")).done() is True
