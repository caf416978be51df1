"""The gateway under a real load generator: HTTP begins/s with wrk, 0 lost, /wait wake-up.

    python bench/gateway_wrk.py [--threads 2] [--connections 64] [--duration 10]
        [--workers 1] [--workers-during] [--waiters 1000] [--root DIR] [--repeat N]
        [--py-spy FILE]

One run:

1. a private redis-server (no persistence, free port, temp dir: bench/run.py's), one
   gateway process (``services/gateway.py`` of ``--root``, default this checkout; on
   uvloop when it is installed, unless ``REDPROMISE_UVLOOP=0``), function ``noop`` of
   bench/peers/peer_redpromise.py, namespace ``bench``;
2. ``wrk -t<threads> -c<connections> -d<duration>s --latency -s bench/wrk/begin.lua``:
   every request ``POST /begin?id=<run>-<thread>-<n>`` with a fresh id and body ``n``
   (1 s of warm-up with another prefix first). Gateway and Redis CPU are read from /proc
   and ``INFO cpu`` around the measured run;
3. worker processes (``--workers``, concurrency 100) complete everything: started after
   wrk by default, so the measurement has both cores for wrk, the gateway and Redis
   (``--workers-during`` starts them before, completing while wrk runs);
4. the check: every promise key in Redis (counted by SCAN) ends ``resolved``, each wrk
   thread's ids form an unbroken run 1..m, and the ids of the measured run are at least
   wrk's 2xx answers. Any miss is counted as lost;
5. the /wait wake-up (``--waiters`` > 0): with the workers stopped, begins that many
   promises through the gateway, holds one ``/wait?id=…&timeout=60`` long-poll for each
   (a separate client process), then resolves them from this process
   (``Redpromise.resolve``, one by one ``--gap`` ms apart; ``--gap 0``: all at once) and
   reports, per promise, the time from the resolve call's return to the long-poll's
   answer arriving (p50/p99; both ends read ``time.time()`` on this machine).

Prints one JSON object per run and, with ``--repeat``, the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import redis

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run import ROOT, Workers, cpu_seconds, free_port, redis_cpu, redis_server, tail  # noqa: E402

NS = "bench"
LUA = HERE / "wrk" / "begin.lua"


def start_gateway(root: Path, url: str, port: int, logdir: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update(PYTHONPATH=str(root), REDPROMISE_URL=url, REDPROMISE_NAMESPACE=NS,
               REDPROMISE_GATEWAY_PORT=str(port), REDPROMISE_GATEWAY_FUNCTION="noop",
               REDPROMISE_LOG_LEVEL="WARNING", REDPROMISE_GATEWAY_MAX_WAIT="60")
    log = logdir / "gateway.log"
    with log.open("wb") as out:
        gw = subprocess.Popen([sys.executable, str(root / "services" / "gateway.py")], env=env,
                              stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              start_new_session=True)
    deadline = time.monotonic() + 20
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).read()
            return gw
        except OSError:
            if gw.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"gateway did not start: {tail(log)}") from None
            time.sleep(0.1)


def on_uvloop(pid: int) -> bool:
    """Whether the process has uvloop's extension mapped (its loop, not asyncio's)."""
    return "uvloop/loop." in Path(f"/proc/{pid}/maps").read_text()


def stop(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def wrk(base: str, run: str, a: argparse.Namespace, duration: float) -> dict[str, Any]:
    binary = shutil.which("wrk")
    if binary is None:
        raise SystemExit("wrk not found (Debian: apt-get install wrk)")
    cmd = [binary, f"-t{a.threads}", f"-c{a.connections}", f"-d{duration:g}s", "--latency",
           "--timeout", "10s", "-s", str(LUA), base]
    out = subprocess.run(cmd, env={**os.environ, "RUN": run}, capture_output=True, text=True,
                         check=True, timeout=duration + 60).stdout
    line = next(x for x in out.splitlines() if x.startswith("WRKJSON "))
    res: dict[str, Any] = json.loads(line.removeprefix("WRKJSON "))
    res["command"] = " ".join(["RUN=" + run, *cmd[:1], *cmd[1:]])
    return res


def sys_seconds(pid: int) -> float:
    """The kernel part of a process's CPU (/proc stime), e.g. its socket sends."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return int(fields[12]) / os.sysconf("SC_CLK_TCK")


