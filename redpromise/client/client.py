"""The Redpromise client: create, dispatch, re-attach to and settle durable promises."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from datetime import datetime, timedelta
from typing import Any

from redpromise.client.children import ClientChildPromises, cancel_children
from redpromise.client.handle import Handle, seconds
from redpromise.client.json_calls import begin_json, json_param
from redpromise.client.namespace import pinned_layout, sharded_pubsub
from redpromise.client.registration import Registration
from redpromise.client.schedules import Scheduling
from redpromise.client.waiter import Waiter
from redpromise.core.codec import encode, encode_error, error_of
from redpromise.core.errors import ConfigurationError, PromiseNotFound, StoreUnavailable
from redpromise.core.hooks import Hooks
from redpromise.core.keys import Keys, validate_group, validate_id
from redpromise.core.options import Options, RetryPolicy, Settings, Timeout, parse_target
from redpromise.observe.metrics import METRICS
from redpromise.observe.tracing import TRACER
from redpromise.redis.acl import check_acl
from redpromise.redis.classify import as_redpromise_error, translate_errors
from redpromise.redis.cluster import cluster_enabled
from redpromise.redis.connect import connect, connect_cluster_client, decodes, warn_eviction
from redpromise.redis.kinds import is_cluster
from redpromise.redis.wire import AnyRedis
from redpromise.store.protocol import ProtocolStore
from redpromise.store.queues import queue_state
from redpromise.store.search import PromiseInfo, SearchPage, counts, search
from redpromise.store.store import Completion, Record, Store
from redpromise.worker.registry import Registry
from redpromise.worker.worker import Worker

__all__ = ["Handle", "PromiseInfo", "Redpromise", "SearchPage"]

log = logging.getLogger("redpromise")

DEFAULT_URL = "redis://127.0.0.1:6379/0"
DEFAULT_TARGET = "poll://any@worker"


_NO_OPTIONS = Options()
_DEFAULT_GROUP = parse_target(DEFAULT_TARGET)


class Redpromise(Registration, Scheduling):
    """Durable promises and durable dispatch on Redis; one per process.

    A process that registers functions is a worker of ``group``: :meth:`start` makes it
    consume the group's dispatches. Any process can create (:meth:`begin_rpc`),
    re-attach to (:meth:`get`) and settle (:meth:`resolve`, :meth:`reject`,
    :meth:`cancel`) promises, and schedule calls (:meth:`schedule`).
    """

    _default_group = _DEFAULT_GROUP  # where begin_rpc and schedule send without a target

    def __init__(
        self,
        url: str | None = None,
        *,
        group: str = "worker",
        settings: Settings | None = None,
        redis: AnyRedis | None = None,
        hooks: Hooks | None = None,
    ) -> None:
        self.group = validate_group(group)
        # The observers the store and the worker report to: Prometheus and OpenTelemetry
        # (each a no-op when its library is absent) unless given.
        self.hooks = hooks or Hooks(METRICS, TRACER)
        self.settings = settings or Settings()
        self.url = url or DEFAULT_URL
        self._own_redis = redis is None
        self._stopped = False  # stop() closed the connections this client owns
        if redis is not None and decodes(redis):
            raise ConfigurationError(
                "the Redis client decodes responses (decode_responses=True); redpromise "
                "stores binary msgpack and needs a client that returns bytes"
            )
        self.redis: AnyRedis = redis or connect(self.url)
        # A client we made from a URL may turn out to point at a cluster node: checked
        # (and replaced by a cluster client) on first use, in _ready().
        self._topology_known = redis is not None
        self._ready_lock = asyncio.Lock()
        self.keys = Keys(self.settings.namespace, self.settings.partitions)
        self.store = Store(self.redis, self.keys, self.settings, self.hooks)
        self.registry = Registry()
        self.consumer = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._waiter = Waiter(self.store, self.settings.safety_poll.total_seconds())
        self._worker: Worker | None = None
        self._checked = False
        self._default_timeout_ms = int(self.settings.timeout.total_seconds() * 1000)
        self._protocol: ProtocolStore | None = None  # made once the key layout is known

    @classmethod
    def from_env(cls, *, group: str | None = None, **overrides: Any) -> Redpromise:
        """Configure from ``REDPROMISE_URL``, ``REDPROMISE_GROUP`` and ``Settings.from_env``
        (``overrides`` are settings). ``group`` names this process's group and wins over
        ``REDPROMISE_GROUP``: a gateway passes ``group="gateway"`` so that it is never
        counted as a worker of the group it dispatches to. Without either: ``"worker"``.
        """
        return cls(
            os.environ.get("REDPROMISE_URL") or DEFAULT_URL,
            group=group or os.environ.get("REDPROMISE_GROUP") or "worker",
            settings=Settings.from_env(**overrides),
        )

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, check the namespace, and start working if functions are registered.

        Raises :class:`StoreUnavailable` when Redis is down or refusing for now (retry
        later) and :class:`ConfigurationError` when the settings or the Redis user's
        rights are wrong. Once started, a worker rides out Redis outages by itself.
        """
        self._stopped = False
        await self._ready()
        await self._warn_eviction()
        if self.registry and self._worker is None:
            worker = self._new_worker()
            async with translate_errors():
                await worker.start()
            self._worker = worker
            self.hooks.metrics.watch(self, self.group)
            log.info(
                "worker %s serving group %r: %s",
                self.consumer,
                self.group,
                ", ".join(self.registry.names()),
            )

    def _new_worker(self) -> Worker:
        """A worker of this client's group, given what it needs (not started)."""
        return Worker(
            self.store,
            self.registry,
            group=self.group,
            consumer=self.consumer,
            hooks=self.hooks,
            children=ClientChildPromises(self),
        )

    async def stop(self, grace: float | timedelta | None = None) -> None:
        """Stop gracefully: in-flight functions get ``grace`` (default from settings)."""
        if self._worker is not None:
            g = seconds(grace)
            await self._worker.stop(
                self.settings.shutdown_grace.total_seconds() if g is None else g
            )
            self._worker = None
        await self._waiter.close()
        await self.store.clock.close()
        if self._own_redis:
            await self.redis.aclose()
            self._stopped = True

    async def __aenter__(self) -> Redpromise:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def worker(self) -> Worker | None:
        """The running worker, if this process serves a group."""
        return self._worker

    def health(self) -> dict[str, Any]:
        """What this process's worker loops are doing, as JSON-ready data.

        ``{"live": bool, "ready": bool, "loops": {"read": {...}, ...}}``: ``live`` is
        false when a loop died or stopped iterating (restart the process); ``ready`` is
        false while Redis fails a loop (the worker waits it out by itself). A process
        without a worker is always live and ready.
        """
        if self._worker is None:
            return {"live": True, "ready": True, "loops": {}}
        return self._worker.supervisor.health()

    async def _ready(self) -> None:
        if self._checked:
            return
        async with self._ready_lock:
            if not self._checked:
                await self._check_namespace()

    async def _check_namespace(self) -> None:
        if not self._topology_known:
            await self._detect_cluster()
        async with translate_errors():
            if is_cluster(self.redis):
                self.store.sharded = await sharded_pubsub(self.redis)
            await check_acl(self.redis, self.keys, worker=bool(self.registry))
            await self._adopt_key_layout()
            await self.redis.hsetnx(self.keys.meta, "partitions", self.keys.partitions)
            stored = await self.redis.hget(self.keys.meta, "partitions")
            await self.store.clock.sync()
        if stored is None or int(stored) != self.keys.partitions:
            raise ConfigurationError(
                f"namespace {self.keys.namespace!r} was created with {stored!r} partitions, "
                f"this process uses {self.keys.partitions}; they must match"
            )
        self._checked = True

    async def _detect_cluster(self) -> None:
        """Switch to a cluster client when the URL points at a cluster node."""
        async with translate_errors():
            enabled = await cluster_enabled(self.redis)
        self._topology_known = True
        if not enabled:
            return
        single, self.redis = self.redis, connect_cluster_client(self.url)
        log.info("%s is a Redis Cluster node: using the cluster client", self.url)
        self.store.rebind(self.redis)
        await single.aclose()

    async def _adopt_key_layout(self) -> None:
        """Give the keys' holders (the store, which the waiter reads; the worker comes
        later) the key layout pinned in the namespace (:func:`pinned_layout`)."""
        self.keys = self.store.keys = await pinned_layout(self.redis, self.keys)

    async def _warn_eviction(self) -> None:
        await warn_eviction(self.redis)

    # -- promises -----------------------------------------------------------------------

    async def begin_rpc(
        self,
        id: str,
        name: str,
        *args: Any,
        target: str | None = None,
        timeout: Timeout | None = None,
        retry: RetryPolicy | None = None,
        tags: dict[str, str] | None = None,
        options: Options | None = None,
        **kwargs: Any,
    ) -> Handle:
        """Create promise ``id`` and dispatch ``name(*args, **kwargs)`` to ``target``.

        Creation and dispatch are one atomic write. If ``id`` exists already, nothing is
        written and the handle re-attaches to it: the same id never executes twice.
        Returns as soon as the promise is durable in Redis. ``timeout`` is seconds or a
        ``timedelta`` (default ``Settings.timeout``); :class:`ConfigurationError` unless
        positive and finite.

        With ``Options(codec="json")`` the promise is a Resonate protocol promise
        (:mod:`redpromise.client.json_calls`): a Resonate SDK worker of the target group,
        connected through ``redpromise serve``, runs ``name(*args)``; the arguments must be
        JSON (:class:`PayloadError` says why not) and the result is the function's JSON.
        """
        with self.hooks.tracer.begin_span(id, name):
            validate_id(id)
            validate_group(name)
            opts = (options or _NO_OPTIONS).merge(
                target=target, timeout=timeout, retry=retry, tags=tags
            )
            group = parse_target(opts.target) if opts.target else _DEFAULT_GROUP
            if opts.codec == "json":
                return await self._begin_json(id, name, args, kwargs, opts, group)
            limit = self.settings.max_payload_bytes
            call = self.hooks.tracer.with_context({"a": list(args), "k": kwargs})
            payload = encode(call, limit)
            tags_blob = encode(opts.tags, limit) if opts.tags else b""
            retry_blob = encode(opts.retry.to_wire(), limit) if opts.retry else b""
            timeout_ms = (
                int(opts.timeout.total_seconds() * 1000)
                if opts.timeout is not None
                else self._default_timeout_ms
            )
            if timeout_ms <= 0:
                raise ConfigurationError("timeout must be positive")
            if not self._checked:
                await self._ready()
            before = self._waiter.before_create(id)
            created, timeout_at = False, 0
            try:
                created, _, timeout_at = await self.store.create(
                    id, name, payload, group, timeout_ms, tags_blob, retry_blob
                )
            except BaseException as exc:
                # translate_errors, inline: one begin is too short for two more coroutines.
                if (err := as_redpromise_error(exc)) is not exc:
                    raise err from exc
                raise
            finally:
                # create.lua: created_at is the timeout_at it returns less the timeout.
                created_at = timeout_at - timeout_ms if created else None
                self._waiter.after_create(id, before, created_at, timeout_at)
            return Handle(self, id)

    async def _begin_json(
        self,
        id: str,
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        opts: Options,
        group: str,
    ) -> Handle:
        """begin_rpc of a JSON call: one protocol ``promise.create`` (see json_calls)."""
        if opts.retry is not None:
            raise ConfigurationError("a JSON call is retried by its Resonate worker: no retry=")
        param = json_param(name, args, kwargs, self.settings.max_payload_bytes)
        timeout_ms = (
            int(opts.timeout.total_seconds() * 1000)
            if opts.timeout is not None
            else self._default_timeout_ms
        )
        await self._ready()
        if self._protocol is None:
            self._protocol = ProtocolStore(self.store)
        async with translate_errors():
            now = self.store.clock.now_ms()
            await begin_json(self._protocol, id, param, group, now + timeout_ms, opts.tags)
        return Handle(self, id)

    async def rpc(self, id: str, name: str, *args: Any, **kwargs: Any) -> Any:
        """:meth:`begin_rpc`, then wait for and return the result."""
        handle = await self.begin_rpc(id, name, *args, **kwargs)
        return await handle.result()

    async def get(self, id: str) -> Handle:
        """Re-attach to promise ``id``; raises :class:`PromiseNotFound` if unknown."""
        await self._read(id)
        return Handle(self, id)

    async def resolve(self, id: str, value: Any = None) -> Handle:
        """Resolve a pending promise from outside. First completion wins."""
        return await self._settle(id, "resolved", encode(value, self.settings.max_payload_bytes))

    async def reject(self, id: str, error: BaseException | str) -> Handle:
        """Reject a pending promise from outside with an exception or a message."""
        info = (
            error_of(error)
            if isinstance(error, BaseException)
            else {
                "type": "Error",
                "message": str(error),
            }
        )
        blob = encode_error(info["type"], info["message"], self.settings.max_payload_bytes)
        return await self._settle(id, "rejected", blob)

    async def cancel(self, id: str) -> Handle:
        """Cancel a pending promise (``rejected_canceled``); a running function stops at
        its next step or heartbeat, and its result is never recorded. Its children (and
        theirs) are canceled too: they stay known while it is pending, then for its
        record's retention."""
        blob = encode_error("PromiseCanceled", "Promise canceled", self.settings.max_payload_bytes)
        return await self._settle(id, "rejected_canceled", blob)

    async def _settle(self, id: str, state: str, blob: bytes) -> Handle:
        validate_id(id)
        await self._ready()
        async with translate_errors():
            res = await self.store.complete(id, None, None, state, blob)
            if res[0] == -1:
                raise PromiseNotFound(id)
            if state == "rejected_canceled":
                await cancel_children(self, id, blob)
        return Handle(self, id)

    # -- search and counts --------------------------------------------------------------

    async def search(
        self,
        state: str | None = None,
        group: str | None = None,
        function: str | None = None,
        tags: dict[str, str] | None = None,
        since: int | datetime | None = None,
        until: int | datetime | None = None,
        limit: int = 100,
        cursor: str | None = None,
        *,
        newest_first: bool = False,
    ) -> SearchPage:
        """One page of the promises matching every filter given, oldest first (by
        ``created_at``, then group and id) or newest first. ``state``: ``pending``,
        ``resolved``, ``rejected``, ``rejected_canceled`` or ``rejected_timedout``, or
        ``failing`` (pending, with a :attr:`PromiseInfo.last_error`); ``tags`` must all be
        on the promise; ``since``/``until`` bound ``created_at`` (inclusive; ms or datetime).
        Pass the returned ``cursor`` back (same filters) for the next page: a walk never
        repeats a promise nor skips one that exists throughout it, across partitions and
        state changes. A page holds at most ``limit`` (1 to 1000) records; it may hold fewer
        while ``cursor`` is not ``None`` when a rare filter made it read many candidates.
        Completed promises are found until their retention ends. Raises ``ValueError``
        on a bad argument or cursor.
        """
        await self._ready()
        async with translate_errors():
            return await search(
                self.store,
                state=state,
                group=group,
                function=function,
                tags=tags,
                since=since,
                until=until,
                limit=limit,
                cursor=cursor,
                newest_first=newest_first,
            )

    async def counts(self) -> dict[str, dict[str, int]]:
        """Promises per state and group: ``{state: {group: n}}``, every state present.
        O(partitions): one small hash per partition, kept by the transition scripts.
        ``pending`` is exact. A completed state counts the promises completed and still
        retained; one whose own retention ended (the completing process's, not the
        worker's) leaves the count when a worker's upkeep sweeps it (within about one
        reclaim interval while any worker runs); a search writes nothing. Latent
        promises count under group ``""``.
        """
        await self._ready()
        async with translate_errors():
            return await counts(self.store)

    async def queue_state(self, group: str) -> tuple[int, int, float]:
        """``(depth, in_flight, oldest_age_seconds)`` of ``group``'s queue over every
        partition (the metrics' queue gauges; depth as :mod:`redpromise.store.queues`
        defines it). A client that was stopped answers :class:`StoreUnavailable` instead of
        opening a connection again (the process's metrics may still watch it)."""
        if self._stopped:
            raise StoreUnavailable("this client was stopped", "stopped")
        await self._ready()  # the key layout is known only once the namespace was read
        return await queue_state(self.redis, self.keys, group)

    # -- reading ------------------------------------------------------------------------

    async def _read(self, id: str) -> Record:
        validate_id(id)
        await self._ready()
        async with translate_errors():
            rec = await self.store.read(id)
            if rec is None:
                raise PromiseNotFound(id)
            rec = await self._expire_if_due(rec)
        return rec

    async def _expire_if_due(self, rec: Record) -> Record:
        """Apply a passed timeout now, even with no worker alive (the lazy timeout)."""
        if not rec.pending or rec.timeout_at > self.store.clock.now_ms():
            return rec
        script, keys, args = self.store.timeout_call(rec.id, rec.group)
        reply = await self.store.batch.call(script, keys, args)
        self.hooks.metrics.completed_reply(rec.group, reply)
        return await self.store.read(rec.id) or rec

    async def _wait(self, id: str, timeout: float | None) -> Record | Completion:
        validate_id(id)
        if not self._checked:
            await self._ready()
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - loop.time())
            try:
                rec = await self._waiter.wait(id, left)
                if isinstance(rec, Record):
                    rec = await self._expire_if_due(rec)
            except BaseException as exc:  # translate_errors, inline (as in begin_rpc)
                if (err := as_redpromise_error(exc)) is not exc:
                    raise err from exc
                raise
            if rec is not None and not rec.pending:
                return rec
            if deadline is not None and loop.time() >= deadline:
                raise TimeoutError(f"promise {id!r} still pending after {timeout}s")
