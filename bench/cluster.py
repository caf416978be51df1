"""redpromise on one redis-server and on a local Redis Cluster, in one run (issue 11).

    python bench/cluster.py [--quick] [--n N] [--latency-n M] [--repeat R] [--idle S]

Starts ONE redis-server (as bench/run.py: free port, temp dir, no persistence) and one
local cluster of 3 masters + 3 replicas (tests/redis_cluster.py; AOF switched off with
``CONFIG SET appendonly no`` on every node and no RDB saves, so both sides are without
persistence; ``cluster-node-timeout`` 15 s, Redis' default). Then, R times, the two
targets interleaved (single, cluster, cluster, single, ...), one worker process at
concurrency 100 and one producer process (bench/peers/peer_redpromise.py, as run.py):

- throughput: N promises begun with ``--window`` in flight, then every result read back
  concurrently (``Handle.result()``); promises/s = N / (first begin -> last result);
- latency: ``--latency-n`` sequential begin -> result round trips, p50 / p99;
- per node, from INFO before and after the throughput phase: Redis CPU (used_cpu_sys +
  used_cpu_user) and commands (commandstats; commands run inside scripts count), each /
  (N + the producer's 20 warm-up promises); masters summed, replicas reported apart; each
  master's share of the masters' commands;
- CPU of the worker and producer processes per promise (the producer's includes start-up).

- per node, also: Redis' user CPU, and the event loop's wake-ups (voluntary context
  switches of the server process, from /proc: each is the loop sleeping in epoll_wait).

Once per target, an idle worker's commands/s per node over ``--idle`` seconds (a fresh
worker, started and left alone; the probe's own INFO calls subtracted).

The table gives medians with [min-max] of the R runs, and the cluster/single ratio as the
median of the R paired ratios (each pair ran back to back, so drift of the shared machine
hits both sides alike). JSON goes to bench/results/cluster-<timestamp>.json.
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
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]

from run import Workers, cpu_seconds, free_port, produce, redis_server  # noqa: E402

from tests.redis_cluster import RedisCluster  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402

CHILDREN = resource.RUSAGE_CHILDREN
WARMUP = 20  # the producer's warm-up promises (bench/peers/_proto.py), inside every delta


@dataclass
class Node:
    name: str  # "single", "m1".."m3", "r1".."r3"
    port: int
    master: bool
    client: redis.Redis = field(repr=False)


@dataclass
class Target:
    name: str
    url: str
    nodes: list[Node]

    @property
    def masters(self) -> list[Node]:
        return [n for n in self.nodes if n.master]

    @property
    def replicas(self) -> list[Node]:
        return [n for n in self.nodes if not n.master]

    def flush(self) -> None:
        for n in self.masters:
            n.client.flushall()
        # Replicas follow their master; wait so a late FLUSHALL never lands inside a run.
        for n in self.replicas:
            deadline = time.monotonic() + 10
            while n.client.dbsize() and time.monotonic() < deadline:
                time.sleep(0.02)


# --------------------------------------------------------------------------- targets


@contextlib.contextmanager
def single_target() -> Iterator[Target]:
    with redis_server() as (url, r):
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        yield Target("single", url, [Node("single", port, True, r)])


@contextlib.contextmanager
def single_aof_target() -> Iterator[Target]:
    """Diagnosis: one redis-server with the test helper's AOF (appendfsync always)."""
    with tempfile.TemporaryDirectory(prefix="rp-bench-aof-") as d:
        server = RedisServer(Path(d), appendonly=True, appendfsync="always")
        server.start()
        c = redis.Redis(port=server.port, socket_timeout=10)
        try:
            yield Target("single AOF", server.url, [Node("single", server.port, True, c)])
        finally:
            c.close()
            server.kill()


