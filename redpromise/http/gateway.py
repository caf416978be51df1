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
import hmac
import json
import logging
import math
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from aiohttp import web
from redis import exceptions as rex

from redpromise.client.client import Handle, Redpromise
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
from redpromise.core.keys import MAX_ID_BYTES, validate_group, validate_id
from redpromise.core.options import Options, parse_target
from redpromise.http.openapi import openapi
from redpromise.observe import metrics as _metrics
from redpromise.observe import tracing as _tracing
from redpromise.worker.supervise import CauseLog

__all__ = ["GATEWAYS", "REDPROMISE", "Gateway", "add_routes", "openapi"]

log = logging.getLogger("redpromise.aiohttp")

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_DEFAULT_BODY: Any = {"foo": "bar"}
_READ_CHUNK = 64 * 1024


class _HTTPError(Exception):
    """An error answer: status and message (and extra headers)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


# The numbers the gateway reads (bodies, ``timeout``) lie within +-1e308, the bound the
# OpenAPI document states: an integer literal is compared exactly (as JSON Schema does),
# a decimal one after reading it as a double.
_NUMBER_BOUND = 1e308
_INT_BOUND = 10**308
_MSGPACK_INTS = (-(2**63), 2**64 - 1)
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


def _finite_float(text: str) -> float:
    value = float(text)
    if not abs(value) <= _NUMBER_BOUND:  # also NaN and infinities
        raise ValueError(f"number out of range: {text}")
    return value


def _json_int(text: str) -> int | float:
    """An integer literal; one beyond msgpack's 64 bits reads as the nearest double.

    That is how JavaScript's ``JSON.parse`` reads it (RFC 8259 leaves number range and
    precision to the implementation), and it keeps the accepted bodies exactly the JSON
    Schema the OpenAPI document states: a number is judged by its value, not its spelling.
    """
    value = int(text)
    if _MSGPACK_INTS[0] <= value <= _MSGPACK_INTS[1]:
        return value
    if abs(value) > _INT_BOUND:
        raise ValueError(f"number out of range: {text[:20]}...")
    return float(value)


def _query_number(text: str) -> float:
    """A query parameter that must be a JSON number (no blanks, ``_``, ``inf``, …)."""
    if not _JSON_NUMBER.fullmatch(text):
        raise ValueError(f"not a number: {text!r}")
    return _json_int(text) if text.lstrip("-").isdigit() else _finite_float(text)


_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")
# A query of exactly one ``id`` of unreserved characters (what clients send): it reads the
# same as yarl's parse of it, and that id is a valid one (ASCII printable, at most
# MAX_ID_BYTES), so ``begin`` takes it from the raw target, without the query multidict.
_PLAIN_ID_QUERY = re.compile(rf"id=([A-Za-z0-9_.~-]{{1,{MAX_ID_BYTES}}})")


def _query_value(text: str) -> str:
    """``text`` percent-encoded for a query (what ``quote(text, safe='')`` gives)."""
    # Most ids (UUIDs, slugs) need no escaping: one regex match instead of quote()'s work.
    return text if _UNRESERVED.fullmatch(text) else quote(text, safe="")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# One decoder and one encoder for the process: ``json.loads``/``json.dumps`` with options
# build a new one (and its scanner) on every call.
_DECODER = json.JSONDecoder(
    parse_float=_finite_float, parse_int=_json_int, parse_constant=_reject_constant
)
# The C scanner decode() runs after skipping blanks; called directly, two Python frames
# and two regex matches less for a body without surrounding blanks.
_SCAN: Callable[[str, int], tuple[Any, int]] = _DECODER.scan_once  # type: ignore[attr-defined]


def _loads(raw: bytes) -> Any:
    """Strict JSON: UTF-8, no NaN/Infinity, no numbers that overflow to infinity."""
    try:
        text = raw.decode("utf-8")
        if text.startswith("\ufeff"):  # as json.loads refuses it
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        try:
            value, end = _SCAN(text, 0)
        except StopIteration:  # no value at 0 (blanks first, or none): decode says why
            end = -1
        if end == len(text):  # a value and nothing around it: what decode returns
            return value
        return _DECODER.decode(text)  # blanks around it, or extra data: decode's answer
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _HTTPError(400, f"malformed JSON body: {exc}") from exc


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


_ENCODER = json.JSONEncoder(default=_json_default, allow_nan=False, ensure_ascii=False)
_dumps = _ENCODER.encode


def _json_bytes(body: bytes) -> web.Response:
    """``body`` (JSON) as a 200 answer: the headers ``_json`` gives, without its encoding."""
    return web.Response(body=body, content_type="application/json", charset="utf-8")


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    try:
        text = _dumps(data)
    except (TypeError, ValueError, RecursionError) as exc:
        log.error("cannot encode a response as JSON: %s", exc)
        text = _dumps({"error": f"the value cannot be shown as JSON: {exc}"})
        status = 500
    return web.json_response(text=text, status=status, headers=headers)


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
    closing: asyncio.Event = field(default_factory=asyncio.Event)
    # begin_rpc's options, built once: passing target= would build a new Options per call
    options: Options = field(init=False)
    waiting: int = 0
    _causes: CauseLog = field(
        default_factory=lambda: CauseLog(
            "gateway requests",
            log,
            "answering 503 with Retry-After until it recovers",
            metric="gateway",
        )
    )

    # begin's answer up to the id, JSON-escaped once: ``"…/wait?id=``
    _wait_json: str = field(init=False)

    def __post_init__(self) -> None:
        self.options = Options(target=self.target)
        self._wait_json = _dumps(self.path("/wait?id="))[:-1]

    # -- plumbing -----------------------------------------------------------------------

    def path(self, route: str) -> str:
        return f"{self.prefix}{route}"

    def authorized(self, request: web.Request) -> bool:
        """Whether ``request`` may read and act: no ``token`` is set, or it carries it as
        ``Authorization: Bearer <token>``. The one token check of the gateway's routes
        and its dashboard's."""
        if self.token is None:
            return True
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode("utf-8", "replace"), self.token.encode("utf-8")
        )

    def _check_token(self, request: web.Request) -> None:
        if not self.authorized(request):
            raise _HTTPError(401, "missing or invalid bearer token", {"WWW-Authenticate": "Bearer"})

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
        if isinstance(exc, _HTTPError):
            return _json({"error": exc.message}, exc.status, exc.headers)
        if isinstance(exc, PromiseNotFound):
            return _json({"error": f"{exc.id} not found"}, 404)
        if isinstance(exc, PayloadTooLarge):
            return _json({"error": str(exc)}, 413)
        if isinstance(exc, InvalidId | PayloadError):
            return _json({"error": str(exc)}, 400)
        if isinstance(exc, StoreUnavailable):
            self._causes.failed(exc)
            return _json(
                {"error": f"Redis unavailable ({exc.reason or 'unreachable'}), try again"},
                503,
                {"Retry-After": str(self.retry_after)},
            )
        if isinstance(exc, ConfigurationError):
            # A right the Redis user lacks (NOPERM): the operator's fix needs no
            # restart of the gateway, so the client is told to come back.
            self._causes.failed(exc)
            return _json(
                {"error": f"redpromise is misconfigured: {exc}"},
                503,
                {"Retry-After": str(self.retry_after)},
            )
        if isinstance(exc, StoreError | CorruptRecord):
            log.error("%s %s: %s", request.method, request.path, exc)
            return _json({"error": str(exc)}, 502)
        if isinstance(exc, web.HTTPException):
            raise exc
        log.exception("%s %s failed", request.method, request.path)
        return _json({"error": "internal error"}, 500)

    def _id(self, request: web.Request, *, required: bool = True) -> str | None:
        if "id" not in request.query:
            if required:
                raise _HTTPError(400, "id query parameter is required")
            return None
        return validate_id(request.query["id"])

    def _timeout(self, request: web.Request) -> float:
        raw = request.query.get("timeout")
        if raw is None:
            return 0.0
        try:
            value = float(_query_number(raw))
        except ValueError:
            value = math.nan
        if not value >= 0:
            raise _HTTPError(400, "timeout must be a non-negative number of seconds")
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

    def _too_large(self) -> _HTTPError:
        return _HTTPError(413, f"request body is larger than {self.max_body} bytes")

    async def _json_body(self, request: web.Request, empty: Any) -> Any:
        raw = await self._body(request)
        if not raw:  # a body of blanks is not JSON: it is refused like any other
            return copy.deepcopy(empty)
        return _loads(raw)

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
        return _json(
            {"status": "pending", "promise_id": id, "message": "Processing in progress"},
            headers={"Retry-After": str(self.retry_after)},
        )

    # -- routes -------------------------------------------------------------------------

    async def begin(self, request: web.Request) -> web.StreamResponse:
        plain = _PLAIN_ID_QUERY.fullmatch(request.raw_path.partition("?")[2])
        given = plain[1] if plain is not None else self._id(request, required=False)
        id = given or str(uuid.uuid4())
        data = await self._json_body(request, self.default_body)
        handle = await self.rp.begin_rpc(id, self.function, data, options=self.options)
        if plain is not None or given is None:
            # an id of unreserved characters (as a UUID is) reads the same in JSON and in
            # a query: the answer is _json's, without the encoder
            text = f'{{"promise": "{id}", "status": "pending", "wait": {self._wait_json}{id}"}}'
            return _json_bytes(text.encode())
        return _json(
            {
                "promise": handle.id,
                "status": "pending",
                "wait": f"{self.path('/wait')}?id={_query_value(handle.id)}",
            }
        )

    async def wait(self, request: web.Request) -> web.StreamResponse:
        id = self._id(request)
        assert id is not None
        timeout = self._timeout(request)
        handle = await self.rp.get(id)
        outcome = await self._outcome(handle, timeout)
        return self._pending(id) if outcome is None else _json(outcome)

    async def _settled(self, handle: Handle) -> web.StreamResponse:
        outcome = await self._outcome(handle, 0.0)
        return self._pending(handle.id) if outcome is None else _json(outcome)

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
            raise _HTTPError(400, 'body must be {"error": "<message>"} or a JSON string')
        return await self._settled(await self.rp.reject(id, message))

    async def cancel(self, request: web.Request) -> web.StreamResponse:
        id = self._id(request)
        assert id is not None
        return await self._settled(await self.rp.cancel(id))

    async def healthz(self, request: web.Request) -> web.StreamResponse:
        try:
            async with asyncio.timeout(2.0):
                await self.rp.redis.ping()
        except (rex.RedisError, OSError, TimeoutError) as exc:
            return _json(
                {"status": "unavailable", "error": f"Redis unavailable: {exc}"},
                503,
                {"Retry-After": str(self.retry_after)},
            )
        return _json({"status": "ok"})

    async def openapi(self, request: web.Request) -> web.StreamResponse:
        doc = openapi(self.prefix, self.function, self.token is not None, _metrics.AVAILABLE)
        return _json(doc)

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


