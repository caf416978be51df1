"""Celery adapter: Redis broker and Redis result backend; delay(), AsyncResult.get()
(pub/sub result path). Worker: one process, threads pool with --concurrency (prefork
would be several processes)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _proto
from celery import Celery

URL = os.environ.get("BENCH_URL", "redis://127.0.0.1:6379/0")
app = Celery("bench", broker=URL, backend=URL)
app.conf.update(worker_hijack_root_logger=False, task_ignore_result=False,
                broker_connection_retry_on_startup=True, worker_send_task_events=False)


@app.task(name="noop")
def noop(x: int) -> int:
    return x + 1


def main() -> None:
    a = _proto.parse()
    os.environ["BENCH_URL"] = a.url
    if a.role == "worker":
        _proto.ready()
        os.execv(sys.executable, [sys.executable, "-m", "celery", "-A", "peer_celery", "worker",
                                  "--pool", "threads", "--concurrency", str(a.concurrency),
                                  "--loglevel", "WARNING", "--without-gossip",
                                  "--without-mingle", "--without-heartbeat"])
    app.conf.broker_url = app.conf.result_backend = a.url

    def begin(i: int) -> Any:
        return noop.delay(i)

    def result(r: Any) -> Any:
        return r.get(timeout=600)

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
    rs = [begin(i) for i in range(a.n)]
    t1 = time.perf_counter()
    bad = sum(1 for i, r in enumerate(rs) if result(r) != i + 1)
    out = _proto.throughput_result(a.n, t0, t1, time.perf_counter())
    out["wrong_results"] = bad
    _proto.emit(out)


if __name__ == "__main__":
    main()
