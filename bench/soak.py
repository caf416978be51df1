"""Soak: a steady rate for a long time with periodic worker kills; memory must stay flat.

    python bench/soak.py --minutes 30 --rate 50 --retention 60

Same processes as ``bench/chaos.py`` (real redis-server with AOF, gateway, three
workers). Completed promises expire after ``--retention`` seconds, so after warm-up
(retention + a margin) Redis memory, stream lengths and the consumer list must stop
growing. Every ``--sample`` seconds it prints used_memory, keys, stream entries, pending
entries and consumers; at the end it compares the second half of the run with the
first half after warm-up, and checks that no acknowledged promise was lost.
Not run in CI as is: ``tests/test_soak.py`` runs a 40-second version.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from redis.asyncio import Redis

sys.path.insert(0, str(Path(__file__).resolve().parent))

from chaos import NAMESPACE, Chaos

from redpromise.core.keys import Keys


async def sample(r: Redis, keys: Keys, group: str) -> dict[str, Any]:
    info = await r.info("memory")
    pipe = r.pipeline(transaction=False)
    for k in range(keys.partitions):
        pipe.xlen(keys.stream(k, group))
        pipe.xinfo_consumers(keys.stream(k, group), group)
    res = await pipe.execute(raise_on_error=False)
    entries = sum(x for x in res[0::2] if isinstance(x, int))
    consumers = [c for x in res[1::2] if isinstance(x, list) for c in x]
    return {
        "t": time.time(),
        "used_memory": int(info["used_memory"]),
        "keys": int(await r.dbsize()),
        "stream_entries": entries,
        "pending": sum(int(c.get("pending", 0)) for c in consumers),
        "consumers": len({c.get("name") for c in consumers}),
    }


async def soak(args: argparse.Namespace, tmp: Path) -> int:
    chaos_args = argparse.Namespace(
        n=0,
        seed=args.seed,
        workers=3,
        steps=args.steps,
        lease=args.lease,
        rate=args.rate,
        concurrency=32,
        dup_rate=0.0,
        client_timeout_rate=0.0,
        begin_deadline=60.0,
        quiesce=120.0,
        kill=False,
        zombie=False,
        gateway_kill=False,
        redis_restart=False,
    )
    c = Chaos(chaos_args, tmp)
    c.env_extra = {"REDPROMISE_RETENTION": str(args.retention)}
    c.start_processes()
    r = Redis.from_url(c.redis_server.url)
    keys = Keys(NAMESPACE, 16)
    samples: list[dict[str, Any]] = []
    acked: list[str] = []
    try:
        await c.wait_gateway()
        end = time.monotonic() + args.minutes * 60
        next_kill = time.monotonic() + args.kill_every
        next_sample = time.monotonic()
        next_begin = time.monotonic()
        i = 0
        async with aiohttp.ClientSession() as s:
            while time.monotonic() < end:
                id = f"soak-{i:08d}"
                i += 1
                try:
                    async with s.post(f"{c.base}/begin", params={"id": id}, json={"i": i}) as resp:
                        if resp.status == 200:
                            acked.append(id)
                except aiohttp.ClientError:
                    pass
                if time.monotonic() >= next_kill:
                    await c.worker_kill()
                    c.faults["worker_kill"] += 1
                    next_kill = time.monotonic() + args.kill_every
                if time.monotonic() >= next_sample:
                    row = await sample(r, keys, "worker")
                    samples.append(row)
                    print(
                        f"{len(samples):4d}  mem={row['used_memory'] / 1e6:7.2f} MB  "
                        f"keys={row['keys']:6d}  entries={row['stream_entries']:5d}  "
                        f"pending={row['pending']:4d}  consumers={row['consumers']:3d}  "
                        f"begun={len(acked)}",
                        flush=True,
                    )
                    next_sample = time.monotonic() + args.sample
                # Paced by the clock, not by a sleep after each request: the rate is the
                # rate asked for, whatever the latency of one begin.
                next_begin += 1.0 / args.rate
                await asyncio.sleep(max(0.0, next_begin - time.monotonic()))
        # Records of completed promises expire after the short retention; a pending one
        # never expires, so a missing record is a completed one and only "pending" is lost.
        # (The ledger cannot decide it: a worker killed after Redis accepted its completion
        # but before it wrote the ledger row leaves a completed promise with no row.)
        final = await c.drain(acked, expired_is_done=True)
        lost = [k for k, v in final.items() if v["state"] == "pending"]
        db = sqlite3.connect(c.ledger)
        done = {row[0] for row in db.execute("SELECT pid FROM events WHERE kind='completed'")}
        unlogged = sum(1 for k in acked if k not in done)
        dead = 0
        for k in range(keys.partitions):
            dead += int(await r.xlen(keys.dead(k)))
        print(f"completions with no ledger row (worker killed before logging): {unlogged}")
        print(f"entries given up as poison (dead streams): {dead}")
    finally:
        await r.aclose()
        for p in [*c.workers, c.gateway]:
            p.kill()
        c.redis_server.kill()
    warm_up = args.retention + max(10.0, 3 * args.sample)
    warm = [x for x in samples if x["t"] - samples[0]["t"] > warm_up]
    verdict = 0
    if len(warm) >= 4:
        half = len(warm) // 2
        first = max(x["used_memory"] for x in warm[:half])
        second = max(x["used_memory"] for x in warm[half:])
        growth = (second - first) / first
        consumers = max(x["consumers"] for x in warm)
        print(
            f"\npeak memory after warm-up: first half {first / 1e6:.2f} MB, "
            f"second half {second / 1e6:.2f} MB ({growth:+.1%})"
        )
        print(
            f"max consumers after warm-up: {consumers} (3 workers, {c.faults['worker_kill']} kills)"
        )
        if growth > 0.10:
            print("FAIL: memory still growing after warm-up")
            verdict = 1
        c_first = max(x["consumers"] for x in warm[:half])
        c_second = max(x["consumers"] for x in warm[half:])
        if c_second > c_first + 2:
            print(f"FAIL: consumer list growing ({c_first} -> {c_second})")
            verdict = 1
    else:
        print("run too short to judge memory after warm-up")
    print(f"promises begun: {len(acked)}; lost: {len(lost)}")
    return 1 if lost else verdict


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--rate", type=float, default=50.0, help="begins per second")
    p.add_argument("--retention", type=float, default=60.0, help="seconds")
    p.add_argument("--kill-every", type=float, default=20.0, help="seconds between worker kills")
    p.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--lease", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="redpromise-soak-") as tmp:
        return asyncio.run(soak(args, Path(tmp)))


if __name__ == "__main__":
    sys.exit(main())
