"""A Resonate Python SDK connector on Redis: a Resonate program without ``redpromise serve``.

The Python SDK (``resonate-sdk``) talks to its server through two seams of
``resonate_base.connections``: a ``Network`` (``send(request) -> reply``, both JSON text) and
``Source``\\ s (push messages: ``execute`` and ``unblock``). :func:`redis_connections` makes
one of each that run the protocol where ``redpromise serve`` runs it, in this process:

- ``send`` applies the request with :class:`~redpromise.store.protocol.ProtocolStore` (each
  state change one Lua script on Redis) and answers the envelope ``redpromise serve``
  answers (:func:`~redpromise.resonate.envelope.reply_bytes`), status for status;
- the source receives what the scripts write for its addresses exactly as a replica of
  ``redpromise serve`` does (:mod:`redpromise.resonate.delivery`): ``poll://any@G`` from
  group G's dispatch streams, ``poll://uni@G/P`` from the namespace's unicast channel;
- every connected process ticks the timers (timeouts, leases, retries, schedules) each
  ``tick_every`` seconds; each due item is handled by one tick only (the scripts fence it).

The addresses are the ``poll://`` ones of the SDK's SSE source, so the same records serve
processes on this connector, on ``redpromise serve`` and on the TypeScript SDK at once.

Usage (a process of group ``worker``; the SDK owns pid and group, the connector must be told
the same ones)::

    pid = uuid.uuid4().hex
    network, source = redis_connections(os.environ["REDPROMISE_URL"], "worker", pid)
    resonate = Resonate(network=network, sources=[source], group="worker", pid=pid)

The SDK is not imported here: its protocols are structural, so this module imports (and is
type-checked) without it. Errors raised to the SDK are its ``ConnectorError`` when it is
installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
from collections.abc import Callable
from typing import Any

from redpromise.client.client import Redpromise
from redpromise.core.errors import CrossSlot, RedpromiseError, StoreUnavailable
from redpromise.core.options import Settings
from redpromise.redis.classify import translate_errors
from redpromise.resonate.delivery import GroupFeed, UnicastFeed, consumer_name
from redpromise.resonate.envelope import DEBUG_KINDS, EnvelopeError, parse_request, reply_bytes
from redpromise.resonate.pollers import Poller, Pollers
from redpromise.store.protocol import ProtocolStore
from redpromise.store.protocol_schedules import ProtocolSchedules
from redpromise.worker.supervise import Supervisor

__all__ = ["RedisNetwork", "RedisSource", "redis_connections"]

log = logging.getLogger("redpromise.resonate")

_RETRY_FIRST = 0.1  # seconds before the first retry of a request while Redis is unavailable
_RETRY_MAX = 5.0


def _connector_error(exc: Exception) -> Exception:
    """The SDK's ``ConnectorError`` wrapping ``exc`` (the one error its seam expects: it
    releases the task rather than dying), or ``exc`` itself without the SDK."""
    try:
        errors = importlib.import_module("resonate_base.error")
    except ImportError:
        return exc
    made: Exception = errors.ConnectorError(exc)
    return made


class _Hub:
    """What the network and the source of one process share: the Redis client, the
    protocol, this process's one in-memory connection and the background loops."""

    def __init__(
        self, url: str, group: str, pid: str, namespace: str | None, tick_every: float
    ) -> None:
        overrides = {"namespace": namespace} if namespace else {}
        self.rp = Redpromise(url, group="resonate", settings=Settings.from_env(**overrides))
        store = self.rp.store
        self.protocol = ProtocolStore(store, schedules=ProtocolSchedules(store))
        self.group = group
        self.pid = pid
        self.tick_every = tick_every
        self.pollers = Pollers()
        self.consumer = consumer_name()
        self.callbacks: list[Callable[[str], None]] = []
        self._supervisor: Supervisor | None = None
        self._poller: Poller | None = None
        self._pump: asyncio.Task[None] | None = None
        self._unicast: UnicastFeed | None = None
        self._feed: GroupFeed | None = None
        self._ready: asyncio.Task[None] | None = None
        self._users: set[str] = set()
        self.closed = False

    @property
    def supervisor(self) -> Supervisor:
        if self._supervisor is None:  # made on first use: it needs the running loop
            self._supervisor = Supervisor(log)
        return self._supervisor

    # -- connecting ------------------------------------------------------------------------

    async def ready(self) -> None:
        """Connect and check the namespace, once, retrying while Redis is unavailable;
        raises the SDK's ``ConnectorError`` once closed (or for a configuration error)."""
        if self.closed:
            raise _connector_error(RuntimeError("the Redis connector is stopped"))
        failed = (
            self._ready is not None
            and self._ready.done()
            and (self._ready.cancelled() or self._ready.exception() is not None)
        )
        if self._ready is None or failed:
            self._ready = asyncio.ensure_future(self._connect())
        task = self._ready
        try:
            await asyncio.shield(task)
        except RedpromiseError as exc:
            raise _connector_error(exc) from exc
        except asyncio.CancelledError:
            if task.cancelled() and self.closed:  # stop() ended the connecting, not our caller
                raise _connector_error(RuntimeError("the Redis connector is stopped")) from None
            raise

    async def _connect(self) -> None:
        delay = _RETRY_FIRST
        while True:
            try:
                await self.rp.start()
                return
            except StoreUnavailable as exc:
                if self.closed:
                    raise
                log.warning("Redis unavailable, retrying in %.1f s: %s", delay, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RETRY_MAX)

    # -- the parts -------------------------------------------------------------------------

    async def open_network(self) -> None:
        """Start ticking the timers (every connected process ticks)."""
        await self.ready()
        if "network" not in self._users:
            self._users.add("network")
            self.supervisor.spawn("tick", self._tick, self.tick_every)

    async def _tick(self) -> None:
        await self.protocol.tick(None)

    async def open_source(self) -> None:
        """Hold this process's connection and read its messages from Redis."""
        await self.ready()
        if "source" in self._users:
            return
        self._users.add("source")
        store = self.rp.store
        poller = Poller(self.group, self.pid, closed=lambda: self.closed)
        self._poller = poller
        self.pollers.add(poller)
        self._pump = asyncio.create_task(self._deliver(poller), name="redpromise-rs-pump")
        record_of = self.protocol.promise_record
        self._unicast = UnicastFeed(store.redis, store.keys.rs_channel(), self.pollers, record_of)
        feed = GroupFeed(
            store.redis, store.keys, self.group, self.consumer, self.pollers, record_of
        )
        self._feed = feed
        with contextlib.suppress(RedpromiseError):  # else the read loop makes them
            async with translate_errors():
                await feed.ensure_groups()  # before the claim loop's first XAUTOCLAIM
        self.supervisor.spawn("unicast", self._unicast.listen_once, 0)
        self.supervisor.spawn(f"read {self.group}", feed.read_once, 0)
        self.supervisor.spawn(f"claim {self.group}", feed.claim_once, 2.0)

    async def _deliver(self, poller: Poller) -> None:
        """Hand each frame queued for this process's connection to the SDK's receivers."""
        while True:
            frame = await poller.frames.get()
            if not frame.startswith(b"data: "):
                continue
            message = frame[len(b"data: ") :].strip().decode("utf-8")
            for callback in list(self.callbacks):
                try:
                    callback(message)
                except Exception:  # one receiver's bug must not stop the delivery
                    log.exception("a Resonate receiver failed on a message")

    async def _leave(self, feed: GroupFeed) -> None:
        """Delete this process's consumer from the streams where it holds no entry (one it
        holds stays pending under it, for a live process to claim)."""
        redis = self.rp.store.redis
        pipe = redis.pipeline(transaction=False)
        for key in feed.streams:
            pipe.xpending_range(key, self.group, "-", "+", 1, consumername=self.consumer)
        pending = await pipe.execute(raise_on_error=False)
        pipe = redis.pipeline(transaction=False)
        for key, held in zip(feed.streams, pending, strict=True):
            if isinstance(held, list) and not held:
                pipe.xgroup_delconsumer(key, self.group, self.consumer)
        await pipe.execute(raise_on_error=False)

    async def close(self, part: str) -> None:
        """Stop ``part`` ("network" or "source"); the last one closes the Redis client."""
        self._users.discard(part)
        if part == "source":
            if self._poller is not None:
                self.pollers.remove(self._poller)
            if self._supervisor is not None:
                await self._supervisor.stop(
                    ["unicast", f"read {self.group}", f"claim {self.group}"]
                )
            if self._unicast is not None:
                await self._unicast.close()
            if self._feed is not None:
                # A courtesy, so exited processes do not pile up in the group's consumer
                # list: never hang on it (Redis may be the reason we stop).
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._leave(self._feed), 5)
            if self._pump is not None:
                self._pump.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._pump
            self._poller = self._pump = self._unicast = self._feed = None
        elif self._supervisor is not None:
            await self._supervisor.stop(["tick"])
        if self._users:
            return
        self.closed = True
        if self._ready is not None:
            if not self._ready.done():
                self._ready.cancel()
            with contextlib.suppress(BaseException):
                await self._ready
        await self.rp.stop()