def redis_reads(r: redis.Redis) -> int:
    """Read events Redis handled: with one client writing, its writes (pipelines) to Redis."""
    return int(r.info("stats")["total_reads_processed"])


def strace_counts(path: Path) -> dict[str, float]:
    """Calls per syscall from ``strace -c`` output (the ten most frequent, and the total)."""
    counts: dict[str, float] = {}
    for line in path.read_text().splitlines():
        f = line.split()
        if len(f) >= 5 and f[0][0].isdigit() and f[-1] != "total":
            counts[f[-1]] = float(f[3])
    top = dict(sorted(counts.items(), key=lambda kv: -kv[1])[:10])
    top["total"] = sum(counts.values())
    return top


def promise_states(r: redis.Redis) -> dict[str, bytes | None]:
    """Every promise id in the namespace with its state (SCAN: counted from Redis)."""
    keys = list(r.scan_iter(match=f"{{{NS}:*}}:p:*", count=5000))
    states: dict[str, bytes | None] = {}
    for i in range(0, len(keys), 5000):
        chunk = keys[i:i + 5000]
        pipe = r.pipeline(transaction=False)
        for k in chunk:
            pipe.hget(k, "state")
        for k, s in zip(chunk, pipe.execute(), strict=True):
            states[k.decode().split(":p:", 1)[1]] = s
    return states


def pending(r: redis.Redis) -> int:
    """Promises counted as pending by the partitions' counters hashes (cheap, for draining)."""
    total = 0
    for k in r.scan_iter(match=f"{{{NS}:*}}:n", count=1000):
        total += sum(int(v) for f, v in r.hgetall(k).items() if f.startswith(b"pending|"))
    return total


def drain(r: redis.Redis, timeout: float) -> float:
    t0 = time.monotonic()
    while pending(r) and time.monotonic() - t0 < timeout:
        time.sleep(0.2)
    return time.monotonic() - t0


def check(states: dict[str, bytes | None], run: str, wrk_2xx: int,
          per_thread_conns: int) -> dict[str, Any]:
    """0 lost: every promise resolved, ids unbroken but at the cut-off, >= wrk's 2xx answers.

    wrk stops mid-flight: ids generated in the last moment may never reach the gateway,
    so missing ids among a thread's last ``per_thread_conns`` are the cut-off, not a loss.
    """
    not_resolved = sum(1 for s in states.values() if s != b"resolved")
    per_thread: dict[str, set[int]] = {}
    for id in states:
        if id.startswith(run + "-"):
            tid, _, n = id[len(run) + 1:].partition("-")
            per_thread.setdefault(tid, set()).add(int(n))
    tail_gaps = early_gaps = 0
    missing: list[str] = []
    for tid, ns in per_thread.items():
        top = max(ns)
        for n in range(1, top):
            # wrk calls request() once on thread 1 to verify it, and never sends that one
            if n not in ns and not (tid == "1" and n == 1):
                if n > top - per_thread_conns:
                    tail_gaps += 1
                else:
                    early_gaps += 1
                    missing.append(f"{run}-{tid}-{n}")
    in_run = sum(len(ns) for ns in per_thread.values())
    short = max(0, wrk_2xx - in_run)
    return {"promises_in_redis": len(states), "measured_run_promises": in_run,
            "not_resolved": not_resolved, "ids_missing_at_cutoff": tail_gaps,
            "ids_missing_before_cutoff": early_gaps,
            "ids_missing_sample": missing[:5], "wrk_2xx_without_promise": short,
            "lost": not_resolved + early_gaps + short}


HOLD = r"""
import asyncio, json, sys, time, aiohttp
base, prefix, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
async def main():
    got = {}
    conn = aiohttp.TCPConnector(limit=0)
    forever = aiohttp.ClientTimeout(total=None)
    async with aiohttp.ClientSession(connector=conn, timeout=forever) as s:
        async def poll(i):
            async with s.get(f"{base}/wait?id={prefix}-{i}&timeout=60") as resp:
                body = await resp.read()
                got[i] = (time.time(), json.loads(body)["status"])
        tasks = []
        for i in range(n):
            tasks.append(asyncio.create_task(poll(i)))
            if i % 200 == 199:
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        print("CONNECTED", sum(1 for t in tasks if not t.done()), flush=True)
        await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps(got), flush=True)
asyncio.run(main())
"""


