"""Durable execution (issue 4) with real worker processes killed by real signals.

Workers run ``python -m redpromise worker tests.durable_workers:make`` on a real
redis-server with a 1 s lease. Every step call is counted with ``INCR
fx:<namespace>:<name>`` in the same Redis, outside the worker, so the counts survive the
SIGKILL and "called once" is an exact number. Functions wait at gates (keys the test sets),
so a test knows exactly where a worker is when it kills it. The in-process versions of
these scenarios are in test_durable.py.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from redpromise import PromiseCanceled, Redpromise
from redpromise.core.codec import decode
from redpromise.core.keys import Keys
from tests.conftest import fast_settings
from tests.helpers import assert_eventually
from tests.procs import ROOT, WorkerProcess
from tests.redis_cluster import async_client
from tests.redis_server import free_port

pytestmark = pytest.mark.real

LEASE = 1.0
RECLAIM_EVERY = LEASE / 3
TARGET = "tests.durable_workers:make"
STEPS = ("step1", "step2", "step3", "step4")

StartWorker = Callable[..., WorkerProcess]


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture
async def rp(redis_url: str, namespace: str) -> AsyncIterator[Redpromise]:
    """A gateway-style client (no functions registered) on the test's namespace."""
    client = Redpromise(redis_url, group="gateway", settings=fast_settings(namespace))
    yield client
    await client.stop()


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[Redis]:
    """A client for gates, side-effect counters and checkpoints (a cluster client on a
    cluster)."""
    r = async_client(redis_url)
    yield r
    await r.aclose()


@pytest.fixture
def keys(namespace: str) -> Keys:
    return Keys(namespace, fast_settings(namespace).partitions)


async def start_worker(workers: StartWorker, **kwargs: Any) -> WorkerProcess:
    """Start a durable-functions worker process (off the event loop: it waits for ready)."""
    return await asyncio.to_thread(workers, target=TARGET, lease=LEASE, **kwargs)


async def fx(r: Redis, namespace: str, name: str) -> int:
    """How many times a worker bumped ``name`` (tests/durable_workers.py ``bump``)."""
    return int(await r.get(f"fx:{namespace}:{name}") or 0)


async def counts(
    r: Redis, namespace: str, key: str, names: tuple[str, ...] = STEPS
) -> dict[str, int]:
    return {name: await fx(r, namespace, f"{key}:{name}") for name in names}


async def fx_is(r: Redis, namespace: str, name: str, expected: int) -> bool:
    return await fx(r, namespace, name) == expected


async def open_gate(r: Redis, namespace: str, name: str) -> None:
    await r.set(f"fx:{namespace}:{name}", 1)


async def checkpointed(r: Redis, keys: Keys, id: str) -> set[int]:
    """The step numbers recorded in promise ``id``'s steps hash."""
    return {int(f) for f in await r.hkeys(keys.steps(id))}


async def has_steps(r: Redis, keys: Keys, id: str, steps: set[int]) -> bool:
    return await checkpointed(r, keys, id) == steps


async def wait_until_checkpointed(
    r: Redis, keys: Keys, namespace: str, id: str, key: str, step: int
) -> None:
    """Step ``step`` of ``id`` was called exactly once and its checkpoint is in Redis."""

    async def ready() -> bool:
        return await fx(r, namespace, f"{key}:step{step}") == 1 and step in await checkpointed(
            r, keys, id
        )

    await assert_eventually(ready, message=f"step {step} of {id} checkpointed")


# ---------------------------------------------------------------- kill after a checkpoint


async def _kill_after_step_two(
    workers: StartWorker,
    rp: Redpromise,
    raw: Redis,
    keys: Keys,
    namespace: str,
    funcs: tuple[str, ...],
) -> dict[str, list[str]]:
    """Run each of ``funcs`` (as promise and key ``<func>``) until step 2 checkpointed and it
    waits at its gate; SIGKILL the worker; a new worker finishes them. Returns the results.
    """
    first = await start_worker(workers)
    handles = {f: await rp.begin_rpc(f, f, f, 2) for f in funcs}  # hold_after=2
    for f in funcs:
        await wait_until_checkpointed(raw, keys, namespace, f, f, 2)
    first.kill()
    for f in funcs:
        assert await handles[f].done() is False
        assert await checkpointed(raw, keys, f) == {1, 2}
        assert await counts(raw, namespace, f) == {"step1": 1, "step2": 1, "step3": 0, "step4": 0}
        await open_gate(raw, namespace, f"{f}:go")
    await start_worker(workers)
    return {f: await handles[f].result(timeout=15) for f in funcs}