@contextlib.contextmanager
def single_with_replica_target() -> Iterator[Target]:
    """Diagnosis: one redis-server and one replica of it (what replication costs alone)."""
    with redis_server() as (url, r), tempfile.TemporaryDirectory(prefix="rp-bench-rep-") as d:
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        replica = RedisServer(Path(d), appendonly=False, extra_args=(
            "--replicaof", "127.0.0.1", str(port), "--repl-diskless-sync-delay", "0"))
        replica.start()
        c = redis.Redis(port=replica.port, socket_timeout=10)
        try:
            deadline = time.monotonic() + 10
            while c.info("replication").get("master_link_status") != "up":
                if time.monotonic() > deadline:
                    raise SystemExit("replica not in sync in 10 s")
                time.sleep(0.05)
            yield Target("single+1", url, [Node("single", port, True, r),
                                           Node("r1", replica.port, False, c)])
        finally:
            c.close()
            replica.kill()


def cluster_port() -> int:
    """A free port whose cluster-bus port (+10000) is free too, so at most 55535."""
    while True:
        port = free_port()
        if port > 55535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


@contextlib.contextmanager
def one_node_cluster_target() -> Iterator[Target]:
    """Diagnosis: one node in cluster mode serving every slot (cluster-mode cost alone)."""
    with tempfile.TemporaryDirectory(prefix="rp-bench-cluster1-") as d:
        server = RedisServer(Path(d), cluster_port(), appendonly=False, extra_args=(
            "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"))
        server.start()
        c = redis.Redis(port=server.port, socket_timeout=10)
        try:
            c.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)  # type: ignore[no-untyped-call]
            deadline = time.monotonic() + 10
            while b"cluster_state:ok" not in c.execute_command(  # type: ignore[no-untyped-call]
                "CLUSTER", "INFO"
            ):
                if time.monotonic() > deadline:
                    raise SystemExit("one-node cluster not ok in 10 s")
                time.sleep(0.05)
            yield Target("cluster 1+0", server.url, [Node("m1", server.port, True, c)])
        finally:
            c.close()
            server.kill()


@contextlib.contextmanager
def cluster_target(replicas: int, aof: bool) -> Iterator[Target]:
    with tempfile.TemporaryDirectory(prefix="rp-bench-cluster-") as d:
        cluster = RedisCluster(Path(d), masters=3, replicas=replicas, node_timeout_ms=15000)
        cluster.start()
        clients: list[redis.Redis] = []
        try:
            masters = sorted(cluster.masters(), key=lambda n: n.port)
            nodes: list[Node] = []
            for i, m in enumerate(masters, 1):
                c = redis.Redis(port=m.port, socket_timeout=10)
                clients.append(c)
                nodes.append(Node(f"m{i}", m.port, True, c))
            for r in cluster.replicas():
                c = redis.Redis(port=r.port, socket_timeout=10)
                clients.append(c)
                of = int(c.info("replication")["master_port"])
                idx = next(i for i, m in enumerate(masters, 1) if m.port == of)
                nodes.append(Node(f"r{idx}", r.port, False, c))
            nodes.sort(key=lambda n: (not n.master, n.name))
            if not aof:  # no persistence, like the single node (the helper starts AOF on)
                for n in nodes:
                    n.client.config_set("appendonly", "no")
            name = f"cluster {len(masters)}+{len(masters) * replicas}" + (" AOF" if aof else "")
            yield Target(name, cluster.url, nodes)
        finally:
            for c in clients:
                c.close()
            cluster.stop()


TARGETS = {
    "single": "one redis-server (the reference)",
    "cluster": "3 masters + 3 replicas, no persistence",
    "single-aof": "one redis-server with AOF, appendfsync always (diagnosis)",
    "single1": "one redis-server + one replica (diagnosis: replication alone)",
    "cluster0": "3 masters, no replicas (diagnosis: replication's share)",
    "cluster1": "one node in cluster mode with every slot (diagnosis: cluster mode's share)",
    "cluster-aof": "3 + 3 with the test helper's AOF, appendfsync always (diagnosis)",
}