async def _resolve(url: str, prefix: str, n: int, gap: float) -> dict[int, float]:
    """Resolve every promise (one by one, ``gap`` s apart; all at once when ``gap`` is 0);
    the time each resolve call returned."""
    sys.path.insert(0, str(ROOT))
    from redpromise import Redpromise, Settings

    rp = Redpromise(url, settings=Settings(namespace=NS))
    done: dict[int, float] = {}

    async def one(i: int) -> None:
        await rp.resolve(f"{prefix}-{i}", i)
        done[i] = time.time()

    try:
        if gap > 0:
            for i in range(n):
                await one(i)
                await asyncio.sleep(gap)
        else:
            await asyncio.gather(*(one(i) for i in range(n)))
    finally:
        await rp.stop()
    return done


async def _begin_http(base: str, prefix: str, n: int) -> None:
    import aiohttp

    sem = asyncio.Semaphore(64)
    async with aiohttp.ClientSession() as s:

        async def one(i: int) -> None:
            async with sem, s.post(f"{base}/begin?id={prefix}-{i}", data="0") as resp:
                await resp.read()
                assert resp.status == 200, resp.status

        await asyncio.gather(*(one(i) for i in range(n)))


def wake_up(base: str, url: str, r: redis.Redis, n: int, gap_ms: float) -> dict[str, Any]:
    prefix = "w" + uuid.uuid4().hex[:8]
    asyncio.run(_begin_http(base, prefix, n))
    hold = subprocess.Popen([sys.executable, "-c", HOLD, base, prefix, str(n)],
                            stdout=subprocess.PIPE, text=True)
    try:
        connected = hold.stdout.readline().strip() if hold.stdout else ""
        # CONNECTED is the client's view: wait until the gateway has read each promise
        # once (its first reads) and Redis is quiet, so the waits are registered.
        quiet0 = time.monotonic()
        while time.monotonic() - quiet0 < 30:
            a = int(r.info("stats")["total_commands_processed"])
            time.sleep(0.5)
            if int(r.info("stats")["total_commands_processed"]) - a < 10:
                break
        done = asyncio.run(_resolve(url, prefix, n, gap_ms / 1000))
        out, _ = hold.communicate(timeout=120)
    finally:
        if hold.poll() is None:
            hold.kill()
            hold.wait()
    got = {int(k): v for k, v in json.loads(out.strip().splitlines()[-1]).items()}
    lat = sorted((got[i][0] - done[i]) * 1000 for i in done if i in got)
    statuses = [got[i][1] for i in got]
    q = statistics.quantiles(lat, n=100) if len(lat) > 1 else [lat[0]] * 99
    return {"waiters": n, "connected": connected, "answered": len(got),
            "answered_resolved": statuses.count("resolved"), "gap_ms": gap_ms,
            "wake_p50_ms": statistics.median(lat), "wake_p99_ms": q[98], "wake_max_ms": lat[-1],
            "wake_min_ms": lat[0]}


