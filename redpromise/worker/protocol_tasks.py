"""Resonate protocol tasks run by redpromise's Python workers (issue 21, "work crosses
languages").

A promise begun through the protocol (a Resonate SDK's ``beginRpc``, or ``begin_rpc`` with
``Options(codec="json")``) for ``poll://any@G`` is dispatched as an entry of G's streams,
which redpromise's workers of G read too; their acquire answers ``-9`` for it
(includes/acquire_entry.lua), never dropping it. A worker that registers the promise's
function (its ``param``'s ``func``) runs it as a protocol task:

- acquired through the protocol, ``task.acquire`` at the task's version (a stale or
  duplicate message is refused), the worker's consumer name as the pid and its lease as
  the ttl; the version acquire answers is the execution's fence; only then is the entry
  acknowledged and deleted, as serve does once it offered it;
- the function gets the JSON arguments (``param``'s ``args``); its ``ctx.run`` steps are
  checkpointed in redpromise's steps hash, fenced by the task version and holder
  (rs_checkpoint.lua), so a successor of a killed worker replays the recorded steps;
- leases are renewed by ``task.heartbeat``; a task found no longer held is stopped;
- the outcome is written by ``task.fulfill`` (listeners and callbacks as the protocol
  says): a value as ``{headers: {}, data: base64(JSON)}``, an exception as the SDKs' error
  value (``{"__type": "error", "name", "message"}``), which the SDKs decode as an Error;
- a task is held until fulfilled: a failed attempt is retried here under the caller's or
  the function's policy, ``ctx.sleep`` waits here, and ``ctx.rpc``/``ctx.promise`` make
  protocol children (:class:`ProtocolChildren`) awaited here.

An entry whose function is not registered here, or whose task is not pending at the
entry's version, is left alone in the worker's pending list (serve's consumers claim it
once idle) and the refusal is logged: a group is served by one kind of runtime at a time.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar

from redpromise.core.backoff import Backoff
from redpromise.core.codec import as_text
from redpromise.core.errors import (
    LeaseLost,
    NondeterminismError,
    PayloadError,
    RedpromiseError,
)
from redpromise.core.options import Never, RetryPolicy, parse_target, policy_from_sdk
from redpromise.store.protocol import ProtocolStore
from redpromise.store.protocol_records import json_param
from redpromise.store.scripts import refusal
from redpromise.store.store import Completion, outcome
from redpromise.worker.context import Context
from redpromise.worker.execution import ChildPromises, Execution, Runtime
from redpromise.worker.outcomes import retry_delay_ms
from redpromise.worker.registry import Registry

__all__ = [
    "Offer",
    "ProtocolChildren",
    "ProtocolExecution",
    "ProtocolTasks",
    "error_value",
    "json_value",
]

log = logging.getLogger("redpromise.worker")

Offer = tuple[int, str, str, Any, float]
"""(partition, entry id, promise id, acquire's ``-9`` reply, when acquire was sent)."""

PROTOCOL_VERSION = "2026-04-01"
NO_RETRY = Never()


def json_value(value: Any) -> dict[str, Any]:
    """``value`` as the SDKs store a value: ``{headers: {}, data: base64(JSON)}``; raises
    :class:`PayloadError` when JSON cannot carry it."""
    try:
        text = json.dumps(value, allow_nan=False, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise PayloadError(f"the result is not JSON: {exc}") from exc
    return {"headers": {}, "data": base64.b64encode(text.encode("utf-8")).decode("ascii")}


def error_value(exc: BaseException) -> dict[str, Any]:
    """``exc`` as the SDKs encode a thrown Error (they decode it back to an Error with
    that name and message)."""
    message = str(exc) or type(exc).__name__
    return json_value({"__type": "error", "name": type(exc).__name__, "message": message})


def call_of(param: str) -> tuple[str, list[Any], Any]:
    """(function name, arguments, the caller's retry policy as the SDK wrote it or None)
    of a protocol ``param`` (its JSON text): ``data`` is base64 of JSON ``{func, args,
    version, retry?}``. Raises ValueError saying what is wrong."""
    try:
        outer = json.loads(param)
        data = outer.get("data") if isinstance(outer, dict) else None
        if not isinstance(data, str) or not data:
            raise ValueError("the param has no data")
        call = json.loads(base64.b64decode(data, validate=True))
    except (binascii.Error, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"the param is not base64 JSON: {exc}") from exc
    if not isinstance(call, dict) or not isinstance(call.get("func"), str):
        raise ValueError("the param names no function")
    args = call.get("args", [])
    if not isinstance(args, list):
        raise ValueError("the param's args are not a list")
    return call["func"], args, call.get("retry")


@dataclass(eq=False, slots=True)
class ProtocolExecution(Execution):
    """An acquired protocol task; ``version`` is the task version, ``args`` the JSON of
    the argument list. Its steps are checkpointed through the protocol's fence."""

    pid: str = ""
    protocol: ProtocolStore | None = None
    caller_retry: RetryPolicy | None = None

    # A task is held until fulfilled: a sleep waits here, with the task's lease renewed.
    suspends: ClassVar[bool] = False

    @property
    def children(self) -> ChildPromises:
        """Protocol promises, made under this task's fence (:class:`ProtocolChildren`)."""
        return ProtocolChildren(self)

    def child_id(self, seq: int) -> str:
        """``<id>:<seq>``, as the SDKs name children: one family, one partition."""
        return f"{self.id}:{seq}"

    async def checkpoint(self, seq: int, blob: bytes) -> int:
        """Record step ``seq`` (rs_checkpoint.lua); the reply code, as Execution's."""
        rt, protocol = self.runtime, self.protocol
        assert protocol is not None
        reply = await rt.retry_through_outage(
            lambda: protocol.checkpoint(self.id, self.version, self.pid, seq, blob)
        )
        if reply is None:
            self.lost = "Redis unavailable for a whole lease"
            raise LeaseLost(f"execution of {self.id!r} could not checkpoint: {self.lost}")
        code = int(reply[0])
        if code == 1:
            rt.hooks.metrics.step(rt.group, self.func)
        elif self.lost is None:
            self.lost = refusal(code, reply[1] if len(reply) > 1 else None)
        return code


class ProtocolChildren:
    """``ctx.rpc`` and ``ctx.promise`` of a protocol task: protocol promises ``<id>:<seq>``
    created through ``task.fence`` at the task's version (a worker that lost the task
    creates nothing), tagged as the SDKs tag a child (scope global, branch its own id,
    parent the task's promise, origin the family's root). ``ctx.rpc`` targets
    ``poll://any@<group>`` (the task's own group unless ``target=`` names another) with
    the SDKs' JSON call; whoever serves that group runs it (a Resonate SDK worker, or
    redpromise's). The task waits for the child in this worker, reading its record with
    a backoff: a child's completion message goes to its family's partition, not the one
    redpromise's waiter would listen on for its id."""

    def __init__(self, ex: ProtocolExecution) -> None:
        self.ex = ex
        assert ex.protocol is not None
        self.protocol = ex.protocol

    async def adopt(self, parent: str, child: str) -> None:
        """Nothing: a protocol child belongs to the protocol (no redpromise cancel set)."""

    async def begin(
        self,
        id: str,
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        target: str | None,
        timeout: timedelta,
    ) -> None:
        group = parse_target(target) if target else self.ex.runtime.group
        param = json_param(name, args, kwargs, self.ex.limit)
        await self._create(id, param, timeout, {"resonate:target": f"poll://any@{group}"})

    async def create_latent(self, id: str, timeout: timedelta) -> None:
        await self._create(id, {"headers": {}, "data": None}, timeout, {})

    async def _create(
        self, id: str, param: dict[str, Any], timeout: timedelta, tags: dict[str, str]
    ) -> None:
        ex = self.ex
        now = ex.runtime.store.clock.now_ms()
        timeout_at = min(now + max(1, int(timeout.total_seconds() * 1000)), ex.timeout_at)
        create = {
            "id": id,
            "timeoutAt": timeout_at,
            "param": param,
            "tags": {
                "resonate:scope": "global",
                "resonate:branch": id,
                "resonate:parent": ex.id,
                "resonate:origin": ex.id.split(":", 1)[0],
                **tags,
            },
        }
        head = {"corrId": f"{id}:{ex.version}", "version": PROTOCOL_VERSION}
        data = {"id": ex.id, "version": ex.version,
                "action": {"kind": "promise.create", "head": head, "data": create}}  # fmt: skip
        reply = await ex.runtime.retry_through_outage(
            lambda: self.protocol.apply("task.fence", data, None)
        )
        if reply is None:
            ex.lost = "Redis unavailable for a whole lease"
            raise LeaseLost(f"execution of {ex.id!r} could not create {id!r}: {ex.lost}")
        status, body = reply
        if status == 409 or status == 404:
            ex.lost = "the protocol task is no longer held by this worker at its version"
            raise LeaseLost(f"execution of {ex.id!r} could not create {id!r}: {ex.lost}")
        if status != 200 or body["action"]["head"]["status"] != 200:
            raise RedpromiseError(f"task.fence creating {id!r} answered {status} {body}")

    async def wait_outcome(self, id: str) -> Any:
        store = self.ex.runtime.store
        key = self.protocol.keys.rs_promise(id)
        backoff = Backoff(base=0.02, cap=1.0)
        while True:
            state, value = await self.ex.runtime.retry_through_outage(
                lambda: store.redis.hmget(key, ["state", "value"])
            ) or (None, None)
            text = as_text(state) if state is not None else None
            if text is not None and text != "pending":
                return outcome(Completion(id, text, value))
            self.ex.ensure_alive()
            await asyncio.sleep(backoff.next())


class ProtocolTasks:
    """Acquires, runs, renews and fulfils the protocol tasks of one worker."""

    def __init__(
        self,
        runtime: Runtime,
        registry: Registry,
        *,
        consumer: str,
        start: Callable[[Execution], None],
    ) -> None:
        self.runtime = runtime
        self.registry = registry
        self.consumer = consumer
        self._start = start
        self.protocol = ProtocolStore(runtime.store)
        self.ttl_ms = int(runtime.lease * 1000)

    async def offered(self, offers: Sequence[Offer]) -> None:
        """Handle the protocol entries acquire answered ``-9`` for (see the module)."""
        for k, entry, id, res, _ in offers:
            await self._offer(k, entry, id, [as_text(x) for x in res[1:8]])

    async def _offer(self, k: int, entry: str, id: str, fields: list[str]) -> None:
        state, t_state, t_version, param, timeout_at, kind, v = fields
        try:
            func, args, retry = call_of(param)
            why = "" if self.registry.get(func) else f"its function {func!r} is not registered"
        except ValueError as exc:
            func, args, retry, why = "", [], None, str(exc)
        caller_retry = policy_from_sdk(retry)
        if retry is not None and caller_retry is None:
            log.warning("promise %r: retry policy %r not understood; the function's applies",
                        id, retry)  # fmt: skip
        if why:
            log.error(
                "promise %r of group %r is a Resonate protocol promise that this worker "
                "cannot run (%s); its entry %s is left for the group's Resonate SDK workers "
                "(through redpromise serve). A group is served by one kind of runtime at a time",
                id, self.runtime.group, why, entry,
            )  # fmt: skip
            return
        if state != "pending" or kind != "e" or t_state != "pending" or v != t_version:
            log.debug("left protocol entry %s of %r: not a pending task's execute", entry, id)
            return
        sent = time.monotonic()
        data = {"id": id, "version": int(t_version), "pid": self.consumer, "ttl": self.ttl_ms}
        status, reply = await self.protocol.apply("task.acquire", data, None)
        if status != 200:
            log.info("task %r at version %s not acquired: %s %s", id, t_version, status, reply)
            return
        # The holder's version is the one acquire answers (acquiring bumps it): the fence.
        version = int(reply["task"]["version"])
        # Acquired: the message has done its work (a lapsed lease offers the task anew).
        store = self.runtime.store
        stream = store.keys.stream(k, self.runtime.group)
        pipe = store.redis.pipeline(transaction=False)
        pipe.xack(stream, self.runtime.group, entry)
        pipe.xdel(stream, entry)
        pipe.hgetall(self.protocol.keys.rs_steps(id))
        *_, steps = await pipe.execute()
        self._start(
            ProtocolExecution(
                runtime=self.runtime,
                id=id,
                k=k,
                entry=entry,
                version=version,
                func=func,
                args=json.dumps(args).encode(),
                attempt=0,
                timeout_at=int(timeout_at or 0),
                retry=b"",
                deliveries=1,
                steps={int(s): blob for s, blob in steps.items()},
                last_hb=sent,
                pid=self.consumer,
                protocol=self.protocol,
                caller_retry=caller_retry,
            )
        )

    async def run(self, ex: ProtocolExecution) -> None:
        """Run ``ex`` (in an ``execute <function>`` span while tracing)."""
        tracer = self.runtime.hooks.tracer
        if not tracer.active():
            await self._run(ex)
            return
        attributes = {
            "redpromise.promise_id": ex.id,
            "redpromise.group": self.runtime.group,
            "redpromise.version": ex.version,
            "redpromise.protocol": "resonate",
        }
        with tracer.span(f"execute {ex.func}", "consumer", attributes):
            await self._run(ex)

    async def _run(self, ex: ProtocolExecution) -> None:
        """Run ``ex``'s function and fulfil the task with its outcome. A failed attempt is
        retried in this process, holding the task (as the SDKs' workers do), after the
        delay of the function's retry policy (:func:`retry_delay_ms`, the one retry
        decision): the caller's policy (the SDK's ``retry`` in the param), else the
        function's, else none. Recorded steps are replayed, not run again."""
        func = self.registry.get(ex.func)
        assert func is not None  # checked when offered
        metrics = self.runtime.hooks.metrics
        while True:
            ex.ensure_alive()
            try:
                value = await self.runtime.attempt(func, Context(ex), json.loads(ex.args), {})
            except (asyncio.CancelledError, LeaseLost):
                raise
            except NondeterminismError as exc:  # a replay that diverged: no retry helps
                self.runtime.hooks.tracer.failed(exc)
                await self.fulfill(ex, "rejected", error_value(exc))
                return
            except Exception as exc:
                self.runtime.hooks.tracer.failed(exc)
                if ex.lost is not None:
                    raise LeaseLost(f"execution of {ex.id!r} lost its lease: {ex.lost}") from exc
                # No policy from the caller or the function: none, as the SDKs run a
                # durable function (one that takes a context).
                delay_ms = retry_delay_ms(
                    self.runtime, ex, func, exc, caller=ex.caller_retry, fallback=NO_RETRY
                )
                if delay_ms is None:
                    log.info("%r rejected at attempt=%d: %s: %s", ex.id, ex.attempt,
                             type(exc).__name__, exc)  # fmt: skip
                    await self.fulfill(ex, "rejected", error_value(exc))
                    return
                log.info("%r failed at attempt=%d (%s: %s); retry in %.3fs", ex.id,
                         ex.attempt, type(exc).__name__, exc, delay_ms / 1000)  # fmt: skip
                metrics.retried(self.runtime.group, ex.func)
                await asyncio.sleep(delay_ms / 1000)
                ex.attempt += 1
                continue
            try:
                encoded = json_value(value)
            except PayloadError as exc:
                await self.fulfill(ex, "rejected", error_value(exc))
                return
            await self.fulfill(ex, "resolved", encoded)
            return

    async def fulfill(self, ex: ProtocolExecution, state: str, value: dict[str, Any]) -> None:
        """``task.fulfill`` at ``ex``'s version (refused unless this worker still holds the
        task: then the successor's outcome stands)."""
        ex.finishing = True
        settle = {"id": ex.id, "state": state, "value": value}
        data = {
            "id": ex.id,
            "version": ex.version,
            "action": {
                "kind": "promise.settle",
                "head": {"corrId": f"{ex.id}:{ex.version}", "version": PROTOCOL_VERSION},
                "data": settle,
            },
        }
        reply = await self.runtime.retry_through_outage(
            lambda: self.protocol.apply("task.fulfill", data, None)
        )
        if reply is None:
            return
        status, body = reply
        if status == 200:
            log.debug("fulfilled task %r as %s", ex.id, state)
        else:
            log.warning("fulfilment of task %r refused: %s %s", ex.id, status, body)

    async def heartbeat(self, items: Sequence[ProtocolExecution]) -> None:
        """Renew the leases of ``items`` (``task.heartbeat``), then stop those this worker
        no longer holds at their version (task.heartbeat answers 200 either way)."""
        sent = time.monotonic()
        tasks = [{"id": ex.id, "version": ex.version} for ex in items]
        await self.protocol.apply("task.heartbeat", {"pid": self.consumer, "tasks": tasks}, None)
        pipe = self.runtime.store.redis.pipeline(transaction=False)
        for ex in items:
            pipe.hmget(self.protocol.keys.rs_promise(ex.id), ["t_state", "t_version", "t_pid"])
        for ex, row in zip(items, await pipe.execute(), strict=True):
            held = [as_text(x) if x is not None else "" for x in row]
            if held == ["acquired", str(ex.version), self.consumer]:
                ex.last_hb = sent
            elif ex.lost is None and not ex.finishing:
                ex.lost = "the protocol task is no longer held by this worker at its version"
                if ex.task is not None:
                    ex.task.cancel()
