"""Supervised loops: every Redis failure is ridden out and logged once per cause; a bug
ends the loop loudly; health tells a stalled loop from a Redis outage."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import pytest
from redis import exceptions as rex
from redis._parsers.base import BaseParser

from redpromise import ConfigurationError, CorruptRecord, StoreError, StoreUnavailable
from redpromise.redis.classify import as_redpromise_error, cause_of, retryable
from redpromise.worker.supervise import Supervisor
from tests.helpers import assert_eventually


def reply(text: str) -> BaseException:
    """The exception redis-py raises for the error reply ``text`` (its own parser)."""
    return BaseParser.parse_error(text)


# Error replies as Redis 7 sends them, directly and from inside a script.
REPLIES = [
    ("BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.",
     "BUSY", StoreUnavailable),
    ("LOADING Redis is loading the dataset in memory", "LOADING", StoreUnavailable),
    ("MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist "
     "to disk.", "MISCONF", StoreUnavailable),
    ("READONLY You can't write against a read only replica.", "READONLY", StoreUnavailable),
    ("OOM command not allowed when used memory > 'maxmemory'.", "OOM", StoreUnavailable),
    ("TRYAGAIN Multiple keys request during rehashing of slot", "TRYAGAIN", StoreUnavailable),
    ("CLUSTERDOWN The cluster is down", "CLUSTERDOWN", StoreUnavailable),
    ("MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
     "MASTERDOWN", StoreUnavailable),
    ("NOGROUP No such key '{rp:0}:q:worker' or consumer group 'worker'", "NOGROUP",
     StoreUnavailable),
    ("NOPERM this user has no permissions to run the 'evalsha' command", "NOPERM",
     ConfigurationError),
    ("WRONGTYPE Operation against a key holding the wrong kind of value", "WRONGTYPE",
     CorruptRecord),
    ("OOM command not allowed when used memory > 'maxmemory'. script: "
     "f3c1, on @user_script:12.", "OOM", StoreUnavailable),
    ("ERR Error running script (call to f_3c1): @user_script:12: @user_script: 12: "
     "-MISCONF Errors writing to the AOF file", "MISCONF", StoreUnavailable),
    ("OOM command not allowed when used memory > 'maxmemory'. script: "
     "caf6408ae37251ab2af01d1342475c6ebc2c9e59, on @user_script:1.", "OOM", StoreUnavailable),
    ("READONLY You can't write against a read only replica. script: "
     "8b2ae6dd76cda7fc3e27f97431ae27d7b08a221d, on @user_script:1.", "READONLY",
     StoreUnavailable),
    ("ERR The user executing the script can't run this command or subcommand script: "
     "caf6408ae37251ab2af01d1342475c6ebc2c9e59, on @user_script:1.", "NOPERM",
     ConfigurationError),
    ("ERR The user executing the script can't publish to the channel mentioned in the "
     "command script: 7516f753ff54e5ee40a61eac77dec6c043553327, on @user_script:1.", "NOPERM",
     ConfigurationError),
    ("NOPERM this user has no permissions to access one of the channels used as arguments",
     "NOPERM", ConfigurationError),
    # A blocked XREADGROUP when its server turns replica (a failover), or CLIENT UNBLOCK.
    ("UNBLOCKED force unblock from blocking operation, instance state changed (master -> "
     "replica?)", "UNBLOCKED", StoreUnavailable),
    ("MOVED 4607 127.0.0.1:41241", "MOVED", StoreUnavailable),
    ("ASK 4607 127.0.0.1:41241", "ASK", StoreUnavailable),
    ("ERR unknown command 'FOO', with args beginning with:", "ERR", StoreError),
]  # fmt: skip


@pytest.mark.parametrize(("text", "cause", "kind"), REPLIES)
def test_every_error_reply_gets_its_cause_and_typed_error(
    text: str, cause: str, kind: type[BaseException]
) -> None:
    exc = reply(text)
    assert cause_of(exc) == cause
    err = as_redpromise_error(exc)
    assert type(err) is kind
    assert cause_of(err) == cause
    assert retryable(exc) == (kind is StoreUnavailable)


def test_connection_loss_and_timeouts_are_store_unavailable() -> None:
    for exc, cause in [
        (rex.ConnectionError("Connection reset by peer"), "ConnectionError"),
        (rex.TimeoutError("Timeout reading from socket"), "TimeoutError"),
        (ConnectionResetError(104, "reset"), "ConnectionError"),
    ]:
        err = as_redpromise_error(exc)
        assert isinstance(err, StoreUnavailable)
        assert err.reason == cause


@pytest.fixture
def caplog_info(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.INFO, logger="redpromise.test")
    yield caplog


def _events(caplog: pytest.LogCaptureFixture, event: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "redpromise_event", None) == event]


async def test_a_failing_loop_logs_each_cause_once_then_recovers(
    caplog_info: pytest.LogCaptureFixture,
) -> None:
    script = [
        reply("MISCONF Redis is configured to save RDB snapshots"),
        reply("MISCONF Redis is configured to save RDB snapshots"),
        reply("MISCONF Redis is configured to save RDB snapshots"),
        reply("READONLY You can't write against a read only replica."),
        rex.ConnectionError("Connection refused"),
    ]
    done = asyncio.Event()
    calls = 0

    async def step() -> None:
        nonlocal calls
        calls += 1
        if script:
            raise script.pop(0)
        if calls >= 7:
            done.set()

    sup = Supervisor(logging.getLogger("redpromise.test"))
    sup.spawn("read", step, 0)
    await asyncio.wait_for(done.wait(), 10)
    await sup.stop()
    failures = _events(caplog_info, "redis_failure")
    assert [r.cause for r in failures] == ["MISCONF", "READONLY", "ConnectionError"]  # type: ignore[attr-defined]
    recovered = _events(caplog_info, "redis_recovered")
    assert len(recovered) == 1
    assert "recovered after" in recovered[0].getMessage()
    assert not sup.died.is_set()
    assert sup.health()["live"] and sup.health()["ready"]


async def test_a_loop_that_hits_a_bug_is_reported_dead_with_its_reason(
    caplog_info: pytest.LogCaptureFixture,
) -> None:
    async def step() -> None:
        raise KeyError("a bug")

    sup = Supervisor(logging.getLogger("redpromise.test"))
    sup.spawn("promote", step, 0.01)
    await asyncio.wait_for(sup.died.wait(), 5)
    assert "promote loop ended: KeyError" in sup.reason
    health = sup.health()
    assert health["live"] is False
    assert health["loops"]["promote"]["alive"] is False
    assert len(_events(caplog_info, "loop_died")) == 1
    await sup.stop()


async def test_health_tells_a_stalled_loop_from_a_redis_outage() -> None:
    hang = asyncio.Event()
    failing = True

    async def stuck() -> None:
        await hang.wait()

    async def outage() -> None:
        if failing:
            raise rex.ConnectionError("Connection refused")

    sup = Supervisor(logging.getLogger("redpromise.test"))
    sup.spawn("outage", outage, 0.01)
    sup.spawn("stuck", stuck, 0, stall_after=0.3)
    await assert_eventually(lambda: sup.health()["loops"]["outage"]["failing"])
    health = sup.health()
    assert health["ready"] is False
    assert health["loops"]["outage"]["stalled"] is False  # failing, but iterating
    await assert_eventually(lambda: sup.health()["loops"]["stuck"]["stalled"])
    assert sup.health()["live"] is False
    hang.set()
    failing = False
    await assert_eventually(lambda: sup.health()["live"] and sup.health()["ready"])
    await sup.stop()


async def test_a_loop_waiting_for_room_by_design_is_not_stalled() -> None:
    room = asyncio.Event()
    sup = Supervisor(logging.getLogger("redpromise.test"))

    async def read() -> None:
        sup.idle("read", True)
        await room.wait()
        sup.idle("read", False)

    sup.spawn("read", read, 0, stall_after=0.1)
    await asyncio.sleep(0.3)
    assert sup.health()["live"] is True
    room.set()
    await sup.stop()
