"""Instructions per HTTP begin in the gateway (callgrind): exact where CPU time is not.

    python bench/gateway_ir.py [--root DIR] [--n 1500] [--in-flight 32] [--repeat 1]

Runs the gateway application of ``--root`` (default this checkout; ``services/gateway.py``'s
``init``, on uvloop) in a process under ``valgrind --tool=callgrind`` with instrumentation
off, against a private redis-server (bench/run.py's), begins 300 promises to warm it up,
turns instrumentation on, begins exactly ``--n`` more (``POST /begin?id=…`` with body
``i``, ``--in-flight`` at a time, from an aiohttp client in another process), turns it
off and prints the user-space instructions the gateway executed per begin. On a machine
shared with other work a CPU time per begin moves by +-20 % from run to run; this count
moves by about 1-2 % (the Redis batches' sizes still vary a little with timing). Kernel
work (the socket reads and writes) is not counted: read ``gateway_wrk.py``'s
``gateway_kernel_fraction`` for it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run import ROOT, free_port, redis_server  # noqa: E402

SERVER = r"""
import asyncio, os, sys
root, url, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
sys.path[:0] = [root, os.path.join(root, "services")]
os.environ["REDPROMISE_GATEWAY_FUNCTION"] = "noop"
import gateway, uvloop
from aiohttp import web
from redpromise import Redpromise, Settings
async def main():
    rp = Redpromise(url, group="gateway", settings=Settings(namespace="bench"))
    runner = web.AppRunner(gateway.init(rp))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("READY", flush=True)
    await asyncio.Event().wait()
uvloop.run(main())
"""

CLIENT = r"""
import asyncio, sys, aiohttp
port, n, flight, run = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
async def main():
    sem = asyncio.Semaphore(flight)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=flight)) as s:
        async def one(i):
            async with sem, s.post(f"http://127.0.0.1:{port}/begin?id={run}-{i}", data=str(i),
                                   headers={"Content-Type": "application/json"}) as r:
                await r.read()
                assert r.status == 200, r.status
        await asyncio.gather(*(one(i) for i in range(n)))
asyncio.run(main())
"""


def one_run(root: Path, n: int, flight: int) -> dict[str, object]:
    with redis_server() as (url, _r), tempfile.TemporaryDirectory(prefix="rp-ir-") as d:
        port = free_port()
        out = Path(d) / "callgrind.out"
        gw = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no",
             f"--callgrind-out-file={out}", sys.executable, "-c", SERVER, str(root), url,
             str(port)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)  # fmt: skip
        try:
            assert gw.stdout is not None and gw.stdout.readline().startswith("READY")

            def begins(count: int, run: str) -> None:
                subprocess.run([sys.executable, "-c", CLIENT, str(port), str(count),
                                str(flight), run], check=True)  # fmt: skip

            def control(*args: str) -> None:
                subprocess.run(["callgrind_control", *args, str(gw.pid)], check=True,
                               capture_output=True)  # fmt: skip

            begins(300, "warm")
            control("-i", "on")
            begins(n, "measured")
            control("-i", "off")
            control("-d")
            time.sleep(1)
        finally:
            gw.kill()
            gw.wait()
        total = 0
        for f in Path(d).glob("callgrind.out*"):
            for line in f.read_text().splitlines():
                if line.startswith(("summary:", "totals:")):
                    total = max(total, int(line.split()[1]))
    return {"root": str(root), "begins": n, "in_flight": flight, "instructions": total,
            "instructions_per_begin": round(total / n)}  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default=str(ROOT))
    p.add_argument("--n", type=int, default=1500)
    p.add_argument("--in-flight", type=int, default=32)
    p.add_argument("--repeat", type=int, default=1)
    a = p.parse_args()
    for _ in range(a.repeat):
        print(json.dumps(one_run(Path(a.root).resolve(), a.n, a.in_flight)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
