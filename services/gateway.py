"""The HTTP gateway: Resonate's async-HTTP-API example, route for route, on redpromise.

    python services/gateway.py

Environment: ``REDPROMISE_URL`` (Redis), ``REDPROMISE_GATEWAY_HOST`` (default 127.0.0.1),
``REDPROMISE_GATEWAY_PORT`` (default 5001), ``REDPROMISE_GATEWAY_TOKEN`` (optional bearer
token), ``REDPROMISE_GATEWAY_FUNCTION`` (default ``foo``), ``REDPROMISE_GATEWAY_TARGET``
(default ``poll://any@worker``), ``REDPROMISE_GATEWAY_MAX_WAIT`` (long-poll cap, seconds,
default 30), and the library's ``REDPROMISE_*`` settings (namespace, timeout, …).
It runs on uvloop when that is installed (the ``fast`` extra), as the worker CLI does;
``REDPROMISE_UVLOOP=0`` keeps asyncio's own loop. The gateway holds no state: kill it at
any time, start another, and ``/wait`` goes on.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler
from yarl import URL

if __package__ in (None, ""):  # run as a script: make `redpromise` importable from the repo
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from redpromise import ConfigurationError, Redpromise
from redpromise.aiohttp import add_routes
from redpromise.cli.runner import event_loop_factory

__all__ = ["JSONFallback", "init", "json_errors", "main"]

log = logging.getLogger("redpromise.gateway")


def _error_answer(exc: web.HTTPException) -> web.Response:
    headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
    return web.json_response({"error": exc.reason}, status=exc.status, headers=headers)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp's own errors (unknown route, wrong method, …) as JSON bodies too.

    For an application with routes of its own; the gateway uses :class:`JSONFallback`,
    which answers the same without a middleware on every request.
    """
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        return _error_answer(exc)


class JSONFallback(web.AbstractResource):
    """The last resource of the router: takes every request no other resource takes, and
    answers aiohttp's ``404 Not Found`` / ``405 Method Not Allowed`` (with ``Allow``) as
    ``{"error": "<reason>"}``, as :func:`json_errors` does.

    The same answers as the middleware, at no cost to the requests that do match a route
    (a middleware wraps every request: ~5 µs of the ~100 µs of CPU of an HTTP begin).
    Add it after every other route (:func:`init` does).
    """

    def __init__(self, router: web.UrlDispatcher) -> None:
        super().__init__()
        self._router = router
        self._route = web.ResourceRoute(hdrs.METH_ANY, self._answer, self)

    @property
    def canonical(self) -> str:
        return "/"

    def url_for(self, **kwargs: str) -> URL:
        return URL("/")

    def add_prefix(self, prefix: str) -> None:
        pass  # it matches every path, under any prefix

    def get_info(self) -> dict[str, Any]:  # type: ignore[override]
        return {}

    def raw_match(self, path: str) -> bool:
        return False

    def __len__(self) -> int:
        return 1

    def __iter__(self) -> Iterator[web.AbstractRoute]:
        return iter((self._route,))

    async def resolve(self, request: web.Request) -> tuple[web.UrlMappingMatchInfo, set[str]]:
        return web.UrlMappingMatchInfo({}, self._route), set()

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        # What the router found before reaching this resource: the methods of the
        # resources that match the path (405), or none (404).
        allowed: set[str] = set()
        for resource in self._router.resources():
            if resource is not self:
                allowed |= (await resource.resolve(request))[1]
        if allowed:
            return _error_answer(web.HTTPMethodNotAllowed(request.method, allowed))
        return _error_answer(web.HTTPNotFound())


def _float_env(name: str, default: float) -> float:
    raw = os.environ.get(name) or ""
    try:
        return float(raw) if raw else default
    except ValueError as exc:
        raise ConfigurationError(f"{name}={raw!r} is not a number") from exc


def init(rp: Redpromise | None = None) -> web.Application:
    """The gateway application (configured from the environment; ``rp`` for tests)."""
    if rp is None:
        rp = Redpromise.from_env(group="gateway")
    app = web.Application()
    add_routes(
        app,
        rp,
        os.environ.get("REDPROMISE_GATEWAY_FUNCTION") or "foo",
        target=os.environ.get("REDPROMISE_GATEWAY_TARGET") or "poll://any@worker",
        token=os.environ.get("REDPROMISE_GATEWAY_TOKEN") or None,
        max_wait=_float_env("REDPROMISE_GATEWAY_MAX_WAIT", 30.0),
    )
    app.router.register_resource(JSONFallback(app.router))
    return app


def main() -> int:
    logging.basicConfig(
        level=os.environ.get("REDPROMISE_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    host = os.environ.get("REDPROMISE_GATEWAY_HOST") or "127.0.0.1"
    try:
        port = int(os.environ.get("REDPROMISE_GATEWAY_PORT") or 5001)
        app = init()
    except (ConfigurationError, ValueError) as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    # The same loop as the worker CLI's. On the 2-core bench VM its effect on the CPU per
    # HTTP begin was within the noise (bench/RESULTS.md, "Gateway with wrk").
    factory = event_loop_factory()
    web.run_app(
        app,
        loop=factory() if factory is not None else None,
        host=host,
        port=port,
        print=lambda _: log.info("gateway listening on http://%s:%d", host, port),
        shutdown_timeout=5,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
