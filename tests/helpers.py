"""Generic async test helpers (no pytest import)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["assert_eventually"]

_MISSING = object()


async def assert_eventually(
    predicate: Callable[[], Any | Awaitable[Any]],
    timeout: float = 10.0,
    interval: float = 0.05,
    *,
    message: str | None = None,
) -> Any:
    """Poll ``predicate`` (sync or async) until it returns something truthy.

    Returns that truthy value. Exceptions raised by the predicate count as "not yet".
    Raises ``AssertionError`` with the last value / exception after ``timeout`` seconds.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last_value: Any = _MISSING
    last_exc: BaseException | None = None
    while True:
        try:
            result = predicate()
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:  # includes AssertionError
            last_exc, last_value = exc, _MISSING
        else:
            if result:
                return result
            last_exc, last_value = None, result
        if loop.time() >= deadline:
            break
        await asyncio.sleep(interval)

    what = getattr(predicate, "__qualname__", repr(predicate))
    detail = (
        f"last exception: {last_exc!r}" if last_exc is not None else f"last value: {last_value!r}"
    )
    prefix = f"{message}: " if message else ""
    raise AssertionError(
        f"{prefix}condition {what} not true within {timeout:.2f}s ({detail})"
    ) from last_exc
