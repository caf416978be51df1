"""Frozen option types: retry policies, per-call options, and process settings."""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from redpromise.core.errors import ConfigurationError

__all__ = [
    "Constant",
    "Exponential",
    "Linear",
    "Never",
    "Options",
    "RetryPolicy",
    "Settings",
    "Timeout",
    "as_timeout",
    "parse_target",
    "policy_from_sdk",
]

Timeout = float | int | timedelta
"""A duration the public API accepts: seconds (``int`` or ``float``) or a ``timedelta``."""


def as_timeout(value: Timeout | None, what: str = "timeout") -> timedelta | None:
    """``value`` as a ``timedelta`` (``None`` stays ``None``).

    Numbers are seconds. Raises :class:`ConfigurationError` unless the duration is
    positive and finite, so a bad timeout fails where it is given, not later.
    """
    if value is None:
        return None
    if isinstance(value, timedelta):
        td = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ConfigurationError(f"{what} must be a finite number of seconds, got {value!r}")
        try:
            td = timedelta(seconds=value)
        except OverflowError as exc:
            raise ConfigurationError(f"{what} of {value!r} seconds is too large") from exc
    else:
        raise ConfigurationError(
            f"{what} must be seconds (int or float) or a timedelta, got {type(value).__name__}"
        )
    if td <= timedelta(0):
        raise ConfigurationError(f"{what} must be positive, got {value!r}")
    return td


@dataclass(frozen=True, kw_only=True)
class _Policy:
    non_retryable: tuple[type[BaseException], ...] = ()
    """Exception types that reject the promise at once instead of retrying."""

    non_retryable_names: tuple[str, ...] = ()
    """The same by class name, matched against the exception's MRO. A policy passed to
    ``begin_rpc`` travels to the worker this way: type names, never imported types."""

    max_retries: int | None = None
    """Retries after the first attempt; ``None`` retries until the promise times out."""

    def next_delay(self, retry: int) -> timedelta | None:
        """Delay before retry number ``retry`` (1 = first retry); ``None`` = give up."""
        if self.max_retries is not None and retry > self.max_retries:
            return None
        return self._delay(retry)

    def _delay(self, retry: int) -> timedelta | None:
        raise NotImplementedError

    def retries(self, exc: BaseException) -> bool:
        """Whether ``exc`` may be retried under this policy."""
        if getattr(exc, "non_retryable", False) is True:
            return False
        if isinstance(exc, self.non_retryable):
            return False
        names = set(self.non_retryable_names)
        return not (names and any(c.__name__ in names for c in type(exc).__mro__))

    def to_wire(self) -> dict[str, Any]:
        """The policy as plain data, stored with a promise created with it."""
        names = sorted({t.__name__ for t in self.non_retryable} | set(self.non_retryable_names))
        return {**self._wire(), "non_retryable": names}

    def _wire(self) -> dict[str, Any]:
        raise NotImplementedError


@dataclass(frozen=True, kw_only=True)
class Exponential(_Policy):
    """``delay * factor ** (n - 1)`` before retry n, capped at ``max_delay``."""

    delay: timedelta = timedelta(seconds=1)
    """The first retry's delay."""
    factor: float = 2.0
    """Growth per retry."""
    max_delay: timedelta = timedelta(seconds=30)
    """The largest delay."""

    def _delay(self, retry: int) -> timedelta:
        seconds = self.delay.total_seconds() * self.factor ** (retry - 1)
        return min(timedelta(seconds=seconds), self.max_delay)

    def _wire(self) -> dict[str, Any]:
        return {
            "kind": "exponential",
            "delay": self.delay.total_seconds(),
            "factor": self.factor,
            "max_delay": self.max_delay.total_seconds(),
            "max_retries": self.max_retries,
        }


@dataclass(frozen=True, kw_only=True)
class Linear(_Policy):
    """``delay * n`` before retry n."""

    delay: timedelta = timedelta(seconds=1)
    """The step between delays."""

    def _delay(self, retry: int) -> timedelta:
        return self.delay * retry

    def _wire(self) -> dict[str, Any]:
        return {
            "kind": "linear",
            "delay": self.delay.total_seconds(),
            "max_retries": self.max_retries,
        }


