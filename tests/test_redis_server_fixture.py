"""The real-redis test infrastructure itself works (start/stop/kill/restart, AOF durability)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.helpers import assert_eventually
from tests.redis_server import RedisServer, free_port, redis_server_binary

pytestmark = pytest.mark.real


def _alive(server: RedisServer) -> bool:
    # a function call, so mypy does not narrow the property across stop()/restart()
    return server.running


@pytest.fixture
def client(own_redis_server: RedisServer) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(own_redis_server.url, socket_timeout=5)
    try:
        yield c
    finally:
        c.close()


def test_binary_and_port_helpers() -> None:
    assert os.access(redis_server_binary(), os.X_OK)
    assert free_port() != 6379


def test_session_server_answers(redis_server: RedisServer) -> None:
    assert redis_server.running
    assert redis_server.port != 6379
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"
    c = redis.Redis.from_url(redis_server.url)
    try:
        assert c.ping()
        c.set("fixture:session", b"1")
        assert c.get("fixture:session") == b"1"
    finally:
        c.close()


def test_stop_restart_keeps_data(own_redis_server: RedisServer, client: redis.Redis) -> None:
    client.set("k", b"v")
    port, pid = own_redis_server.port, own_redis_server.pid
    own_redis_server.stop()
    assert not _alive(own_redis_server)
    assert own_redis_server.pid is None
    own_redis_server.restart()
    assert _alive(own_redis_server)
    assert own_redis_server.port == port
    assert own_redis_server.pid != pid
    assert client.get("k") == b"v"  # redis-py reconnects transparently


def test_kill_restart_keeps_fsynced_data(
    own_redis_server: RedisServer, client: redis.Redis
) -> None:
    client.set("before-kill", b"durable")
    own_redis_server.kill()
    assert not _alive(own_redis_server)
    with pytest.raises(redis.ConnectionError):
        client.ping()
    own_redis_server.restart()
    assert _alive(own_redis_server)
    assert client.get("before-kill") == b"durable"


def test_start_failure_reports_log(tmp_path: Path, own_redis_server: RedisServer) -> None:
    clash = RedisServer(tmp_path / "clash", port=own_redis_server.port)
    with pytest.raises(RuntimeError, match="already served"):
        clash.start()
    with pytest.raises(ValueError):
        RedisServer(tmp_path / "x", port=6379)


async def test_assert_eventually() -> None:
    calls = 0

    def sync_pred() -> int:
        nonlocal calls
        calls += 1
        return calls >= 3

    assert await assert_eventually(sync_pred, timeout=2, interval=0.01)

    async def async_pred() -> str:
        return "ok"

    assert await assert_eventually(async_pred) == "ok"

    def boom() -> bool:
        raise KeyError("nope")

    with pytest.raises(AssertionError, match="KeyError"):
        await assert_eventually(boom, timeout=0.1, interval=0.02)
    with pytest.raises(AssertionError, match="last value: 0"):
        await assert_eventually(lambda: 0, timeout=0.1, interval=0.02)
