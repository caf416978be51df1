"""Where the time of one sequential begin -> result goes, end to end.

    python bench/trace_roundtrip.py [--n 2000] [--uvloop]

Runs one worker process and one producer (this process) against a private redis-server,
as bench/run.py's latency workload does (begin_rpc, then result(), one at a time), and
timestamps each promise's way with CLOCK_MONOTONIC (shared by every process on the host):

  producer  begin_rpc called / returned; completion message parsed; result() returned
  worker    XREADGROUP reply holding the entry; the function entered / returned;
            the complete script's reply

The timestamps come from wrappers this script puts around redpromise's functions in its
own processes (no hooks in the library). Prints the median and p99 of each event's offset
from the begin call, the segments between them, and the Redis time per command
(INFO commandstats), from which the Redis share of each segment follows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench

sys.path.insert(0, str(bench.ROOT))  # this tree's redpromise, whatever is installed
now = time.perf_counter  # CLOCK_MONOTONIC on Linux: comparable across processes


def settings() -> Any:
    from redpromise import Settings

    return Settings(namespace=bench.NS)


async def worker(url: str, out: Path) -> None:
    from redpromise import Redpromise
    from redpromise.store import store as _store
    from redpromise.worker import reads as _reads

    marks: dict[str, dict[str, float]] = {}

    def mark(id: str, event: str) -> None:
        marks.setdefault(id, {})[event] = now()

    read = _reads.StreamReads.read

    async def traced_read(self: Any, free: int) -> Any:
        deliveries = await read(self, free)
        t = now()
        for _, _, fields in deliveries:
            f = dict(zip(fields[::2], fields[1::2], strict=False)) if isinstance(
                fields, list) else fields
            raw = f.get(b"id")
            if raw is not None:
                marks.setdefault(raw.decode(), {})["read"] = t
        return deliveries

    complete = _store.Store.complete

    async def traced_complete(self: Any, id: str, *args: Any, **kwargs: Any) -> Any:
        res = await complete(self, id, *args, **kwargs)
        mark(id, "completed")
        return res

    _reads.StreamReads.read = traced_read  # type: ignore[method-assign]
    _store.Store.complete = traced_complete  # type: ignore[method-assign]

    rp = Redpromise(url, settings=settings())

    @rp.register
    async def noop(ctx: Any, x: int) -> int:
        mark(ctx.id, "entered")
        mark(ctx.id, "returned")
        return x + 1

    await rp.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    print("READY", flush=True)
    await stop.wait()
    await rp.stop(grace=0)
    out.write_text(json.dumps(marks))


async def produce(url: str, n: int, snap: Any) -> dict[str, dict[str, float]]:
    from redpromise.client import waiter as _waiter

    marks: dict[str, dict[str, float]] = {}
    if not hasattr(_waiter.Waiter, "_heard_outcome"):  # before messages carried outcomes
        flush = _waiter._Link.flush

        def traced_flush(self: Any) -> None:  # runs right after the burst is parsed
            t = now()
            for id in self.ids:
                if id in marks:
                    marks[id]["message"] = t
            flush(self)

        _waiter._Link.flush = traced_flush  # type: ignore[method-assign]
        return await _sequential(url, n, marks, snap)
    heard_outcome = _waiter.Waiter._heard_outcome
    heard_id = _waiter.Waiter._heard_id

    def traced_outcome(self: Any, link: Any, data: bytes) -> None:
        t = now()
        id = data.split(b"\0", 5)[4].decode() if data.count(b"\0") >= 5 else ""
        if id in marks:
            marks[id]["message"] = t
        heard_outcome(self, link, data)

    def traced_id(self: Any, link: Any, id: str) -> None:
        if id in marks:
            marks[id]["message"] = now()
        heard_id(self, link, id)

    _waiter.Waiter._heard_outcome = traced_outcome  # type: ignore[method-assign]
    _waiter.Waiter._heard_id = traced_id  # type: ignore[method-assign]
    return await _sequential(url, n, marks, snap)


async def _sequential(url: str, n: int, marks: dict[str, dict[str, float]], snap: Any
                      ) -> dict[str, dict[str, float]]:
    from redpromise import Redpromise
    from redpromise.redis import wire as _wire

    roundtrip = _wire.roundtrip
    current: list[str] = [""]

    async def traced_roundtrip(conn: Any, packed: bytes, n: int) -> Any:
        m = marks.get(current[0])
        first = m is not None and "sent" not in m  # the create's: the begin's first batch
        if first:
            m["sent"] = now()  # type: ignore[index]
        out = await roundtrip(conn, packed, n)
        if first:
            m["replied"] = now()  # type: ignore[index]
        return out

    _wire.roundtrip = traced_roundtrip  # type: ignore[assignment]

    rp = Redpromise(url, settings=settings())
    run = os.urandom(4).hex()
    for i in range(20 + n):  # the first 20 warm up (connections, subscription, scripts)
        if i == 20:
            snap("before")
        id = f"{run}-{i}"
        current[0] = id
        m = marks[id] = {"begin": now()}
        h = await rp.begin_rpc(id, "noop", i)
        m["begun"] = now()
        await h.result()
        m["result"] = now()
        if i < 20:
            del marks[id]
    snap("after")
    await rp.stop()
    return marks


EVENTS = [
    ("sent", "producer: create written to the socket"),
    ("replied", "producer: create's reply parsed"),
    ("begun", "producer: begin_rpc returned (create script's reply)"),
    ("read", "worker: XREADGROUP reply holding the entry"),
    ("entered", "worker: function entered (after the acquire script's reply)"),
    ("returned", "worker: function returned"),
    ("completed", "worker: complete script's reply"),
    ("message", "producer: completion message parsed"),
    ("result", "producer: result() returned"),
]


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def report(marks: dict[str, dict[str, float]], cmds: dict[str, Any], n: int,
           cpu: dict[str, float]) -> str:
    rows = [m for m in marks.values() if all(e in m for e, _ in EVENTS)]
    lines = [f"{len(rows)} of {len(marks)} round trips with every timestamp", "",
             "| event | median ms after begin | p99 |", "|---|---:|---:|"]
    for e, what in EVENTS:
        xs = [(m[e] - m["begin"]) * 1000 for m in rows]
        lines.append(f"| {what} | {statistics.median(xs):.3f} | {pct(xs, 0.99):.3f} |")
    lines += ["", "| segment | median ms | p99 |", "|---|---:|---:|"]
    segs = [("begin", "begun", "begin: client + create round trip"),
            ("begin", "read", "begin call -> worker holds the entry (pick-up)"),
            ("read", "entered", "acquire round trip + execution task start"),
            ("entered", "returned", "the function"),
            ("returned", "completed", "complete round trip"),
            ("returned", "message", "function returned -> message parsed by the producer"),
            ("message", "result", "message -> result() returns"),
            ("begin", "result", "whole round trip")]
    for a, b, what in segs:
        xs = [(m[b] - m[a]) * 1000 for m in rows]
        lines.append(f"| {what} | {statistics.median(xs):.3f} | {pct(xs, 0.99):.3f} |")
    lines += ["", "CPU µs per round trip: " + ", ".join(
        f"{k} {v * 1e6 / n:.0f}" for k, v in cpu.items())]
    lines += ["", "Redis, per round trip (commandstats: calls, µs per call):"]
    for k, (c, u) in sorted(cmds.items(), key=lambda kv: -kv[1][0] * kv[1][1]):
        if c >= n / 100:
            lines.append(f"  {k}: {c / n:.2f} calls, {u / c:.1f} µs")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("role", nargs="?", default="main", choices=["main", "worker"])
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--url", default="")
    p.add_argument("--out", default="")
    p.add_argument("--uvloop", action="store_true")
    a = p.parse_args()
    if a.uvloop:
        import uvloop

        uvloop.install()
    if a.role == "worker":
        asyncio.run(worker(a.url, Path(a.out)))
        return
    tmp = Path(tempfile.mkdtemp(prefix="rp-trace-"))
    out = tmp / "worker.json"
    with bench.redis_server() as (url, r):
        cmd = [sys.executable, __file__, "worker", "--url", url, "--out", str(out)]
        if a.uvloop:
            cmd.append("--uvloop")
        env = {**os.environ, "PYTHONPATH": str(bench.ROOT)}
        w = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
        assert w.stdout is not None
        if "READY" not in w.stdout.readline():
            raise SystemExit("worker did not start")
        snaps: dict[str, tuple[Any, float, float, float]] = {}

        def snap(when: str) -> None:
            snaps[when] = (bench.commandstats(r), time.process_time(),
                           bench.cpu_seconds(w.pid), bench.redis_cpu(r))

        marks = asyncio.run(produce(url, a.n, snap))
        w.send_signal(signal.SIGTERM)
        w.wait(30)
    for id, m in json.loads(out.read_text()).items():
        if id in marks:
            marks[id].update(m)
    (c0, *cpu0), (c1, *cpu1) = snaps["before"], snaps["after"]
    cpu = {k: y - x for k, x, y in zip(("producer", "worker", "Redis"), cpu0, cpu1, strict=True)}
    print(report(marks, bench.cmd_delta(c0, c1), a.n, cpu))


if __name__ == "__main__":
    main()
