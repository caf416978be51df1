"""Chaos run: a workload, a seeded nemesis, and a checker that counts every anomaly.

    python bench/chaos.py --n 5000 --seed 1

Starts, on free ports in a temp dir: a real ``redis-server`` (AOF, ``appendfsync
always``), the real gateway (``services/gateway.py``), three worker processes
(``bench/chaos_worker.py``: a workflow of ``--steps`` checkpointed steps writing a SQLite
ledger). A client sends ``--n`` ``begin`` requests over HTTP while the nemesis injects,
on a schedule drawn from ``--seed``: worker SIGKILL + restart, worker SIGSTOP past its
lease + SIGCONT (zombies), gateway SIGKILL + restart, Redis SHUTDOWN + restart on the same
AOF, client retries of ``begin`` with the same id, and client timeouts. Then everything is
healed, the run waits for quiescence, and the checker reads Redis and the ledger:

- lost: acknowledged begins whose promise is not completed after the drain;
- double completions: promises with more than one accepted completion;
- checkpointed steps re-executed: a step body that started after its checkpoint was
  acknowledged;
- steps executed more than once without a checkpoint (allowed: at-least-once).

Exit status 0 iff lost, double completions and re-executed checkpointed steps are all 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from redis.asyncio import Redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from redpromise.core.keys import Keys  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402

NAMESPACE = "chaos"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Proc:
    """A child process we can kill, freeze, thaw and restart."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.argv, self.env, self.log = name, argv, env, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.frozen = False

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.frozen = False

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            if self.frozen:
                self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)
        self.frozen = False

    def freeze(self) -> None:
        if self.alive and self.proc is not None:
            self.proc.send_signal(signal.SIGSTOP)
            self.frozen = True

    def thaw(self) -> None:
        if self.alive and self.proc is not None and self.frozen:
            self.proc.send_signal(signal.SIGCONT)
        self.frozen = False


@dataclass
class ClientStats:
    attempts: Counter[str] = field(default_factory=Counter)
    acked: dict[str, float] = field(default_factory=dict)
    unacked: set[str] = field(default_factory=set)
    errors: Counter[str] = field(default_factory=Counter)
    duplicate_begins: int = 0
    client_timeouts: int = 0


