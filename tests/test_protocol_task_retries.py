"""A Resonate protocol task run by a redpromise Python worker follows a retry policy, in
the worker's process while it holds the task (as the SDKs' workers retry): the caller's
(the ``retry`` a Resonate SDK puts in the param), else the function's ``register(retry=)``;
with neither, the first exception rejects, as the SDKs run a durable function. Recorded
steps are replayed on a retry, not run again, and a sleep waits in the worker (a task is
held until fulfilled) with its wake-up time recorded. Both backends."""

from __future__ import annotations

import base64
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest

from redpromise import Constant, Context, Options, PromiseRejected, Redpromise
from redpromise.client.json_calls import begin_json
from redpromise.core.options import Exponential, Linear, Never, policy_from_sdk
from redpromise.store.protocol import ProtocolStore

MakeRp = Callable[..., Awaitable[Redpromise]]
JSON = Options(target="poll://any@worker", codec="json")
FAST = Constant(delay=timedelta(milliseconds=30), max_retries=3)


async def test_a_failing_attempt_is_retried_under_the_functions_policy_replaying_its_steps(
    make_rp: MakeRp,
) -> None:
    rp = await make_rp()
    calls: Counter[str] = Counter()
    attempts: list[int] = []

    def step(name: str) -> str:
        calls[name] += 1
        return name.upper()

    @rp.register(retry=FAST)
    async def flaky(ctx: Context, data: Any) -> Any:
        attempts.append(ctx.attempt)
        a = await ctx.run(step, "a")
        if ctx.attempt < 2:
            raise RuntimeError(f"attempt {ctx.attempt} failed")
        b = await ctx.run(step, "b")
        return {"got": data, "steps": [a, b]}

    await rp.start()
    handle = await rp.begin_rpc("pr-1", "flaky", {"x": 1}, options=JSON)
    assert await handle.result(timeout=10) == {"got": {"x": 1}, "steps": ["A", "B"]}
    assert attempts == [0, 1, 2]
    assert calls == {"a": 1, "b": 1}


async def test_without_a_policy_the_first_exception_rejects_the_task(make_rp: MakeRp) -> None:
    rp = await make_rp()
    attempts: list[int] = []

    @rp.register
    async def fails(ctx: Context, data: Any) -> Any:
        attempts.append(ctx.attempt)
        raise ValueError("card declined")

    await rp.start()
    handle = await rp.begin_rpc("pr-2", "fails", {}, options=JSON)
    with pytest.raises(PromiseRejected, match="card declined") as info:
        await handle.result(timeout=10)
    assert (info.value.type, info.value.message) == ("ValueError", "card declined")
    assert attempts == [0]


async def test_retries_stop_at_max_retries_and_reject_with_the_last_error(
    make_rp: MakeRp,
) -> None:
    rp = await make_rp()
    attempts: list[int] = []

    @rp.register(retry=Constant(delay=timedelta(milliseconds=20), max_retries=2))
    async def always(ctx: Context, data: Any) -> Any:
        attempts.append(ctx.attempt)
        raise RuntimeError(f"failure {ctx.attempt}")

    await rp.start()
    handle = await rp.begin_rpc("pr-3", "always", {}, options=JSON)
    with pytest.raises(PromiseRejected, match="failure 2"):
        await handle.result(timeout=10)
    assert attempts == [0, 1, 2]


async def test_the_callers_policy_from_the_param_comes_before_the_functions(
    make_rp: MakeRp,
) -> None:
    rp = await make_rp()
    attempts: list[int] = []

    @rp.register(retry=Never())
    async def twice(ctx: Context, data: Any) -> Any:
        attempts.append(ctx.attempt)
        if ctx.attempt == 0:
            raise RuntimeError("first attempt failed")
        return "second attempt"

    await rp.start()
    # What a TypeScript beginRpc(..., {retryPolicy: new Constant({delay: 20, maxRetries: 1})})
    # stores: the policy in the param, in the SDK's shape.
    call = {"func": "twice", "args": [{}], "version": 1,
            "retry": {"type": "constant", "data": {"delay": 20, "maxRetries": 1}}}  # fmt: skip
    param = {"headers": {}, "data": base64.b64encode(json.dumps(call).encode()).decode()}
    now = rp.store.clock.now_ms()
    await begin_json(ProtocolStore(rp.store), "pr-4", param, "worker", now + 60_000, None)
    assert await (await rp.get("pr-4")).result(timeout=10) == "second attempt"
    assert attempts == [0, 1]


