"""The gateway's routes on an aiohttp application (:func:`add_routes`), and the
dashboard's with them: the assembly of the HTTP face."""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from redpromise.client.client import Redpromise
from redpromise.core.errors import (
    StoreUnavailable,
)
from redpromise.core.keys import validate_group
from redpromise.core.options import parse_target
from redpromise.http.dashboard import add_ui
from redpromise.http.gateway import DEFAULT_BODY, Gateway
from redpromise.observe import metrics as _metrics

__all__ = ["GATEWAYS", "REDPROMISE", "add_routes"]

log = logging.getLogger("redpromise.aiohttp")


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
    default_body: Any = DEFAULT_BODY,
    manage: bool = True,
    ui: bool = True,
    codec: str | None = None,
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
    the dashboard is served at ``{prefix}/ui`` (redpromise/http/dashboard.py). ``codec``
    ``"json"`` begins Resonate protocol promises, run by Resonate SDK workers of the target
    group through ``redpromise serve`` (the body is the function's one argument).

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
        codec=codec,
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
