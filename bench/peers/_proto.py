"""The protocol every Python adapter under bench/peers speaks (stdlib only).

    python bench/peers/peer_<lib>.py worker  --url U --concurrency C [--stats FILE]
        runs one worker process until SIGTERM; prints READY once it consumes.
    python bench/peers/peer_<lib>.py produce --url U --mode M --n N [--stats FILE]
        M = throughput | latency | steps; prints one JSON line of results, exits.

The producer first runs a few warm-up jobs through the worker(s) (so worker start-up is
never timed), then measures. ``--stats FILE`` writes the process's Redis round trips
(socket writes of redis-py) as JSON at exit, for round-trips-per-job figures.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import signal
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

WARMUP = 20

_rt = {"writes": 0}


def count_round_trips() -> None:
    """Count redis-py socket writes (one per command or per pipeline) in this process."""
    try:
        from redis.asyncio import connection as aconn
    except ImportError:
        aconn = None  # type: ignore[assignment]
    if aconn is not None:
        orig = aconn.AbstractConnection.send_packed_command

        async def send(self: Any, command: Any, check_health: bool = True) -> None:
            _rt["writes"] += 1
            await orig(self, command, check_health)

        aconn.AbstractConnection.send_packed_command = send  # type: ignore[method-assign]
    try:
        from redis import connection as sconn
    except ImportError:
        return
    sorig = sconn.AbstractConnection.send_packed_command

    def ssend(self: Any, command: Any, check_health: bool = True) -> None:
        _rt["writes"] += 1
        sorig(self, command, check_health)

    sconn.AbstractConnection.send_packed_command = ssend  # type: ignore[method-assign]


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("role", choices=["worker", "produce"])
    p.add_argument("--url", required=True)
    p.add_argument("--concurrency", type=int, default=100)
    p.add_argument("--mode", default="throughput")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--window", type=int, default=500, help="producer's jobs in flight")
    p.add_argument("--stats", default=None)
    a = p.parse_args()
    if a.stats:
        count_round_trips()
        path = a.stats

        def dump() -> None:
            with open(path, "w") as f:
                json.dump({"writes": _rt["writes"]}, f)

        atexit.register(dump)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    return a


def ready() -> None:
    print("READY", flush=True)


def emit(result: dict[str, Any]) -> None:
    print(json.dumps(result), flush=True)


def pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def latency_result(samples_s: list[float]) -> dict[str, Any]:
    ms = [x * 1000 for x in samples_s]
    return {
        "p50_ms": pct(ms, 0.50),
        "p99_ms": pct(ms, 0.99),
        "mean_ms": statistics.fmean(ms),
        "samples": len(ms),
    }


def throughput_result(n: int, t0: float, t_enq: float, t_end: float) -> dict[str, Any]:
    return {
        "n": n,
        "jobs_per_s": n / (t_end - t0),
        "total_s": t_end - t0,
        "enqueue_s": t_enq - t0,
        "enqueue_per_s": n / max(1e-9, t_enq - t0),
    }


async def windowed(n: int, window: int, one: Callable[[int], Awaitable[Any]]) -> None:
    """Run ``one(i)`` for i in range(n) with at most ``window`` at once."""
    it = iter(range(n))

    async def lane() -> None:
        for i in it:
            await one(i)

    await asyncio.gather(*(lane() for _ in range(min(window, n))))


async def async_throughput(
    n: int,
    window: int,
    begin: Callable[[int], Awaitable[Any]],
    result: Callable[[Any], Awaitable[Any]],
) -> dict[str, Any]:
    """Begin n jobs (window at a time), then confirm every result (window at a time)."""
    handles: list[Any] = [None] * n

    async def b(i: int) -> None:
        handles[i] = await begin(i)

    t0 = time.perf_counter()
    await windowed(n, window, b)
    t_enq = time.perf_counter()
    bad = 0

    async def r(i: int) -> None:
        nonlocal bad
        if await result(handles[i]) != i + 1:
            bad += 1

    await windowed(n, window, r)
    t_end = time.perf_counter()
    out = throughput_result(n, t0, t_enq, t_end)
    out["wrong_results"] = bad
    return out


async def async_latency(
    n: int, begin: Callable[[int], Awaitable[Any]], result: Callable[[Any], Awaitable[Any]]
) -> dict[str, Any]:
    samples = []
    for i in range(n):
        t = time.perf_counter()
        v = await result(await begin(i))
        samples.append(time.perf_counter() - t)
        assert v == i + 1, (v, i)
    return latency_result(samples)


async def async_produce(
    a: argparse.Namespace,
    begin: Callable[[int], Awaitable[Any]],
    result: Callable[[Any], Awaitable[Any]],
) -> dict[str, Any]:
    """The standard producer: warm up, then the requested measurement."""
    for i in range(WARMUP):
        await result(await begin(10_000_000 + i))
    if a.mode == "latency":
        return await async_latency(a.n, begin, result)
    return await async_throughput(a.n, a.window, begin, result)