def test_the_sdks_policies_read_as_the_sdks_apply_them() -> None:
    # Retry n of the SDKs' exponential waits delay * factor ** n (ms); ours delay * factor
    # ** (n - 1): the first retry is the same 2 s either way.
    exp = policy_from_sdk(
        {"type": "exponential", "data": {"delay": 1000, "factor": 2, "maxRetries": 3,
                                         "maxDelay": 5000}}
    )  # fmt: skip
    assert isinstance(exp, Exponential)
    assert [exp.next_delay(n) for n in (1, 2, 3, 4)] == [
        timedelta(seconds=2), timedelta(seconds=4), timedelta(seconds=5), None
    ]  # fmt: skip
    lin = policy_from_sdk({"type": "linear", "data": {"delay": 100, "maxRetries": 2}})
    assert isinstance(lin, Linear)
    assert [lin.next_delay(n) for n in (1, 2, 3)] == [
        timedelta(milliseconds=100), timedelta(milliseconds=200), None
    ]  # fmt: skip
    assert isinstance(policy_from_sdk({"type": "never", "data": {}}), Never)
    for unknown in (
        None,
        "x",
        {"type": "fibonacci", "data": {}},
        {"type": "constant", "data": {"delay": "soon"}},
    ):
        assert policy_from_sdk(unknown) is None, unknown


async def test_a_long_sleep_waits_in_the_worker_holding_the_task_and_keeps_its_clock(
    make_rp: MakeRp,
) -> None:
    # A sleep far over the worker's suspension threshold: a redpromise promise would be
    # handed back; a protocol task waits here, and a retry replays the recorded wake-up.
    rp = await make_rp(suspend_after=timedelta(milliseconds=50))
    slept: list[float] = []

    @rp.register(retry=FAST)
    async def naps(ctx: Context, data: Any) -> Any:
        started = time.monotonic()
        await ctx.sleep(0.6)
        slept.append(time.monotonic() - started)
        if ctx.attempt == 0:
            raise RuntimeError("fails after its sleep")
        return "awake"

    await rp.start()
    handle = await rp.begin_rpc("pr-5", "naps", {}, options=JSON)
    assert await handle.result(timeout=10) == "awake"
    first, replayed = slept
    assert first >= 0.55, slept  # the whole sleep, in the worker
    assert replayed < first / 2, slept  # the wake-up time was recorded, not slept again


async def test_a_replay_that_diverges_rejects_at_once_whatever_the_policy(
    make_rp: MakeRp,
) -> None:
    rp = await make_rp()
    attempts: list[int] = []

    def step(name: str) -> str:
        return name

    @rp.register(retry=FAST)
    async def wanders(ctx: Context, data: Any) -> Any:
        attempts.append(ctx.attempt)
        # The first attempt records step "a" at seq 1; the retry asks for "b" there.
        await ctx.run(step, "a" if ctx.attempt == 0 else "b", name="a" if ctx.attempt == 0 else "b")
        raise RuntimeError("fails after its step")

    await rp.start()
    handle = await rp.begin_rpc("pr-6", "wanders", {}, options=JSON)
    with pytest.raises(PromiseRejected, match=r"replays as run .b., but the recorded step 1"):
        await handle.result(timeout=10)
    assert attempts == [0, 1]


async def test_ctx_rpc_in_a_task_makes_a_protocol_child_that_a_replay_does_not_run_again(
    make_rp: MakeRp,
) -> None:
    rp = await make_rp()
    doubled: list[int] = []

    @rp.register
    async def double(ctx: Context, n: int) -> int:
        doubled.append(n)
        return 2 * n

    @rp.register(retry=FAST)
    async def parent(ctx: Context, data: Any) -> Any:
        child = await ctx.rpc("double", data["n"])
        if ctx.attempt == 0:
            raise RuntimeError("fails after its child")
        return {"child": child, "key": ctx.idempotency_key()}

    await rp.start()
    handle = await rp.begin_rpc("pr-7", "parent", {"n": 21}, options=JSON)
    assert await handle.result(timeout=10) == {"child": 42, "key": "pr-7:2"}
    assert doubled == [21]  # the child ran once: the retry replayed its recorded outcome
    status, body = await ProtocolStore(rp.store).apply("promise.get", {"id": "pr-7:1"}, None)
    assert status == 200
    tags = body["promise"]["tags"]
    assert (tags["resonate:parent"], tags["resonate:origin"], tags["resonate:branch"]) == (
        "pr-7", "pr-7", "pr-7:1"
    )
    assert tags["resonate:target"] == "poll://any@worker"
    assert body["promise"]["state"] == "resolved"


async def test_a_protocol_childs_rejection_raises_in_the_parent_with_its_message(
    make_rp: MakeRp,
) -> None:
    rp = await make_rp()

    @rp.register
    async def refuse(ctx: Context, why: str) -> None:
        raise ValueError(why)

    @rp.register
    async def asks(ctx: Context, data: Any) -> Any:
        try:
            await ctx.rpc("refuse", "no stock")
        except PromiseRejected as exc:
            return f"child said: {exc.message}"
        return "child resolved"

    await rp.start()
    handle = await rp.begin_rpc("pr-8", "asks", {}, options=JSON)
    assert await handle.result(timeout=10) == "child said: no stock"