@dataclass(frozen=True, kw_only=True)
class Constant(_Policy):
    """The same ``delay`` before every retry."""

    delay: timedelta = timedelta(seconds=1)
    """The delay before each retry."""

    def _delay(self, retry: int) -> timedelta:
        return self.delay

    def _wire(self) -> dict[str, Any]:
        return {
            "kind": "constant",
            "delay": self.delay.total_seconds(),
            "max_retries": self.max_retries,
        }


@dataclass(frozen=True, kw_only=True)
class Never(_Policy):
    """No retries: the first error rejects the promise."""

    def _delay(self, retry: int) -> None:
        return None

    def _wire(self) -> dict[str, Any]:
        return {"kind": "never"}


RetryPolicy = Exponential | Linear | Constant | Never


def _policy_from_wire(data: Any) -> RetryPolicy | None:
    """Rebuild a policy stored by :meth:`to_wire`; ``None`` for anything unknown."""
    if not isinstance(data, dict):
        return None
    kind = data.get("kind")
    try:
        max_retries = data.get("max_retries")
        mr = int(max_retries) if max_retries is not None else None
        names = tuple(str(n) for n in data.get("non_retryable") or ())
        if kind == "never":
            return Never(non_retryable_names=names)
        delay = timedelta(seconds=float(data["delay"]))
        if kind == "exponential":
            return Exponential(
                delay=delay,
                factor=float(data["factor"]),
                max_delay=timedelta(seconds=float(data["max_delay"])),
                max_retries=mr,
                non_retryable_names=names,
            )
        if kind == "linear":
            return Linear(delay=delay, max_retries=mr, non_retryable_names=names)
        if kind == "constant":
            return Constant(delay=delay, max_retries=mr, non_retryable_names=names)
    except (KeyError, TypeError, ValueError):
        return None
    return None


def policy_from_sdk(data: Any) -> RetryPolicy | None:
    """The policy a Resonate SDK put in a protocol promise's param (``retry``: ``{type,
    data}`` with times in ms), as the SDKs apply it (retry n of ``exponential`` waits
    ``delay * factor ** n``); ``None`` when absent or of a type we do not know."""
    if not isinstance(data, dict):
        return None
    kind, d = data.get("type"), data.get("data") or {}
    if not isinstance(d, dict):
        return None
    try:
        mr = int(d["maxRetries"]) if d.get("maxRetries") is not None else None
        if kind == "never":
            return Never()
        delay = timedelta(milliseconds=float(d.get("delay", 1000)))
        if kind == "exponential":
            factor = float(d.get("factor", 2))
            return Exponential(
                delay=delay * factor,
                factor=factor,
                max_delay=timedelta(milliseconds=float(d.get("maxDelay", 30000))),
                max_retries=mr,
            )
        if kind == "linear":
            return Linear(delay=delay, max_retries=mr)
        if kind == "constant":
            return Constant(delay=delay, max_retries=mr)
    except (TypeError, ValueError, OverflowError):
        return None
    return None


@functools.lru_cache(maxsize=256)
def parse_target(target: str) -> str:
    """The group of a target: ``poll://any@<group>`` or a bare group name."""
    from redpromise.core.keys import validate_group

    if target.startswith("poll://"):
        rest = target[len("poll://") :]
        mode, sep, group = rest.partition("@")
        if not sep or mode != "any":
            raise ConfigurationError(
                f"unsupported target {target!r}: use poll://any@<group> or a group name"
            )
        return validate_group(group.split("/", 1)[0])
    return validate_group(target)


