"""Generic test infrastructure. Library-specific fixtures go below the marked section."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from redis.asyncio import Redis

from redpromise import Redpromise, Settings
from tests.procs import WorkerProcess
from tests.redis_server import RedisServer


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip_slow = pytest.mark.skip(reason="slow test: pass --run-slow to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for the whole session (do not kill/restart it)."""
    server = RedisServer(tmp_path_factory.mktemp("redis-session"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server for tests that kill/restart Redis."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.kill()  # fast; data in tmp_path is discarded anyway


# ---------------------------------------------------------------- library fixtures


def fast_settings(namespace: str, **overrides: Any) -> Settings:
    """Shrunk timings for tests: 1 s lease, fast polls."""
    values: dict[str, Any] = {
        "namespace": namespace,
        "lease": timedelta(seconds=1),
        "poll_interval": timedelta(milliseconds=50),
        "block": timedelta(milliseconds=100),
        "safety_poll": timedelta(seconds=1),
        "shutdown_grace": timedelta(seconds=5),
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def namespace() -> str:
    """A fresh namespace per test instead of FLUSHALL."""
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def real_url(request: pytest.FixtureRequest) -> str:
    """URL of a real Redis: REDPROMISE_TEST_URL, else the session redis-server."""
    url = os.environ.get("REDPROMISE_TEST_URL")
    if url:
        return url
    server: RedisServer = request.getfixturevalue("redis_server")
    return server.url


@pytest.fixture(params=["fake", pytest.param("real", marks=pytest.mark.real)])
async def redis(request: pytest.FixtureRequest) -> AsyncIterator[Redis]:
    """The same test on fakeredis[lua] and on a real redis-server."""
    client: Redis
    if request.param == "fake":
        client = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    else:
        client = Redis.from_url(request.getfixturevalue("real_url"))
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def make_rp(
    redis: Redis, namespace: str
) -> AsyncIterator[Callable[..., Awaitable[Redpromise]]]:
    """Build Redpromise instances on the test's backend and namespace; stopped at the end."""
    made: list[Redpromise] = []

    async def make(group: str = "worker", start: bool = False, **overrides: Any) -> Redpromise:
        rp = Redpromise(group=group, settings=fast_settings(namespace, **overrides), redis=redis)
        made.append(rp)
        if start:
            await rp.start()
        return rp

    yield make
    for rp in reversed(made):
        await rp.stop(grace=1)


@pytest.fixture
def workers(
    real_url: str, namespace: str, tmp_path: Path
) -> Iterator[Callable[..., WorkerProcess]]:
    """Start real worker processes (tests.workers) on the real Redis; killed at the end."""
    started: list[WorkerProcess] = []

    def start(url: str | None = None, **kwargs: Any) -> WorkerProcess:
        wp = WorkerProcess(url or real_url, namespace, tmp_path, **kwargs).start()
        started.append(wp)
        return wp

    yield start
    for wp in started:
        wp.close()
