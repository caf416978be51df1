"""The ``redpromise`` CLI (docs/cli.md), run as real subprocesses against a real redis-server.

The state each command reads is made in this process with the library; the command's
``--json`` output is compared exactly, its table loosely (header and rows), and its exit
code against the documented ones: 0 ok, 1 not found, 2 usage, 3 Redis unavailable,
4 refused.
"""

from __future__ import annotations

import asyncio
import json
import os
import pty
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from redpromise import Context, Redpromise
from redpromise.client.inspect import requeue_id
from redpromise.core.keys import Keys
from tests.conftest import fast_settings
from tests.helpers import assert_eventually
from tests.redis_server import RedisServer
from tests.storeops import acquire, claim, deliver

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.real

Cli = Callable[..., subprocess.CompletedProcess[str]]


def run_cli(
    url: str, namespace: str, *args: str, stdin: str | None = None, stderr: int | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REDPROMISE_")} | {
        "PYTHONPATH": str(ROOT),
        "REDPROMISE_URL": url,
        "REDPROMISE_NAMESPACE": namespace,
    }
    return subprocess.run(
        [sys.executable, "-m", "redpromise", *args],
        cwd=ROOT,
        env=env,
        input=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE if stderr is None else stderr,
        text=True,
        timeout=60,
    )


