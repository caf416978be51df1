"""The async-HTTP-API pattern for any aiohttp application (``pip install redpromise[aiohttp]``).

Two lines give a service Resonate's gateway routes, backed by durable promises::

    app = web.Application()
    add_routes(app, Redpromise.from_env(group="gateway"), "foo", target="poll://any@worker")

Routes (under ``prefix``; every body is JSON, errors are ``{"error": "<message>"}``):

``POST /begin?id=<id>``
    Create promise ``id`` (a UUID when absent) and dispatch ``function(<body>)`` to
    ``target``; an empty body means ``default_body``. Always ``200 {"promise": id,
    "status": "pending", "wait": "/wait?id=<id>"}``; the same id again re-attaches to the
    same promise (it is never executed twice).
``GET /wait?id=<id>[&timeout=<seconds>]``
    ``200 {"status": "pending", "promise_id", "message"}`` (with ``Retry-After``),
    ``200 {"status": "resolved", "promise_id", "result"}``, ``200 {"status": "rejected",
    "promise_id", "error"}`` (canceled and timed-out promises show as ``rejected`` with
    ``"Promise canceled"`` / ``"Promise timedout"``), ``404 {"error": "<id> not found"}``,
    ``400`` without an id. ``timeout`` long-polls: the answer comes as soon as the promise
    completes, or after ``min(timeout, max_wait)`` seconds with ``pending``.
``POST /resolve?id=<id>``, ``POST /reject?id=<id>``, ``POST /cancel?id=<id>``
    Settle a pending promise from outside (human in the loop). ``resolve`` takes the value
    as its JSON body (empty = ``null``); ``reject`` takes ``{"error": "<message>"}`` or a
    JSON string. The first completion wins: the answer is the promise's final outcome,
    shaped like ``/wait``'s.
``GET /healthz``
    ``200 {"status": "ok"}`` while Redis answers, else ``503``.
``GET /openapi.json``
    An OpenAPI 3.1 description of these routes.
``GET /ui``
    The dashboard (redpromise/http/dashboard.py; its JSON under ``/ui/api/`` is not in the OpenAPI
    document: it is the page's own interface).
``GET /metrics``
    Prometheus metrics of this process, with the queue gauges of the target group
    (``pip install redpromise[metrics]``; without it the route does not exist: 404).

Status codes: 400 bad id / query / JSON, 401 missing or wrong bearer token (when ``token``
is set, on every route, the dashboard's included, but ``/healthz`` and ``/openapi.json``),
404 unknown id, 413 body over
``max_body`` or a payload over ``Settings.max_payload_bytes``, 502 Redis answered an
error redpromise does not expect or holds a corrupt record, 503 Redis unavailable or
refusing for now (``MISCONF``, ``READONLY``, ``LOADING``, ``BUSY``, ``OOM``, …) or the
Redis user lacks a right (``NOPERM``), with ``Retry-After``; every operation is safe to
repeat with the same id. A Redis condition never answers 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import logging
import math
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from redpromise.client.client import Handle, Redpromise
from redpromise.core.auth import bearer_allows
from redpromise.core.errors import (
    ConfigurationError,
    CorruptRecord,
    InvalidId,
    PayloadError,
    PayloadTooLarge,
    PromiseNotFound,
    PromiseRejected,
    StoreError,
    StoreUnavailable,
)
from redpromise.core.keys import validate_id
from redpromise.core.options import Options
from redpromise.http.openapi import openapi
from redpromise.http.payloads import (
    PLAIN_ID_QUERY,
    HTTPError,
    dumps,
    json_bytes,
    json_response,
    loads,
    query_number,
    query_value,
)
from redpromise.observe import metrics as _metrics
from redpromise.observe import tracing as _tracing
from redpromise.redis.classify import is_redis_failure
from redpromise.worker.supervise import CauseLog

__all__ = ["DEFAULT_BODY", "Gateway"]

log = logging.getLogger("redpromise.aiohttp")

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
DEFAULT_BODY: Any = {"foo": "bar"}
_READ_CHUNK = 64 * 1024


@dataclass(eq=False)
class Gateway:
    """The state of one :func:`add_routes` call; its handlers are methods."""

    rp: Redpromise
    function: str
    target: str
    prefix: str
    token: str | None
    max_body: int
    max_wait: float
    retry_after: int
    default_body: Any
    codec: str | None = None
    closing: asyncio.Event = field(default_factory=asyncio.Event)
    # begin_rpc's options, built once: passing target= would build a new Options per call
    options: Options = field(init=False)
    waiting: int = 0
    _causes: CauseLog = field(
        default_factory=lambda: CauseLog(
            "gateway requests",
            log,
            "answering 503 with Retry-After until it recovers",
            count=functools.partial(_metrics.redis_failure, "gateway"),
        )
    )

    # begin's answer up to the id, JSON-escaped once: ``"…/wait?id=``
    _wait_json: str = field(init=False)

    def __post_init__(self) -> None:
        self.options = Options(target=self.target, codec=self.codec)
        self._wait_json = dumps(self.path("/wait?id="))[:-1]

    # -- plumbing -----------------------------------------------------------------------

    def path(self, route: str) -> str:
        return f"{self.prefix}{route}"

    def authorized(self, request: web.Request) -> bool:
        """Whether ``request`` may read and act: no ``token`` is set, or it carries it as
        ``Authorization: Bearer <token>``. The one token check of the gateway's routes
        and its dashboard's."""
        return bearer_allows(request.headers.get("Authorization"), self.token)

    def _check_token(self, request: web.Request) -> None:
        if not self.authorized(request):
            raise HTTPError(401, "missing or invalid bearer token", {"WWW-Authenticate": "Bearer"})

    def guard(self, handler: _Handler, *, auth: bool = True, span: bool | None = None) -> _Handler:
        """Wrap ``handler``: with ``auth``, the token check; every error as a JSON answer;
        with ``span`` (default: ``auth``), inside a server span while tracing records."""
        traced = auth if span is None else span

        async def guarded(request: web.Request, in_span: bool = False) -> web.StreamResponse:
            # The span's wrapper only while tracing records: one coroutine less per request.
            if traced and not in_span and _tracing.active():
                return await _in_span(request, guarded)
            try:
                if auth:
                    self._check_token(request)
                response = await handler(request)
                self._causes.ok()
                return response
            except Exception as exc:
                return self._error(request, exc)

        return guarded

    def _error(self, request: web.Request, exc: Exception) -> web.StreamResponse:
        """The answer to ``exc``, raised by a handler (called in its ``except`` block)."""
        if isinstance(exc, HTTPError):
            return json_response({"error": exc.message}, exc.status, exc.headers)
        if isinstance(exc, PromiseNotFound):
            return json_response({"error": f"{exc.id} not found"}, 404)
        if isinstance(exc, PayloadTooLarge):
            return json_response({"error": str(exc)}, 413)
        if isinstance(exc, InvalidId | PayloadError):
            return json_response({"error": str(exc)}, 400)
        if isinstance(exc, StoreUnavailable):
            self._causes.failed(exc)
            return json_response(
                {"error": f"Redis unavailable ({exc.reason or 'unreachable'}), try again"},
                503,
                {"Retry-After": str(self.retry_after)},
            )
        if isinstance(exc, ConfigurationError):
            # A right the Redis user lacks (NOPERM): the operator's fix needs no
            # restart of the gateway, so the client is told to come back.
            self._causes.failed(exc)
            return json_response(
                {"error": f"redpromise is misconfigured: {exc}"},
                503,
                {"Retry-After": str(self.retry_after)},
            )
        if isinstance(exc, StoreError | CorruptRecord):
            log.error("%s %s: %s", request.method, request.path, exc)
            return json_response({"error": str(exc)}, 502)
        if isinstance(exc, web.HTTPException):
            raise exc
        log.exception("%s %s failed", request.method, request.path)
        return json_response({"error": "internal error"}, 500)

    def _id(self, request: web.Request, *, required: bool = True) -> str | None:
        if "id" not in request.query:
            if required:
                raise HTTPError(400, "id query parameter is required")
            return None
        return validate_id(request.query["id"])

    def _timeout(self, request: web.Request) -> float:
        raw = request.query.get("timeout")
        if raw is None:
            return 0.0
        try:
            value = float(query_number(raw))
        except ValueError:
            value = math.nan
        if not value >= 0:
            raise HTTPError(400, "timeout must be a non-negative number of seconds")
        return min(value, self.max_wait)

    async def _body(self, request: web.Request) -> bytes:
        """The request body, refusing more than ``max_body`` bytes (413)."""
        content = request.content
        if content.is_eof():  # all of it has arrived (small bodies): no reads to await
            raw = content.read_nowait()
            if len(raw) > self.max_body:
                raise self._too_large()
            return raw
        length = request.content_length
        if length is not None and length > self.max_body:
            raise self._too_large()
        chunks: list[bytes] = []
        size = 0
        while True:
            chunk = await request.content.read(_READ_CHUNK)
            if not chunk:
                break
            size += len(chunk)
            if size > self.max_body:
                raise self._too_large()
            if size == length and not chunks:
                return chunk  # the whole declared body in one read: no second read for EOF
            chunks.append(chunk)
        return b"".join(chunks)

    def _too_large(self) -> HTTPError:
        return HTTPError(413, f"request body is larger than {self.max_body} bytes")

    async def _json_body(self, request: web.Request, empty: Any) -> Any:
        raw = await self._body(request)
        if not raw:  # a body of blanks is not JSON: it is refused like any other
            return copy.deepcopy(empty)
        return loads(raw)

    async def _outcome(self, handle: Handle, timeout: float) -> dict[str, Any] | None:
        """The completed promise as a ``/wait`` body; ``None`` while pending.

        With ``timeout > 0`` waits (via completion notifications) up to that long, or
        until the application shuts down.
        """
        if timeout <= 0:
            if not await handle.done():
                return None
            waiter: asyncio.Future[Any] = asyncio.ensure_future(handle.result())
        else:
            waiter = asyncio.ensure_future(handle.result(timeout=timeout))
            closing = asyncio.ensure_future(self.closing.wait())
            self.waiting += 1
            try:
                await asyncio.wait(
                    {waiter, closing}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                self.waiting -= 1
                closing.cancel()
                if not waiter.done():
                    waiter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await closing
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await waiter
            if waiter.cancelled():
                # Time is up (or the app is closing): one fresh read decides, so a
                # Redis outage shows as 503 rather than as a stale "pending".
                return await self._outcome(handle, 0.0)
        try:
            value = await waiter
        except TimeoutError:
            return None
        except PromiseRejected as exc:
            body: dict[str, Any] = {"status": "rejected", "promise_id": handle.id}
            body["error"] = exc.message
            if exc.type:
                body["error_type"] = exc.type
            return body
        return {"status": "resolved", "promise_id": handle.id, "result": value}

    def _pending(self, id: str) -> web.Response:
        return json_response(
            {"status": "pending", "promise_id": id, "message": "Processing in progress"},
            headers={"Retry-After": str(self.retry_after)},
        )

    # -- routes -------------------------------------------------------------------------

    async def begin(self, request: web.Request) -> web.StreamResponse:
        plain = PLAIN_ID_QUERY.fullmatch(request.raw_path.partition("?")[2])
        given = plain[1] if plain is not None else self._id(request, required=False)
        id = given or str(uuid.uuid4())
        data = await self._json_body(request, self.default_body)
        handle = await self.rp.begin_rpc(id, self.function, data, options=self.options)
        if plain is not None or given is None:
            # an id of unreserved characters (as a UUID is) reads the same in JSON and in
            # a query: the answer is json_response's, without the encoder
            text = f'{{"promise": "{id}", "status": "pending", "wait": {self._wait_json}{id}"}}'
            return json_bytes(text.encode())
        return json_response(
            {
                "promise": handle.id,
                "status": "pending",
                "wait": f"{self.path('/wait')}?id={query_value(handle.id)}",
            }
        )

    async def wait(self, request: web.Request) -> web.StreamResponse:
        id = self._id(request)
        assert id is not None
        timeout = self._timeout(request)
        handle = await self.rp.get(id)
        outcome = await self._outcome(handle, timeout)
        return self._pending(id) if outcome is None else json_response(outcome)

    async def _settled(self, handle: Handle) -> web.StreamResponse:
        outcome = await self._outcome(handle, 0.0)
        return self._pending(handle.id) if outcome is None else json_response(outcome)

    async def resolve(self, request: web.Request) -> web.StreamResponse:
        id = self._id(request)
        assert id is not None
        value = await self._json_body(request, None)
        return await self._settled(await self.rp.resolve(id, value))

    async def reject(self, request: web.Request) -> web.StreamResponse:
        id = self._id(request)
        assert id is not None
        body = await self._json_body(request, "Promise rejected")
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            message = body["error"]
        elif isinstance(body, str):
            message = body
        else:
            raise HTTPError(400, 'body must be {"error": "<message>"} or a JSON string')
        return await self._settled(await self.rp.reject(id, message))

    async def cancel(self, request: web.Request) -> web.StreamResponse:
        id = self._id(request)
        assert id is not None
        return await self._settled(await self.rp.cancel(id))

    async def healthz(self, request: web.Request) -> web.StreamResponse:
        try:
            async with asyncio.timeout(2.0):
                await self.rp.redis.ping()
        except Exception as exc:
            if not is_redis_failure(exc):
                raise
            return json_response(
                {"status": "unavailable", "error": f"Redis unavailable: {exc}"},
                503,
                {"Retry-After": str(self.retry_after)},
            )
        return json_response({"status": "ok"})

    async def openapi(self, request: web.Request) -> web.StreamResponse:
        doc = openapi(self.prefix, self.function, self.token is not None, _metrics.AVAILABLE)
        return json_response(doc)

    async def metrics(self, request: web.Request) -> web.StreamResponse:
        body = await _metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": _metrics.CONTENT_TYPE})


async def _in_span(
    request: web.Request, guarded: Callable[[web.Request, bool], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """``guarded(request)`` inside a server span that continues the request's trace context."""
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else request.path
    attributes = {"http.request.method": request.method, "http.route": route}
    with _tracing.span(
        f"{request.method} {route}", "server", attributes, parent=request.headers
    ) as span:
        response = await guarded(request, True)
        span.set_attribute("http.response.status_code", response.status)
        return response
