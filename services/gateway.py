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
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler

if __package__ in (None, ""):  # run as a script: make `redpromise` importable from the repo
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from redpromise import ConfigurationError, Redpromise, Settings
from redpromise._runner import event_loop_factory
from redpromise.aiohttp import add_routes

__all__ = ["init", "main"]

log = logging.getLogger("redpromise.gateway")


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp's own errors (unknown route, wrong method, …) as JSON bodies too."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return web.json_response({"error": exc.reason}, status=exc.status, headers=headers)


def _float_env(name: str, default: float) -> float:
    raw = os.environ.get(name) or ""
    try:
        return float(raw) if raw else default
    except ValueError as exc:
        raise ConfigurationError(f"{name}={raw!r} is not a number") from exc


def init(rp: Redpromise | None = None) -> web.Application:
    """The gateway application (configured from the environment; ``rp`` for tests)."""
    if rp is None:
        rp = Redpromise(
            os.environ.get("REDPROMISE_URL") or None, group="gateway", settings=Settings.from_env()
        )
    app = web.Application(middlewares=[json_errors])
    add_routes(
        app,
        rp,
        os.environ.get("REDPROMISE_GATEWAY_FUNCTION") or "foo",
        target=os.environ.get("REDPROMISE_GATEWAY_TARGET") or "poll://any@worker",
        token=os.environ.get("REDPROMISE_GATEWAY_TOKEN") or None,
        max_wait=_float_env("REDPROMISE_GATEWAY_MAX_WAIT", 30.0),
    )
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
