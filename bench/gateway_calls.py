"""Python function calls per HTTP begin in the gateway: a count, not a time.

    python bench/gateway_calls.py [--root DIR] [--duration 3] [--top 0]

Runs the gateway application of ``--root`` (default this checkout) in this process on
uvloop, against a private redis-server (bench/run.py's), drives it with
``wrk -t1 -c32 -s bench/wrk/begin.lua`` (a fresh id per request) and counts every Python
and builtin call under cProfile while wrk runs: calls / requests answered. On a shared
machine a CPU time per request moves with the neighbours; this count does not, so it
compares two versions of the begin path run after run. (cProfile counts a coroutine once
per resumption; the count includes the Redis batches' share, so it moves a little with
the batch sizes.) ``--top N`` prints the N most called functions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# bench/profile.py would shadow the standard library's profile, which cProfile imports
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
import cProfile  # noqa: E402
import pstats  # noqa: E402

sys.path.insert(0, str(HERE))
from run import ROOT, free_port, redis_server  # noqa: E402

LUA = HERE / "wrk" / "begin.lua"


async def measure(root: Path, url: str, duration: int, top: int) -> dict[str, float]:
    sys.path.insert(0, str(root))
    sys.path.insert(0, str(root / "services"))
    import gateway  # services/gateway.py of root
    from aiohttp import web

    from redpromise import Redpromise, Settings

    os.environ["REDPROMISE_GATEWAY_FUNCTION"] = "noop"
    rp = Redpromise(url, group="gateway", settings=Settings(namespace="bench"))
    runner = web.AppRunner(gateway.init(rp))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()

    async def wrk(seconds: int, run: str) -> int:
        proc = await asyncio.create_subprocess_exec(
            "wrk", "-t1", "-c32", f"-d{seconds}s", "-s", str(LUA), f"http://127.0.0.1:{port}",
            env={**os.environ, "RUN": run}, stdout=subprocess.PIPE)
        out, _ = await proc.communicate()
        line = next(x for x in out.decode().splitlines() if x.startswith("WRKJSON "))
        return int(json.loads(line.removeprefix("WRKJSON "))["requests"])

    try:
        await wrk(1, "warm")
        prof = cProfile.Profile()
        prof.enable()
        n = await wrk(duration, "calls")
        prof.disable()
    finally:
        await runner.cleanup()
    stats = pstats.Stats(prof)
    calls = sum(v[1] for v in stats.stats.values())  # type: ignore[attr-defined]
    if top:
        stats.sort_stats("ncalls").print_stats(top)
    return {"requests": n, "calls_per_begin": calls / max(1, n)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default=str(ROOT))
    p.add_argument("--duration", type=int, default=3)
    p.add_argument("--top", type=int, default=0)
    a = p.parse_args()
    import uvloop

    with redis_server() as (url, _r):
        res = uvloop.run(measure(Path(a.root).resolve(), url, a.duration, a.top))
    print(json.dumps({"root": a.root, **res}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
