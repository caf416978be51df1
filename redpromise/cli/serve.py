"""``redpromise serve``: Resonate's protocol on Redis, for the Resonate SDKs.

Runs :mod:`redpromise.resonate.server` in its own aiohttp server until SIGINT/SIGTERM. The
Redis URL and namespace come from ``--url``/``--namespace`` or ``REDPROMISE_URL`` /
``REDPROMISE_NAMESPACE``, the token from ``--token`` or ``REDPROMISE_SERVE_TOKEN``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from typing import Any

from aiohttp import web

from redpromise.cli.runner import event_loop_factory
from redpromise.client.client import Redpromise
from redpromise.core.errors import RedpromiseError
from redpromise.core.options import Settings
from redpromise.resonate.server import ServeOptions, add_resonate_routes

__all__ = ["add_parser", "serve"]

log = logging.getLogger("redpromise.resonate")

DEFAULT_PORT = 8001
"""The port the Resonate SDKs use by default (``http://localhost:8001``)."""


def add_parser(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "serve",
        help="serve Resonate's protocol (2026-04-01) on Redis for the Resonate SDKs",
        description="Serve Resonate's protocol on Redis: point the Resonate SDKs' url at it.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.add_argument(
        "--token",
        help="bearer token every request must carry (default: $REDPROMISE_SERVE_TOKEN; none)",
    )
    p.add_argument(
        "--debug",
        action="store_true",
        help="accept debug.* requests and take time from each request (conformance tests)",
    )
    p.add_argument(
        "--tick", type=float, default=1.0, help="seconds between ticks of the timers (default 1)"
    )
    p.add_argument(
        "--url", help="Redis URL (default: $REDPROMISE_URL, else redis://127.0.0.1:6379/0)"
    )
    p.add_argument("--namespace", help="key namespace (default: $REDPROMISE_NAMESPACE, else rp)")


def serve(args: argparse.Namespace) -> int:
    """Run the server until told to stop; the exit code (2: bad configuration)."""
    logging.basicConfig(
        level=os.environ.get("REDPROMISE_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    token = args.token or os.environ.get("REDPROMISE_SERVE_TOKEN") or None
    options = ServeOptions(token=token, debug=args.debug, tick_every=args.tick)
    try:
        overrides = {"namespace": args.namespace} if args.namespace else {}
        settings = Settings.from_env(**overrides)
        url = args.url or os.environ.get("REDPROMISE_URL") or "redis://127.0.0.1:6379/0"
        rp = Redpromise(url, group="serve", settings=settings)
    except RedpromiseError as exc:
        print(f"redpromise serve: {exc}")
        return 2
    factory = event_loop_factory()
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(_serve(rp, options, args.host, args.port))


async def _serve(rp: Redpromise, options: ServeOptions, host: str, port: int) -> int:
    app = web.Application()
    add_resonate_routes(app, rp, options)
    app_runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=2.0, access_log=None)
    try:
        await app_runner.setup()
    except RedpromiseError as exc:
        print(f"redpromise serve: {exc}", flush=True)
        await app_runner.cleanup()
        return 2
    site = web.TCPSite(app_runner, host, port)
    await site.start()
    if options.token is None and host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("serving on %s without a token: anyone who reaches it can act", host)
    bound = app_runner.addresses[0][1] if app_runner.addresses else port  # port 0: the one taken
    print(f"redpromise serve: listening on http://{host}:{bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await app_runner.cleanup()
    return 0
