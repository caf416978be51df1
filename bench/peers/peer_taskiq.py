"""taskiq + taskiq-redis adapter: RedisStreamBroker (Streams, acks) with
RedisAsyncResultBackend; task.kiq(), task.wait_result() (taskiq's polling result path,
check_interval 0.2 s by default). Worker: `taskiq worker` CLI, one process."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _proto
from taskiq_redis import RedisAsyncResultBackend, RedisStreamBroker

URL = os.environ.get("BENCH_URL", "redis://127.0.0.1:6379/0")
broker = RedisStreamBroker(URL).with_result_backend(RedisAsyncResultBackend(URL))


@broker.task(task_name="noop")
async def noop(x: int) -> int:
    return x + 1


async def produce(a: Any) -> dict[str, Any]:
    await broker.startup()

    async def begin(i: int) -> Any:
        return await noop.kiq(i)

    async def result(task: Any) -> Any:
        r = await task.wait_result(timeout=600)
        return r.return_value

    out = await _proto.async_produce(a, begin, result)
    await broker.shutdown()
    return out


if __name__ == "__main__":
    a = _proto.parse()
    os.environ["BENCH_URL"] = a.url
    if a.role == "worker":
        _proto.ready()
        os.execv(sys.executable, [sys.executable, "-m", "taskiq", "worker", "peer_taskiq:broker",
                                  "--workers", "1", "--max-async-tasks", str(a.concurrency),
                                  "--no-configure-logging"])
    else:
        broker = RedisStreamBroker(a.url).with_result_backend(RedisAsyncResultBackend(a.url))
        noop = broker.task(task_name="noop")(noop.original_func)
        _proto.emit(asyncio.run(produce(a)))