@pytest.mark.on_cluster
async def test_worker_killed_after_step_two_resumes_without_repeating_steps(
    workers: StartWorker, rp: Redpromise, raw: Redis, keys: Keys, namespace: str
) -> None:
    """SIGKILL after step 2's checkpoint: another worker runs only steps 3 and 4."""
    results = await _kill_after_step_two(workers, rp, raw, keys, namespace, ("four",))

    # Each step value says which call produced it (s<i>#<n>): #1 everywhere = no re-run.
    assert results["four"] == ["s1#1", "s2#1", "s3#1", "s4#1"]
    assert await counts(raw, namespace, "four") == dict.fromkeys(STEPS, 1)
    assert await fx(raw, namespace, "four:started") == 2  # the function did replay

    # The same function without a kill gives the same result.
    await open_gate(raw, namespace, "calm:go")
    assert await rp.rpc("calm", "four", "calm", 2) == results["four"]
    assert await counts(raw, namespace, "calm") == dict.fromkeys(STEPS, 1)


async def test_step_killed_before_its_checkpoint_runs_again(
    workers: StartWorker, rp: Redpromise, raw: Redis, keys: Keys, namespace: str
) -> None:
    """At-least-once: step 2 ran (counted) but its worker died before the checkpoint."""
    first = await start_worker(workers)
    h = await rp.begin_rpc("alo", "four", "alo", 0, 2)  # block_in=2: step 2 blocks
    await assert_eventually(lambda: fx(raw, namespace, "alo:step2"))
    assert await checkpointed(raw, keys, "alo") == {1}
    first.kill()
    await open_gate(raw, namespace, "alo:go")
    await start_worker(workers)

    assert await h.result(timeout=15) == ["s1#1", "s2#2", "s3#1", "s4#1"]
    assert await counts(raw, namespace, "alo") == {"step1": 1, "step2": 2, "step3": 1, "step4": 1}


async def test_generator_and_async_styles_agree_through_a_kill(
    workers: StartWorker, rp: Redpromise, raw: Redis, keys: Keys, namespace: str
) -> None:
    """Scenario 1 in both styles at once (one kill): same results, same step counts."""
    results = await _kill_after_step_two(workers, rp, raw, keys, namespace, ("four", "four_gen"))
    assert results["four_gen"] == results["four"] == ["s1#1", "s2#1", "s3#1", "s4#1"]
    assert await counts(raw, namespace, "four_gen") == await counts(raw, namespace, "four")
    assert await counts(raw, namespace, "four") == dict.fromkeys(STEPS, 1)
    for f in ("four", "four_gen"):
        assert await fx(raw, namespace, f"{f}:started") == 2


# ---------------------------------------------------------------- children


async def test_parent_worker_killed_while_waiting_reattaches_to_the_one_child(
    workers: StartWorker, rp: Redpromise, raw: Redis, keys: Keys, namespace: str
) -> None:
    """Parent on group ``parents``, child on ``children``; the parent's worker dies while
    the child runs: the replayed parent waits for the same child ``<parent>.1``."""
    await start_worker(workers, group="children")
    parents = await start_worker(workers, group="parents")
    h = await rp.begin_rpc("order", "parent", "order", 20, target="poll://any@parents")
    await assert_eventually(lambda: fx(raw, namespace, "order:child"))
    parents.kill()

    await start_worker(workers, group="parents")
    # The replacement reclaims the parent after the lease and replays it; the child is
    # still running (its gate is closed), so the replay must re-attach to it.
    await assert_eventually(lambda: fx_is(raw, namespace, "order:parent", 2), timeout=15)
    assert await raw.hget(keys.promise("order.1"), "state") == b"pending"
    assert await fx(raw, namespace, "order:child") == 1
    await open_gate(raw, namespace, "order:release")

    assert await h.result(timeout=15) == {"child": "order.1", "result": 41}
    assert await fx(raw, namespace, "order:child") == 1
    state, version = await raw.hmget(keys.promise("order.1"), ["state", "version"])
    assert (state, version) == (b"resolved", b"1")  # acquired once: no second dispatch
    assert await raw.exists(keys.promise("order.2")) == 0
    assert await raw.smembers(keys.children("order")) == {b"order.1"}


# ---------------------------------------------------------------- durable sleep