class Chaos:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp
        self.rng = random.Random(args.seed)
        self.faults: Counter[str] = Counter()
        self.redis_server = RedisServer(tmp / "redis", appendfsync="always")
        self.ledger = tmp / "ledger.sqlite"
        self.gateway_port = free_port()
        self.stop_nemesis = asyncio.Event()
        self.env_extra: dict[str, str] = {}

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PYTHONPATH": f"{ROOT / 'bench'}:{ROOT}",
            "REDPROMISE_URL": self.redis_server.url,
            "REDPROMISE_NAMESPACE": NAMESPACE,
            "REDPROMISE_LEASE": str(self.args.lease),
            "REDPROMISE_LOG_LEVEL": "WARNING",
            "CHAOS_LEDGER": str(self.ledger),
            "CHAOS_STEPS": str(self.args.steps),
            "REDPROMISE_GATEWAY_PORT": str(self.gateway_port),
            "REDPROMISE_GATEWAY_FUNCTION": "chaos",
            **self.env_extra,
        }

    def start_processes(self) -> None:
        self.redis_server.start()
        env = self.env()
        self.workers = [
            Proc(
                f"worker{i}",
                [
                    sys.executable,
                    "-m",
                    "redpromise",
                    "worker",
                    "chaos_worker:make",
                    "--log-level",
                    "WARNING",
                ],
                env,
                self.tmp / f"worker{i}.log",
            )
            for i in range(self.args.workers)
        ]
        self.gateway = Proc(
            "gateway", [sys.executable, "services/gateway.py"], env, self.tmp / "gateway.log"
        )
        for p in [*self.workers, self.gateway]:
            p.start()

    async def wait_gateway(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as s:
            while time.monotonic() < deadline:
                try:
                    async with s.get(f"{self.base}/healthz") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError("gateway did not become healthy:\n" + self.gateway.log.read_text())

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    # -- the nemesis ----------------------------------------------------------------

    async def nemesis(self) -> None:
        a = self.args
        loop = asyncio.get_running_loop()
        now = loop.time()
        due = {
            "worker_kill": now + self.rng.uniform(1, 2) if a.kill else None,
            "worker_stop": now + self.rng.uniform(3, 6) if a.zombie else None,
            "gateway_kill": now + self.rng.uniform(5, 9) if a.gateway_kill else None,
            "redis_restart": now + self.rng.uniform(8, 14) if a.redis_restart else None,
        }
        while not self.stop_nemesis.is_set():
            await asyncio.sleep(0.05)
            now = loop.time()
            for kind, at in due.items():
                if at is None or now < at:
                    continue
                await getattr(self, kind)()
                self.faults[kind] += 1
                gap = {
                    "worker_kill": (1, 2),
                    "worker_stop": (4, 8),
                    "gateway_kill": (6, 12),
                    "redis_restart": (10, 18),
                }[kind]
                due[kind] = loop.time() + self.rng.uniform(*gap)

    async def worker_kill(self) -> None:
        victim = self.rng.choice([w for w in self.workers if not w.frozen])
        victim.kill()
        await asyncio.sleep(self.rng.uniform(0.1, 0.8))
        victim.start()

    async def worker_stop(self) -> None:
        candidates = [w for w in self.workers if w.alive and not w.frozen]
        if not candidates:
            return
        victim = self.rng.choice(candidates)
        victim.freeze()
        pause = self.args.lease * self.rng.uniform(2.0, 3.5)
        asyncio.get_running_loop().call_later(pause, victim.thaw)

    async def gateway_kill(self) -> None:
        self.gateway.kill()
        await asyncio.sleep(self.rng.uniform(0.1, 0.6))
        self.gateway.start()

    async def redis_restart(self) -> None:
        await asyncio.to_thread(self.redis_server.stop)
        await asyncio.sleep(self.rng.uniform(0.3, 1.5))
        await asyncio.to_thread(self.redis_server.start)

    # -- the client -----------------------------------------------------------------

    async def client(self) -> ClientStats:
        st = ClientStats()
        sem = asyncio.Semaphore(self.args.concurrency)
        interval = 1.0 / self.args.rate
        crng = random.Random(self.args.seed + 1)

        async def one(session: aiohttp.ClientSession, i: int) -> None:
            id = f"job-{i:06d}"
            deadline = time.monotonic() + self.args.begin_deadline
            backoff = 0.05
            while time.monotonic() < deadline:
                st.attempts[id] += 1
                short = crng.random() < self.args.client_timeout_rate
                timeout = aiohttp.ClientTimeout(total=0.002 if short else 5.0)
                try:
                    async with (
                        sem,
                        session.post(
                            f"{self.base}/begin", params={"id": id}, json={"i": i}, timeout=timeout
                        ) as r,
                    ):
                        await r.read()
                        if r.status == 200:
                            st.acked.setdefault(id, time.time())
                            if crng.random() < self.args.dup_rate:
                                st.duplicate_begins += 1
                                continue  # the client retries an acknowledged begin
                            st.unacked.discard(id)
                            return
                        st.errors[f"http {r.status}"] += 1
                except TimeoutError:
                    st.client_timeouts += short
                    st.errors["timeout"] += 1
                except aiohttp.ClientError as exc:
                    st.errors[type(exc).__name__] += 1
                if id not in st.acked:
                    st.unacked.add(id)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)

        async with aiohttp.ClientSession() as session:
            tasks = []
            for i in range(self.args.n):
                tasks.append(asyncio.create_task(one(session, i)))
                await asyncio.sleep(interval)
            await asyncio.gather(*tasks)
        st.unacked -= set(st.acked)
        return st

    # -- quiescence and the checker -------------------------------------------------

    async def drain(
        self, ids: list[str], *, expired_is_done: bool = False
    ) -> dict[str, dict[str, Any]]:
        """Wait until none of ``ids`` is pending; a missing record counts as pending
        unless ``expired_is_done`` (with a short retention a completed record expires)."""
        keys = Keys(NAMESPACE, 16)
        r = Redis.from_url(self.redis_server.url)
        deadline = time.monotonic() + self.args.quiesce
        fields = ["state", "created_at", "completed_at", "value"]
        try:
            while True:
                pipe = r.pipeline(transaction=False)
                for id in ids:
                    pipe.hmget(keys.promise(id), fields)
                rows = await pipe.execute()
                out = {
                    id: {
                        f: (v.decode() if isinstance(v, bytes) and f != "value" else v)
                        for f, v in zip(fields, row, strict=True)
                    }
                    for id, row in zip(ids, rows, strict=True)
                }
                waiting = ("pending",) if expired_is_done else (None, "pending")
                left = sum(1 for v in out.values() if v["state"] in waiting)
                if left == 0 or time.monotonic() > deadline:
                    return out
                await asyncio.sleep(0.5)
        finally:
            await r.aclose()

    def check(self, st: ClientStats, final: dict[str, dict[str, Any]]) -> dict[str, Any]:
        db = sqlite3.connect(self.ledger)
        rows = db.execute("SELECT kind, pid, step, ts FROM events").fetchall()
        completions: Counter[str] = Counter()
        first_ack: dict[tuple[str, int], float] = {}
        execs: dict[tuple[str, int], list[float]] = {}
        for kind, pid, step, ts in rows:
            if kind == "completed":
                completions[pid] += 1
            elif kind == "ack":
                key = (pid, step)
                first_ack[key] = min(ts, first_ack.get(key, ts))
            elif kind == "exec":
                execs.setdefault((pid, step), []).append(ts)
        reexecuted = sum(
            1
            for key, times in execs.items()
            for t in times
            if key in first_ack and t > first_ack[key]
        )
        repeated = sum(len(t) - 1 for t in execs.values() if len(t) > 1) - reexecuted
        bad = {
            key for key, times in execs.items() if key in first_ack and max(times) > first_ack[key]
        }
        for pid, step in sorted(bad)[:10]:
            history = db.execute(
                "SELECT kind, step, version, proc, ts FROM events WHERE pid = ? ORDER BY ts",
                (pid,),
            ).fetchall()
            print(f"re-executed checkpointed step {step} of {pid}:", file=sys.stderr)
            for row in history:
                print("   ", row, file=sys.stderr)
        acked = set(st.acked)
        states = Counter(v["state"] or "missing" for v in final.values())
        lost = sorted(i for i in acked if final[i]["state"] in (None, "pending"))
        recovered = sorted(i for i in st.unacked if final[i]["state"] not in (None, "pending"))
        ttc = sorted(
            int(v["completed_at"]) - int(v["created_at"])
            for v in final.values()
            if v["completed_at"] and v["created_at"]
        )

        def pct(p: float) -> float:
            return ttc[min(len(ttc) - 1, int(p * len(ttc)))] if ttc else float("nan")

        return {
            "n": self.args.n,
            "seed": self.args.seed,
            "acknowledged_begins": len(acked),
            "unacknowledged_begins": len(st.unacked),
            "completed": sum(1 for i in acked if final[i]["state"] not in (None, "pending")),
            "states": dict(states),
            "lost": len(lost),
            "lost_ids": lost[:20],
            "double_completions": sum(1 for c in completions.values() if c > 1),
            "checkpointed_steps_reexecuted": reexecuted,
            "steps_repeated_without_checkpoint": repeated,
            "recovered_unacknowledged": len(recovered),
            "ttc_p50_ms": pct(0.50),
            "ttc_p99_ms": pct(0.99),
            "ttc_mean_ms": round(statistics.fmean(ttc), 1) if ttc else None,
            "begin_attempts": sum(st.attempts.values()),
            "duplicate_begins": st.duplicate_begins,
            "client_timeouts": st.client_timeouts,
            "client_errors": dict(st.errors),
            "faults": dict(self.faults),
        }

    async def run(self) -> dict[str, Any]:
        self.start_processes()
        try:
            await self.wait_gateway()
            nemesis = asyncio.create_task(self.nemesis())
            t0 = time.monotonic()
            stats = await self.client()
            sent_in = time.monotonic() - t0
            self.stop_nemesis.set()
            await nemesis
            await self.heal()
            final = await self.drain(sorted(stats.attempts))
            result = self.check(stats, final)
            result["send_seconds"] = round(sent_in, 1)
            result["total_seconds"] = round(time.monotonic() - t0, 1)
            return result
        finally:
            for p in [*self.workers, self.gateway]:
                p.kill()
            self.redis_server.kill()

    async def heal(self) -> None:
        if not self.redis_server.running:
            await asyncio.to_thread(self.redis_server.start)
        for p in [*self.workers, self.gateway]:
            p.thaw()
            if not p.alive:
                p.start()


