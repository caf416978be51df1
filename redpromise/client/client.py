"""The Redpromise client: create, dispatch, re-attach to and settle durable promises."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar, overload

from redis.asyncio import RedisCluster

from redpromise.client.waiter import Waiter
from redpromise.core.codec import decode, decode_error, encode, encode_error, error_of
from redpromise.core.errors import (
    ConfigurationError,
    PromiseCanceled,
    PromiseNotFound,
    PromiseRejected,
    PromiseTimedOut,
)
from redpromise.core.hooks import Hooks
from redpromise.core.keys import (
    LAYOUT_LEGACY,
    LAYOUT_SPREAD,
    LAYOUTS,
    Keys,
    validate_group,
    validate_id,
)
from redpromise.core.options import (
    Options,
    RetryPolicy,
    Settings,
    Timeout,
    as_timeout,
    parse_target,
)
from redpromise.observe.metrics import METRICS
from redpromise.observe.tracing import TRACER
from redpromise.redis.acl import check_acl
from redpromise.redis.classify import as_redpromise_error, translate_errors
from redpromise.redis.cluster import cluster_enabled
from redpromise.redis.connect import connect, connect_cluster_client, decodes, warn_eviction
from redpromise.redis.wire import AnyRedis
from redpromise.store.queues import queue_state
from redpromise.store.search import PromiseInfo, SearchPage, counts, search
from redpromise.store.store import Completion, Record, Store
from redpromise.worker.registry import Registry
from redpromise.worker.worker import Worker

__all__ = ["Handle", "PromiseInfo", "Redpromise", "SearchPage"]

log = logging.getLogger("redpromise")

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_URL = "redis://127.0.0.1:6379/0"
DEFAULT_TARGET = "poll://any@worker"


_NO_OPTIONS = Options()
_DEFAULT_GROUP = parse_target(DEFAULT_TARGET)


def _seconds(t: float | timedelta | None) -> float | None:
    return t.total_seconds() if isinstance(t, timedelta) else t


class Handle:
    """A durable promise, by id. Holds no state: every call reads Redis (``result()`` may
    instead take the outcome from the promise's completion message, see
    ``redpromise/client/waiter.py``)."""

    __slots__ = ("_id", "_rp")

    def __init__(self, rp: Redpromise, id: str) -> None:
        self._rp = rp
        self._id = id

    @property
    def id(self) -> str:
        """The promise id."""
        return self._id

    def __repr__(self) -> str:
        return f"Handle({self._id!r})"

    async def state(self) -> str:
        """The current state: ``pending``, ``resolved``, ``rejected``, ``rejected_*``."""
        return (await self._rp._read(self._id)).state

    async def done(self) -> bool:
        """Whether the promise is completed. One read; never blocks on the promise."""
        return not (await self._rp._read(self._id)).pending

    async def result(self, timeout: float | timedelta | None = None) -> Any:
        """Wait for completion; return the value, or raise the rejection.

        Waits on a completion notification, not by polling; a small outcome comes in
        the notification itself, and a promise begun by this process while it was
        already listening is not even read first. Raises
        :class:`PromiseRejected` (with the remote error's type and message),
        :class:`PromiseCanceled`, :class:`PromiseTimedOut`, :class:`PromiseNotFound`, or
        :class:`TimeoutError` when ``timeout`` passes first (the promise stays pending).
        """
        return self._rp._outcome(await self._rp._wait(self._id, _seconds(timeout)))


class Redpromise:
    """Durable promises and durable dispatch on Redis; one per process.

    A process that registers functions is a worker of ``group``: :meth:`start` makes it
    consume the group's dispatches. Any process can create (:meth:`begin_rpc`),
    re-attach to (:meth:`get`) and settle (:meth:`resolve`, :meth:`reject`,
    :meth:`cancel`) promises.
    """

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

    # -- registration -------------------------------------------------------------------

    @overload
    def register(self, fn: F, /) -> F: ...

    @overload
    def register(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: Timeout | None = None,
    ) -> Callable[[F], F]: ...

    @overload
    def register(
        self,
        fn: F,
        /,
        *,
        name: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: Timeout | None = None,
    ) -> F: ...

    def register(
        self,
        fn: Any = None,
        /,
        *,
        name: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: Timeout | None = None,
    ) -> Any:
        """Register ``fn(ctx, *args, **kwargs)`` under ``name`` (default: its ``__name__``).

        Use as ``@rp.register``, ``@rp.register(name=…, retry=…)`` or
        ``rp.register(fn, name=…)``. ``fn`` may be ``async def``, a generator function
        (Resonate style: ``value = yield ctx.run(step, …)``) or a plain function (run in
        a thread). ``retry`` overrides ``Settings.retry``; ``timeout`` (seconds or a
        ``timedelta``, positive) bounds one attempt.
        """
        attempt_timeout = as_timeout(timeout)

        def add(f: F) -> F:
            self.registry.add(f, name, retry, attempt_timeout)
            return f

        return add(fn) if fn is not None else add

    def options(
        self,
        *,
        target: str | None = None,
        timeout: Timeout | None = None,
        retry: RetryPolicy | None = None,
        tags: dict[str, str] | None = None,
    ) -> Options:
        """An options bag for :meth:`begin_rpc` (``options=``), as in Resonate's SDKs.

        ``timeout`` is seconds or a ``timedelta``; :class:`ConfigurationError` unless
        positive and finite."""
        return Options(target=target, timeout=timeout, retry=retry, tags=tags)

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, check the namespace, and start working if functions are registered.

        Raises :class:`StoreUnavailable` when Redis is down or refusing for now (retry
        later) and :class:`ConfigurationError` when the settings or the Redis user's
        rights are wrong. Once started, a worker rides out Redis outages by itself.
        """
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
            children=_Children(self),
        )

    async def stop(self, grace: float | timedelta | None = None) -> None:
        """Stop gracefully: in-flight functions get ``grace`` (default from settings)."""
        if self._worker is not None:
            g = _seconds(grace)
            await self._worker.stop(
                self.settings.shutdown_grace.total_seconds() if g is None else g
            )
            self._worker = None
        await self._waiter.close()
        await self.store.clock.close()
        if self._own_redis:
            await self.redis.aclose()

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
        if isinstance(self.redis, RedisCluster):
            await self._use_sharded_pubsub()
        async with translate_errors():
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

    async def _use_sharded_pubsub(self) -> None:
        """Completions over sharded pub/sub (SPUBLISH) on a Redis >= 7 cluster; classic
        pub/sub, which a cluster broadcasts to every node, on 6.2."""
        assert isinstance(self.redis, RedisCluster)
        async with translate_errors():
            info = await self.redis.info("server", target_nodes=RedisCluster.RANDOM)
        version = str(info.get("redis_version", "0"))
        sharded = int(version.split(".")[0] or 0) >= 7
        self.store.sharded = sharded

    async def _adopt_key_layout(self) -> None:
        """Give the keys' holders (the store, which the waiter reads; the worker comes
        later) the key layout pinned in the namespace's meta hash; pin it if it is new.

        Runs before any key is used and before ``partitions`` is pinned: a new namespace
        gets ``layout`` first, so a meta with ``partitions`` and no ``layout`` can only
        come from a version without layouts, and keeps its legacy tags (no data moves).
        """
        meta = self.keys.meta
        partitions, raw = await self.redis.hmget(meta, ["partitions", "layout"])
        if partitions is None:  # a new namespace (or one whose creator died right here)
            await self.redis.hsetnx(meta, "layout", LAYOUT_SPREAD)
            raw = await self.redis.hget(meta, "layout")
        layout = LAYOUT_LEGACY if raw is None else int(raw) if raw.isdigit() else -1
        if layout not in LAYOUTS:
            raise ConfigurationError(
                f"namespace {self.keys.namespace!r} uses key layout {raw!r}, unknown to this "
                f"version of redpromise (it knows {LAYOUTS}): upgrade redpromise"
            )
        keys = self.keys.with_layout(layout)
        self.keys = self.store.keys = keys

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
        """
        with self.hooks.tracer.begin_span(id, name):
            validate_id(id)
            validate_group(name)
            opts = (options or _NO_OPTIONS).merge(
                target=target, timeout=timeout, retry=retry, tags=tags
            )
            group = parse_target(opts.target) if opts.target else _DEFAULT_GROUP
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
            token = self._waiter.token(id)
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
                self._waiter.begun(id, token, created_at, timeout_at)
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
                await self._cancel_children(id, blob)
        return Handle(self, id)

    async def _cancel_children(self, id: str, blob: bytes, depth: int = 0) -> None:
        """Cancel every child a canceled promise created, and theirs (bounded depth)."""
        if depth > 32:
            return
        members = await self.redis.smembers(self.keys.children(id))
        for raw in members:
            child = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
            await self.store.complete(child, None, None, "rejected_canceled", blob)
            await self._cancel_children(child, blob, depth + 1)

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

    # -- for Context (worker side) ------------------------------------------------------

    async def _adopt(self, parent: str, child: str) -> None:
        """Remember ``child`` as created by ``parent`` (for cancellation), before creating it.

        The set lives as long as the parent's record: no expiry while the parent is
        pending (it can be canceled until it completes, however long that takes), then
        the record's own retention, which ``settle.lua`` gives the set too.
        """
        key = self.keys.children(parent)
        async with translate_errors():
            pipe = self.redis.pipeline(transaction=False)
            pipe.sadd(key, child)
            pipe.pttl(self.keys.promise(parent))
            _, ttl = await pipe.execute()
            if ttl == -2 or ttl > 0:  # completed before our SADD (a late execution)
                await self.redis.pexpire(key, max(int(ttl), 1))

    async def _create_latent(self, id: str, timeout: timedelta) -> None:
        """Create a promise with no function: something outside completes it."""
        validate_id(id)
        await self._ready()
        timeout_ms = max(1, int(timeout.total_seconds() * 1000))
        async with translate_errors():
            await self.store.create(id, "", b"", "", timeout_ms, b"", b"")

    async def _wait_outcome(self, id: str) -> Any:
        return self._outcome(await self._wait(id, None))

    async def queue_state(self, group: str) -> tuple[int, int, float]:
        """``(depth, in_flight, oldest_age_seconds)`` of ``group``'s queue over every
        partition (the metrics' queue gauges; depth as :mod:`redpromise.store.queues`
        defines it)."""
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

    def _outcome(self, rec: Record | Completion) -> Any:
        if rec.state == "resolved":
            return decode(rec.value) if rec.value is not None else None
        if rec.state == "rejected_canceled":
            raise PromiseCanceled(rec.id)
        if rec.state == "rejected_timedout":
            raise PromiseTimedOut(rec.id)
        type_name, message = decode_error(rec.value) if rec.value is not None else ("", "")
        raise PromiseRejected(rec.id, type_name, message)


class _Children:
    """The worker's way to start and await child promises (``ctx.rpc``, ``ctx.promise``):
    through this client (its readiness, its waiter)."""

    __slots__ = ("_rp",)

    def __init__(self, rp: Redpromise) -> None:
        self._rp = rp

    async def adopt(self, parent: str, child: str) -> None:
        await self._rp._adopt(parent, child)

    async def begin(
        self,
        id: str,
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        target: str | None,
        timeout: timedelta,
    ) -> None:
        await self._rp.begin_rpc(id, name, *args, target=target, timeout=timeout, **kwargs)

    async def create_latent(self, id: str, timeout: timedelta) -> None:
        await self._rp._create_latent(id, timeout)

    async def wait_outcome(self, id: str) -> Any:
        return await self._rp._wait_outcome(id)