class RedisNetwork:
    """The SDK's ``Network`` on Redis: each request is applied by this process (see the
    module docstring). Replies are ``redpromise serve``'s for the same request; while
    Redis is unavailable a request waits and retries (the SDK's HTTP network does so on
    connection failures), until :meth:`stop`."""

    def __init__(self, hub: _Hub) -> None:
        self._hub = hub

    async def start(self) -> None:
        await self._hub.open_network()

    async def stop(self) -> None:
        await self._hub.close("network")

    async def send(self, req: str, headers: dict[str, str] | None = None) -> str:
        """The reply envelope (JSON text) to the request envelope ``req``."""
        try:
            env = parse_request(req.encode("utf-8"))
        except EnvelopeError as exc:
            return _reply(exc.kind, exc.head, 400, exc.message)
        if env.kind in DEBUG_KINDS:
            return _reply(env.kind, env.head, 403, "debug kinds need redpromise serve --debug")
        delay = _RETRY_FIRST
        while True:
            await self._hub.ready()
            try:
                async with translate_errors():
                    status, data = await self._hub.protocol.apply(env.kind, env.data, None)
                return _reply(env.kind, env.head, status, data)
            except CrossSlot as exc:
                return _reply(env.kind, env.head, 422, str(exc))
            except StoreUnavailable as exc:
                if self._hub.closed:
                    raise _connector_error(exc) from exc
                log.warning("%s: Redis unavailable, retrying in %.1f s: %s", env.kind, delay, exc)
            except RedpromiseError as exc:
                raise _connector_error(exc) from exc
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RETRY_MAX)


