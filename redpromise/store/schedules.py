"""Redpromise schedules: cron-driven ``begin_rpc``, on the protocol schedules' records.

A redpromise schedule is a protocol schedule record (``{ns:k}:rs:<id>`` plus its member
of ``{ns:k}:rst``, see :mod:`redpromise.store.protocol_schedules`) with extra fields that
mark it as redpromise's and say what each run calls:

``rp_function``  the registered function's name (the marker: present only here)
``rp_group``     the group whose workers run it
``rp_args``      the call's payload (msgpack ``{"a": args, "k": kwargs}``), base64: the
                 protocol side reads every field of the hash as text

Its protocol fields are filled in so that ``schedule.get`` answers a full record:
``promise_id`` is ``{{.id}}.{{.timestamp}}`` (so each run's promise id is
``<schedule id>.<run ms>``), ``promise_timeout`` the promise timeout in ms, and
``promise_tags`` ``{"redpromise:function": …, "redpromise:group": …}`` (informative; a
protocol ticker never reads them for such a record).

Firing is :meth:`ProtocolSchedules.fire_due`'s for every schedule; for a record with the
marker it calls :func:`fire_run` (a redpromise promise, created and dispatched in one
script, idempotent by id) instead of the caller's protocol ``promise.create``. So any
ticker, a worker's upkeep or ``redpromise serve``, fires both kinds, and the fence on the
run keeps every run to one promise whatever the number of tickers.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

from redpromise.core.codec import as_text, decode, encode
from redpromise.core.cron import Cron
from redpromise.store.store import Store

__all__ = [
    "FUNCTION",
    "RUN_ID_TEMPLATE",
    "create_schedule",
    "delete_schedule",
    "fire_run",
    "is_redpromise",
    "list_schedules",
    "read_schedule",
    "schedule_info",
]

FUNCTION = "rp_function"
GROUP = "rp_group"
ARGS = "rp_args"
RUN_ID_TEMPLATE = "{{.id}}.{{.timestamp}}"
# The tag every run's promise carries: search(tags={SCHEDULE_TAG: id}) lists a schedule's runs.
SCHEDULE_TAG = "redpromise:schedule"


def is_redpromise(h: Mapping[str, str]) -> bool:
    """Whether a stored schedule hash (decoded) is a redpromise schedule."""
    return FUNCTION in h


def run_id(schedule_id: str, run: int) -> str:
    """The id of run ``run`` (ms)'s promise: ``<schedule id>.<run>``."""
    return f"{schedule_id}.{run}"


def _keys(store: Store, id: str) -> list[str]:
    k = store.keys.partition(id)
    return [store.keys.rs_schedule(k, id), store.keys.rs_schedules_due(k)]


def _decoded(raw: Any) -> dict[str, str]:
    if isinstance(raw, list):  # a script's HGETALL reply: flat pairs
        return {as_text(raw[i]): as_text(raw[i + 1]) for i in range(0, len(raw), 2)}
    return {as_text(f): as_text(v) for f, v in raw.items()}


def schedule_info(id: str, h: Mapping[str, str]) -> dict[str, Any]:
    """A stored schedule as redpromise shows it (API, CLI ``--json``, dashboard):
    ``{id, kind, cron, function, group, args, kwargs, timeout_ms, promise_id, created_at,
    next_run_at, last_run_at}``. ``kind`` is ``"redpromise"`` or ``"protocol"`` (made by
    ``schedule.create``); for a protocol schedule ``function``/``group`` come from its
    ``resonate:target`` tag and ``promiseParam`` when present, ``args``/``kwargs`` are
    ``None``. ``promise_id`` is the template of the runs' promise ids."""
    ours = is_redpromise(h)
    info: dict[str, Any] = {
        "id": id,
        "kind": "redpromise" if ours else "protocol",
        "cron": h.get("cron", ""),
        "function": None,
        "group": None,
        "args": None,
        "kwargs": None,
        "timeout_ms": json.loads(h["promise_timeout"]) if "promise_timeout" in h else None,
        "promise_id": h.get("promise_id"),
        "created_at": int(h["created_at"]) if "created_at" in h else None,
        "next_run_at": int(h["next_run_at"]) if "next_run_at" in h else None,
        "last_run_at": int(h["last_run_at"]) if "last_run_at" in h else None,
    }
    if ours:
        payload = decode(base64.b64decode(h[ARGS]))
        info.update(function=h[FUNCTION], group=h[GROUP], args=payload["a"], kwargs=payload["k"])
    else:
        tags = json.loads(h.get("promise_tags", "{}"))
        target = tags.get("resonate:target") if isinstance(tags, dict) else None
        info["group"] = target if isinstance(target, str) else None
    return info


