"""A worker's liveness over HTTP: ``GET /healthz`` and ``GET /readyz``, nothing else.

Served by ``python -m redpromise worker … --health-port N`` for a supervisor (compose's
``healthcheck``, a Kubernetes probe) to see what the process's loops are doing:

- ``/healthz`` (liveness): 200 while every loop is alive and iterating; 503 when a loop
  died or stalled — restarting the process is the fix;
- ``/readyz`` (readiness): 200 while Redis answers every loop; 503 while a loop's last
  iteration failed on Redis (the worker is waiting it out; restarting would not help).

Both answer the JSON of :meth:`Redpromise.health`. The same small server answers
``/metrics`` (Prometheus) when ``--metrics-port`` is given: on the health port when the
two are equal, else on a server of its own. A few lines on ``asyncio`` streams, so that a
worker needs no HTTP framework.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["serve_health"]

Health = Callable[[], dict[str, Any]]
Metrics = Callable[[], Awaitable[tuple[bytes, str]]]

_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


async def _answer(
    path: str, method: str, health: Health | None, metrics: Metrics | None
) -> tuple[int, bytes, str]:
    """Status, body and content type of the answer to ``method path``."""
    route = path.split("?", 1)[0]
    routes = (["/healthz", "/readyz"] if health else []) + (["/metrics"] if metrics else [])
    if route not in routes:
        return _json(404, {"error": f"no route {route}; try {' or '.join(routes)}"})
    if method not in ("GET", "HEAD"):
        return _json(405, {"error": "GET only"})
    if route == "/metrics":
        assert metrics is not None
        return (200, *await metrics())
    assert health is not None
    body = health()
    ok = body["live"] if route == "/healthz" else body["live"] and body["ready"]
    return _json(200 if ok else 503, body)


def _json(status: int, body: Any) -> tuple[int, bytes, str]:
    return status, json.dumps(body).encode(), "application/json"


async def serve_health(
    host: str, port: int, health: Health | None, metrics: Metrics | None = None
) -> asyncio.Server:
    """Start answering ``/healthz`` and ``/readyz`` (when ``health`` is given) and
    ``/metrics`` (when ``metrics`` is) on ``host:port``; close the server to stop."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5):
                request = await reader.readline()
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass
            parts = request.decode("latin-1").split()
            method, path = (parts[0], parts[1]) if len(parts) >= 2 else ("GET", "/")
            status, payload, content_type = await _answer(path, method, health, metrics)
            head = (
                f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + (b"" if method == "HEAD" else payload))
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    return await asyncio.start_server(handle, host, port)