def open_target(stack: contextlib.ExitStack, name: str, a: argparse.Namespace) -> Target:
    if name == "single":
        return stack.enter_context(single_target())
    if name == "single-aof":
        return stack.enter_context(single_aof_target())
    if name == "single1":
        return stack.enter_context(single_with_replica_target())
    if name == "cluster1":
        return stack.enter_context(one_node_cluster_target())
    replicas = 0 if name == "cluster0" else a.replicas
    return stack.enter_context(cluster_target(replicas, aof=name == "cluster-aof"))


# --------------------------------------------------------------------------- probes


def switches(pid: int) -> tuple[int, int]:
    """(voluntary, involuntary) context switches of a local process: a voluntary one is
    Redis' event loop going to sleep in epoll_wait, so it counts the loop's wake-ups."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0, 0
    got = dict(line.split(":", 1) for line in text.splitlines() if "ctxt_switches" in line)
    return (int(got.get("voluntary_ctxt_switches", 0)),
            int(got.get("nonvoluntary_ctxt_switches", 0)))


def node_stats(n: Node) -> dict[str, Any]:
    info = n.client.info("all")
    cmds = {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items()
            if k.startswith("cmdstat_")}
    usec = {k.removeprefix("cmdstat_"): int(v["usec"]) for k, v in info.items()
            if k.startswith("cmdstat_")}
    vol, invol = switches(int(info["process_id"]))
    return {"cpu": float(info["used_cpu_sys"]) + float(info["used_cpu_user"]),
            "cpu_user": float(info["used_cpu_user"]),
            # wall time inside the scripts (their redis.call()s included), as commandstats
            # times it: JSON only, since a server preempted mid-script counts the wait too
            "script_usec": sum(int(v["usec"]) for k, v in info.items()
                               if k in ("cmdstat_evalsha", "cmdstat_eval")),
            "wakeups": vol, "preempted": invol,
            "total": int(info["total_commands_processed"]), "cmds": cmds, "usec": usec,
            # event-loop reads/writes of client sockets: round trips as Redis sees them
            "reads": int(info["total_reads_processed"]),
            "writes": int(info["total_writes_processed"]),
            # Redis 6.2 has no total_net_repl_output_bytes.
            "repl_out": int(info.get("total_net_repl_output_bytes", 0))}


def snapshot(t: Target) -> dict[str, dict[str, Any]]:
    return {n.name: node_stats(n) for n in t.nodes}


def cmd_calls(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    out = {k: v - a.get(k, 0) for k, v in b.items()}
    # The probe's own INFO (one per snapshot) is not the workload's.
    out["info"] = out.get("info", 0) - 1
    return {k: v for k, v in out.items() if v > 0}


# --------------------------------------------------------------------------- one run


def one_run(t: Target, a: argparse.Namespace, logdir: Path) -> dict[str, Any]:
    """Throughput then latency, with one worker process on a fresh database."""
    t.flush()
    w = Workers("redpromise", t.url, 1, a.concurrency, logdir, stats=True)
    try:
        w.wait_ready()
        s0 = snapshot(t)
        c0 = (sum(cpu_seconds(p.pid) for p in w.procs), resource.getrusage(CHILDREN))
        res = produce("redpromise", t.url, "throughput", a.n, logdir, a.timeout, a.window)
        c1 = (sum(cpu_seconds(p.pid) for p in w.procs), resource.getrusage(CHILDREN))
        s1 = snapshot(t)
        lat = produce("redpromise", t.url, "latency", a.latency_n, logdir, a.timeout, a.window)
    finally:
        w.stop()
    if res.get("wrong_results"):
        raise RuntimeError(f"{t.name}: {res['wrong_results']} wrong results")
    per = a.n + WARMUP
    nodes: dict[str, Any] = {}
    for n in t.nodes:
        calls = cmd_calls(s0[n.name]["cmds"], s1[n.name]["cmds"])
        nodes[n.name] = {
            "master": n.master,
            "cpu_us": (s1[n.name]["cpu"] - s0[n.name]["cpu"]) * 1e6 / per,
            "cmds": sum(calls.values()) / per,
            **{k: (s1[n.name][k] - s0[n.name][k]) / per for k in (
                "reads", "writes", "repl_out", "wakeups", "preempted")},
            "cpu_user_us": (s1[n.name]["cpu_user"] - s0[n.name]["cpu_user"]) * 1e6 / per,
            "script_us": (s1[n.name]["script_usec"] - s0[n.name]["script_usec"]) / per,
            "commands": {k: round(v / per, 3) for k, v in
                         sorted(calls.items(), key=lambda kv: -kv[1])},
            # µs inside each command (commandstats), per promise
            "usec": {k: round((v - s0[n.name]["usec"].get(k, 0)) / per, 2)
                     for k, v in s1[n.name]["usec"].items() if k in calls},
        }
    m_cmds = sum(v["cmds"] for v in nodes.values() if v["master"])
    prod = (c1[1].ru_utime + c1[1].ru_stime) - (c0[1].ru_utime + c0[1].ru_stime)
    return {
        "jobs_per_s": res["jobs_per_s"],
        "p50_ms": lat["p50_ms"],
        "p99_ms": lat["p99_ms"],
        "redis_cpu_us": sum(v["cpu_us"] for v in nodes.values() if v["master"]),
        "replica_cpu_us": sum(v["cpu_us"] for v in nodes.values() if not v["master"]),
        "cmds": m_cmds,
        "replica_cmds": sum(v["cmds"] for v in nodes.values() if not v["master"]),
        "reads": sum(v["reads"] for v in nodes.values() if v["master"]),
        "redis_user_us": sum(v["cpu_user_us"] for v in nodes.values() if v["master"]),
        "script_us": sum(v["script_us"] for v in nodes.values() if v["master"]),
        "wakeups": sum(v["wakeups"] for v in nodes.values() if v["master"]),
        "preempted": sum(v["preempted"] for v in nodes.values() if v["master"]),
        "writes": sum(v["writes"] for v in nodes.values() if v["master"]),
        "repl_out_bytes": sum(v["repl_out"] for v in nodes.values() if v["master"]),
        "share": {k: v["cmds"] / m_cmds for k, v in nodes.items() if v["master"]},
        "worker_cpu_us": (c1[0] - c0[0]) * 1e6 / a.n,
        "producer_cpu_us": prod * 1e6 / a.n,
        "nodes": nodes,
    }


def idle(t: Target, a: argparse.Namespace, logdir: Path) -> dict[str, Any]:
    """Commands/s per node while one started worker has nothing to do."""
    t.flush()
    w = Workers("redpromise", t.url, 1, a.concurrency, logdir)
    try:
        w.wait_ready()
        time.sleep(1.0)  # past start-up (group creation, first reclaim pass)
        s0 = snapshot(t)
        t0 = time.monotonic()
        time.sleep(a.idle)
        s1 = snapshot(t)
        secs = time.monotonic() - t0
    finally:
        w.stop()
    out: dict[str, Any] = {}
    for n in t.nodes:
        calls = cmd_calls(s0[n.name]["cmds"], s1[n.name]["cmds"])
        out[n.name] = {
            "cmds_per_s": sum(calls.values()) / secs,
            "cpu_ms_per_s": (s1[n.name]["cpu"] - s0[n.name]["cpu"]) * 1e3 / secs,
            "commands_per_s": {k: round(v / secs, 2) for k, v in
                               sorted(calls.items(), key=lambda kv: -kv[1])},
        }
    return out


# --------------------------------------------------------------------------- table


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def cell(xs: list[float], digits: int) -> str:
    if not xs:
        return "n/a"
    m = f"{med(xs):,.{digits}f}"
    return m if len(xs) == 1 else f"{m} [{min(xs):,.{digits}f}-{max(xs):,.{digits}f}]"


def ratio_cell(pairs: list[tuple[float, float]]) -> str:
    rs = [c / s for s, c in pairs if s]
    if not rs:
        return ""
    m = f"{med(rs):.2f}x"
    return m if len(rs) == 1 else f"{m} [{min(rs):.2f}-{max(rs):.2f}]"


ROWS = [  # (label, key, digits)
    ("throughput, promises/s", "jobs_per_s", 0),
    ("round trip p50, ms", "p50_ms", 2),
    ("round trip p99, ms", "p99_ms", 2),
    ("Redis CPU µs/promise (masters)", "redis_cpu_us", 1),
    ("Redis CPU µs/promise (replicas)", "replica_cpu_us", 1),
    ("Redis CPU user µs/promise (masters)", "redis_user_us", 1),
    ("Redis cmds/promise (masters)", "cmds", 1),
    ("socket reads/promise (masters)", "reads", 2),
    ("event-loop wake-ups/promise (masters)", "wakeups", 2),
    ("preemptions/promise (masters)", "preempted", 2),
    ("replication bytes out/promise (masters)", "repl_out_bytes", 0),
    ("worker CPU µs/promise", "worker_cpu_us", 0),
    ("producer CPU µs/promise", "producer_cpu_us", 0),
]


def table(names: list[str], runs: dict[str, list[dict[str, Any]]],
          idles: dict[str, dict[str, Any]]) -> str:
    """Targets as columns, then each other target's ratio to the first (``single``)."""
    ref, others = names[0], names[1:]
    lines = ["| figure | " + " | ".join(names) + " | "
             + " | ".join(f"{o} / {ref}" for o in others) + " |",
             "|---|" + "---:|" * (len(names) + len(others))]
    for label, key, digits in ROWS:
        vals = {t: [r[key] for r in runs[t]] for t in names}
        if key.startswith("replica") and not any(any(v) for v in vals.values()):
            continue
        cells = [cell(vals[t], digits) if any(vals[t]) or t != ref else "-" for t in names]
        ratios = ["" if key.startswith("replica")
                  else ratio_cell(list(zip(vals[ref], vals[o], strict=False))) for o in others]
        lines.append(f"| {label} | " + " | ".join(cells + ratios) + " |")

    def shares(t: str) -> str:
        ms = sorted(runs[t][0]["share"])
        return " / ".join(cell([r["share"][m] * 100 for r in runs[t]], 1) for m in ms)

    lines.append("| each master's share of the commands, % | "
                 + " | ".join(shares(t) for t in names) + " |" + " |" * len(others))

    def idle_cell(t: str, masters: bool) -> str:
        nodes = idles.get(t, {})
        got = [f"{v['cmds_per_s']:.1f}" for k, v in sorted(nodes.items())
               if (k[0] != "r") == masters]
        return " / ".join(got) or "-"

    if idles:
        lines.append("| idle worker, cmds/s per master | "
                     + " | ".join(idle_cell(t, True) for t in names) + " |" + " |" * len(others))
        if any(idle_cell(t, False) != "-" for t in names):
            lines.append("| idle worker, cmds/s per replica | "
                         + " | ".join(idle_cell(t, False) for t in names) + " |"
                         + " |" * len(others))
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run: N=500, 50 round trips, 1 rep")
    p.add_argument("--n", type=int, default=None, help="promises per throughput run (10,000)")
    p.add_argument("--latency-n", type=int, default=None, help="sequential round trips (500)")
    p.add_argument("--repeat", type=int, default=None, help="runs per target, interleaved (3)")
    p.add_argument("--idle", type=float, default=None, help="idle window, s (10; 0 = skip)")
    p.add_argument("--replicas", type=int, default=1, help="replicas per master (1)")
    p.add_argument("--targets", default="single,cluster",
                   help="comma list, the first is the reference of the ratios:\n"
                        + "\n".join(f"  {k}: {v}" for k, v in TARGETS.items()))
    p.add_argument("--partitions", type=int, default=None,
                   help="of the namespace (the library's default, 16, if not given)")
    p.add_argument("--concurrency", type=int, default=100, help="of the worker (100)")
    p.add_argument("--window", type=int, default=100, help="producer's promises in flight (100)")
    p.add_argument("--timeout", type=float, default=180, help="per producer run, s")
    p.add_argument("--trace", default=None, metavar="DIR",
                   help="diagnosis: every worker/producer writes its socket writes by node,\n"
                        "origin and commands to DIR (bench/peers/_trace.py)")
    a = p.parse_args()
    if a.trace:
        Path(a.trace).mkdir(parents=True, exist_ok=True)
        os.environ["BENCH_TRACE"] = str(Path(a.trace).resolve())
    a.n = a.n or (500 if a.quick else 10_000)
    a.latency_n = a.latency_n or (50 if a.quick else 500)
    a.repeat = a.repeat or (1 if a.quick else 3)
    a.idle = (2.0 if a.quick else 10.0) if a.idle is None else a.idle
    if a.partitions:
        os.environ["BENCH_PARTITIONS"] = str(a.partitions)
    wanted = [x.strip() for x in a.targets.split(",") if x.strip()]
    if len(wanted) < 2 or set(wanted) - set(TARGETS):
        p.error(f"--targets: two or more of {', '.join(TARGETS)}")

    started = dt.datetime.now()
    meta: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.platform()}",
        "python": platform.python_version(),
        "load_before": os.getloadavg(),
        "n": a.n, "latency_n": a.latency_n, "repeat": a.repeat,
        "concurrency": a.concurrency, "window": a.window, "partitions": a.partitions or 16,
        "uvloop": bool(os.environ.get("BENCH_UVLOOP")),
    }
    logdir = Path(tempfile.mkdtemp(prefix="rp-bench-cluster-logs-"))
    runs: dict[str, list[dict[str, Any]]] = {}
    idles: dict[str, dict[str, Any]] = {}
    with contextlib.ExitStack() as stack:
        targets = [open_target(stack, name, a) for name in wanted]
        meta["redis"] = str(targets[0].nodes[0].client.info("server")["redis_version"])
        meta["targets"] = {t.name: t.url for t in targets}
        print(f"redis {meta['redis']}: " + ", ".join(f"{t.name} {t.url}" for t in targets)
              + f"; logs in {logdir}", file=sys.stderr, flush=True)
        for rep in range(a.repeat):
            # Rotate the order, so no target always runs right after another one.
            k = rep % len(targets)
            for t in targets[k:] + targets[:k]:
                t0 = time.monotonic()
                r = one_run(t, a, logdir)
                runs.setdefault(t.name, []).append(r)
                print(f"  run {rep + 1}/{a.repeat} {t.name}: {r['jobs_per_s']:,.0f}/s, "
                      f"p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, Redis "
                      f"{r['redis_cpu_us']:.1f} µs/promise, {r['cmds']:.1f} cmds/promise "
                      f"({time.monotonic() - t0:.1f}s)", file=sys.stderr, flush=True)
        if a.idle > 0:
            for t in targets:
                idles[t.name] = idle(t, a, logdir)
                print(f"  idle {t.name}: " + ", ".join(
                    f"{k} {v['cmds_per_s']:.1f} cmds/s" for k, v in idles[t.name].items()),
                    file=sys.stderr, flush=True)
        names = [t.name for t in targets]
    meta["load_after"] = os.getloadavg()
    meta["seconds"] = round((dt.datetime.now() - started).total_seconds(), 1)
    text = table(names, runs, idles)
    header = (f"N={a.n:,} promises, {a.latency_n:,} sequential round trips, {a.repeat} runs per "
              f"target interleaved, {meta['partitions']} partitions, 1 worker at concurrency "
              f"{a.concurrency}, window {a.window}; Redis {meta['redis']}; {meta['machine']}; "
              f"Python {meta['python']}{' + uvloop' if meta['uvloop'] else ''}; load "
              f"{meta['load_before'][0]:.2f} before / {meta['load_after'][0]:.2f} after; "
              f"{meta['seconds']} s")
    print(f"\n{header}\n\n{text}")
    out = HERE / "results" / f"cluster-{started:%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "runs": runs, "idle": idles}, indent=1))
    print(f"\nJSON: {out.relative_to(ROOT)}", file=sys.stderr)
    if os.environ.get("BENCH_KEEP_LOGS"):
        print(f"logs kept in {logdir}", file=sys.stderr)
    else:
        shutil.rmtree(logdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
