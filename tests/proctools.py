"""Shared pieces of the real-process tests (test_processes.py, test_shutdown.py).

Worker processes (tests/workers.py) count each call with ``INCR fx:<namespace>:<name>``
in the same Redis; these helpers read those counters and inspect redpromise's keys.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from redis.asyncio import Redis

from redpromise import Redpromise
from redpromise.core.keys import Keys
from tests.conftest import fast_settings
from tests.procs import WorkerProcess
from tests.redis_cluster import async_client

__all__ = [
    "GROUP",
    "LEASE",
    "MakeClient",
    "StartWorker",
    "client",
    "fx",
    "fx_equals",
    "holder",
    "keys_of",
    "owner_pid",
    "queues_empty",
    "raw",
]

LEASE = 1.0
GROUP = "worker"

StartWorker = Callable[..., WorkerProcess]
MakeClient = Callable[..., Redpromise]


@pytest.fixture
async def client(redis_url: str, namespace: str) -> AsyncIterator[MakeClient]:
    """Gateway-style clients (no functions registered) on the test's namespace."""
    made: list[Redpromise] = []

    def make(url: str | None = None) -> Redpromise:
        rp = Redpromise(url or redis_url, group="gateway", settings=fast_settings(namespace))
        made.append(rp)
        return rp

    yield make
    for rp in reversed(made):
        await rp.stop()


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[Redis]:
    """A client for inspecting keys and side-effect counters (a cluster client on a
    cluster)."""
    r = async_client(redis_url)
    yield r
    await r.aclose()


async def fx(r: Redis, namespace: str, name: str) -> int:
    """How many times a worker function bumped ``name`` (tests/workers.py ``bump``)."""
    return int(await r.get(f"fx:{namespace}:{name}") or 0)


async def fx_equals(r: Redis, namespace: str, name: str, expected: int) -> bool:
    return await fx(r, namespace, name) == expected


def owner_pid(owner: bytes | str | None) -> int | None:
    """The pid in a consumer name ``host:pid:nonce`` (the promise hash's ``owner``)."""
    if not owner:
        return None
    text = owner.decode() if isinstance(owner, bytes) else owner
    return int(text.rsplit(":", 2)[1])


async def holder(r: Redis, keys: Keys, id: str, procs: list[WorkerProcess]) -> WorkerProcess:
    """The worker process that owns promise ``id`` now."""
    pid = owner_pid(await r.hget(keys.promise(id), "owner"))
    matches = [p for p in procs if p.pid == pid]
    assert len(matches) == 1, f"owner pid {pid} is none of {[p.pid for p in procs]}"
    return matches[0]


async def queues_empty(r: Redis, keys: Keys, group: str = GROUP) -> dict[str, int]:
    """Per-partition leftovers: stream entries, pending entries, delayed and timeout members."""
    pipe = r.pipeline(transaction=False)
    for k in range(keys.partitions):
        pipe.xlen(keys.stream(k, group))
        pipe.xpending(keys.stream(k, group), group)
        pipe.zcard(keys.delayed(k))
        pipe.zcard(keys.timeouts(k))
    res = await pipe.execute(raise_on_error=False)
    left: dict[str, int] = {}
    for k in range(keys.partitions):
        xlen, xpending, delayed, timeouts = res[4 * k : 4 * k + 4]
        if isinstance(xpending, Exception):  # no group yet: no worker ever read it
            assert "NOGROUP" in str(xpending), xpending
            xpending = {"pending": 0}
        for what, n in (
            ("xlen", xlen),
            ("xpending", xpending["pending"]),
            ("delayed", delayed),
            ("timeouts", timeouts),
        ):
            if n:
                left[f"{what}[{k}]"] = n
    return left


def keys_of(namespace: str) -> Keys:
    return Keys(namespace, fast_settings(namespace).partitions)
