"""msgpack encoding of payloads, with a size limit; never pickle.

Payloads (arguments, results, step outcomes, errors) are msgpack in Redis and opaque to
Lua. A Redis write must never become code execution, so only plain data round-trips:
None, bool, int, float, str, bytes, list/tuple (as list) and dict.
"""

from __future__ import annotations

from typing import Any

import msgpack

from redpromise.core.errors import PayloadError, PayloadTooLarge

__all__ = [
    "as_text", "call_of", "decode", "decode_error", "encode", "encode_error", "error_of",
    "readable",
]


def as_text(v: Any) -> str:
    """A Redis reply (bytes, or already str) as text; undecodable bytes are replaced."""
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def encode(value: Any, limit: int) -> bytes:
    """Encode ``value``; raise :class:`PayloadError` or :class:`PayloadTooLarge`."""
    try:
        data: bytes = msgpack.packb(value, use_bin_type=True, datetime=False)
    except (TypeError, ValueError, OverflowError) as exc:
        raise PayloadError(f"value cannot be encoded with msgpack: {exc}") from exc
    if len(data) > limit:
        raise PayloadTooLarge(f"encoded payload is {len(data)} bytes; the limit is {limit}")
    return data


def decode(data: bytes) -> Any:
    """Decode bytes written by :func:`encode`; raise :class:`PayloadError` on garbage."""
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise PayloadError(f"stored payload is not valid msgpack: {exc}") from exc


def error_of(exc: BaseException) -> dict[str, str]:
    """The portable form of an exception: its type name and message."""
    type_name = getattr(exc, "type", None)
    if not isinstance(type_name, str) or not type_name:
        type_name = type(exc).__name__
    message = getattr(exc, "message", None)
    if not isinstance(message, str):
        message = str(exc)
    return {"type": type_name, "message": message}


def encode_error(type_name: str, message: str, limit: int) -> bytes:
    """Encode an error, truncating a message that would not fit the limit."""
    budget = max(64, limit - len(type_name) - 64)
    if len(message.encode("utf-8", "replace")) > budget:
        message = message.encode("utf-8", "replace")[:budget].decode("utf-8", "ignore") + "…"
    return encode({"type": type_name, "message": message}, limit)


def decode_error(data: bytes) -> tuple[str, str]:
    """Decode an error written by :func:`encode_error` as ``(type, message)``."""
    value = decode(data)
    if isinstance(value, dict):
        return str(value.get("type", "")), str(value.get("message", ""))
    return "", str(value)


def readable(value: Any) -> Any:
    """A decoded payload as JSON shows it, for people: what JSON has no form for
    becomes its Python repr (bytes as ``b'...'``, ``nan``, ``inf``), map keys text."""
    if isinstance(value, bytes | bytearray | memoryview):
        return repr(bytes(value))
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return repr(value)
    if isinstance(value, dict):
        return {k if isinstance(k, str) else repr(k): readable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [readable(v) for v in value]
    return value


def call_of(payload: Any) -> dict[str, Any]:
    """A stored arguments payload (``{"a": args, "k": kwargs, …}``, client/client.py) as the
    caller passed it: ``{"args": [...], "kwargs": {...}}``, :func:`readable`."""
    if not isinstance(payload, dict):
        return {"args": [readable(payload)], "kwargs": {}}
    args, kwargs = payload.get("a") or [], payload.get("k") or {}
    return {"args": readable(list(args)), "kwargs": readable(kwargs)}
