"""Prometheus metrics after known workloads: real redis-server, real gateway and worker
processes, their ``/metrics`` parsed with ``prometheus_client.parser`` (never matched as
strings), exact counts."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import urllib.request
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from redpromise import Redpromise, Settings, StoreUnavailable
from tests.conftest import fast_settings
from tests.helpers import assert_eventually
from tests.procs import ROOT, WorkerProcess
from tests.redis_server import RedisServer, free_port
from tests.services import GatewayProcess, service_worker

pytestmark = pytest.mark.real

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    """Every sample of a ``/metrics`` answer, keyed by (name, labels)."""
    with urllib.request.urlopen(url, timeout=5) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name`` over every series whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


async def scraped(url: str) -> Samples:
    return await asyncio.to_thread(scrape, url)


async def scraped_after(url: str, name: str, expected: float, **labels: str) -> Samples:
    """The samples once ``name{labels}`` reads ``expected``: ``result()`` can return (from
    the completion message) before the worker has handled its completion call's reply."""

    async def ready() -> Samples | None:
        s = await scraped(url)
        return s if value(s, name, **labels) == expected else None

    samples: Samples = await assert_eventually(ready, message=f"{name}{labels} == {expected}")
    return samples


class Stack:
    def __init__(self, url: str, log_dir: Path) -> None:
        self.url = url
        self.namespace = f"m{uuid.uuid4().hex[:10]}"
        self.log_dir = log_dir
        self.procs: list[GatewayProcess | WorkerProcess] = []

    def gateway(self) -> GatewayProcess:
        gw = GatewayProcess(self.url, self.namespace, self.log_dir).start()
        self.procs.append(gw)
        return gw

    def worker(self, wp: WorkerProcess) -> int:
        """Start ``wp`` with a metrics port; returns the port once it answers."""
        port = free_port()
        wp.env["REDPROMISE_METRICS_PORT"] = str(port)
        self.procs.append(wp.start())
        return port

    def close(self) -> None:
        for p in self.procs:
            p.close()


@pytest.fixture
def stack(real_url: str, tmp_path: Path) -> Iterator[Stack]:
    s = Stack(real_url, tmp_path)
    try:
        yield s
    finally:
        s.close()


