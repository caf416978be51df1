"""arq adapter: enqueue_job, Job.result() (arq's polling result path, poll_delay 0.5 s
by default; we keep the default: it is what users get)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _proto
from arq import create_pool
from arq.connections import RedisSettings
from arq.worker import Worker


async def noop(ctx: Any, x: int) -> int:
    return x + 1


async def worker(a: Any) -> None:
    w = Worker(functions=[noop], redis_settings=RedisSettings.from_dsn(a.url),
               max_jobs=a.concurrency, keep_result=3600, handle_signals=True)
    _proto.ready()
    await w.async_run()


async def produce(a: Any) -> dict[str, Any]:
    pool = await create_pool(RedisSettings.from_dsn(a.url))

    async def begin(i: int) -> Any:
        return await pool.enqueue_job("noop", i)

    async def result(job: Any) -> Any:
        return await job.result(timeout=600)

    out = await _proto.async_produce(a, begin, result)
    await pool.aclose()
    return out


if __name__ == "__main__":
    args = _proto.parse()
    if args.role == "worker":
        asyncio.run(worker(args))
    else:
        _proto.emit(asyncio.run(produce(args)))
