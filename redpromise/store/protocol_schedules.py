"""Schedules of the Resonate protocol (2026-04-01) on Redis.

A schedule is a hash ``{ns:k}:rs:<id>`` in the partition of its id, plus its member in
that partition's due zset ``{ns:k}:rst`` scored by ``next_run_at``. Replies match the
reference server's (``Server`` of the TypeScript SDK) status for status and record for
record. Firing (the schedule part of ``debug.tick``) is :meth:`ProtocolSchedules.fire_due`:
each due run's promise is created through a caller-given ``promise.create`` (idempotent
by promise id), *then* the schedule is advanced by a script fenced on the run it fired,
so any number of replicas firing concurrently make one promise and one step per run.

Time: ``now`` in ms, or ``None`` for Redis' clock, read with one ``TIME`` (the next run of
a new schedule is computed here in Python from the cron, so the scripts get it as an
argument rather than reading ``TIME`` themselves).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from redpromise.core.cron import Cron
from redpromise.core.errors import InvalidCron
from redpromise.store.schedules import fire_run, is_redpromise
from redpromise.store.store import Store

__all__ = ["SCHEDULE_KINDS", "ProtocolSchedules"]

log = logging.getLogger("redpromise")

SCHEDULE_KINDS = ("schedule.create", "schedule.get", "schedule.delete", "schedule.search")

Create = Callable[[dict[str, Any]], Awaitable[Any]]

_NOT_FOUND = "Schedule not found"


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _hash(flat: list[Any]) -> dict[str, str]:
    return {_text(flat[i]): _text(flat[i + 1]) for i in range(0, len(flat), 2)}


def schedule_record(id: str, h: Mapping[str, str]) -> dict[str, Any]:
    """A stored schedule as the protocol's record: ``{id, cron, promiseId,
    promiseTimeout, promiseParam, promiseTags, createdAt, nextRunAt[, lastRunAt]}``
    (``lastRunAt`` absent until the first run; a field the create request lacked is
    absent too, as the reference's JSON leaves it out)."""
    record: dict[str, Any] = {"id": id, "cron": h["cron"]}
    if "promise_id" in h:
        record["promiseId"] = h["promise_id"]
    for field, name in (
        ("promise_timeout", "promiseTimeout"),
        ("promise_param", "promiseParam"),
        ("promise_tags", "promiseTags"),
    ):
        if field in h:
            record[name] = json.loads(h[field])
    record["createdAt"] = int(h["created_at"])
    record["nextRunAt"] = int(h["next_run_at"])
    if "last_run_at" in h:
        record["lastRunAt"] = int(h["last_run_at"])
    return record


def promise_id(template: str, schedule_id: str, run: int) -> str:
    """The id of a run's promise: ``{{.id}}`` becomes the schedule id, then
    ``{{.timestamp}}`` the run's time in decimal ms (in that order, as the reference)."""
    return template.replace("{{.id}}", schedule_id).replace("{{.timestamp}}", str(run))


class ProtocolSchedules:
    """The schedule kinds of the protocol, on the namespace of ``store``. Stateless
    besides the store: any number of instances (replicas) may share one Redis."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def _now(self, now: int | None) -> int:
        if now is not None:
            return now
        secs, micros = await self.store.redis.time()
        return int(secs) * 1000 + int(micros) // 1000

    def _keys(self, id: str) -> list[str]:
        k = self.store.keys.partition(id)
        return [self.store.keys.rs_schedule(k, id), self.store.keys.rs_schedules_due(k)]

    async def read(self, id: str) -> dict[str, Any] | None:
        """Schedule ``id``'s record, or None."""
        raw: Any = await self.store.redis.hgetall(self._keys(id)[0])
        if not raw:
            return None
        return schedule_record(id, {_text(f): _text(v) for f, v in raw.items()})

    async def apply(self, kind: str, data: Mapping[str, Any], now: int | None) -> tuple[int, Any]:
        """One schedule request: (status, reply data) as the reference answers it.

        ``data`` is the request's ``data``, already checked to be an object with a string
        ``id`` by the caller. Kinds other than :data:`SCHEDULE_KINDS` raise ValueError.
        """
        if kind == "schedule.get":
            record = await self.read(data["id"])
            return (404, _NOT_FOUND) if record is None else (200, {"schedule": record})
        if kind == "schedule.create":
            return await self._create(data, now)
        if kind == "schedule.delete":
            reply = await self.store.scripts["rs_schedule_delete"](
                self.store.redis, self._keys(data["id"]), [data["id"]]
            )
            return (200, {}) if int(reply[0]) == 1 else (404, _NOT_FOUND)
        if kind == "schedule.search":
            return 501, "Not implemented"
        raise ValueError(f"not a schedule kind: {kind!r}")

    async def _create(self, data: Mapping[str, Any], now: int | None) -> tuple[int, Any]:
        id: str = data["id"]
        tags = data.get("promiseTags")
        if not isinstance(tags, dict) or "resonate:target" not in tags:
            return 400, "promiseTags must include a resonate:target tag"
        template, timeout = data.get("promiseId"), data.get("promiseTimeout")
        problem = None
        cron: Cron | None = None
        try:
            cron = Cron.parse(data.get("cron"))  # type: ignore[arg-type]
        except InvalidCron:
            problem = "Invalid cron expression"
        # Beyond the reference (it would fail later, when the schedule fires): firing
        # needs a template string and an integer timeout.
        if problem is None and not isinstance(template, str):
            problem = "promiseId must be a string"
        if problem is None and (not isinstance(timeout, int) or isinstance(timeout, bool)):
            problem = "promiseTimeout must be an integer (ms)"
        if problem is not None or cron is None:
            # The reference answers an existing id before it reads the rest.
            existing = await self.read(id)
            return (400, problem) if existing is None else (200, {"schedule": existing})
        at = await self._now(now)
        next_run = cron.next_after(at)
        fields: list[str] = [
            "cron", cron.text,
            "promise_id", str(template),
            "promise_timeout", json.dumps(timeout),
            "promise_tags", json.dumps(tags, ensure_ascii=False),
            "created_at", str(at),
        ]  # fmt: skip
        if "promiseParam" in data:
            fields += ["promise_param", json.dumps(data["promiseParam"], ensure_ascii=False)]
        reply = await self.store.scripts["rs_schedule_create"](
            self.store.redis, self._keys(id), [id, str(next_run), *fields]
        )
        if int(reply[0]) == 0:
            return 200, {"schedule": schedule_record(id, _hash(reply[1:]))}
        h = dict(zip(fields[::2], fields[1::2], strict=True))
        h["next_run_at"] = str(next_run)
        return 200, {"schedule": schedule_record(id, h)}

    async def fire_due(self, now: int | None, create: Create, limit: int = 1000) -> int:
        """Fire every schedule whose next run is at or before ``now`` (None: Redis'
        clock), one run per schedule per call, in every partition; returns how many runs
        this call advanced.

        For each due run: ``create({"id", "timeoutAt", "param", "tags"})`` (the caller's
        ``promise.create``; it must be idempotent by id), or for a redpromise schedule
        (:mod:`redpromise.store.schedules`) its redpromise promise, created and dispatched
        by :func:`fire_run` (idempotent by id too); then the advance script, fenced
        on the run, moves ``next_run_at`` to the cron's next time after the run. A replica
        that loses the fence created the same promise id, so nothing is doubled; a crash
        between the two steps leaves the run due, and the next call creates (idempotently)
        and advances it. ``limit``: due schedules read per partition per call.
        """
        at = await self._now(now)
        keys = self.store.keys
        redis = self.store.redis
        advanced = 0
        # One round trip for every partition's due zset: every ticker (each worker's
        # upkeep, each serve replica) asks this every second.
        pipe = redis.pipeline(transaction=False)
        for k in range(keys.partitions):
            pipe.zrangebyscore(keys.rs_schedules_due(k), "-inf", at, 0, limit)
        dues: list[Any] = await pipe.execute()
        for k, due in enumerate(dues):
            for member in due:
                id = _text(member)
                raw: Any = await redis.hgetall(keys.rs_schedule(k, id))
                if not raw:
                    continue  # deleted after the zset read
                h = {_text(f): _text(v) for f, v in raw.items()}
                run = int(h["next_run_at"])
                if run > at:
                    continue  # another replica advanced it after our zset read
                try:
                    following = Cron.parse(h["cron"]).next_after(run)
                except InvalidCron as exc:  # stored by create, so never expected
                    log.error("schedule %r: its cron cannot be read: %s", id, exc)
                    continue
                if is_redpromise(h):
                    await fire_run(self.store, id, h, run)
                else:
                    await create(self._protocol_promise(id, h, run))
                reply = await self.store.scripts["rs_schedule_advance"](
                    redis, [keys.rs_schedule(k, id), keys.rs_schedules_due(k)],
                    [id, str(run), str(following)],
                )  # fmt: skip
                advanced += int(reply[0]) == 1
        return advanced

    @staticmethod
    def _protocol_promise(id: str, h: Mapping[str, str], run: int) -> dict[str, Any]:
        """promise.create's data for run ``run`` of protocol schedule ``id``."""
        tags = json.loads(h["promise_tags"])
        promise: dict[str, Any] = {
            "id": promise_id(h["promise_id"], id, run),
            "timeoutAt": run + json.loads(h["promise_timeout"]),
            "tags": {**tags, "resonate:schedule": id},
        }
        if "promise_param" in h:
            promise["param"] = json.loads(h["promise_param"])
        return promise
