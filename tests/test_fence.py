"""The fence: a worker that stalls past its lease writes nothing it no longer owns.

The first test freezes a real worker process (SIGSTOP) past its lease on a real
redis-server; the second is the local lease deadline found by the chaos run
(bench/chaos.py, seed 2): a worker whose acquire reply came late, counting its lease
from the moment it read the reply, ran step 1 of a promise another worker had already
completed. The lease must be counted from when the acquire was sent.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from redpromise import Context, Redpromise
from redpromise.core.codec import decode
from redpromise.store.store import Call
from tests.helpers import assert_eventually
from tests.proctools import MakeClient, StartWorker, client, fx_equals, keys_of, owner_pid, raw

MakeRp = Callable[..., Awaitable[Redpromise]]

__all__ = ["client", "raw"]  # fixtures


@pytest.mark.real
@pytest.mark.on_cluster
async def test_completion_of_a_worker_frozen_past_its_lease_is_refused_by_the_fence(
    workers: StartWorker, client: MakeClient, raw: Redis, namespace: str, tmp_path: Path
) -> None:
    """A is SIGSTOPped mid-execution; B reclaims the promise (version 2) and runs it.
    A, thawed while B still runs, finishes and sends its completion for version 1:
    Redis refuses it (stale version) and changes nothing; B's result is the one stored.
    """
    keys = keys_of(namespace)
    gate = tmp_path / "gate"  # `gated` returns once the file <gate>.<its version> exists
    a = workers()
    h = await client().begin_rpc("fenced", "gated", "fenced", str(gate))
    await assert_eventually(lambda: fx_equals(raw, namespace, "fenced:started", 1))
    a.freeze()
    assert owner_pid(await raw.hget(keys.promise("fenced"), "owner")) == a.pid
    b = await asyncio.to_thread(workers)
    await assert_eventually(lambda: fx_equals(raw, namespace, "fenced:started", 2), timeout=15)
    taken_over = await raw.hgetall(keys.promise("fenced"))
    assert owner_pid(taken_over[b"owner"]) == b.pid
    assert (taken_over[b"state"], taken_over[b"version"]) == (b"pending", b"2")

    # A's function returns at once on thaw: its completion (version 1) is sent before
    # any heartbeat reply could tell A it lost the promise, so it reaches the fence.
    (tmp_path / "gate.1").touch()
    a.thaw()
    refused = "completion of 'fenced' refused: taken over by a newer execution"

    async def zombie_outcome() -> str | None:
        if refused in a.output():
            return "refused"
        if await raw.hgetall(keys.promise("fenced")) != taken_over:
            return "written"
        return None

    assert await assert_eventually(zombie_outcome, timeout=15) == "refused"
    assert await raw.hgetall(keys.promise("fenced")) == taken_over

    (tmp_path / "gate.2").touch()
    assert await h.result(timeout=15) == {"pid": b.pid, "version": 2}
    stored = await raw.hgetall(keys.promise("fenced"))
    assert (stored[b"state"], stored[b"completed_by"]) == (b"resolved", b"2")
    assert decode(stored[b"value"]) == {"pid": b.pid, "version": 2}


async def test_worker_stalled_on_its_acquire_reply_runs_no_step(make_rp: MakeRp) -> None:
    calls: Counter[str] = Counter()

    def step(name: str) -> str:
        calls[name] += 1
        return name

    async def two_steps(ctx: Context) -> list[str]:
        return [await ctx.run(step, "one"), await ctx.run(step, "two")]

    stalled = await make_rp()
    stalled.register(two_steps, name="two_steps")
    acquiring, woke = asyncio.Event(), asyncio.Event()
    original = stalled.store.run_calls

    async def slow_reply(batch: Sequence[Call]) -> list[Any]:
        results = await original(batch)
        if any(script.name == "acquire" for script, _, _ in batch) and not acquiring.is_set():
            acquiring.set()
            # The reply is held back for three leases (1 s each in tests): the stall.
            await asyncio.sleep(3 * stalled.settings.lease.total_seconds())
            woke.set()
        return results

    stalled.store.run_calls = slow_reply  # type: ignore[method-assign]
    await stalled.start()
    handle = await stalled.begin_rpc("p", "two_steps")
    await asyncio.wait_for(acquiring.wait(), 10)

    live = await make_rp()
    live.register(two_steps, name="two_steps")
    await live.start()
    assert await handle.result(timeout=20) == ["one", "two"]
    # The stalled worker reads its late reply and ends the stale execution it was given.
    worker = stalled._worker
    assert worker is not None
    await assert_eventually(lambda: woke.is_set() and not worker._inflight, timeout=20)
    assert calls == {"one": 1, "two": 1}


async def test_a_heartbeat_racing_a_landed_completion_counts_no_refusal(
    make_rp: MakeRp,
) -> None:
    """The completion is in Redis, its reply not yet back, when a heartbeat renews the
    execution: "not pending" then means the completion landed, not that the worker lost
    the promise. /metrics counts no fence refusal for it (the completion counts its own
    outcome), and the promise resolves."""
    prometheus_client = pytest.importorskip("prometheus_client")
    rp = await make_rp()
    release, landed, go_on = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def hold(ctx: Context) -> int:
        await release.wait()
        return 1

    rp.register(hold, name="hold")
    original = rp.store.complete

    async def reply_held_back(*args: Any, **kwargs: Any) -> Any:
        res = await original(*args, **kwargs)
        landed.set()
        await go_on.wait()
        return res

    rp.store.complete = reply_held_back  # type: ignore[method-assign]
    await rp.start()
    worker = rp.worker
    assert worker is not None

    def refusals() -> float:
        labels = {"group": rp.group, "operation": "heartbeat", "code": "not_pending"}
        value = prometheus_client.REGISTRY.get_sample_value(
            "redpromise_fence_refusals_total", labels
        )
        return float(value or 0)

    before = refusals()
    handle = await rp.begin_rpc("p", "hold")
    await assert_eventually(lambda: worker.inflight == 1)
    release.set()
    await asyncio.wait_for(landed.wait(), 10)
    await worker.heartbeat()  # sees the promise resolved: the completion landed
    go_on.set()
    assert await handle.result(timeout=10) == 1
    assert refusals() == before
