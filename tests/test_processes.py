"""Real worker processes on a real redis-server, killed and frozen by real signals.

Each test starts ``python -m redpromise worker tests.workers:make`` processes (lease 1 s)
and counts the side effects of each call with ``INCR fx:<namespace>:<name>`` in the same
Redis, so "executed once" and "completed once" are exact counts, not impressions.
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
from collections.abc import Awaitable
from datetime import timedelta
from typing import Any, cast

import pytest
from redis.asyncio import Redis

from redpromise import PromiseRejected, PromiseTimedOut
from redpromise.core.codec import decode, decode_error
from tests.helpers import assert_eventually
from tests.procs import WorkerProcess
from tests.proctools import (
    LEASE,
    MakeClient,
    StartWorker,
    client,
    fx,
    fx_equals,
    holder,
    keys_of,
    owner_pid,
    queues_empty,
    raw,
)

pytestmark = pytest.mark.real

__all__ = ["client", "raw"]  # fixtures


# ---------------------------------------------------------------- one execution per id


@pytest.mark.on_cluster
async def test_same_id_begun_concurrently_executes_once(
    workers: StartWorker, client: MakeClient, raw: Redis, namespace: str
) -> None:
    """Two clients begin the same id at the same moment: one promise, one execution."""
    workers()
    a, b = client(), client()
    ha, hb = await asyncio.gather(
        a.begin_rpc("same", "count", "same"), b.begin_rpc("same", "count", "same")
    )
    assert await ha.result(timeout=10) == 1
    assert await hb.result(timeout=10) == 1
    assert await fx(raw, namespace, "same") == 1
    assert await queues_empty(raw, keys_of(namespace)) == {}  # no second dispatch waits


async def test_same_id_begun_sequentially_executes_once(
    workers: StartWorker, client: MakeClient, raw: Redis, namespace: str
) -> None:
    """Begun twice while pending and once more after completion: still one execution."""
    rp = client()
    first = await rp.begin_rpc("seq", "count", "seq")
    second = await rp.begin_rpc("seq", "count", "seq")
    k = keys_of(namespace).partition("seq")
    assert await queues_empty(raw, keys_of(namespace)) == {f"xlen[{k}]": 1, f"timeouts[{k}]": 1}
    workers()
    assert await first.result(timeout=10) == 1
    assert await second.result(timeout=10) == 1
    third = await client().begin_rpc("seq", "count", "seq")
    assert await third.result(timeout=10) == 1
    assert await fx(raw, namespace, "seq") == 1
    assert await queues_empty(raw, keys_of(namespace)) == {}


# ---------------------------------------------------------------- kill -9 and zombies


@pytest.mark.on_cluster
async def test_worker_killed_mid_function_is_completed_by_another(
    workers: StartWorker, client: MakeClient, raw: Redis, namespace: str
) -> None:
    """SIGKILL the worker running a function: another reclaims it after the lease."""
    procs = [workers(), workers()]
    keys = keys_of(namespace)
    run_time = 3.0
    h = await client().begin_rpc("victim", "slow", "victim", run_time)
    await assert_eventually(lambda: fx_equals(raw, namespace, "victim:started", 1))
    doomed = await holder(raw, keys, "victim", procs)
    doomed.kill()
    survivor = next(p for p in procs if p is not doomed)

    # lease + reclaim interval + run time, with room for a loaded machine
    assert await h.result(timeout=LEASE + LEASE / 3 + run_time + 10) == "victim done"
    assert await fx(raw, namespace, "victim:started") == 2
    assert await fx(raw, namespace, "victim:finished") == 1
    assert "reclaimed 1 entries" in survivor.output()
    assert await queues_empty(raw, keys) == {}


async def _frozen_holder_scenario(
    workers: StartWorker, client: MakeClient, raw: Redis, namespace: str, *, thaw_early: bool
) -> tuple[WorkerProcess, WorkerProcess, dict[Any, Any]]:
    """Worker A runs ``whoami``; A is SIGSTOPped past its lease; B reclaims it.

    ``thaw_early``: SIGCONT A while B still runs the function (A's writes meet a newer
    version); else after B completed it (A's writes meet a completed promise).
    Returns A, B and the promise hash as B left it.
    """
    keys = keys_of(namespace)
    seconds = 3.0 if thaw_early else 1.5
    a = workers()
    h = await client().begin_rpc("zombie", "whoami", "zombie", seconds)
    await assert_eventually(lambda: fx_equals(raw, namespace, "zombie:started", 1))
    assert owner_pid(await raw.hget(keys.promise("zombie"), "owner")) == a.pid
    a.freeze()
    b = await asyncio.to_thread(workers)
    await assert_eventually(lambda: fx_equals(raw, namespace, "zombie:started", 2), timeout=15)
    assert owner_pid(await raw.hget(keys.promise("zombie"), "owner")) == b.pid
    if thaw_early:
        a.thaw()
    value = await h.result(timeout=15)
    assert value == {"pid": b.pid, "version": 2}
    if not thaw_early:
        a.thaw()
    after_b = await raw.hgetall(keys.promise("zombie"))
    return a, b, after_b


@pytest.mark.on_cluster
async def test_frozen_worker_late_completion_is_fenced(
    workers: StartWorker, client: MakeClient, raw: Redis, namespace: str
) -> None:
    """A zombie woken after another worker completed its promise records nothing."""
    a, _, after_b = await _frozen_holder_scenario(workers, client, raw, namespace, thaw_early=False)
    # A's execution ends by one of two refusals: its heartbeat finds the promise no
    # longer pending, or its completion finds it already completed.
    refused = re.compile(r"stopped 'zombie': already completed|'zombie' was already completed")
    await assert_eventually(lambda: refused.search(a.output()), timeout=10)
    assert await raw.hgetall(keys_of(namespace).promise("zombie")) == after_b
    assert decode(after_b[b"value"]) != {"pid": a.pid, "version": 1}
    assert await fx(raw, namespace, "zombie:started") == 2
    assert a.proc is not None and a.proc.poll() is None  # the zombie lives on, harmless


async def test_frozen_worker_thawed_while_new_owner_runs_is_fenced_by_version(
    workers: StartWorker, client: MakeClient, raw: Redis, namespace: str
) -> None:
    """A zombie woken while the new owner still runs is refused for its stale version."""
    a, _, after_b = await _frozen_holder_scenario(workers, client, raw, namespace, thaw_early=True)
    await assert_eventually(lambda: "taken over by a newer execution" in a.output(), timeout=10)
    assert await raw.hgetall(keys_of(namespace).promise("zombie")) == after_b
    # A was stopped at its first heartbeat after SIGCONT, long before its sleep ended.
    assert await fx(raw, namespace, "zombie:finished") == 1
    assert await fx(raw, namespace, "zombie:started") == 2


# ---------------------------------------------------------------- errors and retries


async def test_function_that_raises_is_retried_then_rejected(
    workers: StartWorker, client: MakeClient, raw: Redis, namespace: str
) -> None:
    """``fails`` (Exponential 100 ms, max_retries 2): 3 calls, then the last error."""
    workers()
    h = await client().begin_rpc("flaky", "fails", "flaky")
    with pytest.raises(PromiseRejected) as info:
        await h.result(timeout=15)
    assert info.value.type == "ValueError"
    assert info.value.message == "attempt 2 failed"
    assert await h.state() == "rejected"
    assert await fx(raw, namespace, "flaky") == 3
    assert await queues_empty(raw, keys_of(namespace)) == {}


async def test_non_retryable_error_rejects_at_once(
    workers: StartWorker, client: MakeClient, raw: Redis, namespace: str
) -> None:
    workers()
    h = await client().begin_rpc("doomed", "fatal", "doomed")
    with pytest.raises(PromiseRejected) as info:
        await h.result(timeout=10)
    assert (info.value.type, info.value.message) == ("Fatal", "cannot ever work")
    assert await fx(raw, namespace, "doomed") == 1
    assert await queues_empty(raw, keys_of(namespace)) == {}


# ---------------------------------------------------------------- timeouts


async def test_timeout_rejects_with_no_worker_alive(
    client: MakeClient, raw: Redis, namespace: str
) -> None:
    """No worker process at all: the waiting client applies the timeout itself."""
    h = await client().begin_rpc("lonely", "echo", 1, timeout=timedelta(seconds=1))
    with pytest.raises(PromiseTimedOut):
        await h.result(timeout=10)
    assert await h.state() == "rejected_timedout"
    assert await raw.zcard(keys_of(namespace).timeouts(keys_of(namespace).partition("lonely"))) == 0


async def test_function_outliving_its_timeout_has_its_result_discarded(
    workers: StartWorker, client: MakeClient, raw: Redis, namespace: str
) -> None:
    """The promise times out while ``slow`` runs; the late result is never recorded."""
    keys = keys_of(namespace)
    w = workers()
    h = await client().begin_rpc("late", "slow", "late", 3.0, timeout=timedelta(seconds=1))
    await assert_eventually(lambda: fx_equals(raw, namespace, "late:started", 1))
    with pytest.raises(PromiseTimedOut):
        await h.result(timeout=10)
    timed_out: dict[Any, Any] = await raw.hgetall(keys.promise("late"))
    assert timed_out[b"state"] == b"rejected_timedout"
    # The worker's execution ends refused: its heartbeat sees the promise is no longer
    # pending (and cancels it), or its completion finds it completed.
    refused = re.compile(r"stopped 'late': already completed|'late' was already completed")
    await assert_eventually(lambda: refused.search(w.output()), timeout=10)
    assert await raw.hgetall(keys.promise("late")) == timed_out
    assert decode_error(timed_out[b"value"]) == ("PromiseTimedOut", "Promise timedout")
    assert await fx(raw, namespace, "late:started") == 1
    assert await queues_empty(raw, keys) == {}


# ---------------------------------------------------------------- memory stays bounded


async def _many_promises(
    workers: StartWorker, client: MakeClient, raw: Redis, namespace: str, n: int
) -> None:
    keys = keys_of(namespace)
    workers()
    workers()
    rp = client()
    ids = [f"m{i}" for i in range(n)]
    started = time.monotonic()
    for lo in range(0, n, 500):
        await asyncio.gather(*(rp.begin_rpc(id, "echo", id) for id in ids[lo : lo + 500]))

    async def timeouts_left() -> int:
        pipe = raw.pipeline(transaction=False)
        for k in range(keys.partitions):
            pipe.zcard(keys.timeouts(k))
        return sum(await pipe.execute())

    # Every pending promise is in a timeouts zset until it settles.
    await assert_eventually(lambda: _is_zero(timeouts_left()), timeout=120, interval=0.5)
    elapsed = time.monotonic() - started
    print(f"\n{n} promises begun and resolved in {elapsed:.1f}s")

    assert await queues_empty(raw, keys) == {}
    pipe = raw.pipeline(transaction=False)
    for id in ids:
        pipe.hmget(keys.promise(id), ["state", "value"])
        pipe.pttl(keys.promise(id))
    res = await pipe.execute()
    states = {(s, decode(v) == id) for (s, v), id in zip(res[::2], ids, strict=True)}
    assert states == {(b"resolved", True)}
    assert min(res[1::2]) > 0  # every completed promise expires after its retention


async def _is_zero(n: Awaitable[int]) -> bool:
    return await n == 0


async def test_streams_hold_no_acked_entries_after_10000_promises(
    workers: StartWorker, client: MakeClient, raw: Redis, namespace: str
) -> None:
    """Acked entries are deleted, nothing waits anywhere, completed promises expire."""
    await _many_promises(workers, client, raw, namespace, 10_000)


# ---------------------------------------------------------------- poison


async def test_poison_entry_goes_to_dead_after_max_deliveries(
    workers: StartWorker, client: MakeClient, raw: Redis, namespace: str
) -> None:
    """A function that SIGKILLs its worker every time is rejected after 2 deliveries."""
    keys = keys_of(namespace)
    env = {"REDPROMISE_MAX_DELIVERIES": "2"}
    current = workers(env=env)
    deaths = 0
    stop = asyncio.Event()

    async def restart_dead_workers() -> None:
        nonlocal current, deaths
        while not stop.is_set():
            assert current.proc is not None
            if current.proc.poll() is not None:
                assert current.proc.returncode == -signal.SIGKILL
                deaths += 1
                current = await asyncio.to_thread(workers, env=env)
            await asyncio.sleep(0.1)

    keeper = asyncio.create_task(restart_dead_workers())
    try:
        h = await client().begin_rpc("poison", "suicide", "poison")
        with pytest.raises(PromiseRejected) as info:
            await h.result(timeout=30)
    finally:
        stop.set()
        await keeper
    assert info.value.type == "PoisonError"
    assert await fx(raw, namespace, "poison") == 2
    assert deaths == 2
    dead = cast(list[Any], await raw.xrange(keys.dead(keys.partition("poison"))))
    assert [(e[1][b"id"], e[1][b"deliveries"]) for e in dead] == [(b"poison", b"3")]
    assert await queues_empty(raw, keys) == {}
