"""RQ adapter (sync): Queue.enqueue, Job.latest_result(timeout=) (RQ's result stream).
Worker: SimpleWorker (no fork per job; the forking Worker is far slower). RQ runs one job
at a time per worker process: concurrency cannot be matched."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _proto
from redis import Redis
from rq import Queue, SimpleWorker


def noop(x: int) -> int:
    return x + 1


def main() -> None:
    a = _proto.parse()
    conn = Redis.from_url(a.url)
    q = Queue("bench", connection=conn)
    if a.role == "worker":
        _proto.ready()
        SimpleWorker([q], connection=conn).work(logging_level="WARNING")
        return

    def begin(i: int) -> Any:
        return q.enqueue("peer_rq.noop", i)

    def result(job: Any) -> Any:
        r = job.latest_result(timeout=600)
        return r.return_value

    for i in range(_proto.WARMUP):
        result(begin(10_000_000 + i))
    if a.mode == "latency":
        samples = []
        for i in range(a.n):
            t = time.perf_counter()
            assert result(begin(i)) == i + 1
            samples.append(time.perf_counter() - t)
        _proto.emit(_proto.latency_result(samples))
        return
    t0 = time.perf_counter()
    jobs = [begin(i) for i in range(a.n)]
    t1 = time.perf_counter()
    bad = sum(1 for i, j in enumerate(jobs) if result(j) != i + 1)
    out = _proto.throughput_result(a.n, t0, t1, time.perf_counter())
    out["wrong_results"] = bad
    _proto.emit(out)


if __name__ == "__main__":
    main()
