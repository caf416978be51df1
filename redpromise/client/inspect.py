"""Read-mostly views of a namespace for operators (the dashboard, tooling).

Everything here reads what the transitions wrote (stream and consumer-group state by
``XINFO``, dead records by ``XREVRANGE``, one promise's hash, steps and children) and writes
only through the transitions or :meth:`Redpromise.begin_rpc` (:meth:`Inspector.requeue`).

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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redis.asyncio import RedisCluster

from redpromise.core.codec import as_text, call_of, decode, decode_error, readable
from redpromise.core.errors import PayloadError, PromiseNotFound
from redpromise.core.keys import MAX_ID_BYTES, validate_id
from redpromise.redis.classify import translate_errors
from redpromise.redis.wire import server_name, short_of_replicas
from redpromise.store.queues import depth
from redpromise.store.scripts import refusal
from redpromise.store.search import LastError
from redpromise.store.store import PENDING

if TYPE_CHECKING:
    from redpromise.client.client import Redpromise

__all__ = [
    "DeadPage",
    "DeadRecord",
    "DeadRecordNotFound",
    "Inspector",
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
        """``<partition>:<entry>``: names this record for :meth:`Inspector.requeue`."""
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
    """One page of :meth:`Inspector.dead`: ``records``, newest first, and the ``cursor`` of
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