@dataclass(frozen=True, kw_only=True, init=False)
class Options:
    """Per-call options for :meth:`Redpromise.begin_rpc`; ``None`` means "the default".

    ``timeout`` may be given in seconds or as a ``timedelta``; it is stored as a
    ``timedelta`` and refused (:class:`ConfigurationError`) unless positive and finite.
    """

    target: str | None = None
    """Where to dispatch: ``poll://any@<group>`` or a bare group name."""
    timeout: timedelta | None = None
    """How long the promise may stay pending before it is rejected as timed out."""
    retry: RetryPolicy | None = None
    """Retry policy for this promise, overriding the function's registered policy."""
    tags: dict[str, str] | None = None
    """Free-form string tags stored with the promise."""
    codec: str | None = None
    """How the call and its outcome are encoded: ``"msgpack"`` (the default: redpromise's
    own workers run it) or ``"json"`` (a Resonate protocol promise that Resonate SDK workers
    connected through ``redpromise serve`` run; see ``docs/resonate.md``)."""

    def __init__(
        self,
        *,
        target: str | None = None,
        timeout: Timeout | None = None,
        retry: RetryPolicy | None = None,
        tags: dict[str, str] | None = None,
        codec: str | None = None,
    ) -> None:
        # A hand-written __init__ so the field keeps its timedelta type while callers may
        # pass seconds; merge() goes through here as well.
        if codec not in (None, "msgpack", "json"):
            raise ConfigurationError(f"codec must be 'msgpack' or 'json', not {codec!r}")
        object.__setattr__(self, "target", target)
        object.__setattr__(self, "timeout", as_timeout(timeout))
        object.__setattr__(self, "retry", retry)
        object.__setattr__(self, "tags", tags)
        object.__setattr__(self, "codec", codec)

    def merge(
        self,
        *,
        target: str | None = None,
        timeout: Timeout | None = None,
        retry: RetryPolicy | None = None,
        tags: dict[str, str] | None = None,
    ) -> Options:
        """A copy with every non-``None`` override applied (``self`` if there are none)."""
        # Spelled out rather than dataclasses.replace(): this runs on every begin_rpc.
        if target is None and timeout is None and retry is None and tags is None:
            return self
        return Options(
            target=self.target if target is None else target,
            timeout=self.timeout if timeout is None else timeout,
            retry=self.retry if retry is None else retry,
            tags=self.tags if tags is None else tags,
            codec=self.codec,
        )


