"""Operators see why: a pending promise that keeps failing shows its last error (library,
CLI, dashboard JSON), a search finds it as ``failing``, a consumer that went silent is
``gone``, values show as the user passed them, and refusals are logged in words."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import test_utils, web

from redpromise import Constant, Context, Redpromise
from redpromise.aiohttp import add_routes
from redpromise.client.inspect import Inspector
from tests.conftest import fast_settings
from tests.helpers import assert_eventually
from tests.test_cli import ROOT, Cli, out_json, table_rows

MakeRp = Callable[..., Awaitable[Redpromise]]
Client = test_utils.TestClient[web.Request, web.Application]
HOUR = timedelta(hours=1)


async def failing_worker(make_rp: MakeRp, **overrides: Any) -> Redpromise:
    """A worker of group ``worker`` whose ``flaky`` always fails, retried an hour later."""
    worker = await make_rp(**overrides)

    @worker.register(retry=Constant(delay=HOUR))
    async def flaky(ctx: Context, order: Any, *, note: str = "") -> None:
        raise ValueError(f"card declined for {order}")

    @worker.register
    async def hold(ctx: Context) -> None:  # in flight until the worker stops
        await asyncio.Event().wait()

    await worker.start()
    return worker


async def failed_once(rp: Redpromise, id: str) -> dict[str, Any]:
    async def recorded() -> dict[str, Any] | None:
        page = await rp.search(state="failing")
        return next((r.to_dict() for r in page.records if r.id == id), None)

    return await assert_eventually(recorded, timeout=20)


async def test_a_retried_promise_shows_its_last_error_and_is_found_as_failing(
    make_rp: MakeRp,
) -> None:
    await failing_worker(make_rp)
    rp = await make_rp(group="client")
    await rp.begin_rpc("f1", "flaky", 42, target="poll://any@worker")
    await rp.begin_rpc("waits", "flaky", 1, target="poll://any@nobody")  # pending, never run
    await rp.begin_rpc("done", "flaky", 1, target="poll://any@nobody")
    await rp.reject("done", "no")

    info = await failed_once(rp, "f1")
    last = info["last_error"]
    assert (last["type"], last["message"], last["attempt"]) == (
        "ValueError",
        "card declined for 42",
        0,  # the run that failed was the first: its Context.attempt was 0
    )
    assert info["state"] == "pending" and info["attempt"] == 1
    # The retry is due an hour after the failure (Constant(delay=HOUR)), on Redis' clock.
    assert last["next_retry_at"] - last["at"] == HOUR.total_seconds() * 1000
    assert [r.id for r in (await rp.search(state="failing")).records] == ["f1"]
    assert {r.id for r in (await rp.search(state="pending")).records} == {"f1", "waits"}
    never = (await rp.search(state="pending", group="nobody")).records
    assert [r.last_error for r in never] == [None]
    detail = await Inspector(rp).detail("f1")
    assert detail["last_error"] == last
    with pytest.raises(ValueError, match="failing"):
        await rp.search(state="failed")
    # Only a retry writes the failure fields: the happy path's record keeps its size.
    extra = {b"last_error", b"error_at", b"retry_at"}
    for id, written in (("f1", extra), ("waits", set()), ("done", set())):
        raw: Any = await rp.redis.hgetall(rp.keys.promise(id))
        assert extra & set(raw) == written


# ---------------------------------------------------------------- dashboard JSON


@pytest.fixture
async def dashboard(make_rp: MakeRp) -> AsyncIterator[tuple[Client, Redpromise]]:
    rp = await make_rp(group="gateway")
    await rp._ready()  # the namespace's key layout, as the worker's
    app = web.Application()
    add_routes(app, rp, "flaky", token="t")
    client: Client = test_utils.TestClient(test_utils.TestServer(app))
    await client.start_server()
    yield client, rp
    await client.close()


AUTH = {"Authorization": "Bearer t"}


async def test_dashboard_lists_failing_promises_with_their_last_error(
    make_rp: MakeRp, dashboard: tuple[Client, Redpromise]
) -> None:
    client, rp = dashboard
    await failing_worker(make_rp)
    await rp.begin_rpc("f1", "flaky", {"sku": "A"}, target="poll://any@worker", note="rush")
    await rp.begin_rpc("waits", "flaky", 1, target="poll://any@nobody")
    await failed_once(rp, "f1")

    found = await (await client.get("/ui/api/promises?state=failing", headers=AUTH)).json()
    [rec] = found["records"]
    assert rec["id"] == "f1" and rec["last_error"]["message"] == "card declined for {'sku': 'A'}"
    assert set(rec["last_error"]) == {"type", "message", "at", "attempt", "next_retry_at"}
    # With a token set, nothing is readable without it, a failing promise's error included.
    assert (await client.get("/ui/api/promises?state=failing")).status == 401
    detail = await (await client.get("/ui/api/promise?id=f1", headers=AUTH)).json()
    assert detail["last_error"]["type"] == "ValueError"
    assert detail["last_error"]["next_retry_at"] > detail["last_error"]["at"]
    # The arguments as the caller passed them, not the stored {"a": …, "k": …}.
    assert detail["args"] == {"args": [{"sku": "A"}], "kwargs": {"note": "rush"}}
    assert (await client.get("/ui/api/promises?state=bogus", headers=AUTH)).status == 400


async def test_dashboard_shows_values_json_cannot_hold_in_words(
    dashboard: tuple[Client, Redpromise],
) -> None:
    client, rp = dashboard
    await rp.begin_rpc("b", "fn", b"\x00\xff", target="poll://any@nobody")
    await rp.begin_rpc("n", "fn", target="poll://any@nobody")
    await rp.resolve("n", float("nan"))
    args = await (await client.get("/ui/api/promise?id=b", headers=AUTH)).json()
    assert args["args"] == {"args": ["b'\\x00\\xff'"], "kwargs": {}}
    nan = await client.get("/ui/api/promise?id=n", headers=AUTH)
    assert nan.status == 200 and (await nan.json())["result"] == "nan"


async def crashed_consumer(rp: Redpromise, id: str) -> None:
    """Promise ``id`` of group ``orphan`` delivered to consumer ``crashed``, whose process
    then died: it never reads nor renews again (Redis lists a consumer once it got one)."""
    await rp.begin_rpc(id, "flaky", target="poll://any@orphan")
    stream = rp.keys.stream(rp.keys.partition(id), "orphan")
    await rp.redis.xgroup_create(stream, "orphan", id="0")
    assert await rp.redis.xreadgroup("orphan", "crashed", {stream: ">"}, count=1)


async def test_a_consumer_that_stopped_reading_is_listed_as_gone(
    make_rp: MakeRp, dashboard: tuple[Client, Redpromise]
) -> None:
    client, rp = dashboard
    await failing_worker(make_rp)
    await rp.begin_rpc("h", "hold", target="poll://any@worker")  # renewed while it runs
    await crashed_consumer(rp, "o1")

    async def listed() -> dict[str, str] | None:
        overview = await (await client.get("/ui/api/overview", headers=AUTH)).json()
        status = {c["name"]: c["status"] for g in overview["groups"] for c in g["consumers"]}
        return status if status.get("crashed") == "gone" and len(status) == 2 else None

    status = await assert_eventually(listed, timeout=20)
    assert sorted(status.values()) == ["alive", "gone"]  # the live worker stays alive


# ---------------------------------------------------------------- logs in words


def test_every_refusal_code_has_words() -> None:
    from redpromise.store.scripts import CODES, WORDS, refusal

    assert set(WORDS) == set(CODES)
    assert refusal(-2, b"rejected_canceled") == "already completed (canceled)"
    assert refusal(-2) == "already completed"
    assert "-99" in refusal(-99)  # a code no script returns


async def test_a_retry_refused_because_the_promise_was_canceled_is_logged_in_words(
    make_rp: MakeRp, caplog: pytest.LogCaptureFixture
) -> None:
    # A long lease: no heartbeat notices the cancel before the function's retry does.
    worker = await make_rp(lease=timedelta(seconds=30))
    started, release = asyncio.Event(), asyncio.Event()

    @worker.register(retry=Constant(delay=HOUR))
    async def slow(ctx: Context) -> None:
        started.set()
        await release.wait()
        raise ValueError("too late")

    await worker.start()
    rp = await make_rp(group="client")
    await rp.begin_rpc("c1", "slow", target="poll://any@worker")
    await asyncio.wait_for(started.wait(), 20)
    await rp.cancel("c1")
    with caplog.at_level(logging.WARNING, logger="redpromise"):
        release.set()

        def logged() -> list[str]:
            return [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]

        [line] = await assert_eventually(logged, timeout=20)
    assert line == "retry of 'c1' refused: already completed (canceled)"


# ---------------------------------------------------------------- the CLI


@pytest.fixture
def cli(real_url: str, namespace: str) -> Cli:
    """The CLI with the workers' 1 s lease (it judges a consumer gone past a lease)."""

    def call(*args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("REDPROMISE_")}
        env |= {"PYTHONPATH": str(ROOT), "REDPROMISE_URL": real_url, "REDPROMISE_LEASE": "1"}
        return subprocess.run(
            [sys.executable, "-m", "redpromise", *args, "--namespace", namespace],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    return call


@pytest.mark.real
async def test_cli_shows_the_last_error_searches_failing_and_marks_gone_consumers(
    real_url: str, namespace: str, cli: Cli
) -> None:
    made: list[Redpromise] = []

    async def sh(*args: str) -> subprocess.CompletedProcess[str]:
        # In a thread: the worker shares this event loop and must go on renewing its lease.
        return await asyncio.to_thread(cli, *args)

    async def make(group: str = "worker", **overrides: Any) -> Redpromise:
        rp = Redpromise(real_url, group=group, settings=fast_settings(namespace, **overrides))
        made.append(rp)
        return rp

    try:
        await failing_worker(make)
        rp = await make(group="client")
        await rp.begin_rpc("f1", "flaky", [1, 2], target="poll://any@worker", note="x")
        await rp.begin_rpc("waits", "flaky", 1, target="poll://any@nobody")
        last = (await failed_once(rp, "f1"))["last_error"]

        got = out_json(await sh("promises", "get", "f1", "--json"))
        assert got["last_error"] == last
        _, rows = table_rows(await sh("promises", "get", "f1"))
        text = {r[0]: " ".join(r[1:]) for r in rows}
        assert text["last"].startswith("error ValueError: card declined for [1, 2] (attempt 0, ")
        assert text["last"].endswith("Z)") and text["next"].endswith("Z")
        found = out_json(await sh("promises", "search", "--state", "failing", "--json"))
        assert [r["id"] for r in found["records"]] == ["f1"]
        _, rows = table_rows(await sh("promises", "search", "--state", "pending"))
        assert sorted((r[0], r[1]) for r in rows) == [("f1", "failing"), ("waits", "pending")]
        tree = out_json(await sh("tree", "f1", "--json"))
        assert tree["last_error"] == last
        assert tree["args"] == {"args": [[1, 2]], "kwargs": {"note": "x"}}
        assert "last error: ValueError: card declined for [1, 2]" in (await sh("tree", "f1")).stdout

        await rp.begin_rpc("h", "hold", target="poll://any@worker")
        await crashed_consumer(rp, "o1")

        async def status() -> dict[str, str]:
            _, rows = table_rows(await sh("groups"))
            return {r[1]: r[2] for r in rows if len(r) == 5 and r[2] in ("alive", "gone")}

        async def crashed_gone() -> bool:
            return (await status()).get("crashed") == "gone"

        await assert_eventually(crashed_gone, timeout=20)
        assert sorted((await status()).values()) == ["alive", "gone"]
        found = out_json(await sh("groups", "--json"))
        shown = {c["name"]: c["status"] for g in found["groups"] for c in g["consumers"]}
        assert shown["crashed"] == "gone" and list(shown.values()).count("alive") == 1
    finally:
        for rp in reversed(made):
            await rp.stop()


# ---------------------------------------------------------------- the previous release


async def test_a_failure_the_previous_release_recorded_shows_without_its_times(
    make_rp: MakeRp,
) -> None:
    """During a rolling upgrade the previous release's retry.lua writes ``last_error``
    alone: the promise is failing all the same, its times read as unknown."""
    from redpromise.core.codec import encode_error
    from tests.storeops import G, acquire, create, deliver
    from tests.test_default_fields import PREVIOUS_RELEASE, release_scripts

    rp = await make_rp()
    await rp.counts()  # pins the namespace's key layout
    store = rp.store
    current, store.scripts = store.scripts, release_scripts(PREVIOUS_RELEASE)
    try:
        await create(store, "old")
        entry = await deliver(store, "old")
        assert (await acquire(store, "old", entry))[0] == 1
        error = encode_error("OldType", "old", 1 << 20)
        assert await store.retry("old", G, 1, 60_000, error, entry=entry) == 1
    finally:
        store.scripts = current
    [info] = (await rp.search(state="failing")).records
    assert info.last_error is not None
    assert info.last_error.to_dict() == {
        "type": "OldType",
        "message": "old",
        "at": None,
        "attempt": 0,
        "next_retry_at": None,
    }
    assert (await Inspector(rp).detail("old"))["last_error"] == info.last_error.to_dict()
