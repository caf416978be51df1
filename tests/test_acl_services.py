"""The suggested ACL lines are enough for the whole seed flow and the operator's reads.

A Redis ACL user made with exactly the lines redpromise suggests (redpromise/redis/acl.py, the
README's "Running as an ACL user") runs, on a private redis-server and on the session
Redis Cluster: the real gateway (services/gateway.py) and a real worker process, a
begin and its result through ``/wait``, every read of the dashboard's API, ``/metrics``
with its queue gauges, and the CLI's ``stats``. No request answers 5xx and no process
logs a refusal or an error.
"""

from __future__ import annotations

import shlex
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis
import redis.cluster

from redpromise.core.keys import Keys
from redpromise.redis.acl import OPERATOR_RULES, setuser_line
from tests.redis_server import RedisServer
from tests.services import GatewayProcess, service_worker
from tests.test_cli import run_cli

pytestmark = pytest.mark.real


@pytest.fixture(params=["single", pytest.param("cluster", marks=pytest.mark.cluster)])
def nodes(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, list[int]]]:
    """``(topology, ports of every node)``: a private redis-server, or the session cluster
    (ACLs are per node, so the lines are run on each)."""
    if request.param == "cluster":
        cluster = request.getfixturevalue("redis_cluster")
        yield "cluster", [n.port for n in cluster.nodes]
        return
    server = RedisServer(tmp_path / "redis", appendonly=False)
    server.start()
    try:
        yield "single", [server.port]
    finally:
        server.stop()


class Listener:
    """The completion channel of one promise's partition, subscribed as the admin (to see
    that the ACL user's scripts announced a completion, not only stored it: a refused
    PUBLISH or SPUBLISH is swallowed, and waiters then learn of it by polling)."""

    def __init__(self, port: int, namespace: str, id: str, cluster: bool) -> None:
        keys = Keys(namespace)
        self.channel = keys.channel(keys.partition(id))
        self.cluster = cluster
        if cluster:
            self.client: Any = redis.cluster.RedisCluster(host="127.0.0.1", port=port)
            self.pubsub = self.client.pubsub()
            self.pubsub.ssubscribe(self.channel)
        else:
            self.client = redis.Redis(port=port)
            self.pubsub = self.client.pubsub()
            self.pubsub.subscribe(self.channel)

    def heard(self, id: str, timeout: float = 20.0) -> bool:
        """Whether a message naming ``id`` arrives within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.cluster:
                m = self.pubsub.get_sharded_message(ignore_subscribe_messages=True, timeout=0.1)
            else:
                m = self.pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
            if m is not None and id.encode() in m["data"]:
                return True
        return False

    def close(self) -> None:
        self.pubsub.close()
        self.client.close()


def suggested_lines(user: str, namespace: str, cluster: bool) -> list[str]:
    """The lines a reader of the README runs for ``user``: the start line, and the
    operator's line for a process that serves the dashboard and /metrics."""
    keys = Keys(namespace)
    return [
        setuser_line(user, keys, cluster=cluster).replace(
            f"ACL SETUSER {user}", f"ACL SETUSER {user} on >pw resetchannels", 1
        ),
        setuser_line(user, keys, commands=OPERATOR_RULES, key_access=False, channel_access=False),
    ]


async def test_suggested_acl_lines_run_the_seed_flow_dashboard_metrics_and_stats(
    nodes: tuple[str, list[int]], namespace: str, tmp_path: Path
) -> None:
    topology, ports = nodes
    user = f"app-{uuid.uuid4().hex[:8]}"
    for port in ports:
        with redis.Redis(port=port) as admin:
            for line in suggested_lines(user, namespace, topology == "cluster"):
                admin.execute_command(*shlex.split(line))
    url = f"redis://{user}:pw@127.0.0.1:{ports[0]}/0"
    gateway = GatewayProcess(url, namespace, tmp_path)
    worker = service_worker(url, namespace, tmp_path)
    try:
        worker.start()
        gateway.start()
        listener = Listener(ports[0], namespace, "acl-1", topology == "cluster")
        async with aiohttp.ClientSession(gateway.base) as http:
            async with http.post("/begin?id=acl-1", json={"hello": "acl"}) as resp:
                assert resp.status == 200, await resp.text()
            async with http.get("/wait?id=acl-1&timeout=20") as resp:
                assert resp.status == 200, await resp.text()
                outcome = await resp.json()
            assert outcome["status"] == "resolved", outcome
            # Announced on its channel (the listener joined before the begin).
            assert listener.heard("acl-1"), listener.channel
            listener.close()
            assert outcome["result"]["result"] == 'Processed: {"hello":"acl"}'
            reads = [
                "/ui/api/session",
                "/ui/api/overview",
                "/ui/api/promises",
                "/ui/api/promises?state=resolved",
                "/ui/api/promise?id=acl-1",
                "/ui/api/dead",
            ]
            for path in reads:
                async with http.get(path) as resp:
                    assert resp.status == 200, (path, await resp.text())
            async with http.get("/metrics") as resp:
                assert resp.status == 200, await resp.text()
                metrics = await resp.text()
            # The queue gauges are left out when their reads are refused.
            assert 'redpromise_queue_depth{group="worker"' in metrics, metrics
        stats = run_cli(url, namespace, "stats", "--json")
        assert stats.returncode == 0, (stats.stdout, stats.stderr)
    finally:
        gateway.close()
        worker.close()
        for port in ports:
            with redis.Redis(port=port) as admin:
                admin.execute_command("ACL", "DELUSER", user)
    for out in (gateway.output(), worker.output()):
        lowered = out.lower()
        assert "noperm" not in lowered and "permission" not in lowered, out
        assert "Traceback" not in out and " ERROR " not in out and " WARNING " not in out, out
