"""BullMQ Python port adapter: Queue.add; results the way Node's job.waitUntilFinished(queueEvents)
gets them, which the port (bullmq 3.x) does not have as a method: listen on the per-job
"completed:<id>" / "failed:<id>" channels QueueEvents emits, then check once whether the job
had already finished (one HGETALL, where Node runs its isFinished script). No polling.

Two port/redis-py details the adapter has to respect (both only matter while the event stream
is idle, never for a job in flight):
- redis-py >= 6 gives every client a 5 s socket_timeout, shorter than QueueEvents' default
  XREAD BLOCK of 10 s: an idle reader times out client-side, backs off and re-issues. So
  blockingTimeout is set below it.
- QueueEvents.close() stops its reader with task.cancel(); on Python 3.11 asyncio.wait_for
  (redis-py wraps its socket writes in it) can swallow that cancel, and the reader then only
  notices the closing flag when its XREAD returns: within blockingTimeout, not never.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _proto
from bullmq import Job, Queue, QueueEvents, Worker

BLOCKING_MS = 2000  # QueueEvents' XREAD BLOCK; below redis-py's 5 s default socket_timeout


async def noop(job: Any, token: Any = None) -> int:
    return int(job.data["x"]) + 1


async def worker(a: Any) -> None:
    w = Worker("bench", noop, {"connection": a.url, "concurrency": a.concurrency})
    _proto.ready()
    await asyncio.Event().wait()
    await w.close()


async def produce(a: Any) -> dict[str, Any]:
    q = Queue("bench", {"connection": a.url})
    # The port's QueueEvents has no waitUntilReady: start it at the event stream's current
    # end rather than at "$", so no event is missed however late its first XREAD goes out.
    tail = await q.client.xrevrange(q.keys["events"], count=1)
    ev = QueueEvents("bench", {"connection": a.url, "blockingTimeout": BLOCKING_MS,
                               "lastEventId": tail[0][0] if tail else "0-0"})
    loop = asyncio.get_running_loop()

    async def begin(i: int) -> Any:
        return await q.add("noop", {"x": i}, {"removeOnComplete": False})

    async def result(job: Job) -> Any:
        fut: asyncio.Future[dict[str, Any]] = loop.create_future()

        def finished(args: dict[str, Any], *_: Any) -> None:
            if not fut.done():
                fut.set_result(args)

        channels = (f"completed:{job.id}", f"failed:{job.id}")
        for ch in channels:
            ev.on(ch, finished)
        try:
            done = await Job.fromId(q, str(job.id))
            if done is not None and done.finishedOn:
                if done.failedReason:
                    raise RuntimeError(done.failedReason)
                return done.returnvalue
            args = await asyncio.wait_for(fut, 600)
            if "failedReason" in args:
                raise RuntimeError(args["failedReason"])
            return args.get("returnvalue")
        finally:
            for ch in channels:
                ev.off(ch, finished)

    out = await _proto.async_produce(a, begin, result)
    await ev.close()
    await q.close()
    return out


if __name__ == "__main__":
    args = _proto.parse()
    if args.role == "worker":
        asyncio.run(worker(args))
    else:
        _proto.emit(asyncio.run(produce(args)))
