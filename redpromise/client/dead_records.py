"""Dead records: listing them (newest first, over every partition, by pages), counting,
purging and requeueing them (:class:`DeadRecords`, a base of
:class:`~redpromise.client.inspect.Inspector`).

**Requeueing a dead record.** A dead record is either an entry redpromise could not process
(buried: no promise id, or an acquire that failed) or a *poison* rejection: a promise whose
dispatch was delivered more than ``max_deliveries`` times without completing. Requeueing:

- a record whose promise is still **pending** re-dispatches that same promise if, and only
  if, its dispatch is gone (``reconcile.lua``: a fresh stream entry, delivery count reset;
  a live dispatch is left alone, so the promise is never dispatched twice);
- a record whose promise is **completed** (the poison rejection) never reopens it: the first
  completion won, and whoever waited saw it. Instead a *new* promise is begun with the same
  function, arguments, group and tags, under an id derived from the dead record
  (:func:`requeue_id`), create-if-absent: requeueing the same record twice (two operators,
  a double click, a retried request) begins one promise. The dead record carries the
  function and arguments for this (the promise's hash drops its arguments on completion);
- a record without a promise id, or a poison record written before records carried their
  arguments, cannot be requeued (:class:`NotRequeueable`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redpromise.client.fields import fields, int_or_none
from redpromise.core.codec import as_text, decode
from redpromise.core.keys import MAX_ID_BYTES
from redpromise.redis.classify import translate_errors
from redpromise.store.scripts import refusal
from redpromise.store.store import PENDING

if TYPE_CHECKING:
    from redpromise.client.client import Redpromise

__all__ = [
    "DeadPage",
    "DeadRecord",
    "DeadRecordNotFound",
    "DeadRecords",
    "NotRequeueable",
    "requeue_id",
]


class NotRequeueable(Exception):
    """The dead record cannot be requeued (why is the message)."""


class DeadRecordNotFound(NotRequeueable):
    """No dead record by that key (never written, trimmed, or purged)."""


def requeue_id(id: str, entry: str) -> str:
    """The id of the promise that requeues dead record ``entry`` of promise ``id``.

    Deterministic, so a requeue repeated for the same record finds the promise begun by
    the first one; a hash of ``id`` stands in when ``id`` is too long to extend.
    """
    candidate = f"{id}~requeue-{entry}"
    if len(candidate.encode("utf-8")) <= MAX_ID_BYTES:
        return candidate
    return f"requeue-{hashlib.sha256(id.encode('utf-8')).hexdigest()[:32]}-{entry}"


@dataclass(frozen=True, slots=True)
class DeadRecord:
    """One record of a partition's dead stream."""

    partition: int
    entry: str  # the dead stream's entry id (ms-seq: when it was recorded)
    id: str | None  # the promise, when known
    group: str
    reason: str
    deliveries: int | None
    func: str | None
    args: bytes | None

    @property
    def key(self) -> str:
        """``<partition>:<entry>``: names this record for :meth:`DeadRecords.requeue`."""
        return f"{self.partition}:{self.entry}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "recorded_at": int(self.entry.split("-")[0]),
            "id": self.id,
            "group": self.group,
            "reason": self.reason,
            "deliveries": self.deliveries,
            "function": self.func,
            "requeueable": self.id is not None,
        }


@dataclass(frozen=True, slots=True)
class DeadPage:
    """One page of :meth:`DeadRecords.dead`: ``records``, newest first, and the ``cursor`` of
    the next page (``None`` once the oldest record has been read)."""

    records: list[DeadRecord]
    cursor: str | None


def _order(rec: DeadRecord) -> tuple[int, int, int]:
    """The listing's order: the entry id's (ms, seq), ties across partitions by partition."""
    ms, _, seq = rec.entry.partition("-")
    return int(ms), int(seq or 0), rec.partition


def _start(after: tuple[int, int, int], k: int) -> str:
    """Partition ``k``'s ``XREVRANGE`` start for what comes after ``after`` in
    :func:`_order` (descending): an entry of the same id comes after it in a lower partition."""
    entry = f"{after[0]}-{after[1]}"
    return entry if k < after[2] else f"({entry}"