class RedisSource:
    """The SDK's ``Source`` on Redis: ``execute``/``unblock`` messages for
    ``poll://uni@<group>/<pid>`` and ``poll://any@<group>``, read from Redis."""

    def __init__(self, hub: _Hub) -> None:
        self._hub = hub

    def unicast(self) -> str:
        """The address of this process alone (what listeners are registered at)."""
        return f"poll://uni@{self._hub.group}/{self._hub.pid}"

    def resolve_target(self, target: str) -> str:
        """The address of any one process of group ``target``."""
        return f"poll://any@{target}"

    def recv(self, callback: Callable[[str], None]) -> None:
        """Call ``callback`` with each message (JSON text); register before :meth:`start`."""
        self._hub.callbacks.append(callback)

    async def start(self) -> None:
        await self._hub.open_source()

    async def stop(self) -> None:
        await self._hub.close("source")
        self._hub.callbacks.clear()


def _reply(kind: str, head: dict[str, Any], status: int, data: Any) -> str:
    return reply_bytes(kind, head, status, data).decode("utf-8")


def redis_connections(
    url: str | None,
    group: str,
    pid: str,
    namespace: str | None = None,
    *,
    tick_every: float = 1.0,
) -> tuple[RedisNetwork, RedisSource]:
    """The network and the source of one Resonate process on Redis ``url`` (``None``:
    ``$REDPROMISE_URL``, else ``redis://127.0.0.1:6379/0``) and ``namespace`` (``None``:
    ``$REDPROMISE_NAMESPACE``, else ``rp``), for the process ``pid`` of ``group``: pass the
    SDK the same ``group`` and ``pid``. Nothing connects before ``start``."""
    url = url or os.environ.get("REDPROMISE_URL") or "redis://127.0.0.1:6379/0"
    hub = _Hub(url, group, pid, namespace, tick_every)
    return RedisNetwork(hub), RedisSource(hub)
