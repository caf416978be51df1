"""streaq adapter: task.enqueue(), task.result() (streaq's result path)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _proto
from streaq import Worker

args = _proto.parse()
w = Worker(redis_url=args.url, concurrency=args.concurrency, handle_signals=True)


@w.task()
async def noop(x: int) -> int:
    return x + 1


async def produce(a: Any) -> dict[str, Any]:
    async with w:

        async def begin(i: int) -> Any:
            return await noop.enqueue(i)

        async def result(task: Any) -> Any:
            r = await task.result(timeout=600)
            return r.result

        return await _proto.async_produce(a, begin, result)


if __name__ == "__main__":
    if args.role == "worker":
        _proto.ready()
        w.run_sync()
    else:
        _proto.emit(asyncio.run(produce(args)))
        os._exit(0)
