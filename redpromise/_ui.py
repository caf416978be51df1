"""The dashboard served by the gateway at ``{prefix}/ui`` (see :func:`add_ui`).

One static page (``redpromise/ui/``: HTML, one script, one stylesheet; no build step) and
the JSON it reads under ``{prefix}/ui/api/``. Every Redis access goes through
:class:`redpromise._inspect.Inspector` or the :class:`Redpromise` client.

Reads are open; the page's actions (cancel, resolve, requeue a dead record) need the
gateway's bearer token when it has one (401 without it), and so do the values a promise
carries (arguments, result, error, step values): without the token the page shows states,
times and names only, as ``/wait`` shows no result without it.

``/ui/api/`` is left out of ``/openapi.json`` on purpose: it is the page's own interface,
shaped for it and changed with it. The stable interfaces are the gateway routes, the
library and the CLI.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import time
from collections import deque
from importlib import resources
from typing import Any

from aiohttp import web

from ._inspect import Inspector, NotRequeueable
from .aiohttp import Gateway, _HTTPError, _json

__all__ = ["add_ui"]

_SAMPLE_EVERY = 5.0  # seconds between two samples of the groups' history
_HISTORY = 180  # samples kept: 15 minutes
_IDLE_STOP = 900.0  # the sampler stops when the page has not asked for 15 minutes
_STATIC = {"app.js": "text/javascript", "app.css": "text/css"}
# What the search takes: the stored states, and "failing" (pending, a failed attempt on record).
_STATES = ("pending", "failing", "resolved", "rejected", "rejected_canceled", "rejected_timedout")


class Dashboard:
    """The dashboard's handlers and the groups' short history (kept in this process)."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.inspector = Inspector(gw.rp)
        self.history: deque[dict[str, Any]] = deque(maxlen=_HISTORY)
        self._asked = 0.0
        self._sampler: asyncio.Task[None] | None = None
        self._page = resources.files("redpromise") / "ui"

    # -- plumbing -----------------------------------------------------------------------

    def authorized(self, request: web.Request) -> bool:
        token = self.gw.token
        if token is None:
            return True
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode("utf-8", "replace"), token.encode("utf-8")
        )

    def _require_token(self, request: web.Request) -> None:
        if not self.authorized(request):
            raise _HTTPError(
                401, "this action needs the gateway token", {"WWW-Authenticate": "Bearer"}
            )

    def _known(self) -> list[str]:
        from ._options import parse_target

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

    async def _sample_loop(self) -> None:
        while time.monotonic() - self._asked < _IDLE_STOP:
            await asyncio.sleep(_SAMPLE_EVERY)
            # An outage only leaves a gap in the history; the page shows the error.
            with contextlib.suppress(Exception):
                await self._sample()
        self._sampler = None

    def _keep_sampling(self) -> None:
        self._asked = time.monotonic()
        if self._sampler is None or self._sampler.done():
            self._sampler = asyncio.create_task(self._sample_loop(), name="redpromise:ui")

    async def close(self, app: web.Application) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler

    # -- the page -----------------------------------------------------------------------

    async def page(self, request: web.Request) -> web.StreamResponse:
        html = (self._page / "index.html").read_text("utf-8")
        return web.Response(text=html, content_type="text/html", headers=_NO_STORE)

    async def asset(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in _STATIC:
            raise _HTTPError(404, f"no such file: {name}")
        text = (self._page / name).read_text("utf-8")
        return web.Response(text=text, content_type=_STATIC[name], headers=_NO_STORE)

    # -- reads --------------------------------------------------------------------------

    async def session(self, request: web.Request) -> web.StreamResponse:
        return _json(
            {
                "authorized": self.authorized(request),
                "token_required": self.gw.token is not None,
                "search": True,
                "namespace": self.gw.rp.settings.namespace,
                "api": self.gw.path(""),
            }
        )

    async def overview(self, request: web.Request) -> web.StreamResponse:
        self._keep_sampling()
        fresh = await self._sample()
        dead = await self.inspector.dead_count()
        counts = await self.gw.rp.counts()
        return _json(
            {
                "groups": fresh["groups"],
                "history": list(self.history),
                "sample_every": _SAMPLE_EVERY,
                "dead": dead,
                "counts": counts,
            }
        )

    async def promises(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        state = q.get("state") or None
        if state is not None and state not in _STATES:
            raise _HTTPError(400, f"state must be one of {', '.join(_STATES)}")
        tags = None
        if q.get("tag"):
            name, sep, value = q["tag"].partition("=")
            if not sep:
                raise _HTTPError(400, "tag must be name=value")
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
            raise _HTTPError(400, str(exc)) from exc
        full = self.authorized(request)
        records = []
        for info in page.records:
            d = info.to_dict()
            if not full:
                d.pop("value", None)
                d["error"] = {"type": d["error"]["type"]} if d.get("error") else None
                if d.get("last_error"):  # its message is a value too; when and which stay
                    del d["last_error"]["message"]
            records.append(d)
        return _json({"records": records, "cursor": page.cursor})

    async def promise(self, request: web.Request) -> web.StreamResponse:
        id = self.gw._id(request)
        assert id is not None
        detail = await self.inspector.detail(id, values=self.authorized(request))
        return _json(detail)

    async def dead(self, request: web.Request) -> web.StreamResponse:
        try:
            limit = max(1, min(int(request.query.get("limit") or 50), 500))
        except ValueError as exc:
            raise _HTTPError(400, "limit must be an integer") from exc
        out = await self.inspector.dead_listing(limit, request.query.get("group") or None)
        return _json({"records": out})

    # -- actions (token) ----------------------------------------------------------------

    async def cancel(self, request: web.Request) -> web.StreamResponse:
        self._require_token(request)
        return await self.gw.cancel(request)

    async def resolve(self, request: web.Request) -> web.StreamResponse:
        self._require_token(request)
        return await self.gw.resolve(request)

    async def requeue(self, request: web.Request) -> web.StreamResponse:
        self._require_token(request)
        key = request.query.get("key", "")
        try:
            return _json(await self.inspector.requeue(key))
        except NotRequeueable as exc:
            raise _HTTPError(409, str(exc)) from exc


_NO_STORE = {"Cache-Control": "no-store"}


def add_ui(app: web.Application, gw: Gateway) -> Dashboard:
    """Serve the dashboard at ``{prefix}/ui`` and its JSON at ``{prefix}/ui/api/``."""
    ui = Dashboard(gw)
    r = app.router
    open_ = {"auth": False}  # the handlers check the token themselves (reads are open)
    r.add_get(gw.path("/ui"), gw.guard(ui.page, **open_))
    r.add_get(gw.path("/ui/{name:app\\.(?:js|css)}"), gw.guard(ui.asset, **open_))
    r.add_get(gw.path("/ui/api/session"), gw.guard(ui.session, **open_))
    r.add_get(gw.path("/ui/api/overview"), gw.guard(ui.overview, **open_))
    r.add_get(gw.path("/ui/api/promises"), gw.guard(ui.promises, **open_))
    r.add_get(gw.path("/ui/api/promise"), gw.guard(ui.promise, **open_))
    r.add_get(gw.path("/ui/api/dead"), gw.guard(ui.dead, **open_))
    r.add_post(gw.path("/ui/api/cancel"), gw.guard(ui.cancel, **open_))
    r.add_post(gw.path("/ui/api/resolve"), gw.guard(ui.resolve, **open_))
    r.add_post(gw.path("/ui/api/requeue"), gw.guard(ui.requeue, **open_))
    app.on_cleanup.append(ui.close)
    return ui
