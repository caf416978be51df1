"""flow.mjs's shape on redpromise's own Python client: the same figures, no Resonate protocol.

    python py_flow.py worker <redis-url> <namespace>
        group "worker", function "foo" doing ``data["steps"]`` ctx.run steps; prints READY.
    python py_flow.py flow <redis-url> <namespace> <count> <window> <steps> [<warmup>]
        ``window`` lanes, each begin_rpc("foo") then result() in turn; one JSON line
        {count, window, steps, seconds, per_second, p50_ms, p99_ms} like flow.mjs.
    python py_flow.py flow-json …the same arguments…
        the same driver, beginning Resonate protocol promises (``Options(codec="json")``
        to ``poll://any@worker``): the work crosses to the TypeScript SDK's workers.

Needs the repo on PYTHONPATH. Percentiles are taken as flow.mjs takes them (the sample at
floor(p/100 * n) of the sorted latencies), so the two drivers' figures compare.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from typing import Any

from redpromise import Options, Redpromise, Settings
from redpromise.cli.runner import event_loop_factory

CROSS = Options(target="poll://any@worker", codec="json")


def make(url: str, namespace: str, group: str) -> Redpromise:
    rp = Redpromise(url, group=group, settings=Settings(namespace=namespace, concurrency=200))

    async def step(i: int) -> int:
        return i

    @rp.register
    async def foo(ctx: Any, data: dict[str, Any]) -> dict[str, Any]:
        out = [await ctx.run(step, i) for i in range(int(data.get("steps", 0)))]
        return {"i": data.get("i"), "steps": out}

    return rp


async def worker(url: str, namespace: str) -> None:
    rp = make(url, namespace, "worker")
    await rp.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    print("READY", flush=True)
    await stop.wait()
    await rp.stop(grace=0)


async def flow(
    url: str, namespace: str, count: int, window: int, steps: int, warmup: int, json_codec: bool
) -> None:
    rp = make(url, namespace, "gateway")  # never started: a driver is not a worker
    run = f"{os.getpid()}-{time.time_ns()}"

    async def one(i: int, latencies: list[float] | None) -> None:
        started = time.perf_counter()
        id, data = f"bench-{run}-{i}", {"steps": steps, "i": i}
        if json_codec:
            handle = await rp.begin_rpc(id, "foo", data, options=CROSS)
        else:
            handle = await rp.begin_rpc(id, "foo", data, target="worker")
        await handle.result()
        if latencies is not None:
            latencies.append((time.perf_counter() - started) * 1000)

    async def phase(n: int, offset: int, latencies: list[float] | None) -> None:
        it = iter(range(n))

        async def lane() -> None:
            for i in it:
                await one(offset + i, latencies)

        await asyncio.gather(*(lane() for _ in range(min(window, n))))

    await phase(warmup, 0, None)
    latencies: list[float] = []
    t0 = time.perf_counter()
    await phase(count, warmup, latencies)
    seconds = time.perf_counter() - t0
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))]

    print(json.dumps({"count": count, "window": window, "steps": steps,
                      "seconds": round(seconds, 3), "per_second": round(count / seconds, 1),
                      "p50_ms": round(pct(50), 2), "p99_ms": round(pct(99), 2)}), flush=True)
    await rp.stop()


def main() -> None:
    role, url, namespace, *rest = sys.argv[1:]
    # uvloop when installed, as `redpromise serve` and `redpromise worker` choose.
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        if role == "worker":
            runner.run(worker(url, namespace))
        else:
            count, window, steps = (int(x) for x in rest[:3])
            warmup = int(rest[3]) if len(rest) > 3 else 200
            runner.run(flow(url, namespace, count, window, steps, warmup, role == "flow-json"))


if __name__ == "__main__":
    main()
