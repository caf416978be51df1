"""What the CLI prints: JSON for scripts, plain tables for people, a progress bar on a
TTY, and the parsing of times and durations typed on the command line."""

from __future__ import annotations

import base64
import json
import re
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

__all__ = [
    "Progress",
    "UsageError",
    "ago",
    "duration_ms",
    "emit_json",
    "iso",
    "table",
    "time_ms",
]


class UsageError(Exception):
    """A command line that cannot be carried out as typed (exit 2)."""


def _default(obj: Any) -> Any:
    # Decoded msgpack may hold bytes (a value stored as bytes): base64 keeps them lossless.
    if isinstance(obj, bytes | bytearray):
        return {"base64": base64.b64encode(bytes(obj)).decode()}
    return repr(obj)


def emit_json(data: Any, out: TextIO | None = None) -> None:
    """``data`` as one JSON document (sorted keys) and a newline."""
    json.dump(data, out or sys.stdout, default=_default, sort_keys=True, ensure_ascii=False)
    (out or sys.stdout).write("\n")


def compact(value: Any, width: int = 40) -> str:
    """A value on one table cell: JSON, cut to ``width`` characters."""
    text = value if isinstance(value, str) else json.dumps(value, default=_default)
    return text if len(text) <= width else text[: width - 1] + "…"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], out: TextIO | None = None) -> None:
    """Left-aligned columns under an upper-case header; ``None`` shows as ``-``."""
    cells = [[h.upper() for h in headers]] + [
        ["-" if c is None else str(c) for c in row] for row in rows
    ]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    stream = out or sys.stdout
    for r in cells:
        stream.write("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n")


def iso(ms: int | None) -> str | None:
    """Milliseconds since the epoch as ``YYYY-MM-DD HH:MM:SS.mmmZ`` (UTC)."""
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def ago(ms: int | None) -> str | None:
    """A span in milliseconds, as people read it: ``850ms``, ``12.5s``, ``3m20s``, ``2h05m``."""
    if ms is None:
        return None
    if ms < 1000:
        return f"{ms}ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f}s"
    s = ms // 1000
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)$")


def duration_ms(text: str) -> int:
    """``30s``, ``15m``, ``2h``, ``7d``, ``1w``, ``500ms`` in milliseconds."""
    m = _DURATION.match(text.strip())
    if m is None:
        raise UsageError(f"not a duration: {text!r} (e.g. 500ms, 30s, 15m, 2h, 7d, 1w)")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def time_ms(text: str, now_ms: int | None = None) -> int:
    """A point in time typed on the command line, in ms since the epoch: an integer (ms
    since the epoch), an ISO 8601 time (UTC unless it names its zone), or a duration
    (``15m``: that long before now)."""
    raw = text.strip()
    if raw.isdigit():
        return int(raw)
    if _DURATION.match(raw):
        now = int(time.time() * 1000) if now_ms is None else now_ms
        return now - duration_ms(raw)
    try:
        t = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"not a time: {text!r} (ms since the epoch, ISO 8601, or a duration such as 15m)"
        ) from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return int(t.timestamp() * 1000)


class Progress:
    """``done/total`` with a bar on stderr, redrawn in place; silent unless stderr is a TTY
    (so scripts and logs never see it)."""

    def __init__(self, total: int, label: str, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.total = total
        self.label = label
        self.done = 0
        self.shown = self.stream.isatty() and total > 1
        self._drawn = 0.0

    def step(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if self.shown and (now - self._drawn >= 0.1 or self.done >= self.total):
            self._drawn = now
            filled = 30 * self.done // max(1, self.total)
            bar = "#" * filled + "." * (30 - filled)
            self.stream.write(f"\r{self.label} [{bar}] {self.done}/{self.total}")
            self.stream.flush()

    def close(self) -> None:
        if self.shown and self.done:
            self.stream.write("\n")
            self.stream.flush()