def _dead(k: int, entry: Any, raw: Any) -> DeadRecord:
    f = fields(raw)
    deliveries = f.get("deliveries")
    return DeadRecord(
        partition=k,
        entry=as_text(entry),
        id=as_text(f["id"]) if f.get("id") is not None else None,
        group=as_text(f.get("group") or b""),
        reason=as_text(f["reason"])
        if f.get("reason") is not None
        else f"poison: delivered {as_text(deliveries or b'?')} times without completing",
        deliveries=int(deliveries) if deliveries is not None else None,
        func=as_text(f["func"]) if f.get("func") is not None else None,
        args=f["args"] if isinstance(f.get("args"), bytes) else None,
    )


class DeadRecords:
    """The operator's dead-record operations over one :class:`Redpromise`'s namespace."""

    rp: Redpromise

    async def dead(
        self, limit: int = 50, group: str | None = None, cursor: str | None = None
    ) -> DeadPage:
        """Up to ``limit`` dead records over every partition, newest first, from after
        ``cursor`` (a page's :attr:`DeadPage.cursor`; ``None``: from the newest).

        Never reads a whole stream: each round reads at most ``limit + 1`` entries (at
        least 100 with ``group``) per partition (``XREVRANGE`` with ``COUNT`` from an
        exclusive start); with ``group``, a page that has read ``max(1000, 10 * limit)``
        entries comes back short, with a cursor (so may the last page: empty, without one).
        Raises ``ValueError`` on a bad cursor.
        """
        after = self._after(cursor)
        # One more than a page: a page that ends a partition knows it is the last one.
        chunk = limit + 1 if group is None else max(limit + 1, 100)
        budget = max(1000, 10 * limit)
        records: list[DeadRecord] = []
        examined = 0
        while True:
            pipe = self.rp.redis.pipeline(transaction=False)
            for k in range(self.rp.keys.partitions):
                start = "+" if after is None else _start(after, k)
                pipe.xrevrange(self.rp.keys.dead(k), start, "-", count=chunk)
            async with translate_errors():
                replies = await pipe.execute()
            found = [
                _dead(k, entry, raw)
                for k, reply in enumerate(replies)
                for entry, raw in reply or []
            ]
            # A partition that filled its chunk may hold more past its last entry read:
            # only what is newer than the newest such last entry is known to be complete.
            ends = [_order(_dead(k, *r[-1])) for k, r in enumerate(replies) if len(r) >= chunk]
            bound = max(ends) if ends else None
            found = sorted(
                (r for r in found if bound is None or _order(r) >= bound), key=_order, reverse=True
            )
            for n, rec in enumerate(found):
                examined += 1
                after = _order(rec)
                if group is not None and rec.group != group:
                    continue
                records.append(rec)
                if len(records) == limit:
                    end = bound is None and n == len(found) - 1
                    return DeadPage(records, None if end else rec.key)
            if bound is None:
                return DeadPage(records, None)
            if examined >= budget and after is not None:
                return DeadPage(records, f"{after[2]}:{after[0]}-{after[1]}")

    def _after(self, cursor: str | None) -> tuple[int, int, int] | None:
        if cursor is None:
            return None
        k_text, _, entry = cursor.partition(":")
        ms, _, seq = entry.partition("-")
        k = int_or_none(k_text)
        if (
            k is None
            or not 0 <= k < self.rp.keys.partitions
            or not ms.isdigit()
            or not seq.isdigit()
        ):
            raise ValueError(f"not a dead-record cursor: {cursor!r}")
        return int(ms), int(seq), k

    async def dead_listing(
        self, limit: int = 50, group: str | None = None, cursor: str | None = None
    ) -> dict[str, Any]:
        """:meth:`dead` as ``{"records": [...], "cursor": ...}``: each record a JSON-ready
        dict (:meth:`DeadRecord.to_dict`) with ``requeued_as``: the promise a requeue began
        for it, while that promise is stored (else ``None``; a pending promise's record is
        re-dispatched in place, never this)."""
        page = await self.dead(limit, group, cursor)
        records = page.records
        derived = [requeue_id(r.id, r.entry) if r.id else None for r in records]
        found = iter(await self.exists([d for d in derived if d]))
        out = []
        for rec, new_id in zip(records, derived, strict=True):
            d = rec.to_dict()
            d["requeued_as"] = new_id if new_id is not None and next(found) else None
            out.append(d)
        return {"records": out, "cursor": page.cursor}

    async def purge_dead(self, before_ms: int | None = None) -> int:
        """Delete the dead records recorded before ``before_ms`` (ms on Redis' clock, which
        the entry ids carry), or every one when ``None``; returns how many were deleted."""
        pipe = self.rp.redis.pipeline(transaction=False)
        for k in range(self.rp.keys.partitions):
            if before_ms is None:
                pipe.xtrim(self.rp.keys.dead(k), maxlen=0, approximate=False)
            else:
                pipe.xtrim(self.rp.keys.dead(k), minid=str(before_ms), approximate=False)
        async with translate_errors():
            return sum(int(n) for n in await pipe.execute())

    async def dead_count(self) -> int:
        """Dead records kept, over every partition."""
        pipe = self.rp.redis.pipeline(transaction=False)
        for k in range(self.rp.keys.partitions):
            pipe.xlen(self.rp.keys.dead(k))
        async with translate_errors():
            return sum(await pipe.execute())

    async def dead_record(self, key: str) -> DeadRecord:
        """The dead record named ``<partition>:<entry>`` (:attr:`DeadRecord.key`)."""
        k_text, _, entry = key.partition(":")
        k = int_or_none(k_text)
        if k is None or not 0 <= k < self.rp.keys.partitions or not entry:
            raise DeadRecordNotFound(f"no dead record {key!r}")
        async with translate_errors():
            found = await self.rp.redis.xrange(self.rp.keys.dead(k), entry, entry)
        if not found:
            raise DeadRecordNotFound(f"no dead record {key!r} (trimmed, purged, or never written)")
        return _dead(k, found[0][0], found[0][1])

    async def requeue(self, key: str) -> dict[str, Any]:
        """Requeue dead record ``key`` as the module docstring defines; returns
        ``{"action": "redispatched" | "already_dispatched" | "begun", "id": <promise>}``
        (``begun``: ``id`` is the new promise; the same one for a repeated requeue)."""
        rec = await self.dead_record(key)
        if rec.id is None:
            raise NotRequeueable("the dead entry carries no promise id: nothing to requeue")
        rp = self.rp
        k = rp.keys.partition(rec.id)
        current = (await rp.store.read_many([rec.id]))[0]
        if isinstance(current, BaseException):
            raise current
        if current is not None and current.state == PENDING:
            script, keys, args = rp.store.reconcile_call(k, current.group, rec.id, "")
            async with translate_errors():
                res = await rp.store.run_calls([(script, keys, args)])
            if isinstance(res[0], BaseException):
                raise res[0]
            code = int(res[0][0])
            action = {1: "redispatched", 0: "already_dispatched"}.get(code)
            if action is None:
                raise NotRequeueable(f"the promise cannot be re-dispatched: {refusal(code)}")
            return {"action": action, "id": rec.id}
        if rec.func is None or rec.args is None:
            raise NotRequeueable(
                "the dead record does not carry the function's arguments (written by an "
                "older redpromise), and a completed promise keeps none: begin it again"
            )
        new_id = requeue_id(rec.id, rec.entry)
        tags = decode(current.tags) if current is not None and current.tags else None
        payload = decode(rec.args)
        args = payload.get("a", []) if isinstance(payload, dict) else []
        kwargs = payload.get("k", {}) if isinstance(payload, dict) else {}
        await rp.begin_rpc(
            new_id, rec.func, *args, target=rec.group or None, tags=tags or None, **kwargs
        )
        return {"action": "begun", "id": new_id}

    async def exists(self, ids: Sequence[str]) -> list[bool]:
        """Whether each promise of ``ids`` is still stored."""
        pipe = self.rp.redis.pipeline(transaction=False)
        for id in ids:
            pipe.exists(self.rp.keys.promise(id))
        async with translate_errors():
            return [bool(n) for n in await pipe.execute()]
