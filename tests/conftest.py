"""Generic test infrastructure. Library-specific fixtures go below the marked section."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import fakeredis
import pytest
from redis.asyncio import Redis

from redpromise import Redpromise, Settings
from redpromise.testing import FaultyRedis
from tests.procs import WorkerProcess
from tests.redis_cluster import RedisCluster
from tests.redis_server import RedisServer


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", default=False, help="run tests marked slow")
    _add_conformance_options(parser)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # A test marked on_cluster runs twice: on the session redis-server and on the session
    # Redis Cluster (that variant carries the `cluster` marker: -m cluster / -m "not cluster").
    if metafunc.definition.get_closest_marker("on_cluster") and "topology" in metafunc.fixturenames:
        metafunc.parametrize(
            "topology",
            ["single", pytest.param("cluster", marks=pytest.mark.cluster)],
            indirect=True,
        )


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


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """One real 3-master + 3-replica Redis Cluster for the session (never kill its nodes).

    Its 2 s node timeout keeps a node starved by a busy machine from being failed over."""
    cluster = RedisCluster(tmp_path_factory.mktemp("redis-cluster-session"), node_timeout_ms=2000)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def own_redis_cluster(tmp_path: Path) -> Iterator[RedisCluster]:
    """A private Redis Cluster for tests that kill or restart its nodes (1 s node timeout:
    a killed master's replica takes over in about 2-3 s)."""
    cluster = RedisCluster(tmp_path / "redis-cluster", node_timeout_ms=1000)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


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


@pytest.fixture(scope="session")
def real_url(request: pytest.FixtureRequest) -> str:
    """URL of a real Redis: REDPROMISE_TEST_URL, else the session redis-server."""
    url = os.environ.get("REDPROMISE_TEST_URL")
    if url:
        return url
    server: RedisServer = request.getfixturevalue("redis_server")
    return server.url


@pytest.fixture
def topology(request: pytest.FixtureRequest) -> str:
    """``single`` (one redis-server), or ``cluster`` for the cluster run of an
    ``on_cluster`` test."""
    return str(getattr(request, "param", "single"))


@pytest.fixture
def redis_url(topology: str, request: pytest.FixtureRequest) -> str:
    """The real Redis of the process tests: :func:`real_url`, or the session Redis
    Cluster's URL (one node's, as a user would configure it) in the cluster run."""
    if topology == "cluster":
        cluster: RedisCluster = request.getfixturevalue("redis_cluster")
        return cluster.url
    return str(request.getfixturevalue("real_url"))


class Backend:
    """Makes clients of one Redis: a fakeredis server, or a real redis-server's URL.

    Each Redpromise gets its own client, as separate processes would.
    """

    def __init__(self, kind: str, url: str | None = None) -> None:
        self.kind = kind
        self.url = url
        self.server = fakeredis.FakeServer() if kind == "fake" else None
        self.clients: list[Redis] = []

    def client(self, **kwargs: Any) -> Redis:
        c: Redis
        if self.server is not None:
            c = fakeredis.FakeAsyncRedis(server=self.server, **kwargs)
        else:
            assert self.url is not None
            c = Redis.from_url(self.url, **kwargs)
        self.clients.append(c)
        return c

    async def close(self) -> None:
        for c in self.clients:
            await c.aclose()


@pytest.fixture(params=["fake", pytest.param("real", marks=pytest.mark.real)])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    """The same test on fakeredis[lua] and on a real redis-server."""
    url = request.getfixturevalue("real_url") if request.param == "real" else None
    b = Backend(request.param, url)
    try:
        yield b
    finally:
        await b.close()


@pytest.fixture
def redis(backend: Backend) -> Redis:
    """A client of the test's backend (fakeredis or real)."""
    return backend.client()


@pytest.fixture
async def make_rp(
    backend: Backend, namespace: str
) -> AsyncIterator[Callable[..., Awaitable[Redpromise]]]:
    """Build Redpromise instances (one client each) on the test's backend and namespace."""
    made: list[Redpromise] = []

    async def make(
        group: str = "worker", start: bool = False, redis: Redis | None = None, **overrides: Any
    ) -> Redpromise:
        settings = fast_settings(namespace, **overrides)
        rp = Redpromise(group=group, settings=settings, redis=redis or backend.client())
        made.append(rp)
        if start:
            await rp.start()
        return rp

    yield make
    errors: list[BaseException] = []
    for rp in reversed(made):
        try:
            await rp.stop(grace=1)
        except BaseException as exc:  # stop the others first, then report
            errors.append(exc)
    if errors:
        raise errors[0]


@pytest.fixture
def workers(
    redis_url: str, namespace: str, tmp_path: Path
) -> Iterator[Callable[..., WorkerProcess]]:
    """Start real worker processes (tests.workers) on the real Redis (:func:`redis_url`);
    killed at the end."""
    started: list[WorkerProcess] = []

    def start(url: str | None = None, **kwargs: Any) -> WorkerProcess:
        wp = WorkerProcess(url or redis_url, namespace, tmp_path, **kwargs).start()
        started.append(wp)
        return wp

    yield start
    for wp in started:
        wp.close()


@pytest.fixture
def faulty(redis: Redis) -> FaultyRedis:
    """The test's Redis client, wrapped to drop or fail chosen replies (redpromise.testing)."""
    return FaultyRedis(redis)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client for tests that talk to a real gateway."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


def _add_conformance_options(parser: pytest.Parser) -> None:
    """Options of tests/test_protocol_conformance.py (called from pytest_addoption)."""
    parser.addoption(
        "--conformance-sequences",
        action="store",
        default=None,
        help="random request sequences the Resonate conformance test runs (default 200)",
    )
