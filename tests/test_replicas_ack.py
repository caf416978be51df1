"""``REDPROMISE_REPLICAS_ACK=1`` with the shard's only replica gone: writes are refused
(503, NOREPLICAS) until it returns, and the refusal is visible, naming the shard (and
since when, in the process that saw it), in the dashboard's API, ``/metrics`` and
``redpromise stats``.

A real master and a real replica (two redis-server processes), the real gateway process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis

from tests.helpers import assert_eventually
from tests.procs import ROOT
from tests.redis_server import RedisServer
from tests.services import GatewayProcess

pytestmark = pytest.mark.real

GAUGE = "redpromise_shard_without_replicas_since_seconds"


def stats(url: str, namespace: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REDPROMISE_")} | {
        "PYTHONPATH": str(ROOT),
        "REDPROMISE_URL": url,
        "REDPROMISE_NAMESPACE": namespace,
        "REDPROMISE_REPLICAS_ACK": "1",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "redpromise", "stats", "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    out: dict[str, Any] = json.loads(proc.stdout)
    return out


async def test_a_shard_without_its_replica_refuses_writes_visibly_until_it_returns(
    tmp_path: Path,
) -> None:
    namespace = f"ra{uuid.uuid4().hex[:10]}"
    master = RedisServer(tmp_path / "master", appendonly=False)
    master.start()
    replica = RedisServer(
        tmp_path / "replica",
        appendonly=False,
        extra_args=["--replicaof", "127.0.0.1", str(master.port)],
    )
    replica.start()
    admin = redis.Redis(port=master.port)
    gateway = GatewayProcess(
        master.url,
        namespace,
        tmp_path,
        env={"REDPROMISE_REPLICAS_ACK": "1", "REDPROMISE_REPLICAS_ACK_TIMEOUT": "0.2"},
    )
    shard = f"127.0.0.1:{master.port}"

    def replicas() -> int:
        return int(admin.info("replication")["connected_slaves"])

    def synced() -> bool:  # connected and done with its first sync: it acknowledges writes
        return admin.info("replication").get("slave0", {}).get("state") == "online"

    try:
        await assert_eventually(synced)
        gateway.start()
        async with aiohttp.ClientSession(gateway.base) as http:

            async def begin(id: str) -> tuple[int, Any]:
                async with http.post(f"/begin?id={id}", json={}) as resp:
                    return resp.status, await resp.json()

            async def overview() -> Any:
                async with http.get("/ui/api/overview") as resp:
                    assert resp.status == 200
                    return (await resp.json())["replicas_short"]

            async def metrics() -> str:
                async with http.get("/metrics") as resp:
                    assert resp.status == 200
                    return await resp.text()

            assert (await begin("before"))[0] == 200
            assert await overview() == [] and GAUGE + "{" not in await metrics()
            assert stats(master.url, namespace)["replicas_short"] == []

            replica.kill()
            await assert_eventually(lambda: replicas() == 0)
            status, body = await begin("without")
            assert status == 503 and "NOREPLICAS" in body["error"], body
            # The overview is computed at most once per interval for all viewers.
            [short] = await assert_eventually(overview)
            assert short["shard"] == shard and (short["replicas"], short["needed"]) == (0, 1)
            assert isinstance(short["since"], int) and short["since"] > 0
            [line] = [x for x in (await metrics()).splitlines() if x.startswith(GAUGE + "{")]
            assert line.startswith(f'{GAUGE}{{shard="{shard}"}} ')
            assert float(line.split()[-1]) == short["since"] / 1000
            assert stats(master.url, namespace)["replicas_short"] == [
                {"shard": shard, "replicas": 0, "needed": 1, "since": None}
            ]  # the CLI made no write: which shard, not since when (docs/operations.md)

            replica.start()

            async def accepted() -> bool:
                return (await begin("after"))[0] == 200

            await assert_eventually(accepted, timeout=30)

            async def cleared() -> bool:
                return await overview() == []

            await assert_eventually(cleared)
            assert GAUGE + "{" not in await metrics()
            assert stats(master.url, namespace)["replicas_short"] == []
    finally:
        gateway.close()
        admin.close()
        replica.stop()
        master.stop()
