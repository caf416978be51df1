"""BullMQ Python port adapter: Queue.add, results through QueueEvents 'completed' events
(the port has no waitUntilFinished; QueueEvents is its result path)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _proto
from bullmq import Job, Queue, QueueEvents, Worker


async def noop(job: Any, token: Any = None) -> int:
    return int(job.data["x"]) + 1


async def worker(a: Any) -> None:
    w = Worker("bench", noop, {"connection": a.url, "concurrency": a.concurrency})
    _proto.ready()
    await asyncio.Event().wait()
    await w.close()


async def produce(a: Any) -> dict[str, Any]:
    q = Queue("bench", {"connection": a.url})
    ev = QueueEvents("bench", {"connection": a.url})
    waiting: dict[str, asyncio.Future[Any]] = {}
    early: dict[str, Any] = {}

    def completed(args: dict[str, Any], *_: Any) -> None:
        jid, rv = str(args.get("jobId")), args.get("returnvalue")
        fut = waiting.get(jid)
        if fut is not None and not fut.done():
            fut.set_result(rv)
        else:
            early[jid] = rv

    ev.on("completed", completed)
    await asyncio.sleep(0.5)  # let QueueEvents start reading from "$"
    loop = asyncio.get_running_loop()

    async def begin(i: int) -> Any:
        job = await q.add("noop", {"x": i}, {"removeOnComplete": False})
        return str(job.id)

    async def result(jid: str) -> Any:
        if jid in early:
            return early.pop(jid)
        fut = waiting.setdefault(jid, loop.create_future())
        try:
            # An event can be missed (QueueEvents reads from "$"): after 1 s, read the job.
            for _ in range(600):
                try:
                    return await asyncio.wait_for(asyncio.shield(fut), 1.0)
                except TimeoutError:
                    job = await Job.fromId(q, jid)
                    if job is not None and job.finishedOn:
                        return job.returnvalue
            raise TimeoutError(jid)
        finally:
            waiting.pop(jid, None)

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
