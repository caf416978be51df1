"""Profile redpromise's worker and producer under the throughput workload with py-spy.

    python bench/profile.py [--n 20000]     (needs py-spy: bash bench/setup_peers.sh tools)

Writes collapsed stacks to bench/profiles/{worker,producer}.txt and prints the top frames
by self time and by inclusive time for each, plus the Redis commands per promise.
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench

PYSPY = bench.VENVS / "tools" / "bin" / "py-spy"
OUT = bench.HERE / "profiles"


def top(path: Path, k: int = 15) -> str:
    """Top frames by self and inclusive time, of the event loop's samples only (start-up
    imports, slowed down many times by the sampler, would otherwise dominate)."""
    self_t: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or "Runner.run" not in stack:
            continue
        c = int(n)
        total += c
        frames = stack.split(";")
        self_t[frames[-1]] += c
        for f in set(frames):
            incl[f] += c
    out = [f"{path.name}: {total} samples in the event loop", "  self:"]
    out += [f"    {c / total:6.1%}  {f}" for f, c in self_t.most_common(k)]
    out.append("  inclusive:")
    out += [f"    {c / total:6.1%}  {f}" for f, c in incl.most_common(k + 25)
            if "<module>" not in f and "run_until_complete" not in f][:k + 10]
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=20_000)
    p.add_argument("--window", type=int, default=100)
    a = p.parse_args()
    OUT.mkdir(exist_ok=True)
    logdir = Path(tempfile.mkdtemp(prefix="rp-prof-"))
    with bench.redis_server() as (url, r):
        w = bench.Workers("redpromise", url, 1, 100, logdir)
        w.wait_ready()
        spy = subprocess.Popen([str(PYSPY), "record", "--format", "raw", "-r", "1000", "-o",
                                str(OUT / "worker.txt"), "--pid", str(w.procs[0].pid)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        before = bench.commandstats(r)
        t = time.perf_counter()
        cmd = [str(PYSPY), "record", "--format", "raw", "-r", "1000", "-o",
               str(OUT / "producer.txt"), "--", *bench.command(
                   "redpromise", "produce", "--url", url, "--mode", "throughput", "--n",
                   str(a.n), "--window", str(a.window))]
        cp = subprocess.run(cmd, env=bench.env_for("redpromise"), capture_output=True, text=True)
        elapsed = time.perf_counter() - t
        after = bench.commandstats(r)
        spy.send_signal(2)
        spy.wait(30)
        w.stop()
    print(cp.stdout.strip().splitlines()[-1] if cp.stdout.strip() else cp.stderr[-500:])
    print(f"(under py-spy, {elapsed:.1f}s)")
    d = bench.cmd_delta(before, after)
    n = a.n + 20
    rows = sorted(d.items(), key=lambda x: -x[1][0])
    print("Redis commands per promise:",
          ", ".join(f"{k} {c / n:.2f} ({u / c:.1f}µs)" for k, (c, u) in rows))
    for name in ("worker.txt", "producer.txt"):
        if (OUT / name).exists():
            print(top(OUT / name))


if __name__ == "__main__":
    main()
