"""The Resonate face: Resonate's protocol ``2026-04-01`` served from redpromise's store.

Routes (under ``prefix``):

``POST /``
    One protocol request ``{kind, head, data}``; the reply ``{kind, head: {corrId, status,
    version}, data}`` with the HTTP status equal to ``head.status`` (see
    :mod:`redpromise.store.protocol` for the kinds). 400 for a body that is not a request,
    401 without the token (when one is set), 413 over ``max_body``, 503 while Redis is
    unavailable or refusing for now (the SDKs retry), 422 for a request a Redis Cluster
    cannot serve in one slot.
``GET /poll/{group}/{pid}``
    Server-Sent Events: ``execute`` and ``unblock`` messages for ``poll://uni@group/pid`` and
    ``poll://any@group``, frames ``data: <json>``; a comment line every 15 seconds keeps
    proxies from closing an idle stream.
``GET /healthz``
    ``200 {"status": "ok"}`` while Redis answers, else 503.

Stateless: every state change is one script on Redis, every message goes through Redis
(:mod:`redpromise.resonate.delivery`), and the timers are ticked by every replica (each due
item is handled by whichever tick reaches it first), so replicas behind one address share
the load and any of them may die. ``debug.*`` kinds (time from the request head's
``resonate:debug_time``, no background tick) exist only with ``debug=True``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from redpromise.client.client import Redpromise
from redpromise.core.auth import bearer_allows
from redpromise.core.errors import (
    ConfigurationError,
    CrossSlot,
    RedpromiseError,
    StoreUnavailable,
)
from redpromise.redis.classify import translate_errors
from redpromise.resonate.delivery import GroupFeed, UnicastFeed, consumer_name
from redpromise.resonate.envelope import (
    DEBUG_KINDS,
    Envelope,
    EnvelopeError,
    parse_request,
    reply_bytes,
)
from redpromise.resonate.pollers import Poller, Pollers
from redpromise.store.protocol import ProtocolStore
from redpromise.store.protocol_schedules import ProtocolSchedules
from redpromise.worker.supervise import Supervisor

__all__ = ["ResonateFace", "ServeOptions", "add_resonate_routes"]

log = logging.getLogger("redpromise.resonate")

_KEEPALIVE = 15.0
_LIVENESS = 1.0  # how soon the handler of a connection whose peer went away ends
_JSON = "application/json"


@dataclass(frozen=True)
class ServeOptions:
    """How the Resonate face serves.

    ``token``: when set, every route but ``/healthz`` needs ``Authorization: Bearer
    <token>`` (the SDKs' ``token`` option or ``RESONATE_TOKEN``). ``debug``: accept the
    ``debug.*`` kinds and take each request's time from its head (conformance tests only:
    a client then sets the clock). ``tick_every``: seconds between two ticks of the timers
    (timeouts, leases, retries, schedules) by this replica. ``max_body``: bytes.
    """

    token: str | None = None
    debug: bool = False
    tick_every: float = 1.0
    max_body: int = 10 * 1024 * 1024
    prefix: str = ""


class ResonateFace:
    """The routes and background loops of one replica."""

    def __init__(self, rp: Redpromise, options: ServeOptions | None = None) -> None:
        self.rp = rp
        self.options = options or ServeOptions()
        self.protocol = ProtocolStore(rp.store, schedules=ProtocolSchedules(rp.store))
        self.pollers = Pollers()
        self.consumer = consumer_name()
        self.supervisor = Supervisor(log)
        self._feeds: dict[str, GroupFeed] = {}
        self._unicast: UnicastFeed | None = None
        self._started = False

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect (checking the namespace) and start the loops."""
        await self.rp.start()
        store = self.rp.store
        self._unicast = UnicastFeed(
            store.redis, store.keys.rs_channel(), self.pollers, self.protocol.promise_record
        )
        self.supervisor.spawn("unicast", self._unicast.listen_once, 0)
        if not self.options.debug:
            self.supervisor.spawn("tick", self._tick, self.options.tick_every)
        self._started = True

    async def _tick(self) -> None:
        await self.protocol.tick(None)

    async def stop(self) -> None:
        await self.supervisor.stop()
        if self._unicast is not None:
            await self._unicast.close()
        await self.rp.stop()
        self._started = False

    def _feed_for(self, group: str) -> None:
        """Read group ``group``'s messages while this replica holds a connection of it."""
        if group in self._feeds:
            self._feeds[group].member_joined()
            return
        store = self.rp.store
        feed = GroupFeed(
            store.redis,
            store.keys,
            group,
            self.consumer,
            self.pollers,
            self.protocol.promise_record,
        )
        self._feeds[group] = feed
        self.supervisor.spawn(f"read {group}", feed.read_once, 0)
        self.supervisor.spawn(f"claim {group}", feed.claim_once, 2.0)

    async def _unfeed(self, group: str) -> None:
        if self.pollers.has(group) or self._feeds.pop(group, None) is None:
            return
        await self.supervisor.stop([f"read {group}", f"claim {group}"])

    # -- routes ---------------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        p = self.options.prefix
        app.router.add_post(f"{p}/", self.request)
        app.router.add_get(f"{p}/poll/{{group}}/{{pid}}", self.poll)
        app.router.add_get(f"{p}/healthz", self.healthz)

    def _authorized(self, request: web.Request) -> bool:
        return bearer_allows(request.headers.get("Authorization"), self.options.token)

    async def request(self, request: web.Request) -> web.StreamResponse:
        """``POST /``: one protocol request."""
        kind, head = "", {}
        try:
            if not self._authorized(request):
                return _reply("", {}, 401, "missing or invalid bearer token")
            body = await _read_body(request, self.options.max_body)
            env = parse_request(body)
            kind, head = env.kind, env.head
            status, data = await self._apply(env)
        except EnvelopeError as exc:
            return _reply(exc.kind, exc.head, 400, exc.message)
        except _TooLarge:
            return _reply(kind, head, 413, f"the body is over {self.options.max_body} bytes")
        except CrossSlot as exc:
            return _reply(kind, head, 422, str(exc))
        except StoreUnavailable as exc:
            return _reply(kind, head, 503, f"Redis unavailable: {exc}", retry=True)
        except ConfigurationError as exc:
            return _reply(kind, head, 503, f"Redis refused: {exc}", retry=True)
        except RedpromiseError as exc:
            log.error("%s failed: %s", kind, exc)
            return _reply(kind, head, 502, f"Redis answered an unexpected error: {exc}")
        return _reply(kind, head, status, data)

    async def _apply(self, env: Envelope) -> tuple[int, Any]:
        # The store answers every kind, debug ones included; this face only decides
        # whether a caller may use them (and whether a request may bring its own clock).
        if env.kind in DEBUG_KINDS and not self.options.debug:
            return 403, "debug kinds need redpromise serve --debug"
        now = env.debug_time() if self.options.debug else None
        async with translate_errors():
            return await self.protocol.apply(env.kind, env.data, now)

    async def poll(self, request: web.Request) -> web.StreamResponse:
        """``GET /poll/{group}/{pid}``: the SSE stream of one process."""
        if not self._authorized(request):
            return _reply("", {}, 401, "missing or invalid bearer token")
        group, pid = request.match_info["group"], request.match_info["pid"]
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        poller = Poller(group, pid, closed=lambda: _gone(request))
        self.pollers.add(poller)
        self._feed_for(group)
        try:
            await response.write(b": connected\n\n")
            idle = 0.0
            while not poller.closed():
                try:
                    data = await asyncio.wait_for(poller.frames.get(), _LIVENESS)
                except TimeoutError:
                    idle += _LIVENESS
                    if idle < _KEEPALIVE:
                        continue
                    data = b": keepalive\n\n"
                idle = 0.0
                await response.write(data)
        except (ConnectionResetError, ConnectionError):
            pass  # the process went away
        finally:
            self.pollers.remove(poller)
            with contextlib.suppress(Exception):
                await self._unfeed(group)
        return response

    async def healthz(self, request: web.Request) -> web.StreamResponse:
        try:
            async with translate_errors():
                await self.rp.store.redis.ping()
        except RedpromiseError as exc:
            return web.json_response({"status": "unavailable", "error": str(exc)}, status=503)
        return web.json_response({"status": "ok"})


