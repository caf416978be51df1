"""Loads the Lua scripts in ``redpromise/store/lua`` and calls them by SHA.

Each ``<name>.lua`` is one state transition; ``--- @include <name>`` pulls in a file of
``lua/includes`` (once). Scripts are sent with EVALSHA; on NOSCRIPT (a restarted or
failed-over Redis has an empty script cache) the source is loaded and the call repeated.
The return codes of every script are mapped in :data:`CODES`.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Sequence
from importlib import resources
from typing import Any

from redpromise.redis.batch import send_batch
from redpromise.redis.replies import ScriptMissing
from redpromise.redis.wire import Ack, AnyRedis, bulk

__all__ = [
    "CODES",
    "SCRIPT_NAMES",
    "WORDS",
    "Coalescer",
    "Command",
    "Script",
    "load_scripts",
    "refusal",
    "reply_code",
    "run_calls",
]

_INCLUDE = re.compile(r"^--- @include (\w+)\s*$", re.MULTILINE)

SCRIPT_NAMES = (
    "acquire",
    "bury",
    "checkpoint",
    "complete",
    "create",
    "forget",
    "heartbeat",
    "promote",
    "reconcile",
    "retry",
    "rs_checkpoint",
    "rs_promise_create",
    "rs_promise_get",
    "rs_promise_settle",
    "rs_register_callback",
    "rs_register_listener",
    "rs_schedule_advance",
    "rs_schedule_create",
    "rs_schedule_delete",
    "rs_task_acquire",
    "rs_task_continue",
    "rs_task_create",
    "rs_task_fence",
    "rs_task_fulfill",
    "rs_task_get",
    "rs_task_halt",
    "rs_task_heartbeat",
    "rs_task_release",
    "rs_task_suspend",
    "rs_tick",
    "scan",
    "take",
)

# One table for every refusal code the scripts return (see each file's header).
CODES: dict[int, str] = {
    -1: "not_found",
    -2: "not_pending",
    -3: "stale_version",
    -4: "stale_entry",
    -5: "wrong_group",
    -6: "not_owner",
    -7: "poison",
    -8: "not_due",
    -9: "protocol",
}

# What each refusal code means, in words for log lines and error messages (the names of
# CODES stay the stable labels of metrics and events).
WORDS: dict[int, str] = {
    -1: "no such promise (never created, or its retention ended)",
    -2: "already completed",
    -3: "taken over by a newer execution",
    -4: "its dispatch was replaced",
    -5: "it targets another group",
    -6: "the entry is held by another consumer",
    -7: "rejected as poison (delivered too many times)",
    -8: "not due yet",
    -9: "a Resonate protocol promise (served by Resonate SDK workers through redpromise serve)",
}

# A completed state in words, as `already completed (canceled)` names it.
_STATE_WORDS = {
    "resolved": "resolved",
    "rejected": "rejected",
    "rejected_canceled": "canceled",
    "rejected_timedout": "timed out",
}


def refusal(code: Any, state: Any = None) -> str:
    """Refusal ``code`` of a script in words; ``state``: the completed state a
    ``-2`` reply carries, named in parentheses (``already completed (canceled)``)."""
    try:
        n = int(code)
    except (TypeError, ValueError):
        return f"unexpected reply {code!r}"
    words = WORDS.get(n, f"unexpected reply code {n}")
    if n == -2 and state:
        text = state.decode("utf-8", "replace") if isinstance(state, bytes) else str(state)
        words += f" ({_STATE_WORDS.get(text, text)})"
    return words


def reply_code(reply: Any) -> tuple[int | None, Any]:
    """A script's reply code (``None`` for no reply: Redis was away for a whole lease)
    and the completed state a ``-2`` refusal carries (``None`` when it carries none)."""
    if reply is None:
        return None, None
    return int(reply[0]), reply[1] if len(reply) > 1 else None


def _source(name: str) -> str:
    root = resources.files("redpromise.store") / "lua"
    text = (root / f"{name}.lua").read_text(encoding="utf-8")
    seen: set[str] = set()

    def include(match: re.Match[str]) -> str:
        inc = match.group(1)
        if inc in seen:
            return ""
        seen.add(inc)
        return (root / "includes" / f"{inc}.lua").read_text(encoding="utf-8")

    # Includes come in before the body so their local functions are in scope.
    while _INCLUDE.search(text):
        text = _INCLUDE.sub(include, text)
    return text


# The encoded head of a script's calls by (SHA, keys, args): see Script.head.
_HEADS: dict[tuple[str, int, int], bytes] = {}

# Writes a caller is told are done: with Settings.replicas_ack, acknowledged by replicas.
DURABLE = frozenset({"create", "checkpoint", "complete"})


class Script:
    """One Lua script, called by SHA with a NOSCRIPT fallback."""

    __slots__ = ("durable", "name", "sha", "source")

    def __init__(self, name: str) -> None:
        self.name = name
        self.durable = name in DURABLE
        self.source = _source(name)
        self.sha = hashlib.sha1(self.source.encode("utf-8")).hexdigest()

    async def __call__(self, redis: AnyRedis, keys: Sequence[str], args: Sequence[Any]) -> Any:
        try:
            return await redis.evalsha(self.sha, len(keys), *keys, *args)
        except ScriptMissing:
            await redis.script_load(self.source)
            return await redis.evalsha(self.sha, len(keys), *keys, *args)

    def command(self, keys: Sequence[str], args: Sequence[Any]) -> tuple[Any, ...]:
        """The EVALSHA command of a call, for :func:`run_calls` (a tuple: what
        hiredis' ``pack_command`` takes, without a copy)."""
        return ("EVALSHA", self.sha, len(keys), *keys, *args)

    def head(self, nkeys: int, nargs: int) -> bytes:
        """The RESP encoding of a call's command up to its first key: the array header
        and ``EVALSHA <sha> <nkeys>``, the same for every call of this shape."""
        head = _HEADS.get((self.sha, nkeys, nargs))
        if head is None:
            if len(_HEADS) >= 1024:  # scripts x shapes: a handful in practice
                _HEADS.clear()
            head = _HEADS[self.sha, nkeys, nargs] = b"*%d\r\n%b%b%b" % (
                3 + nkeys + nargs, bulk("EVALSHA"), bulk(self.sha), bulk(nkeys)
            )
        return head


class Command:
    """A plain Redis command that can share a :class:`Coalescer` batch with the scripts."""

    __slots__ = ("durable", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self.durable = False

    def command(self, keys: Sequence[str], args: Sequence[Any]) -> tuple[Any, ...]:
        return (self.name, *keys, *args)


def load_scripts() -> dict[str, Script]:
    return {name: Script(name) for name in SCRIPT_NAMES}


async def run_calls(
    redis: AnyRedis,
    calls: Sequence[tuple[Script | Command, Sequence[str], Sequence[Any]]],
    ack: Ack | None = None,
    *,
    resend: bool = True,
    packed: Sequence[bytes | None] | None = None,
) -> list[Any]:
    """Run many script calls in one round trip; results (or exceptions) in order.

    Calls refused with NOSCRIPT never ran, so after loading their scripts exactly those
    are sent again. With ``ack``, durable writes wait for replicas (see ``_wire.Ack``).
    ``resend=False`` for calls that are not replay-safe (``take``): a lost connection is
    raised at once instead of the batch being sent again (see ``_batch.send_batch``).
    ``packed[i]``: call i's RESP bytes when its caller built them (``_wire.pack``).
    """
    if not calls:
        return []
    durable = [s.durable for s, _, _ in calls] if ack is not None else None
    results = await send_batch(
        redis,
        [s.command(k, a) for s, k, a in calls],
        resend=resend,
        durable=durable,
        ack=ack,
        packed=packed,
    )
    missing = [i for i, r in enumerate(results) if isinstance(r, ScriptMissing)]
    if missing:
        for script in {calls[i][0].name: calls[i][0] for i in missing}.values():
            if isinstance(script, Script):
                await redis.script_load(script.source)
        again = await send_batch(
            redis,
            [calls[i][0].command(*calls[i][1:]) for i in missing],
            resend=resend,
            durable=[durable[i] for i in missing] if durable is not None else None,
            ack=ack,
        )
        for i, r in zip(missing, again, strict=True):
            results[i] = r
    return results


# A call waiting for its batch: the call, its caller's future, its RESP bytes if prepacked.
_Pending = tuple[
    tuple[Script | Command, Sequence[str], Sequence[Any]], asyncio.Future[Any], bytes | None
]


class Coalescer:
    """Sends the calls made during one event-loop turn as one pipeline.

    Many executions finishing (or checkpointing), or many requests beginning or reading
    promises, cost one round trip together instead of one each (a lone call is a batch of
    one). Every script is replay-safe, so a connection error that outlasts the client's
    retries fails every call of the batch and each caller retries its own.
    """

    def __init__(self, redis: AnyRedis, max_batch: int = 1000, ack: Ack | None = None) -> None:
        self._redis = redis
        self._max = max_batch
        self._ack = ack
        self._pending: list[_Pending] = []
        self._packed = 0  # calls of _pending that came with their RESP bytes
        self._scheduled = False
        self._sending: set[asyncio.Task[None]] = set()

    def call(
        self,
        script: Script | Command,
        keys: Sequence[str],
        args: Sequence[Any],
        packed: bytes | None = None,
    ) -> asyncio.Future[Any]:
        """The reply of one call (a future: awaiting it costs no coroutine of its own),
        sent in this loop turn's batch. ``packed``: the call's command RESP-encoded,
        exactly as ``_wire.pack`` would (``redpromise/store/prepack.py``)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._pending.append(((script, keys, args), fut, packed))
        if packed is not None:
            self._packed += 1
        if len(self._pending) >= self._max:
            self._flush()
        elif not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return fut

    def _flush(self) -> None:
        self._scheduled = False
        batch, self._pending = self._pending, []
        packed, self._packed = self._packed, 0
        if batch:
            task = asyncio.ensure_future(self._send(batch, packed > 0))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[_Pending], packed: bool) -> None:
        try:
            results = await run_calls(
                self._redis,
                [call for call, _, _ in batch],
                self._ack,
                packed=[p for _, _, p in batch] if packed else None,
            )
        except Exception as exc:
            for _, fut, _ in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        for (_, fut, _), res in zip(batch, results, strict=True):
            if fut.done():
                continue
            if isinstance(res, BaseException):
                fut.set_exception(res)
            else:
                fut.set_result(res)
