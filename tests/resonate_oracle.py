"""The differential oracle of the Resonate face: the TypeScript SDK's in-memory protocol
server (``Server`` in its ``dist/src/network/local.js``) run by Node over stdio
(``tests/resonate/oracle_apply.mjs``), and a seeded generator of request sequences."""

from __future__ import annotations

import base64
import json
import random
import subprocess
from pathlib import Path
from typing import Any

from tests.resonate.env import node_bin, node_dir

__all__ = ["Generator", "Oracle", "local_js", "normalized"]

DRIVER = Path(__file__).parent / "resonate" / "oracle_apply.mjs"


def local_js() -> Path:
    """The SDK's in-memory server module, as scripts/resonate_env installed it."""
    return (
        node_dir()
        / "node_modules"
        / "@resonatehq"
        / "sdk"
        / "dist"
        / "src"
        / "network"
        / "local.js"
    )


class Oracle:
    """One Node process running the reference server; :meth:`apply` is one request."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [str(node_bin()), str(DRIVER), str(local_js())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )

    def apply(self, now: int, req: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"now": now, "req": req}) + "\n")
        self.proc.stdin.flush()
        out: dict[str, Any] = json.loads(self.proc.stdout.readline())
        return out

    def new(self) -> None:
        """A fresh server (empty state)."""
        self.apply(0, {"kind": "oracle.new", "head": {}, "data": {}})

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def _sorted_records(items: list[Any]) -> list[Any]:
    return sorted((normalized(i) for i in items), key=lambda r: json.dumps(r, sort_keys=True))


def normalized(data: Any) -> Any:
    """A reply with the orders the protocol leaves unspecified made canonical: resumes
    (a set), preload and every debug.snap list."""
    if isinstance(data, dict):
        out = {}
        for k, v in data.items():
            if k in ("resumes",) and isinstance(v, list):
                out[k] = sorted(v)
            elif k in (
                "preload",
                "promises",
                "promiseTimeouts",
                "callbacks",
                "listeners",
                "tasks",
                "taskTimeouts",
            ) and isinstance(v, list):
                out[k] = _sorted_records(v)
            else:
                out[k] = normalized(v)
        return out
    if isinstance(data, list):
        return [normalized(v) for v in data]
    return data


_SCHEDULES = ["s1", "s2"]
_IDS = ["a", "a:1", "a:1:2", "a:2", "b", "b:1", "c", "c.d"]
_TARGETS = ["poll://any@g", "poll://uni@g/p1", "poll://any@g/p2"]
_HEAD = {"corrId": "c", "version": "2026-04-01"}


def _b64(value: Any) -> str:
    return base64.b64encode(json.dumps(value).encode()).decode()


class Generator:
    """Seeded random requests over a small id pool, with an explicit clock."""

    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)
        # Every other seed is calm: small clock steps and far timeouts, so tasks live long
        # enough to reach suspension, resumption and fencing.
        self.calm = seed % 2 == 0
        self.now = 1_000_000 + self.r.randrange(1000)
        self.versions: dict[str, int] = {}
        self.known: set[str] = set()  # ids of promises the replies showed
        self.tasks: set[str] = set()  # ids of promises with a target
        self.pending: set[str] = set()  # ids last seen pending
        self.task_states: dict[str, str] = {}  # task id -> state last seen

    def observe(self, data: Any) -> None:
        """Learn ids and task versions from a reply, so later requests often hit."""
        if not isinstance(data, dict):
            return
        task = data.get("task")
        if isinstance(task, dict) and "version" in task:
            self.versions[task["id"]] = task["version"]
            self.tasks.add(task["id"])
            self.task_states[task["id"]] = task.get("state", "")
        promise = data.get("promise")
        if isinstance(promise, dict) and "id" in promise:
            self.known.add(promise["id"])
            if promise.get("state") == "pending":
                self.pending.add(promise["id"])
            else:
                self.pending.discard(promise["id"])
            if promise.get("tags", {}).get("resonate:target"):
                self.tasks.add(promise["id"])
        inner = data.get("action")
        if isinstance(inner, dict):
            self.observe(inner.get("data"))

    def _id(self, pool: set[str] | None = None) -> str:
        if pool and self.r.random() < 0.75:
            return self.r.choice(sorted(pool))
        return self.r.choice(_IDS)

    def _task_id(self) -> str:
        return self._id(self.tasks)

    def _version(self, id: str) -> int:
        if id in self.versions and self.r.random() < 0.8:
            return self.versions[id]
        return self.r.randrange(4)

    def _value(self) -> dict[str, Any]:
        choice = self.r.random()
        if choice < 0.15:
            return {}
        if choice < 0.3:
            return {"headers": {}, "data": _b64({"message": f"boom {self.r.randrange(9)}"})}
        return {"headers": {}, "data": _b64(self.r.choice([1, "x", [1, 2], {"k": 2.5}, None]))}

    def _tags(self, id: str, target: bool | None = None) -> dict[str, str]:
        r = self.r
        tags: dict[str, str] = {}
        if target or (target is None and r.random() < 0.5):
            tags["resonate:target"] = r.choice(_TARGETS)
        if r.random() < 0.2:
            tags["resonate:timer"] = "true"
        if r.random() < 0.6:
            family = id.split(":")[0]
            tags["resonate:branch"] = r.choice([family, id, f"{family}:1"])
        if r.random() < 0.15:
            tags["resonate:scope"] = "global"
        if r.random() < 0.1:
            tags["resonate:external"] = "true"
        if r.random() < 0.1:
            tags["resonate:delay"] = r.choice(
                [str(self.now + r.choice([-10, 0, 500, 40000])), "abc", ""]
            )
        return tags

    def _create_data(self, id: str, target: bool | None = None) -> dict[str, Any]:
        offset = self.r.choice([-100, 0, 1, 50, 1000, 5000, 40000, 200000, 10**9, 10**9])
        if self.calm and self.r.random() < 0.7:
            offset = 10**9
        return {
            "id": id,
            "timeoutAt": self.now + offset,
            "param": {"headers": {}, "data": _b64({"func": "f", "args": [1], "version": 1})},
            "tags": self._tags(id, target),
        }

    def _settle_data(self, id: str) -> dict[str, Any]:
        state = self.r.choice(["resolved", "rejected", "rejected_canceled"])
        return {"id": id, "state": state, "value": self._value()}

    def step(self) -> tuple[int, dict[str, Any]]:
        """Advance the clock a random step; the next (now, request)."""
        r = self.r
        if self.calm:
            self.now += r.choice([0, 1, 10, 100, 1000, 1000, 5000, 31000])
        else:
            self.now += r.choice([0, 0, 1, 10, 100, 100, 1000, 1000, 5000, 31000, 70000])
        kind = r.choices(
            [
                "promise.get",
                "promise.create",
                "promise.settle",
                "promise.register_callback",
                "promise.register_listener",
                "task.get",
                "task.create",
                "task.acquire",
                "task.release",
                "task.fulfill",
                "task.suspend",
                "task.halt",
                "task.continue",
                "task.fence",
                "task.heartbeat",
                "debug.tick",
                "promise.search",
                "schedule.create",
                "schedule.get",
                "schedule.delete",
            ],
            weights=[3, 12, 4, 5, 3, 3, 6, 10, 3, 4, 8, 2, 2, 8, 3, 4, 1, 2, 1, 1],
        )[0]
        id = self._task_id() if kind.startswith("task.") else self._id(self.known)
        wanted = {"task.acquire": "pending", "task.continue": "halted"}.get(kind, "acquired")
        if kind.startswith("task.") and r.random() < 0.6:
            id = self._id({t for t, s in self.task_states.items() if s == wanted})
        if kind.startswith("task.") and kind not in ("task.get", "task.halt", "task.continue"):
            data = self._task_data(kind, id)
        else:
            data = self._other_data(kind, id)
        return self.now, {"kind": kind, "head": _HEAD, "data": data}

    def _other_data(self, kind: str, id: str) -> dict[str, Any]:
        r = self.r
        data: dict[str, Any]
        if kind in ("promise.get", "task.get", "task.halt", "task.continue"):
            data = {"id": id}
        elif kind == "promise.create":
            data = self._create_data(id)
        elif kind == "promise.settle":
            data = self._settle_data(id)
        elif kind == "promise.register_callback":
            awaiter = self._task_id()
            data = {"awaited": self._id(self.pending - {awaiter}), "awaiter": awaiter}
        elif kind == "promise.register_listener":
            data = {"awaited": id, "address": r.choice(_TARGETS)}
        elif kind == "debug.tick":
            data = {"time": self.now}
        elif kind in ("schedule.get", "schedule.delete"):
            data = {"id": r.choice(_SCHEDULES)}
        elif kind == "schedule.create":
            data = {
                "id": r.choice(_SCHEDULES),
                "cron": r.choice(["* * * * *", "*/2 * * * *", "*/20 * * * * *", "0 * * * *", "x"]),
                "promiseId": r.choice(["{{.id}}:{{.timestamp}}", "s-{{.id}}"]),
                "promiseTimeout": r.choice([1000, 60000]),
                "promiseParam": {"headers": {}, "data": ""},
                "promiseTags": r.choice([{"resonate:target": "poll://any@g"}, {}]),
            }
        else:
            data = {}
        return data

    def _task_data(self, kind: str, id: str) -> dict[str, Any]:
        r = self.r
        data: dict[str, Any]
        if kind == "task.create":
            data = {
                "pid": r.choice(["p1", "p2"]),
                "ttl": r.choice([1000, 5000, 60000]),
                "action": {
                    "kind": "promise.create",
                    "head": _HEAD,
                    "data": self._create_data(id, r.random() < 0.95),
                },
            }
        elif kind == "task.acquire":
            data = {
                "id": id,
                "version": self._version(id),
                "pid": r.choice(["p1", "p2"]),
                "ttl": r.choice([1000, 5000, 60000]),
            }
        elif kind == "task.release":
            data = {"id": id, "version": self._version(id)}
        elif kind == "task.fulfill":
            other = id if r.random() < 0.95 else self._id()
            data = {
                "id": id,
                "version": self._version(id),
                "action": {
                    "kind": "promise.settle",
                    "head": _HEAD,
                    "data": self._settle_data(other),
                },
            }
        elif kind == "task.suspend":
            awaited = [self._id(self.pending - {id}) for _ in range(r.choice([0, 1, 1, 2, 3]))]
            if r.random() < 0.9:
                awaited = [a for a in awaited if a != id]
            awaiter = id if r.random() < 0.95 else self._id()
            data = {
                "id": id,
                "version": self._version(id),
                "actions": [
                    {
                        "kind": "promise.register_callback",
                        "head": _HEAD,
                        "data": {"awaited": a, "awaiter": awaiter},
                    }
                    for a in awaited
                ],
            }
        elif kind == "task.fence":
            child = r.choice([f"{id}:{r.randrange(1, 3)}", self._id()])
            if r.random() < 0.5:
                action = {"kind": "promise.create", "head": _HEAD, "data": self._create_data(child)}
            else:
                action = {"kind": "promise.settle", "head": _HEAD, "data": self._settle_data(child)}
            data = {"id": id, "version": self._version(id), "action": action}
        elif kind == "task.heartbeat":
            ids = {self._id() for _ in range(r.choice([0, 1, 2, 3]))}
            data = {
                "pid": r.choice(["p1", "p2"]),
                "tasks": [{"id": t, "version": self._version(t)} for t in sorted(ids)],
            }
        else:
            raise AssertionError(kind)
        return data
