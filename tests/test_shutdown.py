"""Real worker processes stopped by SIGTERM, and Redis unreachable or restarted.

Like test_processes.py: ``python -m redpromise worker tests.workers:make`` processes
(lease 1 s) on a real redis-server, each call counted with ``INCR fx:<namespace>:<name>``.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from tests.helpers import assert_eventually
from tests.procs import ROOT
from tests.proctools import (
    LEASE,
    MakeClient,
    StartWorker,
    client,
    fx,
    fx_equals,
    keys_of,
    queues_empty,
    raw,
)
from tests.redis_server import RedisServer, free_port

pytestmark = pytest.mark.real

__all__ = ["client", "raw"]  # fixtures


# ---------------------------------------------------------------- graceful shutdown


async def test_graceful_shutdown_loses_nothing(
    workers: StartWorker, client: MakeClient, raw: Redis, namespace: str
) -> None:
    """SIGTERM: finish what fits in the grace, leave the rest to another worker."""
    grace, short, long = 2.0, 1.0, 4.0
    first = workers(grace=grace)
    rp = client()
    shorts = [f"short{i}" for i in range(3)]
    longs = [f"long{i}" for i in range(3)]
    handles = {id: await rp.begin_rpc(id, "slow", id, short) for id in shorts}
    handles |= {id: await rp.begin_rpc(id, "slow", id, long) for id in longs}

    async def all_started() -> bool:
        return all([await fx(raw, namespace, f"{id}:started") == 1 for id in handles])

    await assert_eventually(all_started)
    # Precondition: every function is in flight when the signal arrives.
    assert [await fx(raw, namespace, f"{id}:finished") for id in handles] == [0] * 6
    assert await asyncio.to_thread(first.terminate, grace + 10) == 0  # SIGTERM, wait

    for id in shorts:  # finished inside the grace, by the first worker
        assert await handles[id].result(timeout=1) == f"{id} done"
    for id in longs:  # cut off at the grace: still pending, never finished
        assert await handles[id].state() == "pending"
        assert await fx(raw, namespace, f"{id}:finished") == 0

    workers()
    for id in longs:
        assert await handles[id].result(timeout=LEASE + long + 15) == f"{id} done"
    for id in shorts:
        assert (
            await fx(raw, namespace, f"{id}:started"),
            await fx(raw, namespace, f"{id}:finished"),
        ) == (1, 1)
    for id in longs:
        assert (
            await fx(raw, namespace, f"{id}:started"),
            await fx(raw, namespace, f"{id}:finished"),
        ) == (2, 1)
    assert await queues_empty(raw, keys_of(namespace)) == {}


# ---------------------------------------------------------------- Redis trouble


async def test_worker_exits_nonzero_when_redis_unreachable_at_start(namespace: str) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "REDPROMISE_URL": url,
        "TEST_FX_URL": url,
        "REDPROMISE_NAMESPACE": namespace,
    }
    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "redpromise", "worker", "tests.workers:make"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert f"cannot reach Redis at {url}" in proc.stderr
    assert "Traceback" not in proc.stderr


async def test_worker_survives_redis_restart(
    own_redis_server: RedisServer,
    workers: StartWorker,
    client: MakeClient,
    namespace: str,
    tmp_path: Path,
) -> None:
    """Redis SHUTDOWN (AOF) for ~2 s and back: the worker reconnects, nothing is lost."""
    url = own_redis_server.url
    r = Redis.from_url(url, retry=Retry(ExponentialWithJitterBackoff(base=0.01, cap=1), 3))
    try:
        w = workers(url=url, concurrency=2)
        rp = client(url)
        before = [f"before{i}" for i in range(5)]
        # 2 in flight across the restart, 3 still queued in the streams
        handles = {id: await rp.begin_rpc(id, "slow", id, 2.0) for id in before}
        await assert_eventually(lambda: fx_equals(r, namespace, "before0:started", 1))
        # Precondition: none has finished when Redis goes away.
        assert [await fx(r, namespace, f"{id}:finished") for id in before] == [0] * 5
        await asyncio.to_thread(own_redis_server.stop)
        await asyncio.sleep(2)  # let time pass with Redis down
        await asyncio.to_thread(own_redis_server.start)

        after = await rp.begin_rpc("after", "echo", "still here")
        assert await after.result(timeout=30) == "still here"
        for id, h in handles.items():
            assert await h.result(timeout=30) == f"{id} done"
        assert w.proc is not None and w.proc.poll() is None
        for id in before:
            assert await fx(r, namespace, f"{id}:finished") >= 1
        assert await queues_empty(r, keys_of(namespace)) == {}
    finally:
        await r.aclose()