async def test_durable_sleep_keeps_its_clock_across_a_worker_restart(
    workers: StartWorker, rp: Redpromise, raw: Redis, keys: Keys, namespace: str
) -> None:
    """``ctx.sleep(3)``, SIGKILL at ~2 s, restart at once: done at ~3 s, not ~5 s."""
    first = await start_worker(workers)
    t0 = time.monotonic()
    h = await rp.begin_rpc("nap", "nap", "nap", 3.0)
    # Step 1 and the sleep (step 2, with its wake time) are recorded.
    await assert_eventually(lambda: has_steps(raw, keys, "nap", {1, 2}))
    blob = await raw.hget(keys.steps("nap"), "2")
    assert isinstance(blob, bytes)
    recorded = decode(blob)
    assert recorded["k"] == "sleep"
    await asyncio.sleep(max(0.0, t0 + 2.0 - time.monotonic()))  # let 2 s of the sleep pass
    assert await h.done() is False
    first.kill()
    await start_worker(workers)

    assert await h.result(timeout=15) == ["s1#1", "s2#1"]
    elapsed = time.monotonic() - t0
    # A semantic bound, not a performance one: the replacement reclaims the entry once it
    # has been idle a lease (from the dead worker's last heartbeat, at most 2 s + 1 s),
    # within one reclaim interval (0.33 s), and the replay waits only until the recorded
    # wake time (begin + 3 s): done at ~3-3.4 s. The bound is wake 3 s + lease 1 s +
    # reclaim interval 0.33 s + 0.27 s slack = 4.6 s; a sleep whose clock restarted on
    # replay could not finish before 2 s + 3 s = 5 s (it measures ~6.2 s).
    assert elapsed >= 3.0
    assert elapsed < 3.0 + LEASE + RECLAIM_EVERY + 0.27
    completed_at = await raw.hget(keys.promise("nap"), "completed_at")
    assert completed_at is not None
    assert int(completed_at) >= int(recorded["w"])  # it did wait until the wake time
    assert await counts(raw, namespace, "nap", ("step1", "step2")) == {"step1": 1, "step2": 1}


# ---------------------------------------------------------------- latent promises


@pytest.fixture
def gateway(redis_url: str, namespace: str, tmp_path: Path) -> Iterator[str]:
    """The real gateway (services/gateway.py) as a process; yields its base URL."""
    port = free_port()
    log = tmp_path / "gateway.log"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "REDPROMISE_URL": redis_url,
        "REDPROMISE_NAMESPACE": namespace,
        "REDPROMISE_LEASE": str(LEASE),
        "REDPROMISE_GATEWAY_PORT": str(port),
    }
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "services" / "gateway.py")],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


async def test_latent_promise_resolved_through_the_gateway_unblocks_the_function(
    workers: StartWorker, rp: Redpromise, raw: Redis, namespace: str, gateway: str
) -> None:
    await start_worker(workers)
    h = await rp.begin_rpc("po", "approval", "po", 100)
    await assert_eventually(lambda: rp.get("po.1"))  # the latent promise exists
    assert await fx(raw, namespace, "po:started") == 1
    assert await h.done() is False
    assert await fx(raw, namespace, "po:decided") == 0

    async with aiohttp.ClientSession() as http:

        async def healthy() -> bool:
            async with http.get(f"{gateway}/healthz") as resp:
                return resp.status == 200

        await assert_eventually(healthy, timeout=15)
        async with http.post(f"{gateway}/resolve", params={"id": "po.1"}, json="approved") as r:
            assert r.status == 200
            assert await r.json() == {
                "status": "resolved",
                "promise_id": "po.1",
                "result": "approved",
            }

    assert await h.result(timeout=15) == "100 approved"
    assert await fx(raw, namespace, "po:decided") == 1


# ---------------------------------------------------------------- cancel


async def test_cancel_during_step_two_never_runs_steps_three_and_four(
    workers: StartWorker, rp: Redpromise, raw: Redis, namespace: str
) -> None:
    worker = await start_worker(workers)
    h = await rp.begin_rpc("cx", "four", "cx", 0, 2)  # block_in=2: step 2 blocks
    await assert_eventually(lambda: fx(raw, namespace, "cx:step2"))
    await rp.cancel("cx")
    await open_gate(raw, namespace, "cx:go")  # step 2 may return now: 3 must still not run

    with pytest.raises(PromiseCanceled):
        await h.result(timeout=15)
    assert await h.state() == "rejected_canceled"
    await asyncio.sleep(2 * LEASE)  # time for a (wrong) step 3 or a redelivery to happen
    assert await counts(raw, namespace, "cx") == {"step1": 1, "step2": 1, "step3": 0, "step4": 0}
    assert await fx(raw, namespace, "cx:started") == 1
    assert await h.state() == "rejected_canceled"

    # The worker lives on and serves the next promise.
    assert worker.proc is not None and worker.proc.poll() is None
    assert await rp.rpc("next", "four", "next") == ["s1#1", "s2#1", "s3#1", "s4#1"]
