"""Waiting for completions without busy polling: one subscription per process.

The process subscribes once to every partition's completion channel. A waiter registers
its future, makes sure the subscription is live, and only then reads the state, so a
completion announced in between is never missed. After a reconnect, and every
``safety_poll``, everything still waited on is read again (pub/sub is at-most-once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from redis.asyncio import Redis

from ._errors import PromiseNotFound
from ._keys import Keys
from ._store import Record, Store

__all__ = ["Waiter"]

log = logging.getLogger("redpromise.waiter")

_DRAIN = 1000


class Waiter:
    """Resolves futures of promise ids when their promises complete."""

    def __init__(self, redis: Redis, store: Store, keys: Keys, safety_poll: float) -> None:
        self._redis = redis
        self._store = store
        self._keys = keys
        self._safety_poll = safety_poll
        self._waiting: dict[str, set[asyncio.Future[Record]]] = {}
        self._subscribed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def waiting(self) -> int:
        """How many promise ids are being waited on."""
        return len(self._waiting)

    async def wait(self, id: str, timeout: float | None) -> Record | None:
        """The record of ``id`` once completed, or as last read when the wait ends.

        The wait ends after ``timeout`` seconds or when the promise's own timeout passes
        (so the caller can apply it); then the pending record is returned, or ``None``
        when the subscription could not even be established in time. Raises
        :class:`PromiseNotFound` if the promise does not exist (or expires).
        """
        loop = asyncio.get_running_loop()
        start = loop.time()
        fut: asyncio.Future[Record] = loop.create_future()
        self._waiting.setdefault(id, set()).add(fut)
        try:
            if self._task is None or self._task.done():
                self._task = asyncio.create_task(self._listen(), name="redpromise-waiter")
            try:
                await asyncio.wait_for(self._subscribed.wait(), timeout)
            except TimeoutError:
                return None
            rec = await self._store.read(id)
            if rec is None:
                raise PromiseNotFound(id)
            if not rec.pending:
                return rec
            wait = max(0.0, rec.timeout_at / 1000 - time.time()) + 0.05
            if timeout is not None:
                wait = min(wait, max(0.0, timeout - (loop.time() - start)))
            try:
                return await asyncio.wait_for(fut, wait)
            except TimeoutError:
                return rec
        finally:
            futs = self._waiting.get(id)
            if futs is not None:
                futs.discard(fut)
                if not futs:
                    del self._waiting[id]

    async def close(self) -> None:
        """Stop listening, within a bounded time: a cancel landing inside a pending read
        can stall, so the listener is also told to leave its loop by itself."""
        task, self._task = self._task, None
        if task is not None:
            self._closing = True
            task.cancel()
            await asyncio.wait({task}, timeout=2.0)
        self._subscribed.clear()

    async def _listen(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = 0.05
        self._closing = False
        while not self._closing:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(*self._keys.channels())
                self._subscribed.set()
                backoff = 0.05
                # Anything may have completed while we were not subscribed.
                await self._check(list(self._waiting))
                next_poll = loop.time() + self._safety_poll
                while not self._closing:
                    wait = max(0.0, min(1.0, next_poll - loop.time()))
                    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=wait)
                    ids: set[str] = set()
                    while msg is not None and len(ids) < _DRAIN:
                        self._collect(msg, ids)
                        msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0)
                    if msg is not None:
                        self._collect(msg, ids)
                    if ids:
                        await self._check([i for i in ids if i in self._waiting])
                    if loop.time() >= next_poll:
                        await self._check(list(self._waiting))
                        next_poll = loop.time() + self._safety_poll
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure: resubscribe and re-read after backoff
                self._subscribed.clear()
                log.warning("completion listener lost its subscription (%s); reconnecting", exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(pubsub.aclose(), 2.0)  # type: ignore[no-untyped-call]

    def _collect(self, msg: dict[str, Any], ids: set[str]) -> None:
        if msg.get("type") != "message":
            return
        data = msg.get("data")
        id = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
        if id in self._waiting:
            ids.add(id)

    async def _check(self, ids: list[str]) -> None:
        if not ids:
            return
        for id, rec in zip(ids, await self._store.read_many(ids), strict=True):
            if isinstance(rec, Record) and rec.pending:
                continue
            for fut in self._waiting.pop(id, ()):
                if fut.done():
                    continue
                if rec is None:
                    fut.set_exception(PromiseNotFound(id))
                elif isinstance(rec, BaseException):
                    fut.set_exception(rec)
                else:
                    fut.set_result(rec)
