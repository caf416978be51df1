"""Instructions per producer promise (callgrind): ``begin_rpc`` only, or with ``result()``.

    python bench/producer_ir.py [--root DIR] [--mode begin|rpc] [--n 2000] [--window 100]

The producer of bench/run.py without HTTP: a process of ``--root``'s redpromise (asyncio)
begins 300 promises to warm up, then, under ``valgrind --tool=callgrind`` with
instrumentation on only for that part, begins ``--n`` more (``--window`` at a time) and,
with ``--mode rpc``, waits for each result (a worker of the same tree runs them in another
process). Prints user-space instructions per promise: about 0.5 % from run to run, where a
CPU time moves by +-15 % on a shared machine. A full collection before the window puts every
run (and every tree) at the same GC phase: otherwise whether one gen-2 pass (~50k objects,
~20M instructions, ~10k per promise) lands inside the window depends on what was allocated
before it (imports, warm-up), and two trees differ by that pass rather than by their code.
``PROF=tottime`` (or ``cumulative``) runs it under cProfile instead and prints the top
functions.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run import ROOT, redis_server  # noqa: E402

INNER = r"""
import asyncio, gc, os, subprocess, sys, uuid
root, url, mode = sys.argv[1:4]
n, window = int(sys.argv[4]), int(sys.argv[5])
sys.path[:0] = [root]
from redpromise import Redpromise, Settings
def instrument(state):
    subprocess.run(["callgrind_control", "-i", state, str(os.getpid())], check=True,
                   capture_output=True)
async def windowed(n, w, one):
    it = iter(range(n))
    async def lane():
        for i in it:
            await one(i)
    await asyncio.gather(*(lane() for _ in range(min(w, n))))
async def main():
    rp = Redpromise(url, settings=Settings(namespace="bench"))
    run = uuid.uuid4().hex[:8]
    async def cycle(tag, count):
        hs = [None] * count
        async def b(i):
            hs[i] = await rp.begin_rpc(f"{run}-{tag}-{i}", "noop", i)
        await windowed(count, window, b)
        if mode == "rpc":
            async def r(i):
                await hs[i].result()
            await windowed(count, window, r)
    await cycle("warm", 300)
    gc.collect()  # every run starts the window at the same GC phase (see the docstring)
    if os.environ.get("PROF"):
        import cProfile, pstats
        pr = cProfile.Profile(); pr.enable()
        await cycle("m", n)
        pr.disable(); pstats.Stats(pr).sort_stats(os.environ["PROF"]).print_stats(45)
    else:
        instrument("on")
        await cycle("m", n)
        instrument("off")
    await rp.stop()
asyncio.run(main())
"""
WORKER = r"""
import asyncio, sys
root, url = sys.argv[1], sys.argv[2]
sys.path[:0] = [root]
from redpromise import Redpromise, Settings
async def main():
    rp = Redpromise(url, settings=Settings(namespace="bench", concurrency=100))
    @rp.register
    async def noop(ctx, x):
        return x + 1
    await rp.start()
    print("READY", flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""

def one_run(root: str, mode: str, n: int, window: int) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": root}
    with redis_server() as (url, _r), tempfile.TemporaryDirectory(prefix="rp-pir-") as d:
        worker = None
        if mode == "rpc":
            worker = subprocess.Popen([sys.executable, "-c", WORKER, root, url],
                                      stdout=subprocess.PIPE, text=True, env=env)  # fmt: skip
            assert worker.stdout is not None
            assert worker.stdout.readline().startswith("READY")
        out = Path(d) / "callgrind.out"
        inner = [sys.executable, "-c", INNER, root, url, mode, str(n), str(window)]
        try:
            if os.environ.get("PROF"):
                subprocess.run(inner, check=True, env=env)
                return {}
            subprocess.run(["valgrind", "--tool=callgrind", "--instr-atstart=no",
                            f"--callgrind-out-file={out}", *inner],
                           check=True, stderr=subprocess.DEVNULL, env=env)  # fmt: skip
        finally:
            if worker is not None:
                worker.kill()
                worker.wait()
        total = 0
        for line in out.read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                total = max(total, int(line.split()[1]))
    return {"root": root, "mode": mode, "n": n, "window": window,
            "instructions_per_promise": round(total / n)}  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default=str(ROOT))
    p.add_argument("--mode", choices=("begin", "rpc"), default="begin")
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--window", type=int, default=100)
    p.add_argument("--repeat", type=int, default=1)
    a = p.parse_args()
    for _ in range(a.repeat):
        res = one_run(str(Path(a.root).resolve()), a.mode, a.n, a.window)
        if res:
            print(json.dumps(res), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
