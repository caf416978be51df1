"""JSON in and out of the HTTP face, and its error answer (:class:`HTTPError`).

Request bodies are parsed strictly (no ``NaN``/``Infinity``, numbers msgpack can hold);
answers are JSON with ``{"error": "<message>"}`` for errors. Shared by the gateway routes
and the dashboard's API.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from aiohttp import web

from redpromise.core.keys import MAX_ID_BYTES

__all__ = [
    "PLAIN_ID_QUERY",
    "HTTPError",
    "dumps",
    "json_bytes",
    "json_response",
    "loads",
    "query_number",
    "query_value",
]

log = logging.getLogger("redpromise.aiohttp")


class HTTPError(Exception):
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


def query_number(text: str) -> float:
    """A query parameter that must be a JSON number (no blanks, ``_``, ``inf``, …)."""
    if not _JSON_NUMBER.fullmatch(text):
        raise ValueError(f"not a number: {text!r}")
    return _json_int(text) if text.lstrip("-").isdigit() else _finite_float(text)


_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")
# A query of exactly one ``id`` of unreserved characters (what clients send): it reads the
# same as yarl's parse of it, and that id is a valid one (ASCII printable, at most
# MAX_ID_BYTES), so ``begin`` takes it from the raw target, without the query multidict.
PLAIN_ID_QUERY = re.compile(rf"id=([A-Za-z0-9_.~-]{{1,{MAX_ID_BYTES}}})")


def query_value(text: str) -> str:
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


def loads(raw: bytes) -> Any:
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
        raise HTTPError(400, f"malformed JSON body: {exc}") from exc


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


_ENCODER = json.JSONEncoder(default=_json_default, allow_nan=False, ensure_ascii=False)
dumps = _ENCODER.encode


def json_bytes(body: bytes) -> web.Response:
    """``body`` (JSON) as a 200 answer: ``json_response``'s headers, without its encoding."""
    return web.Response(body=body, content_type="application/json", charset="utf-8")


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    try:
        text = dumps(data)
    except (TypeError, ValueError, RecursionError) as exc:
        log.error("cannot encode a response as JSON: %s", exc)
        text = dumps({"error": f"the value cannot be shown as JSON: {exc}"})
        status = 500
    return web.json_response(text=text, status=status, headers=headers)
