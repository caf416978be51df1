"""redpromise adapter (see _proto.py). Needs the repo on PYTHONPATH.

Modes beyond the standard ones:
  produce --mode steps     : the 5-step workflow (ctx.run each step), promises/s
  produce --mode hold      : begin N promises of ``hold`` (awaits an event that never
                             fires) and exit; for the worker-RSS and memory workloads
  produce --mode begin     : begin N no-op promises and exit (no worker needed)
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _proto

from redpromise import Redpromise, Settings

NS = os.environ.get("BENCH_NAMESPACE", "bench")
# Partitions of the namespace (bench/cluster.py --partitions); the library's default if unset.
PARTITIONS = {"partitions": int(os.environ["BENCH_PARTITIONS"])} if os.environ.get(
    "BENCH_PARTITIONS") else {}


def make(url: str, concurrency: int = 100) -> Redpromise:
    rp = Redpromise(url, settings=Settings(namespace=NS, concurrency=concurrency, **PARTITIONS))

    @rp.register
    async def noop(ctx: Any, x: int) -> int:
        return x + 1

    async def step(x: int) -> int:
        return x + 1

    @rp.register
    async def steps(ctx: Any, x: int) -> int:
        for _ in range(5):
            x = await ctx.run(step, x)
        return x - 4

    forever = asyncio.Event()

    @rp.register
    async def hold(ctx: Any, x: int) -> int:
        await forever.wait()
        return x + 1

    return rp


async def worker(a: Any) -> None:
    rp = make(a.url, a.concurrency)
    await rp.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    _proto.ready()
    await stop.wait()
    await rp.stop(grace=0)


async def produce(a: Any) -> dict[str, Any]:
    rp = make(a.url)  # never started: a producer is not a worker
    run = uuid.uuid4().hex[:8]
    func = {"throughput": "noop", "latency": "noop", "steps": "steps"}.get(a.mode, a.mode)
    if a.mode in ("hold", "begin"):
        func = "hold" if a.mode == "hold" else "noop"
        t0 = time.perf_counter()
        await _proto.windowed(a.n, a.window, lambda i: rp.begin_rpc(f"{run}-{i}", func, i))
        out = {"n": a.n, "begin_per_s": a.n / (time.perf_counter() - t0)}
        await rp.stop()
        return out

    async def begin(i: int) -> Any:
        return await rp.begin_rpc(f"{run}-{i}", func, i)

    async def result(h: Any) -> Any:
        return await h.result()

    out = await _proto.async_produce(a, begin, result)
    await rp.stop()
    return out


def main() -> None:
    a = _proto.parse()
    if os.environ.get("BENCH_TRACE"):  # diagnosis: bench/cluster.py --trace
        import _trace

        _trace.install(os.environ["BENCH_TRACE"], a.role if a.role == "worker" else a.mode)
    if os.environ.get("BENCH_UVLOOP"):
        import uvloop

        uvloop.install()
    if a.role == "worker":
        asyncio.run(worker(a))
    else:
        _proto.emit(asyncio.run(produce(a)))


if __name__ == "__main__":
    main()