GATEWAYS = web.AppKey("redpromise.gateways", list[Gateway])
"""Every :class:`Gateway` added to an application, in order."""

REDPROMISE = web.AppKey("redpromise", Redpromise)
"""The :class:`Redpromise` of the first :func:`add_routes` call on an application."""


def add_routes(
    app: web.Application,
    rp: Redpromise,
    function: str,
    *,
    target: str = "poll://any@worker",
    prefix: str = "",
    token: str | None = None,
    max_body: int = 1024 * 1024,
    max_wait: float = 30.0,
    retry_after: int = 1,
    default_body: Any = _DEFAULT_BODY,
    manage: bool = True,
    ui: bool = True,
) -> Gateway:
    """Add ``begin``/``wait``/``resolve``/``reject``/``cancel``/``healthz``/``openapi.json``
    and ``metrics``.

    ``POST {prefix}/begin`` dispatches ``function(<JSON body>)`` to ``target`` (a group name
    or ``poll://any@<group>``). ``token``, when set, is required as ``Authorization: Bearer
    <token>`` on every route but ``healthz`` and ``openapi.json`` (``metrics`` and the
    dashboard's reads included). ``max_body`` bounds request bodies (413); ``max_wait`` caps
    the long-poll ``timeout`` of ``wait``. With ``manage`` (the default) the application's
    startup runs ``rp.start()`` and its cleanup ``rp.stop()``; Redis being down at startup
    is only a warning (requests answer 503 until it is back), unless ``rp`` has registered
    functions to serve. On shutdown, long-polls return at once. With ``ui`` (the default)
    the dashboard is served at ``{prefix}/ui`` (redpromise/http/dashboard.py).

    Returns the :class:`Gateway` (also listed under ``app[GATEWAYS]``).
    """
    validate_group(function)
    parse_target(target)  # raises on a bad target before anything is added
    if prefix and (not prefix.startswith("/") or prefix.endswith("/")):
        raise ValueError("prefix must start with '/' and not end with '/', e.g. '/jobs'")
    if max_body < 0 or not math.isfinite(max_wait) or max_wait < 0 or retry_after < 0:
        raise ValueError("max_body, max_wait and retry_after must be non-negative")
    gw = Gateway(
        rp=rp,
        function=function,
        target=target,
        prefix=prefix,
        token=token or None,
        max_body=max_body,
        max_wait=max_wait,
        retry_after=retry_after,
        default_body=default_body,
    )
    first = GATEWAYS not in app
    if first:
        app[GATEWAYS] = []
        app[REDPROMISE] = rp
    app[GATEWAYS].append(gw)

    r = app.router
    r.add_post(gw.path("/begin"), gw.guard(gw.begin))
    r.add_get(gw.path("/wait"), gw.guard(gw.wait))
    r.add_post(gw.path("/resolve"), gw.guard(gw.resolve))
    r.add_post(gw.path("/reject"), gw.guard(gw.reject))
    r.add_post(gw.path("/cancel"), gw.guard(gw.cancel))
    r.add_get(gw.path("/healthz"), gw.guard(gw.healthz, auth=False))
    r.add_get(gw.path("/openapi.json"), gw.guard(gw.openapi, auth=False))
    if _metrics.AVAILABLE:  # no route rather than a 5xx one: /openapi.json agrees
        r.add_get(gw.path("/metrics"), gw.guard(gw.metrics, span=False))
    _metrics.watch(rp, parse_target(target))
    if ui:
        from redpromise.http.dashboard import (
            add_ui,  # imported here: the dashboard builds on this module
        )

        add_ui(app, gw)

    async def wake_waiters(app: web.Application) -> None:
        gw.closing.set()

    app.on_shutdown.append(wake_waiters)

    if manage and not any(g.rp is rp for g in app[GATEWAYS][:-1]):

        async def lifecycle(app: web.Application) -> AsyncIterator[None]:
            try:
                await rp.start()
            except StoreUnavailable as exc:
                if rp.registry:
                    raise
                log.warning("Redis unavailable at startup (%s); answering 503 until it is", exc)
            try:
                yield
            finally:
                await rp.stop()

        app.cleanup_ctx.append(lifecycle)
    return gw
