"""The promise store: typed calls of the Lua transitions, and reads of promise records."""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redpromise.core.codec import as_text, decode, decode_error, encode_error
from redpromise.core.errors import (
    CorruptRecord,
    PromiseCanceled,
    PromiseRejected,
    PromiseTimedOut,
)
from redpromise.core.hooks import NO_HOOKS, Hooks
from redpromise.core.keys import Keys
from redpromise.core.options import Settings
from redpromise.redis.classify import as_redpromise_error
from redpromise.redis.clock import RedisClock
from redpromise.redis.wire import Ack, AnyRedis
from redpromise.store.prepack import CreatePacker
from redpromise.store.scripts import Coalescer, Command, Script, load_scripts, run_calls
from redpromise.store.states import PENDING, STATES

# PENDING and STATES are re-exported for the callers that read records through this module.
__all__ = ["PENDING", "STATES", "Call", "Completion", "Record", "Store", "outcome"]

Call = tuple[Script | Command, Sequence[str], Sequence[Any]]

_HMGET = Command("HMGET")

# The stored outcome of every timed-out promise, whoever applies the timeout.
_TIMED_OUT = encode_error("PromiseTimedOut", "Promise timedout", 1 << 20)

_FIELDS = (
    "state",
    "func",
    "group",
    "value",
    "created_at",
    "timeout_at",
    "completed_at",
    "attempt",
    "version",
    "tags",
)
# With the fields a failed attempt leaves (retry.lua): only operators' reads ask for them.
_INFO_FIELDS = (*_FIELDS, "last_error", "error_at", "retry_at")


def _int(v: Any, default: int = 0) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return default


@dataclass(frozen=True, slots=True)
class Record:
    """A snapshot of one promise as stored in Redis."""

    id: str
    state: str
    func: str
    group: str
    value: bytes | None
    created_at: int
    timeout_at: int
    completed_at: int | None
    attempt: int
    version: int
    tags: bytes | None
    # The last failed attempt (retry.lua), read only when asked for (``failure=True``);
    # absent on a promise that never failed, or one only the previous release retried.
    last_error: bytes | None = None
    error_at: int | None = None
    retry_at: int | None = None

    @property
    def pending(self) -> bool:
        return self.state == PENDING

    @classmethod
    def parse(cls, id: str, raw: Sequence[Any]) -> Record | None:
        """Build from an HMGET of :data:`_FIELDS` (or :data:`_INFO_FIELDS`); ``None``
        when the hash is absent."""
        if all(v is None for v in raw):
            return None
        state = as_text(raw[0]) if raw[0] is not None else ""
        if state not in STATES or raw[5] is None:
            raise CorruptRecord(f"promise {id!r} has a record redpromise did not write")
        return cls(
            id=id,
            state=state,
            func=as_text(raw[1] or b""),
            group=as_text(raw[2] or b""),
            value=raw[3],
            created_at=_int(raw[4]),
            timeout_at=_int(raw[5]),
            completed_at=_int(raw[6]) if raw[6] is not None else None,
            attempt=_int(raw[7]),
            version=_int(raw[8]),
            tags=raw[9],
            last_error=raw[10] if len(raw) > 10 else None,
            error_at=_int(raw[11]) if len(raw) > 11 and raw[11] is not None else None,
            retry_at=_int(raw[12]) if len(raw) > 12 and raw[12] is not None else None,
        )


@dataclass(frozen=True, slots=True)
class Completion:
    """The outcome of a completed promise as its completion message carried it: all a
    caller of ``result()`` needs (see ``redpromise/store/lua/includes/settle.lua``)."""

    id: str
    state: str
    value: bytes | None

    @property
    def pending(self) -> bool:
        return False


def outcome(rec: Record | Completion) -> Any:
    """The value of a completed promise, or its rejection raised: :class:`PromiseRejected`
    (with the remote error's type and message), :class:`PromiseCanceled` or
    :class:`PromiseTimedOut`."""
    if rec.state == "resolved":
        return decode(rec.value) if rec.value is not None else None
    if rec.state == "rejected_canceled":
        raise PromiseCanceled(rec.id)
    if rec.state == "rejected_timedout":
        raise PromiseTimedOut(rec.id)
    type_name, message = decode_error(rec.value) if rec.value is not None else ("", "")
    raise PromiseRejected(rec.id, type_name, message)


