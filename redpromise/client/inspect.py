"""Read-mostly views of a namespace for operators (the dashboard, tooling).

Everything here reads what the transitions wrote (stream and consumer-group state by
``XINFO``, dead records by ``XREVRANGE``, one promise's hash, steps and children) and writes
only through the transitions or :meth:`Redpromise.begin_rpc` (:meth:`Inspector.requeue`,
whose rules are in :mod:`redpromise.client.dead_records`, with the dead-record listing).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from redpromise.client.dead_records import (
    DeadPage,
    DeadRecord,
    DeadRecordNotFound,
    DeadRecords,
    NotRequeueable,
    requeue_id,
)
from redpromise.client.fields import fields, int_or_none
from redpromise.core.codec import as_text, call_of, decode, decode_error, readable
from redpromise.core.errors import PayloadError, PromiseNotFound
from redpromise.core.keys import validate_id
from redpromise.redis.classify import translate_errors
from redpromise.redis.kinds import primaries_info
from redpromise.redis.wire import short_of_replicas
from redpromise.store.protocol_records import call_of_param
from redpromise.store.queues import depth
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


def _entries_added(stream: Any) -> int | None:
    """``entries-added`` of an ``XINFO STREAM`` reply (Redis >= 7; else ``None``)."""
    if not isinstance(stream, dict | list):
        return None
    return int_or_none(fields(stream).get("entries-added"))


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


class Inspector(DeadRecords):
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
                        for g in map(fields, info if isinstance(info, list) else [])
                        if as_text(g.get("name", b"")) == group
                    ),
                    {},
                )
                pending = int_or_none(mine.get("pending")) or 0
                in_flight += pending
                backlog += depth(xlen if isinstance(xlen, int) else 0, pending, mine.get("lag"))
                for c in cons if isinstance(cons, list) else []:
                    c = fields(c)
                    name = as_text(c.get("name", b""))
                    seen = consumers.setdefault(name, {"name": name, "pending": 0, "idle_ms": None})
                    seen["pending"] += int_or_none(c.get("pending")) or 0
                    # Redis >= 7.2: `idle` counts from the last read, even one that found
                    # nothing (`inactive`, new then, from the last that found something).
                    seen["reads"] = seen.get("reads", False) or "inactive" in c
                    idle = int_or_none(c.get("idle"))
                    if idle is not None and (seen["idle_ms"] is None or idle < seen["idle_ms"]):
                        seen["idle_ms"] = idle
                # A partition the group never used has no stream: nothing added there.
                added = 0 if isinstance(stream, BaseException) else _entries_added(stream)
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
            "created_at": int_or_none(h.get("created_at")),
            "timeout_at": int_or_none(h.get("timeout_at")),
            "completed_at": int_or_none(h.get("completed_at")),
            "completed_by": as_text(h["completed_by"]) if h.get("completed_by") else None,
            "attempt": int_or_none(h.get("attempt")) or 0,
            "version": int_or_none(h.get("version")) or 0,
            # A missing count is 0 while pending (create.lua stores no default values);
            # a completed record drops it (settle.lua), and shows none.
            "deliveries": int_or_none(h.get("deliveries", b"0" if state == "pending" else None)),
            "owner": as_text(h["owner"]) if h.get("owner") else None,
            "tags": _value(h.get("tags")) if h.get("tags") else {},
        }
        last = LastError.parse(
            h.get("last_error"),
            int_or_none(h.get("error_at")),
            int_or_none(h.get("retry_at")),
            out["attempt"],
            state == PENDING,
        )
        out["last_error"] = last.to_dict() if last is not None else None
        protocol = h.get("codec") == b"resonate"
        if protocol:  # made through the Resonate face: its tags and call as the SDK sent them
            out["protocol"] = "resonate"
            out["tags"] = json.loads(h["rs_tags"]) if h.get("rs_tags") else {}
        if values:
            rejected = state.startswith("rejected")
            if protocol:
                out["args"] = call_of_param(h.get("rs_param"))
            else:
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
                step["at"] = int_or_none(outcome.get("t"))
                step["ok"] = "e" not in outcome
                # Steps carry no timestamp of their own: only a sleep's wake-up time, and
                # an rpc's child id (whose record has its own times).
                step["wake_at"] = int_or_none(outcome.get("w"))
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

    async def replicas_short(self) -> list[dict[str, Any]]:
        """With ``Settings.replicas_ack``, the shards (masters) with fewer connected
        replicas than it needs, which refuse durable writes (``NOREPLICAS``) until one
        returns: ``{"shard", "replicas", "needed", "since"}``. ``since`` (ms since the
        epoch) is when this process's writes were first refused there, ``None`` when it
        made none (a CLI): the choice and its record are in docs/operations.md."""
        needed = self.rp.settings.replicas_ack
        if needed <= 0:
            return []
        async with translate_errors():
            infos = await primaries_info(self.rp.redis, "replication")
        seen = short_of_replicas()
        return [
            {"shard": name, "replicas": n, "needed": needed, "since": seen.get(name)}
            for name, info in infos
            if (n := int(info.get("connected_slaves", 0))) < needed
        ]
