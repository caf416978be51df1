"""A worker process never ends up alive but idle: it rides out Redis, shows its liveness
over HTTP, and exits non-zero when one of its loops truly dies."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from redpromise import Redpromise
from tests.conftest import fast_settings
from tests.helpers import assert_eventually
from tests.procs import WorkerProcess
from tests.redis_server import RedisServer, free_port

pytestmark = pytest.mark.real


def get(port: int, path: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def test_worker_whose_loop_dies_exits_nonzero_with_the_reason(
    workers: Callable[..., WorkerProcess],
) -> None:
    wp = workers(target="tests.workers:make_with_promote_bug")
    assert wp.proc is not None
    code = await assert_eventually(lambda: wp.proc.poll(), timeout=20)  # type: ignore[union-attr]
    assert code != 0
    out = wp.output()
    assert "promote loop ended: TypeError: simulated bug in promote" in out
    assert "worker stopped" in out


async def test_health_port_shows_live_through_a_redis_outage_and_ready_after_it(
    own_redis_server: RedisServer, namespace: str, tmp_path: Path
) -> None:
    port = free_port()
    wp = WorkerProcess(
        own_redis_server.url, namespace, tmp_path, env={"REDPROMISE_HEALTH_PORT": str(port)}
    ).start()
    try:
        status, body = await assert_eventually(lambda: get(port, "/healthz"))
        assert status == 200 and body["live"] and body["ready"]
        assert set(body["loops"]) == {"read", "heartbeat", "reclaim", "promote", "schedules"}

        own_redis_server.kill()
        # Waiting out Redis is not a reason to restart the process: live, not ready.
        await assert_eventually(lambda: get(port, "/readyz")[0] == 503, timeout=15)
        status, body = get(port, "/healthz")
        assert status == 200 and body["live"] and not body["ready"]
        assert body["loops"]["read"]["cause"] == "ConnectionError"

        own_redis_server.start()
        await assert_eventually(lambda: get(port, "/readyz")[0] == 200, timeout=15)
        rp = Redpromise(own_redis_server.url, settings=fast_settings(namespace))
        try:
            h = await rp.begin_rpc("after-outage", "echo", 7)
            assert await h.result(timeout=15) == 7
        finally:
            await rp.stop()
        assert wp.proc is not None and wp.proc.poll() is None
        out = wp.output()
        assert "read loop: Redis ConnectionError" in out
        assert "read loop recovered after" in out
    finally:
        wp.close()


async def test_health_port_answers_404_for_other_paths(
    workers: Callable[..., WorkerProcess],
) -> None:
    port = free_port()
    workers(env={"REDPROMISE_HEALTH_PORT": str(port)})
    # The port opens just after the worker reports it serves its group.
    status, body = await assert_eventually(lambda: get(port, "/nothing-here"))
    assert status == 404 and "healthz" in body["error"]