async def test_gateway_and_worker_metrics_count_a_known_workload_exactly(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    gw = stack.gateway()
    port = stack.worker(service_worker(stack.url, stack.namespace, stack.log_dir))
    worker_metrics = f"http://127.0.0.1:{port}/metrics"
    # 17 objects resolve after 3 steps each; 3 non-objects fail validation (not retried).
    bodies: list[Any] = [{"n": i} for i in range(17)] + [[1], "text", 3]
    ids = [f"job-{i}" for i in range(20)]
    for id, body in zip(ids, bodies, strict=True):
        async with http.post(f"{gw.base}/begin", params={"id": id}, json=body) as resp:
            assert resp.status == 200
    for id in ids:
        async with http.get(f"{gw.base}/wait", params={"id": id, "timeout": "20"}) as resp:
            assert (await resp.json())["status"] != "pending"

    g = await scraped(f"{gw.base}/metrics")
    assert value(g, "redpromise_promises_begun_total", group="worker", function="foo") == 20
    assert total(g, "redpromise_promises_completed_total") == 0  # the worker completed them

    fw = {"group": "worker", "function": "foo"}
    w = await scraped_after(
        worker_metrics, "redpromise_promises_completed_total", 3, **fw, state="rejected"
    )
    w = await scraped_after(
        worker_metrics, "redpromise_promises_completed_total", 17, **fw, state="resolved"
    )
    assert value(w, "redpromise_promises_completed_total", **fw, state="resolved") == 17
    assert value(w, "redpromise_promises_completed_total", **fw, state="rejected") == 3
    assert total(w, "redpromise_promises_completed_total") == 20
    assert value(w, "redpromise_steps_checkpointed_total", **fw) == 17 * 3
    assert value(w, "redpromise_execution_seconds_count", **fw) == 20
    assert value(w, "redpromise_execution_seconds_bucket", **fw, le="+Inf") == 20
    assert value(w, "redpromise_end_to_end_seconds_count", **fw, state="resolved") == 17
    assert value(w, "redpromise_end_to_end_seconds_count", **fw, state="rejected") == 3
    # End to end includes the execution: its total time is at least the execution's.
    e2e = total(w, "redpromise_end_to_end_seconds_sum")
    assert e2e >= value(w, "redpromise_execution_seconds_sum", **fw)  # type: ignore[operator]
    assert total(w, "redpromise_redeliveries_total") == 0
    assert total(w, "redpromise_retries_total") == 0
    assert total(w, "redpromise_fence_refusals_total") == 0
    assert total(w, "redpromise_redis_failures_total") == 0
    assert value(w, "redpromise_worker_slots", group="worker") == 100
    assert value(w, "redpromise_worker_slots_in_use", group="worker") == 0
    # Everything completed: nothing waits, nothing is in flight, in both processes' view.
    for samples in (g, w):
        assert value(samples, "redpromise_queue_depth", group="worker") == 0
        assert value(samples, "redpromise_queue_in_flight", group="worker") == 0
        assert value(samples, "redpromise_queue_oldest_pending_age_seconds", group="worker") == 0


def ids_in_partition(n: int, partitions: int = 16, k: int = 0) -> list[str]:
    """``n`` promise ids that all land in partition ``k`` (one stream)."""
    out: list[str] = []
    i = 0
    while len(out) < n:
        id = f"q-{i}"
        if zlib.crc32(id.encode()) % partitions == k:
            out.append(id)
        i += 1
    return out


async def test_queue_depth_in_flight_and_age_are_read_exactly_from_redis(
    stack: Stack, real_url: str
) -> None:
    gw = stack.gateway()
    gateway_metrics = f"{gw.base}/metrics"
    rp = Redpromise(real_url, settings=fast_settings(stack.namespace))
    try:
        # No worker: every dispatch waits, all in one stream, and no group exists yet.
        ids = ids_in_partition(12)
        for id in ids:
            await rp.begin_rpc(id, "slow", id, 30.0)

        async def gauges(depth: int, in_flight: int) -> Samples | None:
            s = await scraped(gateway_metrics)
            got = (
                value(s, "redpromise_queue_depth", group="worker"),
                value(s, "redpromise_queue_in_flight", group="worker"),
            )
            return s if got == (depth, in_flight) else None

        s = await assert_eventually(lambda: gauges(12, 0))
        age = value(s, "redpromise_queue_oldest_pending_age_seconds", group="worker")
        assert age is not None and 0 <= age < 60

        # A worker with two slots takes the first two: 10 wait, 2 in flight (Redis >= 7
        # answers from XINFO GROUPS' lag here).
        stack.worker(WorkerProcess(real_url, stack.namespace, stack.log_dir, concurrency=2))
        await assert_eventually(lambda: gauges(10, 2), timeout=20)

        # Canceling a waiting dispatch deletes its entry past the group's last delivered
        # one: Redis can no longer compute lag, and the XLEN - pending fallback answers.
        redis = Redis.from_url(real_url)
        try:
            delivered = [
                int(await redis.hget(rp.keys.promise(id), "deliveries") or 0) for id in ids
            ]
            assert delivered == [1, 1] + [0] * 10
            await rp.cancel(ids[5])
            if int((await redis.info("server"))["redis_version"].split(".")[0]) >= 7:
                (info,) = await redis.xinfo_groups(rp.keys.stream(0, "worker"))
                assert info["lag"] is None
        finally:
            await redis.aclose()
        await assert_eventually(lambda: gauges(9, 2))
    finally:
        await rp.stop()


async def test_worker_counts_retries_and_redeliveries_and_fence_refusals(
    stack: Stack, real_url: str, tmp_path: Path
) -> None:
    ns = stack.namespace
    port_a = stack.worker(WorkerProcess(real_url, ns, stack.log_dir, lease=1.0))
    a = stack.procs[-1]
    assert isinstance(a, WorkerProcess)
    rp = Redpromise(real_url, settings=fast_settings(ns))
    try:
        # fails: 3 attempts (2 retries, Exponential max_retries=2), then rejected.
        failing = await rp.begin_rpc("f-1", "fails", "f-1")
        with pytest.raises(Exception, match="attempt 2 failed"):
            await failing.result(timeout=20)
        labels = {"group": "worker", "function": "fails"}
        s = await scraped_after(
            f"http://127.0.0.1:{port_a}/metrics",
            "redpromise_promises_completed_total", 1, **labels, state="rejected",
        )
        assert value(s, "redpromise_retries_total", **labels) == 2
        assert value(s, "redpromise_execution_seconds_count", **labels) == 3
        assert value(s, "redpromise_promises_completed_total", **labels, state="rejected") == 1

        # A frozen past its lease: B reclaims (a redelivery), A's next write is fenced out.
        gate = str(tmp_path / "gate")
        held = await rp.begin_rpc("g-1", "gated", "g-1", gate)
        fx = Redis.from_url(real_url)
        try:
            await assert_eventually(lambda: _at_least(fx, f"fx:{ns}:g-1:started", 1))
            a.freeze()
            port_b = stack.worker(WorkerProcess(real_url, ns, stack.log_dir, lease=1.0))
            await assert_eventually(lambda: _at_least(fx, f"fx:{ns}:g-1:started", 2), timeout=20)
        finally:
            await fx.aclose()
        Path(f"{gate}.2").touch()  # B holds version 2: it completes
        assert (await held.result(timeout=20))["version"] == 2
        a.thaw()  # A (version 1) still waits for its gate: its next heartbeat is refused
        gated = {"group": "worker", "function": "gated"}
        sb = await scraped_after(
            f"http://127.0.0.1:{port_b}/metrics",
            "redpromise_promises_completed_total", 1, **gated, state="resolved",
        )
        assert value(sb, "redpromise_redeliveries_total", **gated) == 1
        assert value(sb, "redpromise_promises_completed_total", **gated, state="resolved") == 1

        async def refused() -> float:
            sa = await scraped(f"http://127.0.0.1:{port_a}/metrics")
            return total(sa, "redpromise_fence_refusals_total", group="worker")

        assert await assert_eventually(refused, timeout=20) == 1
        sa = await scraped(f"http://127.0.0.1:{port_a}/metrics")
        refusals = {
            (dict(ls)["operation"], dict(ls)["code"])
            for (n, ls), v in sa.items()
            if n == "redpromise_fence_refusals_total" and v
        }
        assert refusals in ({("heartbeat", "stale_version")}, {("heartbeat", "not_pending")})
        assert total(sa, "redpromise_promises_completed_total", **gated) == 0
        assert total(sa, "redpromise_redeliveries_total") == 0
    finally:
        await rp.stop()


async def _at_least(fx: Redis, key: str, n: int) -> bool:
    return int(await fx.get(key) or 0) >= n


async def test_worker_counts_redis_failures_by_loop_and_cause(
    own_redis_server: RedisServer, tmp_path: Path
) -> None:
    port = free_port()
    ns = f"m{uuid.uuid4().hex[:8]}"
    wp = WorkerProcess(
        own_redis_server.url,
        ns,
        tmp_path,
        env={"REDPROMISE_METRICS_PORT": str(port), "REDPROMISE_HEALTH_PORT": str(port)},
    ).start()
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        s = await assert_eventually(lambda: scraped(url))
        assert total(s, "redpromise_redis_failures_total") == 0
        own_redis_server.kill()

        async def failed() -> Samples | None:
            s = await scraped(url)
            read = value(s, "redpromise_redis_failures_total", loop="read", cause="ConnectionError")
            return s if read and read >= 1 else None

        await assert_eventually(failed, timeout=20)
        # Redis down: once the cached reading (1 s) is old, the queue gauges are left out
        # rather than shown stale.
        await assert_eventually(
            lambda: _lacks(url, "redpromise_queue_depth", group="worker"), timeout=20
        )
        own_redis_server.start()
        await assert_eventually(
            lambda: _has(url, "redpromise_queue_depth", group="worker"), timeout=20
        )
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
            assert resp.status == 200  # one server answers both
    finally:
        wp.close()


async def _has(url: str, name: str, **labels: str) -> bool:
    return value(await scraped(url), name, **labels) is not None


async def _lacks(url: str, name: str, **labels: str) -> bool:
    return value(await scraped(url), name, **labels) is None


def test_worker_refuses_a_metrics_port_without_prometheus_client(real_url: str) -> None:
    code = (
        "import sys; sys.modules['prometheus_client'] = None\n"
        "from redpromise.cli.runner import main\n"
        "sys.exit(main(['worker', 'tests.workers:make', '--metrics-port', '1']))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "REDPROMISE_URL": real_url,
           "TEST_FX_URL": real_url}  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, timeout=60
    )
    assert proc.returncode == 2, proc.stderr
    assert b"pip install redpromise[metrics]" in proc.stderr


@pytest.mark.real
async def test_a_stopped_client_opens_no_connection_for_the_metrics(
    real_url: str, namespace: str
) -> None:
    # The process's metrics keep watching a group whose client stopped (its worker ended):
    # a scrape must not reopen a connection on that client (nobody would close it again).
    rp = Redpromise(real_url, settings=Settings(namespace=namespace))
    await rp.start()
    assert await rp.queue_state("worker") == (0, 0, 0.0)
    await rp.stop()
    with pytest.raises(StoreUnavailable):
        await rp.queue_state("worker")
