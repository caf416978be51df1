"""HTTP load for the gateway workload of bench/run.py (aiohttp client).

    python bench/gateway_client.py BASE begin N CONCURRENCY  -> JSON: begin/s, p50/p99
    python bench/gateway_client.py BASE wait  N TIMEOUT      -> creates N pending promises,
        opens N concurrent /wait?timeout= long polls, prints "CONNECTED n" once all are
        sent, and holds them until killed.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
import uuid

import aiohttp


def _raise_nofile() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def begin(base: str, n: int, conc: int) -> None:
    run = uuid.uuid4().hex[:8]
    lat: list[float] = []
    it = iter(range(n))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=conc)) as s:

        async def lane() -> None:
            for i in it:
                t = time.perf_counter()
                async with s.post(f"{base}/begin?id={run}-{i}", data=json.dumps([i])) as resp:
                    await resp.read()
                    assert resp.status == 200, resp.status
                lat.append(time.perf_counter() - t)

        t0 = time.perf_counter()
        await asyncio.gather(*(lane() for _ in range(conc)))
        el = time.perf_counter() - t0
    lat.sort()
    print(json.dumps({"begin_per_s": n / el, "n": n, "concurrency": conc,
                      "p50_ms": lat[len(lat) // 2] * 1000,
                      "p99_ms": lat[int(len(lat) * 0.99)] * 1000}), flush=True)


async def wait(base: str, n: int, timeout: int) -> None:
    run = uuid.uuid4().hex[:8]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                     timeout=aiohttp.ClientTimeout(total=None)) as s:
        sem = asyncio.Semaphore(64)

        async def create(i: int) -> None:
            async with sem, s.post(f"{base}/begin?id={run}-w{i}", data="[0]") as resp:
                await resp.read()

        await asyncio.gather(*(create(i) for i in range(n)))

        async def poll(i: int) -> None:
            async with s.get(f"{base}/wait?id={run}-w{i}&timeout={timeout}") as resp:
                await resp.read()

        tasks = []
        for i in range(n):
            tasks.append(asyncio.create_task(poll(i)))
            if i % 200 == 199:
                await asyncio.sleep(0.05)  # stay under the server's listen backlog
        await asyncio.sleep(0.5)
        print(f"CONNECTED {sum(1 for t in tasks if not t.done())}", flush=True)
        await asyncio.gather(*tasks, return_exceptions=True)


def main() -> None:
    _raise_nofile()
    base, role, n, x = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    asyncio.run(begin(base, n, x) if role == "begin" else wait(base, n, x))


if __name__ == "__main__":
    main()
