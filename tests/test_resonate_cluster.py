"""The Resonate face on a Redis Cluster: the seed's TypeScript gateway and worker run on
`redpromise serve` pointed at one node of the session's 3-master cluster. A root promise,
its step children and its task share one slot (the family rule), so every request is one
script on one master; the group's streams are read partition by partition."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from redpromise import Redpromise
from redpromise.core.options import Settings
from tests.helpers import assert_eventually
from tests.redis_cluster import RedisCluster
from tests.resonate.programs import Programs, resonate_programs

__all__ = ["resonate_programs"]  # fixture

pytestmark = [pytest.mark.real, pytest.mark.cluster, pytest.mark.resonate]


async def _settled(http: aiohttp.ClientSession, gateway: str, id: str) -> dict[str, Any] | None:
    async with http.get(f"{gateway}/wait", params={"id": id}) as resp:
        body: dict[str, Any] = await resp.json()
    return None if body.get("status") == "pending" else body


async def test_the_seed_runs_on_serve_over_a_redis_cluster(
    redis_cluster: RedisCluster,
    resonate_programs: Programs,
    namespace: str,
    tmp_path: Path,
) -> None:
    serve = resonate_programs.start_serve(redis_cluster.url, namespace)
    ledger = tmp_path / "steps.jsonl"
    resonate_programs.start_ts_worker(serve.url, env={"STEP_LEDGER": str(ledger)})
    gateway = resonate_programs.start_ts_gateway(serve.url).url
    ids = [f"cl-{i}" for i in range(12)]  # spread over the masters' slots
    async with aiohttp.ClientSession() as http:
        for id in ids:
            params = {"id": id, "data": json.dumps({"input": id, "steps": 2})}
            async with http.post(f"{gateway}/begin", params=params) as resp:
                assert resp.status == 200, await resp.text()
        for id in ids:
            outcome = await assert_eventually(lambda id=id: _settled(http, gateway, id), timeout=40)
            assert outcome["status"] == "resolved", outcome
            assert outcome["result"]["result"] == f'Processed: "{id}"'
    # The same records through redpromise's own client, on the cluster.
    rp = Redpromise(redis_cluster.url, settings=Settings(namespace=namespace))
    try:
        handle = await rp.get(ids[0])
        assert (await handle.result())["result"] == f'Processed: "{ids[0]}"'
    finally:
        await rp.stop()
