"""The dashboard served by the gateway at ``{prefix}/ui`` (see :func:`add_ui`).

One static page (``redpromise/http/ui/``: HTML, one script, one stylesheet; no build step) and
the JSON it reads under ``{prefix}/ui/api/``. Every Redis access goes through
:class:`redpromise.client.inspect.Inspector` or the :class:`Redpromise` client.

When the gateway has a bearer token, every read and action under ``/ui/api/`` needs it
(401 without it; :meth:`Gateway.authorized` is the one check). The page itself (HTML,
script, stylesheet: no data) loads without it and asks for the token, which it keeps in
the tab's ``sessionStorage`` and sends as ``Authorization: Bearer``. Without a token the
page says, in a banner, that anyone who can reach the address can read and act.

The overview is computed at most once per ``_SAMPLE_EVERY`` in this process whatever the
number of viewers: concurrent requests share the computation in flight, later ones reuse
its result until it is that old (a failed one is not reused).

``/ui/api/`` is left out of ``/openapi.json`` on purpose: it is the page's own interface,
shaped for it and changed with it. The stable interfaces are the gateway routes, the
library and the CLI.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from importlib import resources
from typing import Any

from aiohttp import web

from redpromise.client.inspect import Inspector, NotRequeueable
from redpromise.core.options import parse_target
from redpromise.http.gateway import Gateway
from redpromise.http.payloads import HTTPError, json_response
from redpromise.store.states import COMPLETED, FAILING, PENDING

__all__ = ["add_ui"]

_SAMPLE_EVERY = 5.0  # seconds between two samples of the groups' history
_HISTORY = 180  # samples kept: 15 minutes
_IDLE_STOP = 900.0  # the sampler stops when the page has not asked for 15 minutes
_STATIC = {"app.js": "text/javascript", "app.css": "text/css"}
# What the search takes: the stored states, and "failing" (pending, a failed attempt on record).
_STATES = (PENDING, FAILING, *COMPLETED)


class Dashboard:
    """The dashboard's handlers and the groups' short history (kept in this process)."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.inspector = Inspector(gw.rp)
        self.history: deque[dict[str, Any]] = deque(maxlen=_HISTORY)
        self._asked = 0.0
        self._sampler: asyncio.Task[None] | None = None
        self._overview: asyncio.Future[dict[str, Any]] | None = None
        self._overview_at = 0.0  # time.monotonic() when it started
        self._page = resources.files("redpromise.http") / "ui"

    # -- plumbing -----------------------------------------------------------------------

    def _known(self) -> list[str]:

        return [parse_target(self.gw.target)]

    async def _sample(self) -> dict[str, Any]:
        groups = await self.inspector.groups(self._known())
        now = int(time.time() * 1000)
        sample = {
            "t": now,
            "groups": {
                g["name"]: {k: g[k] for k in ("backlog", "in_flight", "dispatched")} for g in groups
            },
        }
        if not self.history or now - self.history[-1]["t"] >= _SAMPLE_EVERY * 1000 * 0.8:
            self.history.append(sample)
        return {"groups": groups, "sample": sample}

    async def _compute(self) -> dict[str, Any]:
        fresh = await self._sample()
        dead = await self.inspector.dead_count()
        counts = await self.gw.rp.counts()
        return {
            "groups": fresh["groups"],
            "history": list(self.history),
            "sample_every": _SAMPLE_EVERY,
            "dead": dead,
            "counts": counts,
            # Shards refusing writes for want of replicas (NOREPLICAS), since when this
            # gateway's writes were first refused there.
            "replicas_short": await self.inspector.replicas_short(),
        }

    async def current(self) -> dict[str, Any]:
        """The overview: the one computed in the last ``_SAMPLE_EVERY`` seconds, or the one
        being computed, or a new one (see the module docstring)."""
        held = self._overview
        if (
            held is None
            or (held.done() and (held.cancelled() or held.exception() is not None))
            or time.monotonic() - self._overview_at >= _SAMPLE_EVERY
        ):
            self._overview_at = time.monotonic()
            held = self._overview = asyncio.ensure_future(self._compute())
        # shield: a viewer who goes away does not cancel the others' computation
        return await asyncio.shield(held)

    async def _sample_loop(self) -> None:
        while time.monotonic() - self._asked < _IDLE_STOP:
            # The next sample when the last overview is due: shared with the viewers.
            await asyncio.sleep(max(0.0, self._overview_at + _SAMPLE_EVERY - time.monotonic()))
            # An outage only leaves a gap in the history; the page shows the error.
            with contextlib.suppress(Exception):
                await self.current()
        self._sampler = None

    def _keep_sampling(self) -> None:
        self._asked = time.monotonic()
        if self._sampler is None or self._sampler.done():
            self._sampler = asyncio.create_task(self._sample_loop(), name="redpromise:ui")

    async def close(self, app: web.Application) -> None:
        for task in (self._sampler, self._overview):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    # -- the page -----------------------------------------------------------------------

    async def page(self, request: web.Request) -> web.StreamResponse:
        html = (self._page / "index.html").read_text("utf-8")
        if self.gw.token is not None:  # the page asks for it before any read (no 401 first)
            html = html.replace("<body>", '<body data-token-required="1">', 1)
        return web.Response(text=html, content_type="text/html", headers=_NO_STORE)

    async def asset(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in _STATIC:
            raise HTTPError(404, f"no such file: {name}")
        text = (self._page / name).read_text("utf-8")
        return web.Response(text=text, content_type=_STATIC[name], headers=_NO_STORE)

    # -- reads --------------------------------------------------------------------------

    async def session(self, request: web.Request) -> web.StreamResponse:
        return json_response(
            {
                "token_required": self.gw.token is not None,
                "search": True,
                "namespace": self.gw.rp.settings.namespace,
                "api": self.gw.path(""),
            }
        )

    async def overview(self, request: web.Request) -> web.StreamResponse:
        self._keep_sampling()
        return json_response(await self.current())

    async def promises(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        state = q.get("state") or None
        if state is not None and state not in _STATES:
            raise HTTPError(400, f"state must be one of {', '.join(_STATES)}")
        tags = None
        if q.get("tag"):
            name, sep, value = q["tag"].partition("=")
            if not sep:
                raise HTTPError(400, "tag must be name=value")
            tags = {name.strip(): value.strip()}
        try:
            limit = int(q.get("limit") or 50)
            page = await self.gw.rp.search(
                state=state,
                group=q.get("group") or None,
                function=q.get("function") or None,
                tags=tags,
                limit=max(1, min(limit, 200)),
                cursor=q.get("cursor") or None,
                newest_first=True,
            )
        except ValueError as exc:
            raise HTTPError(400, str(exc)) from exc
        records = [info.to_dict() for info in page.records]
        return json_response({"records": records, "cursor": page.cursor})

    async def promise(self, request: web.Request) -> web.StreamResponse:
        id = self.gw._id(request)
        assert id is not None
        return json_response(await self.inspector.detail(id))

    async def dead(self, request: web.Request) -> web.StreamResponse:
        try:
            limit = max(1, min(int(request.query.get("limit") or 50), 500))
        except ValueError as exc:
            raise HTTPError(400, "limit must be an integer") from exc
        q = request.query
        try:
            page = await self.inspector.dead_listing(
                limit, q.get("group") or None, q.get("cursor") or None
            )
        except ValueError as exc:
            raise HTTPError(400, str(exc)) from exc
        return json_response(page)

    async def schedules(self, request: web.Request) -> web.StreamResponse:
        """Every schedule of the namespace (``Redpromise.schedules``' shape), read-only."""
        return json_response({"schedules": await self.gw.rp.schedules()})

    # -- actions ------------------------------------------------------------------------

    async def requeue(self, request: web.Request) -> web.StreamResponse:
        key = request.query.get("key", "")
        try:
            return json_response(await self.inspector.requeue(key))
        except NotRequeueable as exc:
            raise HTTPError(409, str(exc)) from exc


_NO_STORE = {"Cache-Control": "no-store"}


def add_ui(app: web.Application, gw: Gateway) -> Dashboard:
    """Serve the dashboard at ``{prefix}/ui`` and its JSON at ``{prefix}/ui/api/``."""
    ui = Dashboard(gw)
    r = app.router
    # The page, script and stylesheet hold no data: open, and the page asks for the token.
    r.add_get(gw.path("/ui"), gw.guard(ui.page, auth=False))
    r.add_get(gw.path("/ui/{name:app\\.(?:js|css)}"), gw.guard(ui.asset, auth=False))
    api = {"auth": True, "span": False}  # every read and action: the token when one is set
    r.add_get(gw.path("/ui/api/session"), gw.guard(ui.session, **api))
    r.add_get(gw.path("/ui/api/overview"), gw.guard(ui.overview, **api))
    r.add_get(gw.path("/ui/api/promises"), gw.guard(ui.promises, **api))
    r.add_get(gw.path("/ui/api/promise"), gw.guard(ui.promise, **api))
    r.add_get(gw.path("/ui/api/dead"), gw.guard(ui.dead, **api))
    r.add_get(gw.path("/ui/api/schedules"), gw.guard(ui.schedules, **api))
    r.add_post(gw.path("/ui/api/cancel"), gw.guard(gw.cancel, **api))
    r.add_post(gw.path("/ui/api/resolve"), gw.guard(gw.resolve, **api))
    r.add_post(gw.path("/ui/api/requeue"), gw.guard(ui.requeue, **api))
    app.on_cleanup.append(ui.close)
    return ui
