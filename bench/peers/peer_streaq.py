"""streaq adapter: task.enqueue(), task.result() (streaq's result path: a Pub/Sub subscription
to the task's channel, then a GET of the stored result).

Two things about that path at this size (streaq 7.2 on coredis 6.9):
- Each waiting result() holds one connection of the client's pool for its subscription and
  needs a second, shared one for the GET. coredis' pool is bounded (64 by default) and blocks
  when empty, so 64+ results awaited at once (our window is 100) deadlock: every connection is
  a subscription waiting to GET. The producer's pool is therefore sized above the window
  (``redis_kwargs={"max_connections": ...}``, a documented Worker parameter). The worker
  keeps streaq's defaults.
- Leaving the subscription costs a fixed 100 ms per result(): coredis' PubSub cleanup drains
  push messages for its whole ``unsubscription_timeout`` (0.1 s, not settable through
  streaq) instead of stopping at the unsubscribe acknowledgement. It is what a streaq user
  gets, so it is kept: it is ~100 ms of streaq's latency p50, and it bounds the result phase
  of the throughput run to about window / 0.1 s results per second.
"""

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
# producer: one pooled connection per awaited result() plus headroom for the GETs and enqueues
pool = {"max_connections": args.window + 64} if args.role == "produce" else None
w = Worker(redis_url=args.url, concurrency=args.concurrency, handle_signals=True,
           redis_kwargs=pool)


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
