"""Calls of the Lua transitions for store-level tests (shared by several test files)."""

from __future__ import annotations

from typing import Any

from redpromise.core.codec import encode, encode_error
from redpromise.store.store import Store

__all__ = [
    "HOUR_MS",
    "LIMIT",
    "POISON",
    "G",
    "acquire",
    "claim",
    "create",
    "deliver",
    "dkey",
    "fields",
    "heartbeat",
    "pel",
    "promote",
    "running",
    "stream",
    "text",
    "tkey",
    "xrange",
]

G = "g"
LIMIT = 1 << 20
POISON = encode_error("PoisonError", "delivered too often", LIMIT)
HOUR_MS = 3_600_000


def text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def stream(store: Store, id: str, group: str = G) -> str:
    return store.keys.stream(store.keys.partition(id), group)


def tkey(store: Store, id: str) -> str:
    return store.keys.timeouts(store.keys.partition(id))


def dkey(store: Store, id: str) -> str:
    return store.keys.delayed(store.keys.partition(id))


async def create(
    store: Store, id: str, group: str = G, timeout_ms: int = HOUR_MS, arg: int = 1
) -> tuple[bool, str, int]:
    return await store.create(id, "fn", encode({"a": [arg]}, LIMIT), group, timeout_ms, b"", b"")


async def fields(store: Store, id: str) -> dict[str, bytes]:
    raw: Any = await store.redis.hgetall(store.keys.promise(id))
    return {text(k): v for k, v in raw.items()}


async def xrange(store: Store, key: str) -> list[tuple[str, dict[bytes, bytes]]]:
    """The entries of a stream as (entry id, fields)."""
    raw: Any = await store.redis.xrange(key)
    return [(text(e), dict(f)) for e, f in raw]


async def deliver(store: Store, id: str, consumer: str = "c1", group: str = G) -> str:
    """XREADGROUP one new entry of the promise's stream as ``consumer``."""
    s = stream(store, id, group)
    groups = await store.redis.xinfo_groups(s)
    if not any(text(g["name"]) == group for g in groups):
        await store.redis.xgroup_create(s, group, id="0")
    resp: Any = await store.redis.xreadgroup(group, consumer, {s: ">"}, count=1)
    [[_, [(entry, _fields)]]] = resp
    return text(entry)


async def acquire(
    store: Store, id: str, entry: str, consumer: str = "c1", group: str = G
) -> list[Any]:
    script, keys, args = store.acquire_call(
        store.keys.partition(id), group, entry, id, consumer, POISON
    )
    res: list[Any] = await script(store.redis, keys, args)
    return res


async def claim(store: Store, id: str, entry: str, consumer: str) -> None:
    """Hand an entry to ``consumer`` as XAUTOCLAIM would after a lease expired."""
    await store.redis.xclaim(stream(store, id), G, consumer, 0, [entry])


async def pel(store: Store, id: str, group: str = G) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = await store.redis.xpending_range(
        stream(store, id, group), group, min="-", max="+", count=10
    )
    return out


async def running(store: Store, id: str) -> tuple[str, int]:
    """Create, deliver to c1 and acquire: the entry and the execution's version."""
    await create(store, id)
    entry = await deliver(store, id)
    res = await acquire(store, id, entry)
    assert res[0] == 1
    return entry, int(res[1])


async def heartbeat(store: Store, id: str, consumer: str, version: int, entry: str) -> list[Any]:
    script, keys, args = store.heartbeat_call(id, G, consumer, version, entry)
    res: list[Any] = await script(store.redis, keys, args)
    return res


async def promote(store: Store, id: str) -> list[Any]:
    script, keys, args = store.promote_call(store.keys.partition(id), G, id)
    res: list[Any] = await script(store.redis, keys, args)
    return res
