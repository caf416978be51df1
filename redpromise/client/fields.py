"""Redis' field-value replies as redis-py returns them in either protocol (RESP2, RESP3),
read as plain dicts and numbers."""

from __future__ import annotations

from typing import Any

from redpromise.core.codec import as_text

__all__ = ["fields", "int_or_none"]


def fields(raw: Any) -> dict[str, Any]:
    """A field-value reply (a RESP3 map, or a RESP2 flat list) as a dict keyed by text."""
    if isinstance(raw, dict):
        return {as_text(k): v for k, v in raw.items()}
    return {as_text(raw[i]): raw[i + 1] for i in range(0, len(raw), 2)}


def int_or_none(v: Any) -> int | None:
    """``int(v)``, or ``None`` when ``v`` is absent or not a number."""
    try:
        return int(v)
    except (TypeError, ValueError):
        return None