class _TooLarge(Exception):
    pass


def _gone(request: web.Request) -> bool:
    """Whether the peer of ``request`` has closed its connection (aiohttp does not cancel
    the handler then: it learns it only on a write)."""
    transport = request.transport
    return transport is None or transport.is_closing()


async def _read_body(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise _TooLarge
    body = await request.content.read(limit + 1)
    if len(body) > limit:
        raise _TooLarge
    return body


def _reply(
    kind: str, head: dict[str, Any], status: int, data: Any, *, retry: bool = False
) -> web.Response:
    headers = {"Retry-After": "1"} if retry else None
    return web.Response(
        body=reply_bytes(kind, head, status, data),
        status=status,
        content_type=_JSON,
        headers=headers,
    )


def add_resonate_routes(
    app: web.Application, rp: Redpromise, options: ServeOptions | None = None
) -> ResonateFace:
    """Serve Resonate's protocol from ``app`` (under ``options.prefix``), on ``rp``'s
    namespace; the face starts and stops with the application."""
    face = ResonateFace(rp, options)
    face.add_routes(app)

    async def started(_: web.Application) -> None:
        await face.start()

    async def stopped(_: web.Application) -> None:
        await face.stop()

    app.on_startup.append(started)
    app.on_cleanup.append(stopped)
    return face
