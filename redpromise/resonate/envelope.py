"""The envelope of Resonate protocol ``2026-04-01`` requests and replies.

A request is ``POST /`` with ``{"kind", "head": {"corrId", "version", …}, "data"}``; the reply
is ``{"kind", "head": {"corrId", "status", "version"}, "data"}`` with the HTTP status equal to
``head.status`` (the SDKs read both). What the data of each kind must hold is checked by the
store (:class:`redpromise.store.protocol.ProtocolStore`); here only the envelope.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DEBUG_KINDS",
    "DEBUG_TIME",
    "VERSION",
    "Envelope",
    "EnvelopeError",
    "parse_request",
    "reply_bytes",
]

VERSION = "2026-04-01"
"""The protocol version this face speaks (sent back in every reply's head)."""

DEBUG_TIME = "resonate:debug_time"
"""The head field that carries the clock of a request in ``--debug`` mode (ms)."""

DEBUG_KINDS = frozenset({"debug.start", "debug.reset", "debug.tick", "debug.snap", "debug.stop"})

MAX_DEPTH = 64
"""How deep arrays and objects may nest in a request. The SDKs nest a handful of levels
(user data travels as base64 text); the bound keeps Python's recursive parser and encoders
far from their stack limit, so a hostile body is a 400, never a crash."""

# A \u escape of a UTF-16 surrogate: JSON syntax, but a lone one is no text UTF-8 can hold.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class EnvelopeError(Exception):
    """A request that is not a protocol envelope: answered 400 with this message."""

    def __init__(self, message: str, kind: str = "", head: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.head = head or {}


@dataclass(frozen=True)
class Envelope:
    """A parsed request: its kind, head (as sent) and data."""

    kind: str
    head: dict[str, Any]
    data: dict[str, Any]

    def debug_time(self) -> int | None:
        """The request's explicit clock (ms), when its head carries one."""
        t = self.head.get(DEBUG_TIME)
        if isinstance(t, bool) or not isinstance(t, int | float):
            return None
        return int(t)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):  # 1e400: JSON cannot write it back (Infinity is no JSON)
        raise ValueError(f"{text} is beyond a double")
    return v


def _too_deep(value: Any, limit: int) -> bool:
    """Whether ``value`` nests arrays/objects deeper than ``limit`` (iterative: a deep
    value must not exhaust the stack of the check meant to refuse it)."""
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        children = v.values() if isinstance(v, dict) else v if isinstance(v, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


def parse_request(body: bytes) -> Envelope:
    """The envelope of ``body``; :class:`EnvelopeError` names what is wrong."""
    try:
        # Strict UTF-8 first: json.loads(bytes) would let encoded surrogates through.
        text = body.decode("utf-8")
        req = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EnvelopeError(f"the body is not JSON: {exc}") from None
    except RecursionError:
        raise EnvelopeError(f"the body nests deeper than {MAX_DEPTH} levels") from None
    if _too_deep(req, MAX_DEPTH):
        raise EnvelopeError(f"the body nests deeper than {MAX_DEPTH} levels")
    if _SURROGATE_ESCAPE.search(text):  # rare: check that every string is UTF-8 text
        try:
            json.dumps(req, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise EnvelopeError(
                "the body holds a lone UTF-16 surrogate (\\uD800-\\uDFFF)"
            ) from None
    if not isinstance(req, dict):
        raise EnvelopeError("the body must be a JSON object {kind, head, data}")
    kind, head, data = req.get("kind"), req.get("head"), req.get("data")
    if not isinstance(kind, str) or not kind:
        raise EnvelopeError("kind must be a non-empty string")
    if not isinstance(head, dict):
        raise EnvelopeError("head must be an object", kind)
    if data is None and kind in DEBUG_KINDS:
        data = {}
    if not isinstance(data, dict):
        raise EnvelopeError("data must be an object", kind, head)
    return Envelope(kind, head, data)


def reply_bytes(kind: str, head: dict[str, Any], status: int, data: Any) -> bytes:
    """The reply to a request of ``kind`` whose head was ``head``."""
    out = {
        "kind": kind,
        "head": {"corrId": head.get("corrId", ""), "status": status, "version": VERSION},
        "data": data,
    }
    return json.dumps(out, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
