"""A worker process on a Redis Cluster: while idle it waits in blocking reads, one per
partition, each on the master serving that partition's slot, instead of polling the
streams; a read whose connection is lost (a master killed) is a Redis failure it rides out.

Measured on this 2-core VM (a worker process with lease 15 s, other settings default,
10 s idle, INFO commandstats per master): 46-55 commands/s per master, of which 5-6
XREADGROUP (one per partition per ``block`` second) and 39-47 ZRANGEBYSCORE (the
promote loop: 2 per partition per ``poll_interval``); one node: 126 commands/s for the
same worker. A rate is timing and is only reported; what is asserted here is exact.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from pathlib import Path

import psutil
import pytest

from redpromise import Redpromise
from tests.conftest import fast_settings
from tests.helpers import assert_eventually
from tests.procs import WorkerProcess
from tests.proctools import keys_of
from tests.redis_cluster import RedisCluster

pytestmark = [pytest.mark.real, pytest.mark.cluster]


def blocked_reads_per_master(cluster: RedisCluster, pid: int) -> Counter[int]:
    """Per master port: clients of process ``pid`` blocked in an XREADGROUP now."""
    ports = {c.laddr.port for c in psutil.Process(pid).net_connections("tcp") if c.laddr}
    found: Counter[int] = Counter()
    for master in cluster.masters():
        with contextlib.closing(master.client(decode_responses=True)) as c:
            for client in c.client_list():
                port = int(client["addr"].rsplit(":", 1)[1])
                if port in ports and client["cmd"] == "xreadgroup" and "b" in client["flags"]:
                    found[master.port] += 1
    return found


def cut_blocked_reads(cluster: RedisCluster, pid: int) -> int:
    """Close, from the servers' side, every connection of process ``pid`` blocked in an
    XREADGROUP (what a master's crash does to them); how many were cut."""
    ports = {c.laddr.port for c in psutil.Process(pid).net_connections("tcp") if c.laddr}
    cut = 0
    for master in cluster.masters():
        with contextlib.closing(master.client(decode_responses=True)) as c:
            for client in c.client_list():
                port = int(client["addr"].rsplit(":", 1)[1])
                if port in ports and client["cmd"] == "xreadgroup" and "b" in client["flags"]:
                    cut += int(c.execute_command("CLIENT", "KILL", "ID", client["id"]))
    return cut


async def test_idle_worker_blocks_in_one_read_per_partition_on_its_master(
    redis_cluster: RedisCluster, namespace: str, tmp_path: Path
) -> None:
    keys = keys_of(namespace)
    expected = Counter(redis_cluster.master_of(keys.slot(k)).port for k in range(keys.partitions))
    assert len(expected) == 3  # every master serves partitions
    worker = WorkerProcess(redis_cluster.url, namespace, tmp_path).start()
    try:
        # Each read blocks for `block` (1 s) and is sent again at once: poll for an
        # instant when all of them are waiting.
        await assert_eventually(
            lambda: blocked_reads_per_master(redis_cluster, worker.pid) == expected,
            timeout=15,
            message=f"one blocked XREADGROUP per partition on its master: {dict(expected)}",
        )
    finally:
        worker.close()


async def test_worker_whose_blocked_reads_lose_their_connections_serves_on(
    redis_cluster: RedisCluster, namespace: str, tmp_path: Path
) -> None:
    """On a cluster a lost connection comes back in the read's reply slot: the read loop
    must treat it as the Redis failure it is (and read again), not as a reply."""
    worker = WorkerProcess(redis_cluster.url, namespace, tmp_path).start()
    rp = Redpromise(redis_cluster.url, group="gateway", settings=fast_settings(namespace))
    try:
        await assert_eventually(
            lambda: sum(blocked_reads_per_master(redis_cluster, worker.pid).values()) > 0
        )
        assert cut_blocked_reads(redis_cluster, worker.pid) > 0
        handle = await rp.begin_rpc("after-cut", "echo", "served")
        assert await handle.result(timeout=15) == "served"
        assert worker.proc is not None and worker.proc.poll() is None
        assert "read loop ended" not in worker.output()
    finally:
        await rp.stop()
        worker.close()
