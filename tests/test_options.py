"""Retry policies, per-call options, target parsing and Settings (pure, no Redis)."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import pytest

from redpromise import (
    ApplicationError,
    ConfigurationError,
    Constant,
    Exponential,
    InvalidId,
    Linear,
    Never,
    Options,
    Redpromise,
    RetryPolicy,
    Settings,
)
from redpromise.core.codec import decode, encode
from redpromise.core.options import _policy_from_wire, parse_target


def s(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)


def delays(policy: RetryPolicy, n: int) -> list[float | None]:
    out: list[float | None] = []
    for retry in range(1, n + 1):
        d = policy.next_delay(retry)
        out.append(None if d is None else d.total_seconds())
    return out


# ---------------------------------------------------------------- retry delays


def test_exponential_grows_by_factor_up_to_max_delay() -> None:
    policy = Exponential(delay=s(1), factor=2, max_delay=s(5))
    assert delays(policy, 5) == [1, 2, 4, 5, 5]


def test_default_exponential_is_one_second_doubling_capped_at_thirty() -> None:
    assert delays(Exponential(), 7) == [1, 2, 4, 8, 16, 30, 30]


def test_linear_adds_delay_per_retry() -> None:
    assert delays(Linear(delay=s(2)), 3) == [2, 4, 6]


def test_constant_waits_the_same_each_time() -> None:
    assert delays(Constant(delay=s(3)), 3) == [3, 3, 3]


def test_never_gives_up_at_once() -> None:
    assert delays(Never(), 2) == [None, None]


@pytest.mark.parametrize(
    "policy",
    [Exponential(max_retries=2), Linear(max_retries=2), Constant(max_retries=2)],
    ids=["exponential", "linear", "constant"],
)
def test_max_retries_bounds_the_number_of_retries(policy: RetryPolicy) -> None:
    got = delays(policy, 4)
    assert [d is not None for d in got] == [True, True, False, False]


def test_zero_max_retries_means_no_retry() -> None:
    assert Constant(max_retries=0).next_delay(1) is None


def test_non_retryable_types_and_their_subclasses_are_not_retried() -> None:
    policy = Exponential(non_retryable=(ValueError,))
    assert policy.retries(ValueError("x")) is False
    assert policy.retries(UnicodeDecodeError("utf-8", b"", 0, 1, "bad")) is False
    assert policy.retries(KeyError("x")) is True


def test_application_error_non_retryable_overrides_any_policy() -> None:
    fatal = ApplicationError("no", type="Fatal", non_retryable=True)
    for policy in (Exponential(), Linear(), Constant()):
        assert policy.retries(fatal) is False
        assert policy.retries(ApplicationError("maybe")) is True
    assert (fatal.type, fatal.message) == ("Fatal", "no")
    assert ApplicationError("m").type == "ApplicationError"


# ---------------------------------------------------------------- wire form


@pytest.mark.parametrize(
    "policy",
    [
        Exponential(delay=timedelta(milliseconds=250), factor=3, max_delay=s(10), max_retries=5),
        Exponential(),
        Linear(delay=s(2), max_retries=1),
        Constant(delay=timedelta(milliseconds=100)),
        Never(),
    ],
    ids=["exponential", "exponential-default", "linear", "constant", "never"],
)
def test_policy_round_trips_through_its_stored_form(policy: RetryPolicy) -> None:
    stored = decode(encode(policy.to_wire(), 1 << 20))
    assert _policy_from_wire(stored) == policy


def test_per_call_non_retryable_survives_the_stored_form() -> None:
    """Types travel as names and match by MRO, so subclasses are refused too."""
    policy = Exponential(non_retryable=(LookupError,))
    rebuilt = _policy_from_wire(decode(encode(policy.to_wire(), 1 << 20)))
    assert rebuilt is not None
    assert rebuilt.non_retryable_names == ("LookupError",)
    assert rebuilt.retries(LookupError("x")) is False
    assert rebuilt.retries(KeyError("a subclass")) is False
    assert rebuilt.retries(ValueError("unrelated")) is True


@pytest.mark.parametrize(
    "data",
    [
        None,
        "exponential",
        {"kind": "bogus", "delay": 1},
        {"kind": "linear"},
        {"kind": "constant", "delay": "soon"},
    ],
)
def test_unreadable_stored_policy_is_ignored(data: Any) -> None:
    assert _policy_from_wire(data) is None


# ---------------------------------------------------------------- options and targets


def test_options_merge_applies_only_given_values() -> None:
    bag = Options(target="a", tags={"k": "v"}, timeout=s(30))
    merged = bag.merge(target=None, timeout=s(60), retry=Never())
    assert merged == Options(target="a", tags={"k": "v"}, timeout=s(60), retry=Never())
    assert bag.timeout == s(30)


@pytest.mark.parametrize(
    ("target", "group"),
    [("poll://any@g", "g"), ("g", "g"), ("poll://any@g/x", "g"), ("poll://any@a.b:c-d", "a.b:c-d")],
)
def test_parse_target_returns_the_group(target: str, group: str) -> None:
    assert parse_target(target) == group


@pytest.mark.parametrize(
    ("target", "error"),
    [
        ("poll://uni@g", ConfigurationError),
        ("poll://g", ConfigurationError),
        ("poll://any@", InvalidId),
        ("-g", InvalidId),
        ("g" * 65, InvalidId),
    ],
)
def test_parse_target_refuses_what_it_cannot_route(target: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_target(target)


# ---------------------------------------------------------------- settings


@pytest.mark.parametrize(
    "bad",
    [
        {"partitions": 0},
        {"partitions": 16385},
        {"namespace": ""},
        {"namespace": "a{b"},
        {"namespace": "a}b"},
        {"concurrency": 0},
        {"lease": timedelta(milliseconds=50)},
        {"max_deliveries": 0},
        {"max_payload_bytes": 100},
        {"timeout": timedelta(0)},
        {"shutdown_grace": s(-1)},
    ],
    ids=lambda d: next(iter(d)),
)
def test_invalid_settings_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        Settings(**bad)


def test_partitions_go_up_to_one_per_cluster_slot() -> None:
    assert Settings(partitions=16384).partitions == 16384
    assert Settings(partitions=1).partitions == 1


def test_heartbeat_and_reclaim_default_to_a_third_of_the_lease() -> None:
    settings = Settings(lease=s(9))
    assert settings.heartbeat_every == s(3) and settings.reclaim_every == s(3)
    assert Settings(lease=s(9), heartbeat=s(1)).heartbeat_every == s(1)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith("REDPROMISE_"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_settings_from_env_reads_every_variable(env: pytest.MonkeyPatch) -> None:
    values = {
        "NAMESPACE": "ns",
        "PARTITIONS": "8",
        "LEASE": "2.5",
        "CONCURRENCY": "7",
        "MAX_DELIVERIES": "4",
        "TIMEOUT": "60",
        "RETENTION": "none",
        "MAX_PAYLOAD_BYTES": "4096",
        "SHUTDOWN_GRACE": "3",
        "DEAD_MAX_ENTRIES": "50",
        "DEAD_MAX_AGE": "3600",
    }
    for k, v in values.items():
        env.setenv(f"REDPROMISE_{k}", v)
    got = Settings.from_env(concurrency=9)
    assert got == Settings(
        namespace="ns",
        partitions=8,
        lease=s(2.5),
        concurrency=9,
        max_deliveries=4,
        timeout=s(60),
        retention=None,
        max_payload_bytes=4096,
        shutdown_grace=s(3),
        dead_max_entries=50,
        dead_max_age=s(3600),
    )


def test_settings_from_empty_env_are_the_defaults(env: pytest.MonkeyPatch) -> None:
    env.setenv("REDPROMISE_LEASE", "")
    assert Settings.from_env() == Settings()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PARTITIONS", "many"),
        ("LEASE", "soon"),
        ("RETENTION", "1d"),
        ("PARTITIONS", "0"),
        ("LEASE", "0"),
        ("LEASE", "none"),
        ("TIMEOUT", "0"),
        ("TIMEOUT", "forever"),
        ("SHUTDOWN_GRACE", "-1"),
        ("DEAD_MAX_ENTRIES", "0"),
        ("DEAD_MAX_AGE", "0"),
    ],
)
def test_settings_from_env_refuses_bad_values(
    env: pytest.MonkeyPatch, name: str, value: str
) -> None:
    env.setenv(f"REDPROMISE_{name}", value)
    with pytest.raises(ConfigurationError):
        Settings.from_env()


@pytest.mark.parametrize("value", ["none", "forever", "0"])
def test_retention_from_env_can_keep_records_forever(env: pytest.MonkeyPatch, value: str) -> None:
    env.setenv("REDPROMISE_RETENTION", value)
    assert Settings.from_env().retention is None


def test_zero_shutdown_grace_from_env_means_no_grace(env: pytest.MonkeyPatch) -> None:
    env.setenv("REDPROMISE_SHUTDOWN_GRACE", "0")
    assert Settings.from_env().shutdown_grace == timedelta(0)


async def test_from_env_for_a_gateway_keeps_its_group_and_reads_the_settings(
    env: pytest.MonkeyPatch,
) -> None:
    """A gateway sharing the workers' environment (REDPROMISE_GROUP=payments) is not
    silently a member of their group: its own group wins, settings still come from env."""
    env.setenv("REDPROMISE_GROUP", "payments")
    env.setenv("REDPROMISE_NAMESPACE", "shop")
    rp = Redpromise.from_env(group="gateway", concurrency=3)
    try:
        assert (rp.group, rp.settings.namespace, rp.settings.concurrency) == (
            "gateway",
            "shop",
            3,
        )
    finally:
        await rp.redis.aclose()


async def test_redpromise_from_env_uses_url_group_and_settings(env: pytest.MonkeyPatch) -> None:
    env.setenv("REDPROMISE_URL", "redis://127.0.0.1:1/3")
    env.setenv("REDPROMISE_GROUP", "payments")
    env.setenv("REDPROMISE_NAMESPACE", "shop")
    rp = Redpromise.from_env()
    try:
        assert (rp.url, rp.group) == ("redis://127.0.0.1:1/3", "payments")
        assert rp.settings.namespace == "shop"
        assert rp.keys.namespace == "shop"
    finally:
        await rp.redis.aclose()
