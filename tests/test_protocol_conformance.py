"""The Resonate face answers as the reference server does: seeded random request
sequences go to ProtocolStore (a real Redis) and to the TypeScript SDK's in-memory server
(the oracle); every reply and, after each sequence, debug.snap must agree.

More sequences: ``--conformance-sequences N`` or RESONATE_CONFORMANCE_SEQUENCES=N
(``RESONATE_CONFORMANCE_REQUESTS`` sets the length, ``RESONATE_CONFORMANCE_SEED`` the
first seed). Differences kept on purpose are listed in docs/resonate.md.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis

from redpromise.core.keys import Keys
from redpromise.core.options import Settings
from redpromise.store.protocol import ProtocolStore
from redpromise.store.protocol_schedules import ProtocolSchedules
from redpromise.store.store import Store
from tests.resonate_oracle import Generator, Oracle, normalized

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def oracle() -> Iterator[Oracle]:
    o = Oracle()
    try:
        yield o
    finally:
        o.close()


@pytest.fixture
async def protocol(real_url: str, namespace: str) -> AsyncIterator[ProtocolStore]:
    redis = Redis.from_url(real_url)
    store = Store(redis, Keys(namespace), Settings(namespace=namespace))
    ps = ProtocolStore(store, schedules=ProtocolSchedules(store))
    try:
        yield ps
    finally:
        await ps.reset()
        await redis.aclose()


def _sequences(config: pytest.Config) -> int:
    option = config.getoption("--conformance-sequences", default=None)
    return int(option or os.environ.get("RESONATE_CONFORMANCE_SEQUENCES", "200"))


async def run_sequence(ps: ProtocolStore, oracle: Oracle, seed: int, length: int) -> None:
    """One seeded sequence on both servers; fails at the first differing reply."""
    oracle.new()
    await ps.reset()
    gen = Generator(seed)
    log: list[str] = []
    for i in range(length):
        now, req = gen.step()
        want = oracle.apply(now, req)
        assert "error" not in want, f"seed {seed} step {i}: the oracle threw {want['error']}"
        status, data = await ps.apply(req["kind"], req["data"], now)
        got = json.loads(json.dumps(data))
        log.append(f"{i} now={now} {json.dumps(req['data'])[:300]} {req['kind']} -> {status}")
        gen.observe(got)
        assert (status, normalized(got)) == (want["status"], normalized(want["data"])), (
            f"seed {seed} step {i} {req['kind']}\n" + "\n".join(log[-12:])
        )
    want = oracle.apply(gen.now, {"kind": "debug.snap", "head": {}, "data": {}})
    snap = json.loads(json.dumps(await ps.snap()))
    want["data"]["messages"] = []
    assert normalized(snap) == normalized(want["data"]), f"seed {seed}: snapshots differ\n" + (
        "\n".join(log[-12:])
    )


async def test_random_sequences_answer_as_the_reference_server(
    protocol: ProtocolStore, oracle: Oracle, request: pytest.FixtureRequest
) -> None:
    n = _sequences(request.config)
    length = int(os.environ.get("RESONATE_CONFORMANCE_REQUESTS", "30"))
    first = int(os.environ.get("RESONATE_CONFORMANCE_SEED", "0"))
    for seed in range(first, first + n):
        await run_sequence(protocol, oracle, seed, length)