@pytest.fixture
def cli(real_url: str, namespace: str) -> Cli:
    def call(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return run_cli(real_url, namespace, *args, stdin=stdin)

    return call


def out_json(proc: subprocess.CompletedProcess[str], code: int = 0) -> Any:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    return json.loads(proc.stdout)


def one_error_line(proc: subprocess.CompletedProcess[str], code: int) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("redpromise: "), proc.stderr
    return lines[0]


def table_rows(proc: subprocess.CompletedProcess[str]) -> tuple[list[str], list[list[str]]]:
    assert proc.returncode == 0, proc.stderr
    lines = [line.split() for line in proc.stdout.splitlines() if line.strip()]
    return lines[0], lines[1:]


@pytest.fixture
async def rp(real_url: str, namespace: str) -> AsyncIterator[Redpromise]:
    """The namespace, made with 4 partitions (the CLI is never told: it reads them) and
    one delivery per dispatch (a second one makes a poison record)."""
    made = Redpromise(real_url, settings=fast_settings(namespace, partitions=4, max_deliveries=1))
    await made._ready()
    yield made
    await made.stop()


async def test_get_prints_the_promise_and_exits_1_when_it_is_not_found(
    rp: Redpromise, cli: Cli
) -> None:
    await rp.begin_rpc("a1", "fn", 1, target="poll://any@g1", tags={"k": "v"})
    got = out_json(cli("promises", "get", "a1", "--json"))
    created = got.pop("created_at")
    assert got.pop("timeout_at") > created
    assert got == {
        "id": "a1",
        "state": "pending",
        "function": "fn",
        "group": "g1",
        "completed_at": None,
        "attempt": 0,
        "tags": {"k": "v"},
        "value": None,
        "error": None,
        "last_error": None,
    }
    header, rows = table_rows(cli("promises", "get", "a1"))
    assert header == ["FIELD", "VALUE"] and ["state", "pending"] in rows
    assert "'nope' not found" in one_error_line(cli("promises", "get", "nope"), 1)
    assert "id" in one_error_line(cli("promises", "get", "bad id\n"), 2)


async def test_resolve_reject_cancel_settle_once_and_report_the_winning_outcome(
    rp: Redpromise, cli: Cli
) -> None:
    for id in ("r", "j", "c", "s"):
        await rp.begin_rpc(id, "fn", target="poll://any@g")
    resolved = out_json(cli("promises", "resolve", "r", '{"n": [1, 2]}', "--json"))
    assert (resolved["state"], resolved["value"]) == ("resolved", {"n": [1, 2]})
    assert resolved["completed_at"] >= resolved["created_at"]
    # First completion wins: a later reject reports the stored outcome, exit 0 (as the
    # gateway answers), so a retried command is safe.
    again = out_json(cli("promises", "reject", "r", "too late", "--json"))
    assert (again["state"], again["value"]) == ("resolved", {"n": [1, 2]})
    rejected = out_json(cli("promises", "reject", "j", "bad input", "--json"))
    assert rejected["error"] == {"type": "Error", "message": "bad input"}
    assert out_json(cli("promises", "cancel", "c", "--json"))["state"] == "rejected_canceled"
    from_stdin = out_json(cli("promises", "resolve", "s", "-", "--json", stdin='"typed"'))
    assert from_stdin["value"] == "typed"
    assert await (await rp.get("r")).result() == {"n": [1, 2]}
    one_error_line(cli("promises", "resolve", "missing", "1"), 1)
    assert "not JSON" in one_error_line(cli("promises", "resolve", "j", "{oops"), 2)


async def test_search_filters_and_walks_every_page_with_the_cursor(
    rp: Redpromise, cli: Cli
) -> None:
    for i in range(25):
        group = "even" if i % 2 == 0 else "odd"
        await rp.begin_rpc(
            f"s{i:02d}",
            "work" if i < 20 else "other",
            target=f"poll://any@{group}",
            tags={"batch": str(i % 3)},
        )
    for i in range(0, 25, 5):
        await rp.resolve(f"s{i:02d}", i)

    def ids(*args: str) -> list[str]:
        found = out_json(cli("promises", "search", "--json", *args))
        return [r["id"] for r in found["records"]]

    # Pages are in (created_at, group, id) order: promises begun in the same ms sort by group.
    everything = ids("--limit", "1000")
    assert sorted(everything) == [f"s{i:02d}" for i in range(25)]
    assert ids("--all", "--limit", "7") == everything
    assert sorted(ids("--state", "resolved")) == ["s00", "s05", "s10", "s15", "s20"]
    assert sorted(ids("--group", "odd", "--state", "pending")) == [
        f"s{i:02d}" for i in range(1, 25, 2) if i % 5
    ]
    assert sorted(ids("--function", "other")) == ["s20", "s21", "s22", "s23", "s24"]
    assert sorted(ids("--tag", "batch=0", "--function", "other")) == ["s21", "s24"]
    assert ids("--newest-first", "--limit", "2") == everything[::-1][:2]
    assert ids("--since", "1h") == everything and ids("--until", "1h") == []
    page = out_json(cli("promises", "search", "--json", "--limit", "10"))
    assert page["cursor"] is not None and len(page["records"]) == 10
    rest = out_json(cli("promises", "search", "--json", "--all", "--cursor", page["cursor"]))
    assert [r["id"] for r in page["records"] + rest["records"]] == everything
    assert rest["cursor"] is None
    header, rows = table_rows(cli("promises", "search", "--state", "resolved"))
    assert header[:4] == ["ID", "STATE", "FUNCTION", "GROUP"] and len(rows) == 5
    assert sorted(r[0] for r in rows) == ["s00", "s05", "s10", "s15", "s20"]
    for bad in (
        ["--state", "done"],
        ["--limit", "0"],
        ["--tag", "novalue"],
        ["--since", "yesterday"],
        ["--cursor", "garbage"],
    ):
        one_error_line(cli("promises", "search", *bad), 2)


async def test_tree_shows_steps_while_pending_and_children_with_their_times(
    real_url: str, namespace: str, rp: Redpromise, cli: Cli
) -> None:
    worker = Redpromise(real_url, group="tree", settings=fast_settings(namespace, partitions=4))

    @worker.register
    async def parent(ctx: Context) -> str:
        await ctx.run(lambda: 41, name="fetch")
        approval = await ctx.promise()
        return f"approved: {await approval}"

    await worker.start()
    try:
        await rp.begin_rpc("t1", "parent", target="poll://any@tree")

        async def waiting() -> dict[str, Any]:
            node: dict[str, Any] = out_json(cli("tree", "t1", "--json"))
            return node if len(node["steps"]) == 2 else {}

        node = await assert_eventually(waiting, timeout=30)
        assert node["state"] == "pending"
        child = node["steps"][1]["value"]  # the latent promise's id is the step's value
        assert [(s["kind"], s["name"], s["ok"]) for s in node["steps"]] == [
            ("run", "fetch", True),
            ("promise", "promise", True),
        ]
        assert node["steps"][0]["value"] == 41 and node["steps"][0]["seq"] < node["steps"][1]["seq"]
        assert [(c["id"], c["state"], c["function"]) for c in node["children"]] == [
            (child, "pending", "")
        ]
        text = cli("tree", "t1")
        assert text.returncode == 0
        assert "run fetch ok" in text.stdout and child in text.stdout
        out_json(cli("promises", "resolve", child, '"yes"', "--json"))
        assert await (await rp.get("t1")).result() == "approved: yes"
        done = out_json(cli("tree", "t1", "--json"))
        assert done["state"] == "resolved" and done["steps"] == []  # not kept once completed
        assert done["children"][0]["state"] == "resolved"
        assert done["children"][0]["completed_at"] >= done["children"][0]["created_at"]
        assert "not kept" in cli("tree", "t1").stdout
        one_error_line(cli("tree", "nope"), 1)
    finally:
        await worker.stop()


async def test_groups_and_stats_count_backlog_in_flight_consumers_and_states(
    real_url: str, namespace: str, rp: Redpromise, cli: Cli
) -> None:
    worker = Redpromise(real_url, group="busy", settings=fast_settings(namespace, partitions=4))
    release = asyncio.Event()

    @worker.register
    async def hold(ctx: Context) -> None:
        await release.wait()

    for i in range(3):
        await rp.begin_rpc(f"q{i}", "queued", target="poll://any@idle")
    await rp.resolve("q0", None)
    await rp.begin_rpc("h", "hold", target="poll://any@busy")
    await worker.start()
    try:

        async def held() -> bool:
            found = out_json(cli("groups", "--json"))
            busy = [g for g in found["groups"] if g["name"] == "busy"]
            return bool(busy) and busy[0]["in_flight"] == 1

        await assert_eventually(held, timeout=30)
        found = out_json(cli("groups", "--json"))
        by_name = {g["name"]: g for g in found["groups"]}
        assert set(by_name) == {"busy", "idle"} and found["dead"] == 0
        assert (by_name["idle"]["backlog"], by_name["idle"]["in_flight"]) == (2, 0)
        assert by_name["idle"]["consumers"] == []
        [consumer] = by_name["busy"]["consumers"]
        assert consumer["name"] == worker.consumer and consumer["pending"] == 1
        assert isinstance(consumer["idle_ms"], int)
        header, _ = table_rows(cli("groups"))
        assert header == ["GROUP", "BACKLOG", "IN_FLIGHT", "DISPATCHED", "CONSUMERS"]
        stats = out_json(cli("stats", "--json"))
        assert stats["counts"]["pending"] == {"idle": 2, "busy": 1}
        assert stats["counts"]["resolved"] == {"idle": 1}
        assert stats["totals"] == {
            "pending": 3,
            "resolved": 1,
            "rejected": 0,
            "rejected_canceled": 0,
            "rejected_timedout": 0,
        }
        header, rows = table_rows(cli("stats"))
        assert header[:3] == ["GROUP", "PENDING", "RESOLVED"]
        assert rows[-1] == ["TOTAL", "3", "1", "0", "0", "0", "4"]
    finally:
        release.set()
        await worker.stop()


async def poison(rp: Redpromise, id: str, arg: int) -> None:
    """``id`` delivered twice with max_deliveries=1: rejected as poison, recorded dead."""
    await rp.begin_rpc(id, "fn", arg, target="poll://any@g")
    entry = await deliver(rp.store, id)
    assert (await acquire(rp.store, id, entry))[0] == 1
    await claim(rp.store, id, entry, "c2")
    assert (await acquire(rp.store, id, entry, "c2"))[:1] == [-7]


async def test_dead_list_requeue_and_purge(rp: Redpromise, cli: Cli) -> None:
    await poison(rp, "d1", 7)
    [rec] = out_json(cli("dead", "list", "--json"))["records"]
    assert (rec["id"], rec["group"], rec["function"], rec["requeueable"]) == ("d1", "g", "fn", True)
    assert rec["requeued_as"] is None
    new_id = requeue_id("d1", rec["key"].partition(":")[2])
    requeued = out_json(cli("dead", "requeue", rec["key"], "--json"))
    assert requeued == {
        "results": [{"key": rec["key"], "action": "begun", "id": new_id}],
        "requeued": 1,
        "failed": 0,
    }
    # Requeueing the same record again begins nothing new: the same promise.
    assert out_json(cli("dead", "requeue", "--all", "--json"))["results"][0]["id"] == new_id
    again = await rp.search(function="fn", state="pending")
    assert [p.id for p in again.records] == [new_id]
    assert again.records[0].group == "g"
    assert out_json(cli("dead", "list", "--json"))["records"][0]["requeued_as"] == new_id
    missing = cli("dead", "requeue", "0:1-1", "--json")
    assert out_json(missing, 1)["results"][0]["error"] == "not_found"
    # A buried entry carries no promise id: it cannot be requeued (exit 4, refused).
    k = 0
    stream = rp.keys.stream(k, "g")
    entry = await rp.redis.xadd(stream, {"junk": "1"})
    await rp.store.run_calls([rp.store.bury_call(k, "g", entry.decode(), "no id")])
    buried = next(r for r in out_json(cli("dead", "list", "--json"))["records"] if r["id"] is None)
    refused = out_json(cli("dead", "requeue", buried["key"], "--json"), 4)
    assert refused["results"][0]["error"] == "not_requeueable"
    header, rows = table_rows(cli("dead", "list"))
    assert header[:3] == ["KEY", "RECORDED", "ID"] and len(rows) == 2
    # A page at a time: the cursor a page gives leads to the next, newest first.
    newest = out_json(cli("dead", "list", "--limit", "1", "--json"))
    assert newest["records"][0]["key"] == buried["key"] and newest["cursor"] is not None
    older = out_json(cli("dead", "list", "--limit", "1", "--cursor", newest["cursor"], "--json"))
    assert older == {"records": [{**rec, "requeued_as": new_id}], "cursor": None}
    assert out_json(cli("dead", "purge", "--older-than", "1h", "--json")) == {"purged": 0}
    assert out_json(cli("dead", "purge", "--all", "--json")) == {"purged": 2}
    assert out_json(cli("dead", "list", "--json")) == {"records": [], "cursor": None}
    for bad in (
        ["requeue"],
        ["requeue", "0:1-1", "--all"],
        ["purge"],
        ["purge", "--older-than", "x"],
    ):
        one_error_line(cli("dead", *bad), 2)


async def test_requeue_all_draws_a_progress_bar_only_on_a_tty(
    real_url: str, namespace: str, rp: Redpromise, cli: Cli
) -> None:
    for i in range(3):
        await poison(rp, f"p{i}", i)
    plain = cli("dead", "requeue", "--all")
    assert plain.returncode == 0 and plain.stderr == ""
    assert "requeued 3, failed 0" in plain.stdout
    leader, follower = pty.openpty()
    try:
        on_tty = run_cli(real_url, namespace, "dead", "requeue", "--all", stderr=follower)
        os.close(follower)
        drawn = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the other side is closed
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        os.close(leader)
    assert on_tty.returncode == 0
    assert b"requeueing [" in drawn and b"3/3" in drawn


def test_usage_errors_exit_2_before_reaching_redis() -> None:
    down = "redis://127.0.0.1:1/0"  # nothing listens: a usage error must not get that far
    for args in ([], ["nonsense"], ["promises"], ["promises", "get"], ["stats", "--bogus"]):
        proc = run_cli(down, "rp", *args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert "Traceback" not in proc.stderr


async def test_an_unknown_namespace_is_not_found_and_not_created(real_url: str, cli: Cli) -> None:
    proc = run_cli(real_url, "nosuchns", "stats")
    assert "no redpromise namespace 'nosuchns'" in one_error_line(proc, 1)
    probe = Redpromise(real_url)
    try:
        assert not await probe.redis.exists(Keys("nosuchns").meta)
    finally:
        await probe.stop()


async def test_redis_down_exits_3_with_one_line(own_redis_server: RedisServer) -> None:
    made = Redpromise(own_redis_server.url, settings=fast_settings("down"))
    await made._ready()
    await made.stop()
    assert out_json(run_cli(own_redis_server.url, "down", "stats", "--json"))["totals"]
    own_redis_server.stop()
    for args in (["stats"], ["promises", "get", "x"], ["dead", "purge", "--all"]):
        line = one_error_line(run_cli(own_redis_server.url, "down", *args), 3)
        assert "Redis unavailable" in line and own_redis_server.url in line
