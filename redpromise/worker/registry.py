"""Registered functions and how each kind is invoked."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Generator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from redpromise.core.errors import ConfigurationError
from redpromise.core.keys import validate_group
from redpromise.core.options import RetryPolicy

__all__ = ["Function", "Registry", "drive"]


async def drive(gen: Generator[Any, Any, Any]) -> Any:
    """Run a Resonate-style generator: each yielded awaitable's outcome is sent back in."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            item = gen.throw(error) if error is not None else gen.send(value)
        except StopIteration as stop:
            return stop.value
        value, error = None, None
        try:
            value = await item
        except asyncio.CancelledError:
            gen.close()
            raise
        except Exception as exc:
            error = exc


@dataclass(frozen=True)
class Function:
    """A registered function: how to call it and its retry policy."""

    name: str
    fn: Callable[..., Any]
    kind: Literal["async", "generator", "sync"]
    retry: RetryPolicy | None
    timeout: timedelta | None

    async def invoke(self, ctx: Any, args: list[Any], kwargs: dict[str, Any]) -> Any:
        if self.kind == "async":
            result = await self.fn(ctx, *args, **kwargs)
        elif self.kind == "generator":
            result = await drive(self.fn(ctx, *args, **kwargs))
        else:
            result = await asyncio.to_thread(self.fn, ctx, *args, **kwargs)
        # A plain value is the usual result: skip isawaitable's ABC check for it.
        if type(result) not in _PLAIN and inspect.isawaitable(result):
            result = await result
        return result


_PLAIN = frozenset({type(None), bool, int, float, str, bytes, list, dict, tuple})


class Registry:
    """Name → function. Names are validated like group names."""

    def __init__(self) -> None:
        self._functions: dict[str, Function] = {}

    def add(
        self,
        fn: Callable[..., Any],
        name: str | None,
        retry: RetryPolicy | None,
        timeout: timedelta | None,
    ) -> Function:
        name = validate_group(name or getattr(fn, "__name__", ""))
        if not callable(fn):
            raise ConfigurationError(f"cannot register {fn!r}: not callable")
        kind: Literal["async", "generator", "sync"]
        if inspect.iscoroutinefunction(fn):
            kind = "async"
        elif inspect.isgeneratorfunction(fn):
            kind = "generator"
        else:
            kind = "sync"
        existing = self._functions.get(name)
        if existing is not None and existing.fn is not fn:
            raise ConfigurationError(f"a different function is already registered as {name!r}")
        func = Function(name, fn, kind, retry, timeout)
        self._functions[name] = func
        return func

    def get(self, name: str) -> Function | None:
        return self._functions.get(name)

    def __bool__(self) -> bool:
        return bool(self._functions)

    def names(self) -> list[str]:
        return sorted(self._functions)
