"""debug.snap and debug.reset of the Resonate protocol face: whole-namespace reads and
deletes by SCAN, for tests and the server's ``--debug`` mode (never on a hot path)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from redpromise.core.codec import as_text
from redpromise.store.protocol_records import promise_record, task_record
from redpromise.store.scripts import Command, run_calls
from redpromise.store.store import Store

__all__ = ["reset_namespace", "snapshot"]

_HMGET = Command("HMGET")
_SMEMBERS = Command("SMEMBERS")
_ZRANGE = Command("ZRANGE")
_UNLINK = Command("UNLINK")
_FIELDS = ("state", "rs_param", "rs_value", "rs_tags", "timeout_at", "created_at",
           "completed_at", "codec", "t_state", "t_version", "t_pid", "t_ttl", "t_tt")


async def _partition_keys(store: Store) -> AsyncIterator[tuple[str, str]]:
    """(tag, rest) of every key of the namespace's partitions (``<tag><rest>``)."""
    tags = {store.keys.tag(k) for k in range(store.keys.partitions)}
    pattern = "{" + store.keys.namespace.replace("\\", "\\\\").replace("*", "\\*") \
        .replace("?", "\\?").replace("[", "\\[") + ":*"
    async for raw in store.redis.scan_iter(match=pattern, count=1000):
        key = as_text(raw)
        end = key.find("}")
        if end > 0 and key[: end + 1] in tags:
            yield key[: end + 1], key[end + 1 :]


async def reset_namespace(store: Store) -> None:
    """Delete every partition key of the namespace; its meta hash stays."""
    keys = [tag + rest async for tag, rest in _partition_keys(store)]
    for i in range(0, len(keys), 500):
        await run_calls(store.redis, [(_UNLINK, [k], []) for k in keys[i : i + 500]])


def _score(raw: Any) -> int | float:
    f = float(as_text(raw))
    return int(f) if f.is_integer() else f


async def snapshot(store: Store) -> dict[str, Any]:
    """The protocol records of the namespace as the reference's debug.snap shows them
    (each list sorted by id; messages are not kept, so always [])."""
    promises: list[str] = []
    sets: dict[str, list[tuple[str, str]]] = {"rc": [], "rl": []}
    zsets: list[tuple[str, str]] = []
    async for tag, rest in _partition_keys(store):
        kind, _, id = rest[1:].partition(":")
        if kind == "p":
            promises.append(tag + rest)
        elif kind in sets:
            sets[kind].append((tag + rest, id))
        elif kind in ("rpt", "rtt") and not id:
            zsets.append((tag, kind))
    out: dict[str, Any] = {"promises": [], "promiseTimeouts": [], "callbacks": [],
                           "listeners": [], "tasks": [], "taskTimeouts": [], "messages": []}
    t_types = await _records(store, promises, out)
    await _sets(store, sets["rc"], sets["rl"], out)
    await _timeouts(store, zsets, t_types, out)
    for name in ("promises", "tasks", "promiseTimeouts", "taskTimeouts", "listeners"):
        out[name].sort(key=lambda r: (r["id"], r.get("address", "")))
    out["callbacks"].sort(key=lambda r: (r["awaited"], r["awaiter"]))
    return out


def _id_of(key: str) -> str:
    return key[key.find("}") + 4 :]


async def _records(store: Store, promises: list[str], out: dict[str, Any]) -> dict[str, Any]:
    """Fill out's promises and tasks; the task timeout type of each task."""
    raws = await run_calls(store.redis, [(_HMGET, [k], _FIELDS) for k in promises])
    t_types: dict[str, Any] = {}
    for key, raw in zip(promises, raws, strict=True):
        if as_text(raw[7] or b"") != "resonate":
            continue  # a redpromise promise of the namespace, not a protocol one
        id = _id_of(key)
        out["promises"].append(promise_record([id, *raw[:7]]))
        if raw[8] is not None:
            resumes = await store.redis.smembers(store.keys.rs_resumes(id))
            out["tasks"].append(task_record([id, raw[8], raw[9] or b"0", raw[10] or b"",
                                             raw[11] or b"", list(resumes)]))
            t_types[id] = raw[12]
    return t_types


async def _sets(
    store: Store, callbacks: list[tuple[str, str]], listeners: list[tuple[str, str]],
    out: dict[str, Any],
) -> None:
    members = await run_calls(
        store.redis, [(_SMEMBERS, [k], []) for k, _ in callbacks + listeners]
    )
    for (_, id), awaiters in zip(callbacks, members[: len(callbacks)], strict=True):
        out["callbacks"].extend({"awaiter": _id_of(as_text(m)), "awaited": id} for m in awaiters)
    for (_, id), addresses in zip(listeners, members[len(callbacks) :], strict=True):
        out["listeners"].extend({"id": id, "address": as_text(m)} for m in addresses)


def _pairs(flat: Any) -> list[tuple[Any, Any]]:
    """A ZRANGE WITHSCORES reply as (member, score) pairs, whichever shape it came in."""
    if isinstance(flat, dict):
        return list(flat.items())
    if flat and isinstance(flat[0], list | tuple):
        return [(m, s) for m, s in flat]
    return list(zip(flat[::2], flat[1::2], strict=True))


async def _timeouts(
    store: Store, zsets: list[tuple[str, str]], t_types: dict[str, Any], out: dict[str, Any]
) -> None:
    ranges = await run_calls(
        store.redis, [(_ZRANGE, [f"{tag}:{kind}"], [0, -1, "WITHSCORES"]) for tag, kind in zsets]
    )
    for (_, kind), flat in zip(zsets, ranges, strict=True):
        for member, score in _pairs(flat):
            id = as_text(member)
            if kind == "rpt":
                out["promiseTimeouts"].append({"id": id, "timeout": _score(score)})
            else:
                tt = t_types.get(id)
                out["taskTimeouts"].append({"id": id, "type": int(tt) if tt is not None else -1,
                                            "timeout": _score(score)})