async def create_schedule(
    store: Store,
    id: str,
    cron: Cron,
    function: str,
    payload: bytes,
    group: str,
    timeout_ms: int,
) -> tuple[bool, dict[str, Any]]:
    """Store redpromise schedule ``id`` unless one with that id exists (of either kind):
    ``(created, its info)``; an existing one is answered unchanged. The first run is the
    cron's first time after now (Redis' clock). Arguments are checked by the caller."""
    secs, micros = await store.redis.time()
    at = int(secs) * 1000 + int(micros) // 1000
    next_run = cron.next_after(at)
    fields: list[str] = [
        "cron", cron.text,
        "promise_id", RUN_ID_TEMPLATE,
        "promise_timeout", json.dumps(timeout_ms),
        "promise_tags", json.dumps({"redpromise:function": function, "redpromise:group": group}),
        "created_at", str(at),
        FUNCTION, function,
        GROUP, group,
        ARGS, base64.b64encode(payload).decode(),
    ]  # fmt: skip
    reply = await store.scripts["rs_schedule_create"](
        store.redis, _keys(store, id), [id, str(next_run), *fields]
    )
    if int(reply[0]) == 0:
        return False, schedule_info(id, _decoded(reply[1:]))
    h = dict(zip(fields[::2], fields[1::2], strict=True))
    h["next_run_at"] = str(next_run)
    return True, schedule_info(id, h)


async def read_schedule(store: Store, id: str) -> dict[str, Any] | None:
    """Schedule ``id``'s info (either kind), or None."""
    raw: Any = await store.redis.hgetall(_keys(store, id)[0])
    return schedule_info(id, _decoded(raw)) if raw else None


async def delete_schedule(store: Store, id: str) -> bool:
    """Delete schedule ``id`` (either kind); whether it existed. A run a ticker read as
    due just before may still make its promise; no later run does."""
    reply = await store.scripts["rs_schedule_delete"](store.redis, _keys(store, id), [id])
    return int(reply[0]) == 1


async def list_schedules(store: Store) -> list[dict[str, Any]]:
    """Every schedule of the namespace (both kinds), by id. One read of each partition's
    zset, then one HGETALL per schedule, pipelined."""
    keys = store.keys
    pipe = store.redis.pipeline(transaction=False)
    for k in range(keys.partitions):
        # ZRANGEBYSCORE, not ZRANGE: a client's ACL rules have it (redis/acl.py).
        pipe.zrangebyscore(keys.rs_schedules_due(k), "-inf", "+inf")
    members: list[Any] = await pipe.execute()
    ids = sorted({as_text(m) for ms in members for m in ms})
    if not ids:
        return []
    pipe = store.redis.pipeline(transaction=False)
    for id in ids:
        pipe.hgetall(keys.rs_schedule(keys.partition(id), id))
    hashes: list[Any] = await pipe.execute()
    return [schedule_info(id, _decoded(h)) for id, h in zip(ids, hashes, strict=True) if h]


async def fire_run(store: Store, id: str, h: Mapping[str, str], run: int) -> None:
    """Create (and dispatch) the promise of redpromise schedule ``id``'s run ``run``:
    ``<id>.<run>``, tagged ``redpromise:schedule: <id>``; its timeout counts from now.
    Idempotent by promise id (create-if-absent), as :meth:`fire_due` needs."""
    tags = encode({SCHEDULE_TAG: id}, store.settings.max_payload_bytes)
    await store.create(
        run_id(id, run),
        h[FUNCTION],
        base64.b64decode(h[ARGS]),
        h[GROUP],
        int(json.loads(h["promise_timeout"])),
        tags,
        b"",
    )
