"""Waiting for completions without busy polling: one subscription per process.

The process subscribes once to every partition's completion channel. A waiter registers
its future, makes sure the subscription is live, and only then reads the state, so a
completion announced in between is never missed. After a reconnect, and every
``safety_poll``, everything still waited on is read again (pub/sub is at-most-once).

A completion message carries the outcome when the value is at most 1024 bytes
(``lua/includes/settle.lua``): a waiter whose read saw the same promise pending (same
``created_at``) resolves from it without reading again. A larger one carries the id only
and its waiters read the record, as does a waiter whenever the message may be of another
promise by the same id.

No first read for a promise this process began (:meth:`Waiter.before_create`,
:meth:`Waiter.after_create`)
while the subscription it had when it sent the create is still the live one: every
completion of that promise is announced after the create, so on that subscription. Its
completion, when it comes before ``result()`` (even before the create's reply), is
remembered for it: at most :data:`_REMEMBER` promises and :data:`_REMEMBER_BYTES` of
values (the oldest are forgotten, and read instead), for half the retention the completer
gave it, while the record is sure to still say the same. Any doubt (a reconnect since, an
id-only message, another process's promise, a create that found the id existing) means
the read, as before.

While the subscription cannot be made (Redis down, or a user without the channel
rights: ``NOPERM``), waits do not hang: they read the promise every
:data:`_POLL_UNSUBSCRIBED` seconds instead, and the listener keeps trying, logging each
distinct cause once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from redpromise.client.subscription import SubscribedConnection, open_subscribed
from redpromise.core.backoff import Backoff
from redpromise.core.errors import PromiseNotFound
from redpromise.redis import redispy as _redispy
from redpromise.redis.cluster import channels_by_node, refresh_slots
from redpromise.redis.kinds import is_cluster, own_connection_recipe
from redpromise.store.store import PENDING, STATES, Completion, Record, Store
from redpromise.worker.supervise import CauseLog

__all__ = ["Waiter"]

log = logging.getLogger("redpromise.waiter")

_SUBSCRIBE_WAIT = 1.0  # seconds a wait gives a new subscription before reading anyway
_POLL_UNSUBSCRIBED = 1.0  # seconds between reads of a waited promise while unsubscribed
# Promises begun here and not yet waited on, whose completion is kept (about 300 bytes
# each with a small value), and the bytes of the values kept: a process that begins many
# promises before waiting on them (or never waits) holds at most ~18 MiB for this.
_REMEMBER = 32768
_REMEMBER_BYTES = 8 << 20
_FINAL = frozenset(s.encode() for s in STATES if s != PENDING)


@dataclass(slots=True)
class _BegunHere:
    """A promise this process is creating, or created, while subscribed, and nobody waits
    on yet: what a wait may rely on instead of a first read (the completion heard)."""

    epoch: int = -1  # the subscription live when its create was sent
    sent_at: float = 0.0  # loop time before the create was sent: before it completed
    created_at: int | None = None  # None until the create's reply says it created it
    timeout_at: int = 0
    outcome: Completion | None = None  # the last completion message heard for the id
    outcome_of: int = -1  # the created_at that message named
    retention_ms: int = 0  # the retention its completer gave it (0 = forever)
    read: bool = False  # announced by id only (or doubtfully): read it


# Taken just before a create is sent, for after_create(): the entry collecting the
# promise's messages since, the subscription live then (its epoch), and the loop time.
_BeforeCreate = tuple[_BegunHere, int, float]


class Waiter:
    """Resolves futures of promise ids when their promises complete."""

    def __init__(self, store: Store, safety_poll: float) -> None:
        # The client, keys and pub/sub flavour are the store's: read afresh, since the
        # client swaps them in _ready() (a cluster behind the URL, the pinned key layout).
        self._store = store
        self.safety_poll = safety_poll  # seconds between reads of everything waited on
        self._waiting: dict[str, set[asyncio.Future[Record | Completion]]] = {}
        # created_at of the promise waited on by id, once known: a message of another
        # promise by the same id (an expired one's, late) must not resolve its waits.
        self._expect: dict[str, int] = {}
        self._begun: dict[str, _BegunHere] = {}  # insertion order: the oldest first
        self._kept = 0  # bytes of the values of self._begun's outcomes
        self._epoch = 0  # subscriptions made so far: a new one may have missed messages
        self._warned_malformed = False
        self._subscribed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.closing = False  # the listener is told to leave its loop
        self._checks: set[asyncio.Task[None]] = set()
        self._causes = CauseLog("completion listener", log)
        self._read_causes = CauseLog("reading completed promises", log)

    @property
    def waiting(self) -> int:
        """How many promise ids are being waited on."""
        return len(self._waiting)

    def before_create(self, id: str) -> _BeforeCreate | None:
        """Taken just before sending a create of ``id``, for :meth:`after_create`: the live
        subscription (``None`` when there is none: then the wait reads first, as for any
        promise). From here on a completion message of ``id`` is kept: it may be heard
        before the create's reply is."""
        if not self._subscribed.is_set():
            return None
        b = self._begun.get(id)
        if b is None:  # else an earlier begin of this id is tracked, and serves this one
            b = self._begun[id] = _BegunHere()
            if len(self._begun) > _REMEMBER:
                self._forget(next(iter(self._begun)))
        return b, self._epoch, asyncio.get_running_loop().time()

    def after_create(
        self, id: str, before: _BeforeCreate | None, created_at: int | None, timeout_at: int
    ) -> None:
        """The create of ``id`` sent after ``before`` answered: it created the promise
        (``created_at``), or found it existing or failed (``None``).

        If the subscription of ``before`` is still the live one, every completion of the
        promise it created comes on it, and none was missed since the token: a wait for
        it needs no first read, and a completion heard before the wait is kept for it.
        """
        if before is None:
            return
        b, epoch, sent_at = before
        if self._begun.get(id) is not b:
            return  # forgotten (or taken by a wait) meanwhile: messages may be missing
        if created_at is None:
            if b.created_at is None:  # nothing to track, unless an earlier begin's
                self._forget(id)
            return
        if epoch != self._epoch or not self._subscribed.is_set():
            self._forget(id)  # a new subscription since: messages may be missing
            return
        b.epoch, b.sent_at, b.created_at, b.timeout_at = epoch, sent_at, created_at, timeout_at

    def _known(self, id: str) -> _BegunHere | None:
        """What a wait on ``id`` may rely on instead of a first read, if anything."""
        b = self._forget(id)
        if b is None or b.read or b.created_at is None:
            return None
        if b.outcome is not None and b.outcome_of == b.created_at:
            # Heard: valid while the record surely still holds it (it expires retention
            # after its completion, itself after the create was sent).
            age = asyncio.get_running_loop().time() - b.sent_at
            return b if b.retention_ms == 0 or age * 1000 < b.retention_ms / 2 else None
        # Not heard yet: it will be, unless the subscription changed since the create.
        return b if b.epoch == self._epoch and self._subscribed.is_set() else None

    async def wait(self, id: str, timeout: float | None) -> Record | Completion | None:
        """The outcome of ``id`` once completed, or the record as last read when the wait
        ends.

        The wait ends after ``timeout`` seconds or when the promise's own timeout passes
        (so the caller can apply it); then the pending record is returned, or ``None``
        when the subscription could not even be established in time. Raises
        :class:`PromiseNotFound` if the promise does not exist (or expires).
        """
        known = self._known(id)
        if known is not None and known.outcome is not None and known.outcome_of == known.created_at:
            return known.outcome  # heard already (see _known): nothing to wait for
        loop = asyncio.get_running_loop()
        start = loop.time()
        fut: asyncio.Future[Record | Completion] = loop.create_future()
        self._waiting.setdefault(id, set()).add(fut)
        try:
            if known is not None:
                return await self._wait_known(id, fut, known, timeout)
            if self._task is None or self._task.done():
                self._task = asyncio.create_task(self._listen(), name="redpromise-waiter")
            if not self._subscribed.is_set():
                limit = _SUBSCRIBE_WAIT if timeout is None else min(timeout, _SUBSCRIBE_WAIT)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._subscribed.wait(), limit)
            rec = await self._store.read(id)
            if rec is None:
                raise PromiseNotFound(id)
            if not rec.pending:
                return rec
            self._expect[id] = rec.created_at
            # Redis' clock (the one the timeout is applied on), not this host's.
            wait = max(0.0, (rec.timeout_at - self._store.clock.now_ms()) / 1000) + 0.05
            if timeout is not None:
                wait = min(wait, max(0.0, timeout - (loop.time() - start)))
            if not self._subscribed.is_set():
                # No notification can come: read again soon rather than wait for one.
                wait = min(wait, _POLL_UNSUBSCRIBED)
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
                    self._expect.pop(id, None)

    async def _wait_known(
        self,
        id: str,
        fut: asyncio.Future[Record | Completion],
        known: _BegunHere,
        timeout: float | None,
    ) -> Record | Completion:
        """:meth:`wait` without a first read: ``known`` will be heard of."""
        assert known.created_at is not None  # see _known
        self._expect[id] = known.created_at
        wait = max(0.0, (known.timeout_at - self._store.clock.now_ms()) / 1000) + 0.05
        if timeout is not None:
            wait = min(wait, timeout)
        with contextlib.suppress(TimeoutError):
            return await asyncio.wait_for(fut, wait)
        # Still pending, as far as this process heard: the record decides.
        rec = await self._store.read(id)
        if rec is None:
            raise PromiseNotFound(id)
        return rec

    async def close(self) -> None:
        """Stop listening, within a bounded time: a cancel landing inside a pending read
        can stall, so the listener is also told to leave its loop by itself."""
        task, self._task = self._task, None
        if task is not None:
            self.closing = True
            task.cancel()
            await asyncio.wait({task}, timeout=2.0)
        checks, self._checks = self._checks, set()
        for t in checks:
            t.cancel()
        if checks:
            await asyncio.wait(checks, timeout=2.0)
        self._subscribed.clear()

    async def _listen(self) -> None:
        backoff = Backoff(0.05, 2.0)
        self.closing = False
        while not self.closing:
            conns: list[Any] = []
            try:
                await self._subscribe(conns)
                # A new subscription: what the old one missed is read below for the
                # waits registered by now, and a later wait sees the new epoch (no await
                # in between).
                self._epoch += 1
                self._subscribed.set()
                self._causes.ok()
                backoff.reset()
                # Anything may have completed while we were not subscribed.
                await self._check(list(self._waiting))
                await self._serve(conns)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure: resubscribe and re-read after backoff
                self._subscribed.clear()
                self._causes.failed(exc)
                if is_cluster(redis := self._store.redis):
                    await refresh_slots(redis)  # a failover or a slot move?
                await asyncio.sleep(backoff.next())
            finally:
                for conn in conns:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(conn.disconnect(), 2.0)

    async def _subscribe(self, conns: list[Any]) -> None:
        """Connections of its own, in RESP2 (pub/sub replies as plain arrays whatever
        protocol the client uses), subscribed to every partition's channel: one
        connection, or with sharded pub/sub one per node holding channels."""
        redis = self._store.redis
        channels = self._store.keys.channels()
        if not self._store.sharded:  # SSUBSCRIBE per node on a Redis >= 7 cluster
            cls, base = own_connection_recipe(redis)
            conns.append(await open_subscribed(cls, base, "SUBSCRIBE", channels))
            return
        assert is_cluster(redis)
        for node, chans in channels_by_node(redis, channels):
            recipe = _redispy.connection_recipe(node)
            conns.append(await open_subscribed(*recipe, "SSUBSCRIBE", chans))

    async def _serve(self, conns: list[Any]) -> None:
        """Read notifications until a connection fails or falls silent.

        The read blocks without a timeout of its own (a timeout per message costs more
        than the message); a ticker beside it runs the safety poll, pings a quiet
        connection, and gives up on one that stays silent after a ping.
        """
        subscribed = [SubscribedConnection(self, c, poll=i == 0) for i, c in enumerate(conns)]
        tasks = [asyncio.create_task(s.read()) for s in subscribed]
        tasks += [asyncio.create_task(s.tick()) for s in subscribed]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                t.result()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.wait(tasks, timeout=2.0)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._checks.add(task)
        task.add_done_callback(self._checked)

    def _checked(self, task: asyncio.Task[None]) -> None:
        self._checks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            # A failed read is not lost: the next safety poll reads every waiter again.
            self._read_causes.failed(exc)
        else:
            self._read_causes.ok()

    def read_if_waited(self, ids: set[str]) -> None:
        """Read, in the background, the promises of ``ids`` still waited on."""
        waited = [i for i in ids if i in self._waiting]
        if waited:
            self._spawn(self._check(waited))

    def read_all_waited(self) -> None:
        """Read, in the background, every promise waited on (the safety poll)."""
        self._spawn(self._check(list(self._waiting)))

    def heard_id(self, conn: SubscribedConnection, id: str) -> None:
        """A completion announced by its id only: its waiters read the record."""
        b = self._begun.get(id)
        if b is not None:
            b.read = True
        if id in self._waiting:
            conn.read_soon(id)

    def heard_outcome(self, conn: SubscribedConnection, data: bytes) -> None:
        """A completion message with its outcome (format: ``lua/includes/settle.lua``)."""
        parts = data.split(b"\0", 5)
        if len(parts) != 6 or parts[1] not in _FINAL:
            self._malformed(data)
            return
        _, state, created, retention, raw_id, value = parts
        id = raw_id.decode("utf-8", "replace")
        futs = self._waiting.get(id)
        b = self._begun.get(id)
        if futs is None and b is None:
            return  # the usual case: a promise nobody here waits for
        try:
            created_at, retention_ms = int(created), int(retention)
        except ValueError:
            self._malformed(data)
            created_at, retention_ms = -1, 0  # matches no expectation: read instead
        outcome = Completion(id, state.decode(), value)
        if b is not None:
            if b.created_at is None or b.created_at == created_at:
                # Before the create's reply the message may be of an earlier promise by
                # this id: begun() and _known() compare created_at once it is known.
                self._keep(b, outcome, created_at, retention_ms)
            else:  # another promise by this id (or a doubtful message): read
                b.read = True
        if futs is not None:
            if self._expect.get(id) != created_at:
                conn.read_soon(id)  # not known to be the promise waited on: read it
                return
            del self._waiting[id]
            del self._expect[id]
            for fut in futs:
                if not fut.done():
                    fut.set_result(outcome)

    def _keep(self, b: _BegunHere, outcome: Completion, created_at: int, retention_ms: int) -> None:
        if b.outcome is not None and b.outcome.value is not None:
            self._kept -= len(b.outcome.value)
        b.outcome, b.outcome_of, b.retention_ms = outcome, created_at, retention_ms
        if outcome.value is not None:
            self._kept += len(outcome.value)
        while self._kept > _REMEMBER_BYTES:
            self._forget(next(iter(self._begun)))

    def _forget(self, id: str) -> _BegunHere | None:
        b = self._begun.pop(id, None)
        if b is not None and b.outcome is not None and b.outcome.value is not None:
            self._kept -= len(b.outcome.value)
        return b

    def _malformed(self, data: bytes) -> None:
        if not self._warned_malformed:
            self._warned_malformed = True
            log.warning(
                "completion listener: ignoring a message on a completion channel that "
                "redpromise did not write (%r); logged once",
                data[:80],
            )

    async def _check(self, ids: list[str]) -> None:
        if not ids:
            return
        for id, rec in zip(ids, await self._store.read_many(ids), strict=True):
            if isinstance(rec, Record) and rec.pending:
                continue
            self._expect.pop(id, None)
            for fut in self._waiting.pop(id, ()):
                if fut.done():
                    continue
                if rec is None:
                    fut.set_exception(PromiseNotFound(id))
                elif isinstance(rec, BaseException):
                    fut.set_exception(rec)
                else:
                    fut.set_result(rec)
