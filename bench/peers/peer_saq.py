"""SAQ adapter: queue.enqueue, job.refresh(until_complete=...) (SAQ's pub/sub result path)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _proto
from saq import Queue, Worker


async def noop(ctx: Any, *, x: int) -> int:
    return x + 1


async def worker(a: Any) -> None:
    q = Queue.from_url(a.url)
    w = Worker(q, functions=[noop], concurrency=a.concurrency)
    _proto.ready()
    await w.start()


async def produce(a: Any) -> dict[str, Any]:
    q = Queue.from_url(a.url)
    await q.connect()

    async def begin(i: int) -> Any:
        return await q.enqueue("noop", x=i)

    async def result(job: Any) -> Any:
        # refresh(until_complete=) waits for the next update and so hangs on a job that
        # finished before the call: wait in 1 s slices, re-reading the job between them.
        for _ in range(600):
            try:
                await job.refresh(until_complete=1.0)
            except TimeoutError:
                await job.refresh()
            if job.completed:
                return job.result
        raise TimeoutError(job.key)

    out = await _proto.async_produce(a, begin, result)
    await q.disconnect()
    return out


if __name__ == "__main__":
    args = _proto.parse()
    if args.role == "worker":
        asyncio.run(worker(args))
    else:
        _proto.emit(asyncio.run(produce(args)))