def _fields(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return {as_text(k): v for k, v in raw.items()}
    return {as_text(raw[i]): raw[i + 1] for i in range(0, len(raw), 2)}


def _dead(k: int, entry: Any, raw: Any) -> DeadRecord:
    f = _fields(raw)
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


def _get(stream: Any) -> Any:
    """``entries-added`` of an ``XINFO STREAM`` reply (Redis >= 7; else ``None``)."""
    return _fields(stream).get("entries-added") if isinstance(stream, dict | list) else None


def _value(blob: Any, *, error: bool = False) -> Any:
    if blob is None:
        return None
    data = blob if isinstance(blob, bytes) else as_text(blob).encode()
    try:
        if error:
            type_name, message = decode_error(data)
            return {"type": type_name, "message": message}
        return decode(data)
    except PayloadError as exc:
        return {"unreadable": str(exc)}


def _int(v: Any) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


class Inspector:
    """The operator's reads (and requeue) over one :class:`Redpromise`'s namespace."""

    def __init__(self, rp: Redpromise) -> None:
        self.rp = rp

    # -- groups -------------------------------------------------------------------------

    async def group_names(self, known: Iterable[str] = ()) -> list[str]:
        """Groups ``known`` plus every group with a promise counted by
        :meth:`Redpromise.counts` (pending, or completed and retained): O(partitions)."""
        counts = await self.rp.counts()
        found = {g for per_group in counts.values() for g, n in per_group.items() if g and n}
        return sorted(found | set(known))

    async def groups(self, known: Iterable[str] = ()) -> list[dict[str, Any]]:
        """Per group: ``backlog`` (dispatched, not yet delivered), ``in_flight`` (delivered,
        not completed), ``dispatched`` (entries ever added, Redis >= 7; else ``None``), and
        its ``consumers`` (``pending`` entries, ``idle_ms`` since their last read or
        claim, ``status``), summed over partitions. ``status`` is ``alive`` while the idle
        time is within :meth:`alive_ms`; past it, ``gone`` when the consumer holds entries
        (a live worker renews each one every lease / 3, which resets the idle time: these
        wait for another worker to reclaim them) or when Redis (>= 7.2) counts reads that
        found nothing; else ``idle``: holding nothing, Redis < 7.2 cannot tell a worker
        with nothing to do from one that stopped (the upkeep deletes it later)."""
        names = await self.group_names(known)
        parts = range(self.rp.keys.partitions)
        pipe = self.rp.redis.pipeline(transaction=False)
        for group in names:
            for k in parts:
                stream = self.rp.keys.stream(k, group)
                pipe.xlen(stream)
                pipe.xinfo_groups(stream)
                pipe.xinfo_consumers(stream, group)
                pipe.xinfo_stream(stream)
        async with translate_errors():
            replies = await pipe.execute(raise_on_error=False)
        out = []
        for i, group in enumerate(names):
            backlog = in_flight = 0
            dispatched: int | None = 0
            consumers: dict[str, dict[str, Any]] = {}
            for j in range(len(parts)):
                xlen, info, cons, stream = replies[(i * len(parts) + j) * 4 :][:4]
                mine = next(
                    (
                        g
                        for g in map(_fields, info if isinstance(info, list) else [])
                        if as_text(g.get("name", b"")) == group
                    ),
                    {},
                )
                pending = _int(mine.get("pending")) or 0
                in_flight += pending
                backlog += depth(xlen if isinstance(xlen, int) else 0, pending, mine.get("lag"))
                for c in cons if isinstance(cons, list) else []:
                    c = _fields(c)
                    name = as_text(c.get("name", b""))
                    seen = consumers.setdefault(name, {"name": name, "pending": 0, "idle_ms": None})
                    seen["pending"] += _int(c.get("pending")) or 0
                    # Redis >= 7.2: `idle` counts from the last read, even one that found
                    # nothing (`inactive`, new then, from the last that found something).
                    seen["reads"] = seen.get("reads", False) or "inactive" in c
                    idle = _int(c.get("idle"))
                    if idle is not None and (seen["idle_ms"] is None or idle < seen["idle_ms"]):
                        seen["idle_ms"] = idle
                # A partition the group never used has no stream: nothing added there.
                added = 0 if isinstance(stream, BaseException) else _int(_get(stream))
                dispatched = None if dispatched is None or added is None else dispatched + added
            for c in consumers.values():
                live = c["idle_ms"] is not None and c["idle_ms"] <= self.alive_ms()
                known = c.pop("reads") or c["pending"] > 0
                c["status"] = "alive" if live else "gone" if known else "idle"
            out.append(
                {
                    "name": group,
                    "backlog": backlog,
                    "in_flight": in_flight,
                    "dispatched": dispatched,
                    "consumers": sorted(consumers.values(), key=lambda c: c["name"]),
                }
            )
        return out

    def alive_ms(self) -> int:
        """The longest idle time of a live consumer: a live worker reads (blocking up to
        ``block``) and renews its leases (every ``heartbeat``) again and again, so one
        silent for a lease plus a block has stopped (this client's settings: a namespace's
        workers share them)."""
        s = self.rp.settings
        return int((s.lease + s.block).total_seconds() * 1000)

    # -- dead records -------------------------------------------------------------------

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
                _dead(k, entry, fields)
                for k, reply in enumerate(replies)
                for entry, fields in reply or []
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
        k = _int(k_text)
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
        k = _int(k_text)
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

    # -- one promise --------------------------------------------------------------------

    async def detail(self, id: str, *, values: bool = True) -> dict[str, Any]:
        """One promise: its fields, recorded steps (in order) and children (with their
        states). ``values=False`` leaves out arguments, result, error and step values."""
        validate_id(id)
        keys = self.rp.keys
        pipe = self.rp.redis.pipeline(transaction=False)
        pipe.hgetall(keys.promise(id))
        pipe.hgetall(keys.steps(id))
        pipe.smembers(keys.children(id))
        async with translate_errors():
            raw, steps_raw, children_raw = await pipe.execute()
        if not raw:
            raise PromiseNotFound(id)
        h = {as_text(k): v for k, v in raw.items()}
        state = as_text(h.get("state", b""))
        out: dict[str, Any] = {
            "id": id,
            "state": state,
            "function": as_text(h.get("func", b"")),
            "group": as_text(h.get("group", b"")),
            "created_at": _int(h.get("created_at")),
            "timeout_at": _int(h.get("timeout_at")),
            "completed_at": _int(h.get("completed_at")),
            "completed_by": as_text(h["completed_by"]) if h.get("completed_by") else None,
            "attempt": _int(h.get("attempt")) or 0,
            "version": _int(h.get("version")) or 0,
            # A missing count is 0 while pending (create.lua stores no default values);
            # a completed record drops it (settle.lua), and shows none.
            "deliveries": _int(h.get("deliveries", b"0" if state == "pending" else None)),
            "owner": as_text(h["owner"]) if h.get("owner") else None,
            "tags": _value(h.get("tags")) if h.get("tags") else {},
        }
        last = LastError.parse(
            h.get("last_error"),
            _int(h.get("error_at")),
            _int(h.get("retry_at")),
            out["attempt"],
            state == PENDING,
        )
        out["last_error"] = last.to_dict() if last is not None else None
        if values:
            rejected = state.startswith("rejected")
            args = _value(h.get("args"))
            unreadable = isinstance(args, dict) and "unreadable" in args
            out["args"] = None if args is None else args if unreadable else call_of(args)
            out["result"] = readable(_value(h.get("value"))) if state == "resolved" else None
            out["error"] = _value(h.get("value"), error=True) if rejected else None
        elif last is not None:
            del out["last_error"]["message"]
        steps = []
        for seq, blob in sorted(((int(s), b) for s, b in steps_raw.items()), key=lambda x: x[0]):
            outcome = _value(blob)
            step: dict[str, Any] = {"seq": seq}
            if isinstance(outcome, dict):
                step["kind"] = as_text(outcome.get("k", "run"))
                step["name"] = as_text(outcome.get("n", ""))
                step["at"] = _int(outcome.get("t"))
                step["ok"] = "e" not in outcome
                # Steps carry no timestamp of their own: only a sleep's wake-up time, and
                # an rpc's child id (whose record has its own times).
                step["wake_at"] = _int(outcome.get("w"))
                step["child"] = as_text(outcome["c"]) if outcome.get("c") else None
                if values:
                    step["value"] = readable(outcome.get("v"))
                    step["error"] = readable(outcome.get("e"))
            steps.append(step)
        out["steps"] = steps
        children = sorted(as_text(c) for c in children_raw)
        out["children"] = await self._states(children)
        return out

    async def _states(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        if not ids:
            return []
        async with translate_errors():
            recs = await self.rp.store.read_many(list(ids))
        out = []
        for id, rec in zip(ids, recs, strict=True):
            if rec is None or isinstance(rec, BaseException):
                out.append({"id": id, "state": "expired" if rec is None else "unreadable"})
            else:
                out.append({"id": id, "state": rec.state, "function": rec.func})
        return out

    async def exists(self, ids: Sequence[str]) -> list[bool]:
        """Whether each promise of ``ids`` is still stored."""
        pipe = self.rp.redis.pipeline(transaction=False)
        for id in ids:
            pipe.exists(self.rp.keys.promise(id))
        async with translate_errors():
            return [bool(n) for n in await pipe.execute()]

    async def replicas_short(self) -> list[dict[str, Any]]:
        """With ``Settings.replicas_ack``, the shards (masters) with fewer connected
        replicas than it needs, which refuse durable writes (``NOREPLICAS``) until one
        returns: ``{"shard", "replicas", "needed", "since"}``. ``since`` (ms since the
        epoch) is when this process's writes were first refused there, ``None`` when it
        made none (a CLI): the choice and its record are in docs/operations.md."""
        needed = self.rp.settings.replicas_ack
        if needed <= 0:
            return []
        redis: Any = self.rp.redis
        if isinstance(redis, RedisCluster):
            nodes = redis.get_primaries()
            async with translate_errors():
                infos = [
                    await redis.execute_command("INFO", "replication", target_nodes=n)
                    for n in nodes
                ]
            names = [n.name for n in nodes]
        else:
            async with translate_errors():
                infos = [await redis.info("replication")]
            names = [server_name(redis)]
        seen = short_of_replicas()
        return [
            {"shard": name, "replicas": n, "needed": needed, "since": seen.get(name)}
            for name, info in zip(names, infos, strict=True)
            if (n := int(info.get("connected_slaves", 0))) < needed
        ]