def print_table(r: dict[str, Any]) -> None:
    rows = [
        ("acknowledged begins", r["acknowledged_begins"]),
        ("completed promises", r["completed"]),
        ("LOST (acknowledged, not completed)", r["lost"]),
        ("DOUBLE completions", r["double_completions"]),
        ("CHECKPOINTED steps re-executed", r["checkpointed_steps_reexecuted"]),
        ("steps re-run without a checkpoint (allowed)", r["steps_repeated_without_checkpoint"]),
        ("unacknowledged begins that completed (recovered)", r["recovered_unacknowledged"]),
        ("final states", r["states"]),
        ("time to completion p50 / p99 (ms)", f"{r['ttc_p50_ms']} / {r['ttc_p99_ms']}"),
        (
            "begin attempts / duplicates / client timeouts",
            f"{r['begin_attempts']} / {r['duplicate_begins']} / {r['client_timeouts']}",
        ),
        ("client errors (retried)", r["client_errors"]),
        ("faults injected", r["faults"]),
        ("send time / total time (s)", f"{r['send_seconds']} / {r['total_seconds']}"),
    ]
    width = max(len(k) for k, _ in rows)
    print(f"\nchaos run: n={r['n']} seed={r['seed']}")
    print(f"| {'measure'.ljust(width)} | value |")
    print(f"|{'-' * (width + 2)}|-------|")
    for k, v in rows:
        print(f"| {k.ljust(width)} | {v} |")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=5000, help="begin requests (default 5000)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workers", type=int, default=3)
    p.add_argument("--steps", type=int, default=4, help="ctx.run steps per workflow")
    p.add_argument("--lease", type=float, default=1.0, help="worker lease, seconds")
    p.add_argument("--rate", type=float, default=150.0, help="begin requests per second")
    p.add_argument("--concurrency", type=int, default=64, help="client requests in flight")
    p.add_argument("--dup-rate", type=float, default=0.05, help="share of acked begins resent")
    p.add_argument(
        "--client-timeout-rate",
        type=float,
        default=0.02,
        help="share of begin requests the client abandons after 2 ms",
    )
    p.add_argument("--begin-deadline", type=float, default=120.0)
    p.add_argument("--quiesce", type=float, default=180.0, help="max drain wait, seconds")
    for fault in ("kill", "zombie", "gateway-kill", "redis-restart"):
        p.add_argument(f"--no-{fault}", dest=fault.replace("-", "_"), action="store_false")
    p.add_argument("--json", type=Path, help="also write the result here")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs, ledger, AOF)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="redpromise-chaos-") as tmp:
        if args.keep:
            tmp = tempfile.mkdtemp(prefix="redpromise-chaos-kept-")
            print(f"keeping logs and ledger in {tmp}", file=sys.stderr)
        result = asyncio.run(Chaos(args, Path(tmp)).run())
        if result["lost"] or result["double_completions"]:
            for log in sorted(Path(tmp).glob("*.log")):
                tail = log.read_text(errors="replace")[-2000:]
                print(f"\n--- {log.name} (tail)\n{tail}", file=sys.stderr)
    print_table(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    bad = result["lost"] + result["double_completions"] + result["checkpointed_steps_reexecuted"]
    print("\nRESULT:", "PASS (0 lost, 0 double, 0 re-executed)" if not bad else "FAIL")
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
