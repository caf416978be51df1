"""ProtocolStore: the Resonate protocol (2026-04-01) on redpromise's Redis records.

One door for the ``rs_*`` Lua transitions (``redpromise/store/lua``): each request that
changes state is one script call, atomic, with the eager timeouts, the transition, its
triggers and its messages. Replies are what the reference in-memory server of the
TypeScript SDK answers, reply for reply (``docs/resonate.md`` lists the differences).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from redpromise.core.codec import as_text
from redpromise.core.errors import CrossSlot
from redpromise.redis.kinds import is_cluster
from redpromise.store.protocol_debug import reset_namespace, snapshot
from redpromise.store.protocol_records import (
    TIMED_OUT_VALUE,
    TIMER_VALUE,
    BadRequest,
    CreateArgs,
    SettleArgs,
    need_id,
    need_int,
    need_list,
    need_object,
    need_str,
    promise_record,
    task_record,
)
from redpromise.store.scripts import Command, run_calls
from redpromise.store.store import Store

__all__ = ["ProtocolStore", "ScheduleFiring"]

_SEARCHES = frozenset({"promise.search", "task.search", "schedule.search"})
_RECORD_FIELDS = ("state", "rs_param", "rs_value", "rs_tags", "timeout_at", "created_at",
                  "completed_at", "codec")
_HMGET = Command("HMGET")

Reply = tuple[int, Any]


class ScheduleFiring(Protocol):
    """The schedules part (``redpromise/store/protocol_schedules.py``)."""

    async def apply(self, kind: str, data: Mapping[str, Any], now: int | None) -> Reply:
        """Answer one ``schedule.*`` request."""

    async def fire_due(
        self, now: int | None, create: Callable[[dict[str, Any]], Awaitable[Any]]
    ) -> int:
        """Create (by ``create``: promise.create) the promises of the schedules due at
        ``now``; how many runs fired."""


class ProtocolStore:
    """The protocol's transitions on one namespace (see the module docstring).

    ``apply`` never raises for a bad request: it answers 400 with a text. It raises
    :class:`CrossSlot` when one request joins two families in different Cluster slots,
    and Redis errors as the store does.
    """

    def __init__(self, store: Store, schedules: ScheduleFiring | None = None) -> None:
        self.store = store
        self.keys = store.keys
        self.schedules = schedules
        self._kinds: dict[str, Callable[[Mapping[str, Any], str], Awaitable[Reply]]] = {
            "promise.get": self._promise_get,
            "promise.create": self._promise_create,
            "promise.settle": self._promise_settle,
            "promise.register_callback": self._register_callback,
            "promise.register_listener": self._register_listener,
            "task.get": self._task_get,
            "task.create": self._task_create,
            "task.acquire": self._task_acquire,
            "task.release": self._task_release,
            "task.fulfill": self._task_fulfill,
            "task.suspend": self._task_suspend,
            "task.halt": self._task_halt,
            "task.continue": self._task_continue,
            "task.fence": self._task_fence,
            "task.heartbeat": self._task_heartbeat,
        }

    # -- the door ------------------------------------------------------------------------

    async def apply(self, kind: str, data: Mapping[str, Any], now: int | None) -> Reply:
        """One request of protocol 2026-04-01: (status, reply data) exactly as the
        reference ``Server.apply`` answers (data is a JSON-able value: a record dict, {}
        or an error string). now=None: Redis' clock. Every state change is one Lua
        script call."""
        if kind in _SEARCHES:
            return 501, "Not implemented"
        if kind.startswith("schedule."):
            if self.schedules is None:
                return 501, "Not implemented"
            return await self.schedules.apply(kind, data, now)
        if kind.startswith("debug."):
            return await self._debug(kind, data, now)
        handler = self._kinds.get(kind)
        if handler is None:
            return 400, f"unknown request kind {kind!r}"
        try:
            return await handler(need_object(data, "data"), "" if now is None else str(now))
        except BadRequest as exc:
            return 400, str(exc)

    async def promise_record(self, id: str) -> dict[str, Any] | None:
        """Protocol promise ``id``'s record as it is stored (for unblock messages)."""
        raw = await self.store.redis.hmget(self.keys.rs_promise(id), list(_RECORD_FIELDS))
        if raw[0] is None:
            return None
        return promise_record([id, *raw[:7]])

    async def tick(self, now: int | None, limit: int = 1000) -> int:
        """debug.tick's work for every partition: due promise timeouts, task timeouts
        (lease -> release + execute; pending retry -> execute again), due schedules.
        One script call per partition (all sent in one round trip); replicas may tick
        concurrently: each due item is handled once."""
        if now is None:
            sec, usec = await self.store.redis.time()
            now = int(sec) * 1000 + int(usec) // 1000
        script = self.store.scripts["rs_tick"]
        calls = [
            (
                script,
                [self.keys.rs_promise_timeouts(k), self.keys.rs_task_timeouts(k)],
                [*self._common(str(now)), limit, f"{self.keys.tag(k)}:p:"],
            )
            for k in range(self.keys.partitions)
        ]
        n = 0
        for reply in await run_calls(self.store.redis, calls):
            if isinstance(reply, BaseException):
                raise reply
            n += int(reply[1])
        if self.schedules is not None:
            at = now

            async def create(data: dict[str, Any]) -> Any:
                # As the reference's tick: the run's promise is created at the tick's time.
                return await self.apply("promise.create", data, at)

            n += await self.schedules.fire_due(now, create)
        return n

    async def checkpoint(self, id: str, version: int, pid: str, seq: int, blob: bytes) -> Any:
        """Record step ``seq`` (``blob``) of task ``id`` held by ``pid`` at ``version``
        (rs_checkpoint.lua, redpromise's extension for its own workers): ``[1]``, or the
        refusal ``[-1]``, ``[-2, state]``, ``[-3]`` (not the holder at that version)."""
        keys = [self.keys.rs_promise(id), self.keys.rs_steps(id)]
        reply: Any = await self.store.batch.call(
            self.store.scripts["rs_checkpoint"], keys, [version, pid, seq, blob]
        )
        return reply

    async def reset(self) -> None:
        """debug.reset: delete every partition key of the namespace (its meta stays)."""
        await reset_namespace(self.store)

    async def snap(self) -> dict[str, Any]:
        """debug.snap's data: promises, promiseTimeouts, callbacks, listeners, tasks,
        taskTimeouts of every protocol record; messages [] (delivery is the serve face's)."""
        return await snapshot(self.store)

    # -- plumbing ------------------------------------------------------------------------

    def _common(self, now: str) -> list[Any]:
        return [now, self.store.publish, self.keys.rs_channel(), TIMED_OUT_VALUE, TIMER_VALUE]

    def _same_slot(self, ids: Sequence[str]) -> None:
        if not is_cluster(self.store.redis):
            return
        slots = {self.keys.slot(self.keys.family_partition(i)) for i in ids}
        if len(slots) > 1:
            raise CrossSlot(
                f"promises {', '.join(repr(i) for i in ids)} belong to families in "
                "different Redis Cluster slots; one request cannot join them"
            )

    async def _call(self, name: str, ids: Sequence[str], now: str, args: Sequence[Any]) -> Any:
        self._same_slot(ids)
        keys = [self.keys.rs_promise(i) for i in ids]
        return await self.store.batch.call(
            self.store.scripts[name], keys, [*self._common(now), *args]
        )

    async def _debug(self, kind: str, data: Mapping[str, Any], now: int | None) -> Reply:
        if kind in ("debug.start", "debug.stop"):
            return 200, {}
        if kind == "debug.reset":
            await self.reset()
            return 200, {}
        if kind == "debug.snap":
            return 200, await self.snap()
        if kind == "debug.tick":
            try:
                time = need_int(need_object(data, "data"), "time")
            except BadRequest as exc:
                return 400, str(exc)
            await self.tick(time)
            return 200, []
        return 400, f"unknown request kind {kind!r}"

    # -- promises ------------------------------------------------------------------------

    async def _promise_get(self, data: Mapping[str, Any], now: str) -> Reply:
        r = await self._call("rs_promise_get", [need_id(data, "id")], now, [])
        if int(r[0]) == 404:
            return 404, "Promise not found"
        return 200, {"promise": promise_record(r[1])}

    async def _promise_create(self, data: Mapping[str, Any], now: str) -> Reply:
        a = CreateArgs.parse(data)
        r = await self._call("rs_promise_create", [a.id], now, a.argv())
        return 200, {"promise": promise_record(r[1])}

    async def _promise_settle(self, data: Mapping[str, Any], now: str) -> Reply:
        a = SettleArgs.parse(data)
        r = await self._call("rs_promise_settle", [a.id], now, a.argv())
        if int(r[0]) == 404:
            return 404, "Promise not found"
        return 200, {"promise": promise_record(r[1])}

    async def _register_callback(self, data: Mapping[str, Any], now: str) -> Reply:
        awaited, awaiter = need_id(data, "awaited"), need_id(data, "awaiter")
        if awaited == awaiter:
            return 400, "Awaited and awaiter must be different"
        r = await self._call("rs_register_callback", [awaited, awaiter], now, [])
        code = int(r[0])
        if code == 404:
            return 404, "Awaited promise not found"
        if code == 422:
            if as_text(r[1]) == "awaiter":
                return 422, "Awaiter promise not found"
            return 422, "Awaiter has no address"
        return 200, {"promise": promise_record(r[1])}

    async def _register_listener(self, data: Mapping[str, Any], now: str) -> Reply:
        awaited, address = need_id(data, "awaited"), need_str(data, "address")
        r = await self._call("rs_register_listener", [awaited], now, [address])
        code = int(r[0])
        if code == 404:
            return 404, "Promise not found"
        if code == 422:
            return 422, "Awaited promise is not awaitable"
        return 200, {"promise": promise_record(r[1])}

    # -- tasks ---------------------------------------------------------------------------

    async def _task_get(self, data: Mapping[str, Any], now: str) -> Reply:
        r = await self._call("rs_task_get", [need_id(data, "id")], now, [])
        if int(r[0]) == 404:
            return 404, "Task not found"
        return 200, {"task": task_record(r[1])}

    async def _task_create(self, data: Mapping[str, Any], now: str) -> Reply:
        action = need_object(data.get("action"), "data.action")
        adata = need_object(action.get("data"), "data.action.data")
        tags = adata.get("tags")
        if not isinstance(tags, Mapping) or not tags.get("resonate:target"):
            return 400, "Action must have a resonate:target tag"
        pid, ttl = need_str(data, "pid"), need_int(data, "ttl")
        a = CreateArgs.parse(adata, "data.action.data", default_param=False)
        r = await self._call("rs_task_create", [a.id], now, [pid, ttl, *a.argv()])
        code = int(r[0])
        if code == 409:
            what = as_text(r[1])
            return 409, "Task already exists" if what == "task" else "Promise already exists"
        if code == 422:
            return 422, "Promise has no address"
        return 200, _acquired(r)

    async def _task_acquire(self, data: Mapping[str, Any], now: str) -> Reply:
        id, version = need_id(data, "id"), need_int(data, "version")
        pid, ttl = need_str(data, "pid"), need_int(data, "ttl")
        r = await self._call("rs_task_acquire", [id], now, [version, pid, ttl])
        code = int(r[0])
        if code == 404:
            return 404, "Task not found"
        if code == 409:
            return 409, _CONFLICT_ACQUIRE[as_text(r[1])]
        return 200, _acquired(r)

    async def _task_release(self, data: Mapping[str, Any], now: str) -> Reply:
        id, version = need_id(data, "id"), need_int(data, "version")
        r = await self._call("rs_task_release", [id], now, [version])
        return _held(r) or (200, {})

    async def _task_fulfill(self, data: Mapping[str, Any], now: str) -> Reply:
        id, version = need_id(data, "id"), need_int(data, "version")
        action = need_object(data.get("action"), "data.action")
        a = SettleArgs.parse(action.get("data"), "data.action.data")
        if a.id != id:
            return 400, "Promise ID must match task ID"
        r = await self._call("rs_task_fulfill", [id], now, [version, *a.argv()])
        return _held(r) or (200, {"promise": promise_record(r[1])})

    async def _task_suspend(self, data: Mapping[str, Any], now: str) -> Reply:
        id, version = need_id(data, "id"), need_int(data, "version")
        actions = need_list(data, "actions")
        pairs = []
        for i, action in enumerate(actions):
            adata = need_object(need_object(action, f"data.actions[{i}]").get("data"),
                                f"data.actions[{i}].data")
            where = f"data.actions[{i}].data"
            pairs.append((need_id(adata, "awaited", where), need_id(adata, "awaiter", where)))
        if not pairs:
            return 400, "Actions list must not be empty"
        if any(awaiter != id for _, awaiter in pairs):
            return 400, "Awaiter must be the suspending task"
        if any(awaited == id for awaited, _ in pairs):
            return 400, "Task cannot await its own promise"
        awaited = list(dict.fromkeys(a for a, _ in pairs))
        r = await self._call("rs_task_suspend", [id, *awaited], now, [version])
        code = int(r[0])
        if code == 422:
            return 422, {}
        if code == 300:
            return 300, {"preload": [promise_record(p) for p in r[1]]}
        return _held(r) or (200, {})

    async def _task_halt(self, data: Mapping[str, Any], now: str) -> Reply:
        r = await self._call("rs_task_halt", [need_id(data, "id")], now, [])
        code = int(r[0])
        if code == 404:
            return 404, "Task not found"
        if code == 409:
            return 409, "Task is fulfilled"
        return 200, {}

    async def _task_continue(self, data: Mapping[str, Any], now: str) -> Reply:
        r = await self._call("rs_task_continue", [need_id(data, "id")], now, [])
        code = int(r[0])
        if code == 404:
            return 404, "Task not found"
        if code == 409:
            return 409, "Task is not halted"
        return 200, {}

    async def _task_fence(self, data: Mapping[str, Any], now: str) -> Reply:
        id, version = need_id(data, "id"), need_int(data, "version")
        action = need_object(data.get("action"), "data.action")
        kind = action.get("kind")
        head = need_object(action.get("head"), "data.action.head")
        corr, ver = need_str(head, "corrId", "data.action.head"), need_str(
            head, "version", "data.action.head"
        )
        args: list[Any]
        if kind == "promise.create":
            c = CreateArgs.parse(action.get("data"), "data.action.data")
            target, args = c.id, ["create", *c.argv()]
        elif kind == "promise.settle":
            s = SettleArgs.parse(action.get("data"), "data.action.data")
            target, args = s.id, ["settle", *s.argv()]
        else:
            return 400, "data.action.kind must be promise.create or promise.settle"
        r = await self._call("rs_task_fence", [id, target], now, [version, *args])
        code = int(r[0])
        if code == 404:
            return 404, "Task not found"
        if code == 409:
            return 409, "Fence check failed"
        inner = int(r[1])
        body: Any = {"promise": promise_record(r[2])} if inner == 200 else "Promise not found"
        reply = {"kind": kind, "head": {"corrId": corr, "status": inner, "version": ver},
                 "data": body}
        return 200, {"action": reply, "preload": []}

    async def _task_heartbeat(self, data: Mapping[str, Any], now: str) -> Reply:
        pid = need_str(data, "pid")
        by_partition: dict[int, list[tuple[str, int]]] = {}
        for i, ref in enumerate(need_list(data, "tasks")):
            ref = need_object(ref, f"data.tasks[{i}]")
            tid = need_id(ref, "id", f"data.tasks[{i}]")
            ver = need_int(ref, "version", f"data.tasks[{i}]")
            by_partition.setdefault(self.keys.family_partition(tid), []).append((tid, ver))
        script = self.store.scripts["rs_task_heartbeat"]
        calls = [
            (
                script,
                [self.keys.rs_promise(t) for t, _ in refs],
                [*self._common(now), pid, *(v for _, v in refs)],
            )
            for refs in by_partition.values()
        ]
        for reply in await run_calls(self.store.redis, calls):
            if isinstance(reply, BaseException):
                raise reply
        return 200, {}


_CONFLICT_ACQUIRE = {
    "state": "Task not in pending state",
    "fulfilled": "Task logically fulfilled",
    "version": "Version mismatch",
}


def _acquired(r: Sequence[Any]) -> dict[str, Any]:
    return {
        "task": task_record(r[1]),
        "promise": promise_record(r[2]),
        "preload": [promise_record(p) for p in r[3]],
    }


def _held(r: Sequence[Any]) -> Reply | None:
    """The refusals of a transition that needs the acquired task at its version."""
    code = int(r[0])
    if code == 404:
        return 404, "Task not found"
    if code == 409:
        return 409, "Version mismatch" if as_text(r[1]) == "version" else "Task not acquired"
    return None