def one_run(a: argparse.Namespace) -> dict[str, Any]:
    root = Path(a.root).resolve()
    with tempfile.TemporaryDirectory(prefix="rp-wrk-") as d, redis_server() as (url, r):
        logdir = Path(d)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        gw = start_gateway(root, url, port, logdir)
        workers: Workers | None = None
        try:
            if a.workers_during:
                workers = Workers("redpromise", url, a.workers, 100, logdir)
                workers.wait_ready()
            wrk(base, "warm" + uuid.uuid4().hex[:6], a, 1)
            run = "r" + uuid.uuid4().hex[:8]
            spy = None
            if a.py_spy:
                spy = subprocess.Popen([str(HERE / ".venv-peers" / "tools" / "bin" / "py-spy"),
                                        "record", "-p", str(gw.pid), "-d", str(int(a.duration)),
                                        "-r", "250", "-f", "raw", "-o", a.py_spy, "--nonblocking"],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            perf = None
            if a.perf:
                perf = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", "999", "-p",
                                         str(gw.pid), "-o", a.perf, "--", "sleep",
                                         str(a.duration)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            tracer = None
            if a.strace:
                tracer = subprocess.Popen(["strace", "-c", "-f", "-p", str(gw.pid), "-o",
                                           str(logdir / "strace.txt")],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(1)
            before = len(promise_states(r))
            gw_cpu0, redis_cpu0, reads0 = cpu_seconds(gw.pid), redis_cpu(r), redis_reads(r)
            gw_sys0 = sys_seconds(gw.pid)
            res = wrk(base, run, a, a.duration)
            gw_cpu1, redis_cpu1, reads1 = cpu_seconds(gw.pid), redis_cpu(r), redis_reads(r)
            gw_sys1 = sys_seconds(gw.pid)
            if spy is not None:
                spy.wait(60)
            if perf is not None:
                perf.wait(60)
            syscalls: dict[str, float] = {}
            if tracer is not None:
                tracer.send_signal(signal.SIGINT)
                tracer.wait(30)
                syscalls = strace_counts(logdir / "strace.txt")
            if workers is None:
                workers = Workers("redpromise", url, a.workers, 100, logdir)
                workers.wait_ready()
            drained_s = drain(r, 120)
            states = promise_states(r)
            two_xx = res["requests"] - res["err_status"]
            verdict = check(states, run, two_xx, -(-a.connections // a.threads))
            begun = len(states) - before
            secs = res["duration_us"] / 1e6
            out: dict[str, Any] = {
                "root": str(root),
                "gateway_on_uvloop": on_uvloop(gw.pid),
                "wrk": f"-t{a.threads} -c{a.connections} -d{a.duration:g}s",
                "workers": f"{a.workers} x concurrency 100, "
                           + ("during wrk" if a.workers_during else "started after wrk"),
                "begins_per_s": two_xx / secs,
                "wrk_requests": res["requests"], "wrk_2xx": two_xx,
                "wrk_errors": {k: res[k] for k in res if k.startswith("err_") and res[k]},
                "p50_ms": res["lat_p50_us"] / 1000, "p99_ms": res["lat_p99_us"] / 1000,
                "gateway_cpu_us_per_begin": (gw_cpu1 - gw_cpu0) * 1e6 / max(1, begun),
                "gateway_cpu_share": (gw_cpu1 - gw_cpu0) / secs,
                "gateway_kernel_fraction": (gw_sys1 - gw_sys0) / max(1e-9, gw_cpu1 - gw_cpu0),
                "redis_cpu_us_per_begin": (redis_cpu1 - redis_cpu0) * 1e6 / max(1, begun),
                "redis_reads_per_begin": (reads1 - reads0) / max(1, begun),
                "begun_in_run": begun,
                "drain_s": round(drained_s, 1), **verdict,
                "wrk_command": res["command"],
            }
            if syscalls:
                out["syscalls_per_begin"] = {k: round(v / max(1, begun), 3)
                                             for k, v in syscalls.items()}
            if a.waiters > 0:
                workers.stop()
                workers = None
                out.update(wake_up(base, url, r, a.waiters, a.gap))
            return out
        finally:
            if workers is not None:
                workers.stop()
            stop(gw)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--duration", type=float, default=10)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--workers-during", action="store_true",
                   help="start the workers before wrk (default: after, to drain)")
    p.add_argument("--waiters", type=int, default=1000, help="/wait long-polls (0: skip)")
    p.add_argument("--gap", type=float, default=5.0,
                   help="ms between resolves (wake-up); 0: all at once")
    p.add_argument("--root", default=str(ROOT), help="checkout whose services/gateway.py runs")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--strace", action="store_true",
                   help="count the gateway's syscalls per begin (strace -c; slows it down)")
    p.add_argument("--perf", default="",
                   help="perf record -e cpu-clock the gateway into this file (on-CPU samples)")
    p.add_argument("--py-spy", default="", help="record the gateway (raw folded stacks) here")
    a = p.parse_args()
    runs = []
    for _ in range(a.repeat):
        res = one_run(a)
        runs.append(res)
        print(json.dumps(res), flush=True)
    if a.repeat > 1:
        keys = [k for k, v in runs[0].items() if isinstance(v, int | float)
                and not isinstance(v, bool)]
        print(json.dumps({"median_of": a.repeat,
                          **{k: statistics.median(x[k] for x in runs) for k in keys}}))
    return 0 if all(x["lost"] == 0 for x in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