class Store:
    """Typed access to one namespace. Every write is one of the Lua transitions."""

    def __init__(
        self, redis: AnyRedis, keys: Keys, settings: Settings, hooks: Hooks = NO_HOOKS
    ) -> None:
        self.metrics = hooks.metrics
        self.redis = redis
        self.keys = keys
        self.settings = settings
        self.scripts = load_scripts()
        self._creates = CreatePacker()
        ms = int(settings.replicas_ack_timeout.total_seconds() * 1000)
        self.ack = Ack(settings.replicas_ack, ms) if settings.replicas_ack > 0 else None
        self.batch = Coalescer(redis, ack=self.ack)
        self.clock = RedisClock(redis)
        """Redis' clock: every due time computed in Python is on it (see redis/clock.py)."""
        self.sharded = False
        r = settings.retention
        self.retention_ms = int(r.total_seconds() * 1000) if r is not None else 0
        self.dead_max_age_ms = max(1, int(settings.dead_max_age.total_seconds() * 1000))
        # Acquisition tokens: unique per acquire call, so the script can tell a resend of
        # the call (the client's retry after a lost reply) from a new delivery.
        self._token_prefix = os.urandom(8).hex()
        self._tokens = itertools.count(1)

    @property
    def sharded(self) -> bool:
        """Completions announced by SPUBLISH (a Redis >= 7 cluster), else by PUBLISH."""
        return self.publish == "SPUBLISH"

    @sharded.setter
    def sharded(self, value: bool) -> None:
        self.publish = "SPUBLISH" if value else "PUBLISH"

    def rebind(self, redis: AnyRedis) -> None:
        """Talk to ``redis`` from now on (the client found a cluster behind its URL)."""
        self.redis = redis
        self.batch = Coalescer(redis, ack=self.ack)
        self.clock.redis = redis

    # -- reads ------------------------------------------------------------------------

    async def read(self, id: str, *, failure: bool = False) -> Record | None:
        """One promise; ``failure``: with its last failed attempt's fields."""
        fields = _INFO_FIELDS if failure else _FIELDS
        raw = await self.batch.call(_HMGET, [self.keys.promise(id)], fields)
        return Record.parse(id, raw)

    async def read_many(
        self, ids: Sequence[str], *, failure: bool = False
    ) -> list[Record | BaseException | None]:
        """Read several promises in one round trip; a corrupt one comes back as its error.
        ``failure``: with their last failed attempt's fields."""
        fields = _INFO_FIELDS if failure else _FIELDS
        calls: list[Call] = [(_HMGET, [self.keys.promise(id)], fields) for id in ids]
        out: list[Record | BaseException | None] = []
        for id, raw in zip(ids, await run_calls(self.redis, calls), strict=True):
            if isinstance(raw, BaseException):
                out.append(as_redpromise_error(raw))
                continue
            try:
                out.append(Record.parse(id, raw))
            except CorruptRecord as exc:
                out.append(exc)
        return out

    # -- transitions --------------------------------------------------------------------

    async def create(
        self,
        id: str,
        func: str,
        args: bytes,
        group: str,
        timeout_ms: int,
        tags: bytes,
        retry: bytes,
    ) -> tuple[bool, str, int]:
        """Create-if-absent; returns ``(created, state, timeout_at)``."""
        script = self.scripts["create"]
        keys, argv, packed = self._creates.call(
            script, self.keys, id, func, args, group, timeout_ms, tags, retry
        )
        res = await self.batch.call(script, keys, argv, packed)
        if res[0] == 1:
            self.metrics.begun(group, func)
            return True, PENDING, _int(res[1])
        return False, as_text(res[1]), _int(res[2])

    def complete_call(
        self,
        id: str,
        group: str,
        version: int | None,
        state: str,
        value: bytes,
        *,
        require_due: bool = False,
    ) -> Call:
        k = self.keys.partition(id)
        keys = [
            self.keys.promise(id),
            self.keys.steps(id),
            self.keys.stream(k, group),
            self.keys.timeouts(k),
            self.keys.delayed(k),
            self.keys.index(k, PENDING),
            self.keys.index(k, state),
            self.keys.counts(k),
        ]
        args = [
            id,
            group,
            "" if version is None else version,
            state,
            value,
            self.retention_ms,
            self.keys.channel(k),
            "1" if require_due else "0",
            self.publish,
        ]
        return self.scripts["complete"], keys, args

    def timeout_call(self, id: str, group: str) -> Call:
        """The timeout transition: ``rejected_timedout``, only once ``timeout_at`` passed."""
        return self.complete_call(
            id, group, None, "rejected_timedout", _TIMED_OUT, require_due=True
        )

    async def complete(
        self,
        id: str,
        group: str | None,
        version: int | None,
        state: str,
        value: bytes,
        *,
        require_due: bool = False,
    ) -> list[Any]:
        """Settle a promise; ``group=None`` looks the group up (outside completions).

        Returns the script's reply: ``[1, state]``, ``[0, state, value]`` or a refusal.
        """
        if group is None:
            raw = await self.redis.hget(self.keys.promise(id), "group")
            group = as_text(raw) if raw is not None else ""
        for _ in range(2):
            script, keys, args = self.complete_call(
                id, group, version, state, value, require_due=require_due
            )
            res: list[Any] = await self.batch.call(script, keys, args)
            if res[0] != -5:
                self.metrics.completed_reply(group, res)
                return res
            group = as_text(res[1])
        return res

    def acquire_call(
        self, k: int, group: str, entry: str, id: str, consumer: str, poison: bytes
    ) -> Call:
        """One acquire of one delivery of partition ``k``'s stream; each call carries a
        fresh token, so sending the returned call twice acquires once, while calling this
        again counts a new delivery."""
        # The promise lives in its entry's partition: for a protocol child ``<root>:<n>``
        # that is its family's, not the one its id hashes to (Keys.family_partition).
        keys = [self.keys.promise_in(k, id), self.keys.steps_in(k, id)]
        keys += self._acquire_keys(k, group)
        args = [id, entry, group, consumer, *self._acquire_args(k, poison)]
        return self.scripts["acquire"], keys, args

    def _acquire_keys(self, k: int, group: str) -> list[str]:
        """The partition's keys acquiring uses (acquire.lua's KEYS[3..9], take.lua's
        KEYS[1..7])."""
        return [
            self.keys.stream(k, group),
            self.keys.dead(k),
            self.keys.timeouts(k),
            self.keys.delayed(k),
            self.keys.index(k, PENDING),
            self.keys.index(k, "rejected"),
            self.keys.counts(k),
        ]

    def _acquire_args(self, k: int, poison: bytes) -> list[Any]:
        """acquire.lua's ARGV[5..12] and take.lua's ARGV[4..11]: the poison bound and its
        rejection, and a fresh acquisition token."""
        return [
            self.settings.max_deliveries,
            poison,
            self.retention_ms,
            self.keys.channel(k),
            f"{self._token_prefix}:{next(self._tokens)}",
            self.settings.dead_max_entries,
            self.dead_max_age_ms,
            self.publish,
        ]

    def take_call(self, k: int, group: str, consumer: str, count: int, poison: bytes) -> Call:
        """Read up to ``count`` new entries of partition ``k`` and acquire each (take.lua).

        Not replay-safe, like the XREADGROUP it runs: send it with :meth:`take`, never
        through a batch that resends after a lost connection. Refused by a cluster while
        the partition's slot migrates (take.lua's guard key): nothing is read then.
        """
        args = [
            group,
            consumer,
            count,
            *self._acquire_args(k, poison),
            self.keys.promise_prefix(k),
            self.keys.steps_prefix(k),
        ]
        return self.scripts["take"], [*self._acquire_keys(k, group), self.keys.absent(k)], args

    async def take(self, calls: Sequence[Call]) -> list[Any]:
        """Send ``take`` calls in one round trip, never resent (see take.lua's Replay)."""
        return await run_calls(self.redis, calls, resend=False)

    def bury_call(self, k: int, group: str, entry: str, reason: str) -> Call:
        """Move one unprocessable entry of ``group``'s stream to the dead stream."""
        return (
            self.scripts["bury"],
            [self.keys.stream(k, group), self.keys.dead(k)],
            [group, entry, reason, self.settings.dead_max_entries, self.dead_max_age_ms],
        )

    async def checkpoint(self, id: str, version: int, seq: int, outcome: bytes) -> int:
        return int((await self.checkpoint_reply(id, version, seq, outcome))[0])

    async def checkpoint_reply(self, id: str, version: int, seq: int, outcome: bytes) -> Any:
        """checkpoint.lua's whole reply: its code, and the completed state with ``-2``."""
        return await self.batch.call(
            self.scripts["checkpoint"],
            [self.keys.promise(id), self.keys.steps(id)],
            [version, seq, outcome],
        )

    def heartbeat_call(self, id: str, group: str, consumer: str, version: int, entry: str) -> Call:
        k = self.keys.partition(id)
        return (
            self.scripts["heartbeat"],
            [self.keys.promise(id), self.keys.stream(k, group)],
            [group, consumer, version, entry],
        )

    def retry_call(
        self,
        id: str,
        group: str,
        version: int,
        delay_ms: int,
        error: bytes,
        *,
        entry: str,
        attempt: bool = True,
    ) -> Call:
        k = self.keys.partition(id)
        return (
            self.scripts["retry"],
            [self.keys.promise(id), self.keys.stream(k, group), self.keys.delayed(k)],
            [id, group, version, delay_ms, error, "1" if attempt else "0", entry],
        )

    async def retry(
        self,
        id: str,
        group: str,
        version: int,
        delay_ms: int,
        error: bytes,
        *,
        entry: str,
        attempt: bool = True,
    ) -> int:
        """Hand the promise back for later: a retry (``attempt``) or a suspension.

        Acts only while the promise's dispatch is still ``entry`` (the one the caller's
        execution holds); anything else is this call's replay and answers 0.
        """
        reply = await self.retry_reply(
            id, group, version, delay_ms, error, entry=entry, attempt=attempt
        )
        return int(reply[0])

    async def retry_reply(
        self,
        id: str,
        group: str,
        version: int,
        delay_ms: int,
        error: bytes,
        *,
        entry: str,
        attempt: bool = True,
    ) -> Any:
        """:meth:`retry`'s whole reply: its code, and the completed state with ``-2``."""
        script, keys, args = self.retry_call(
            id, group, version, delay_ms, error, entry=entry, attempt=attempt
        )
        return await self.batch.call(script, keys, args)

    def promote_call(self, k: int, group: str, id: str) -> Call:
        return (
            self.scripts["promote"],
            [self.keys.delayed(k), self.keys.promise(id), self.keys.stream(k, group)],
            [id, group],
        )

    def reconcile_call(self, k: int, group: str, id: str, last_delivered: str) -> Call:
        return (
            self.scripts["reconcile"],
            [self.keys.promise(id), self.keys.stream(k, group), self.keys.delayed(k)],
            [id, group, last_delivered],
        )

    def forget_call(self, k: int, state: str, member: str) -> Call:
        """Drop index entry ``member`` (``<group>|<id>``) of ``state`` in partition ``k``
        if its promise is gone (retention ended) or is another promise by the same id."""
        id = member.partition("|")[2]
        return (
            self.scripts["forget"],
            [
                self.keys.promise(id),
                self.keys.index(k, state),
                self.keys.counts(k),
                self.keys.expiries(k),
            ],
            [member, state],
        )

    async def run_calls(self, calls: Sequence[Call]) -> list[Any]:
        return await run_calls(self.redis, calls, self.ack)