def _env_seconds(
    name: str, default: timedelta | None, *, forever: bool = False
) -> timedelta | None:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if forever and raw.lower() in ("none", "forever", "0"):
        return None
    try:
        return timedelta(seconds=float(raw))
    except ValueError as exc:
        raise ConfigurationError(f"{name}={raw!r} is not a number of seconds") from exc


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigurationError(f"{name}={raw!r} is not an integer") from exc


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Settings of one :class:`Redpromise` process. Durations are ``timedelta``."""

    namespace: str = "rp"
    """Prefix of every key; processes that share work share a namespace. No ``{`` or ``}``
    (they would cut the hash tags that keep each partition in one cluster slot)."""
    partitions: int = 16
    """Partitions of the id space, 1..16384; fixed for the life of a namespace (stored in
    Redis). Each partition owns 16384/partitions cluster slots; size it at several
    partitions per cluster master (the README's "Redis Cluster" section)."""
    lease: timedelta = timedelta(seconds=15)
    """A worker silent for this long loses its entries to other workers of its group."""
    heartbeat: timedelta | None = None
    """How often a worker renews its leases; ``None`` = lease / 3."""
    reclaim_interval: timedelta | None = None
    """How often a worker looks for entries of silent workers; ``None`` = lease / 3."""
    poll_interval: timedelta = timedelta(milliseconds=250)
    """How often a worker promotes due retries and times out expired promises."""
    reconcile_batch: int = 200
    """Pending promises a worker checks per reclaim tick for a vanished dispatch entry."""
    concurrency: int = 100
    """Functions a worker process runs at once."""
    block: timedelta = timedelta(seconds=1)
    """How long one XREADGROUP waits for new entries."""
    max_deliveries: int = 10
    """Deliveries of one dispatch without a completion before it is rejected as poison."""
    unknown_function_deliveries: int = 3
    """Deliveries to workers lacking the function before the promise is rejected."""
    dead_max_entries: int = 10_000
    """Most records kept in each partition's dead stream; each new one drops the oldest."""
    dead_max_age: timedelta = timedelta(days=7)
    """Dead records older than this (by the Redis clock) are dropped at the next write."""
    timeout: timedelta = timedelta(hours=24)
    """Default promise timeout."""
    retention: timedelta | None = timedelta(hours=24)
    """How long a completed promise stays readable; ``None`` keeps it forever."""
    max_payload_bytes: int = 1024 * 1024
    """Largest encoded argument, result or step outcome."""
    suspend_after: timedelta = timedelta(seconds=10)
    """A durable sleep longer than this frees the worker instead of waiting in it."""
    shutdown_grace: timedelta = timedelta(seconds=30)
    """How long a stopping worker lets in-flight functions finish before leaving them."""
    safety_poll: timedelta = timedelta(seconds=30)
    """How often waiters re-read what they wait on, in case a notification was missed."""
    retry: RetryPolicy = field(default_factory=Exponential)
    """Retry policy of functions registered without one."""
    replicas_ack: int = 0
    """Replicas that must have a begin, a checkpoint or a completion before it is
    acknowledged (``WAIT``); 0 = the primary's reply is enough. With 1 or more, an
    acknowledged write survives a failover to a replica that had it."""
    replicas_ack_timeout: timedelta = timedelta(seconds=2)
    """How long a write waits for ``replicas_ack`` replicas; then it raises
    :class:`StoreUnavailable` (the write may or may not survive a failover: repeat it)."""

    def __post_init__(self) -> None:
        if not self.namespace or "{" in self.namespace or "}" in self.namespace:
            raise ConfigurationError("namespace must be non-empty, without '{' or '}'")
        # One partition per cluster slot at most: a partition's slot range must not be empty.
        if self.partitions < 1 or self.partitions > 16384:
            raise ConfigurationError("partitions must be between 1 and 16384")
        if self.concurrency < 1:
            raise ConfigurationError("concurrency must be at least 1")
        if self.lease < timedelta(milliseconds=100):
            raise ConfigurationError("lease must be at least 100 ms")
        if self.timeout <= timedelta(0) or self.shutdown_grace < timedelta(0):
            raise ConfigurationError("timeout must be positive, shutdown_grace not negative")
        if self.max_deliveries < 1:
            raise ConfigurationError("max_deliveries must be at least 1")
        if self.max_payload_bytes < 1024:
            raise ConfigurationError("max_payload_bytes must be at least 1024")
        if self.dead_max_entries < 1 or self.dead_max_age < timedelta(milliseconds=1):
            raise ConfigurationError("dead_max_entries and dead_max_age must be positive")
        if self.replicas_ack < 0 or self.replicas_ack_timeout < timedelta(milliseconds=1):
            raise ConfigurationError(
                "replicas_ack must not be negative and replicas_ack_timeout must be positive"
            )

    @property
    def heartbeat_every(self) -> timedelta:
        return self.heartbeat or self.lease / 3

    @property
    def reclaim_every(self) -> timedelta:
        return self.reclaim_interval or self.lease / 3

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        """Settings from ``REDPROMISE_*`` variables (seconds for durations), then overrides.

        Reads NAMESPACE, PARTITIONS, LEASE, CONCURRENCY, MAX_DELIVERIES, TIMEOUT,
        RETENTION (``none`` keeps forever), MAX_PAYLOAD_BYTES, SHUTDOWN_GRACE,
        DEAD_MAX_ENTRIES, DEAD_MAX_AGE, REPLICAS_ACK, REPLICAS_ACK_TIMEOUT.
        """
        d = cls()
        values: dict[str, Any] = {
            "namespace": os.environ.get("REDPROMISE_NAMESPACE") or d.namespace,
            "partitions": _env_int("REDPROMISE_PARTITIONS", d.partitions),
            "lease": _env_seconds("REDPROMISE_LEASE", d.lease),
            "concurrency": _env_int("REDPROMISE_CONCURRENCY", d.concurrency),
            "max_deliveries": _env_int("REDPROMISE_MAX_DELIVERIES", d.max_deliveries),
            "timeout": _env_seconds("REDPROMISE_TIMEOUT", d.timeout),
            "retention": _env_seconds("REDPROMISE_RETENTION", d.retention, forever=True),
            "max_payload_bytes": _env_int("REDPROMISE_MAX_PAYLOAD_BYTES", d.max_payload_bytes),
            "shutdown_grace": _env_seconds("REDPROMISE_SHUTDOWN_GRACE", d.shutdown_grace),
            "dead_max_entries": _env_int("REDPROMISE_DEAD_MAX_ENTRIES", d.dead_max_entries),
            "dead_max_age": _env_seconds("REDPROMISE_DEAD_MAX_AGE", d.dead_max_age),
            "replicas_ack": _env_int("REDPROMISE_REPLICAS_ACK", d.replicas_ack),
            "replicas_ack_timeout": _env_seconds(
                "REDPROMISE_REPLICAS_ACK_TIMEOUT", d.replicas_ack_timeout
            ),
        }
        values.update(overrides)
        return cls(**values)
