"""Registering the functions a worker runs, and the options bag of ``begin_rpc``: the
part of :class:`~redpromise.Redpromise` that only records, before anything runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, overload

from redpromise.core.options import Options, RetryPolicy, Timeout, as_timeout
from redpromise.worker.registry import Registry

__all__ = ["Registration"]

F = TypeVar("F", bound=Callable[..., Any])


class Registration:
    """``register`` and ``options`` of :class:`~redpromise.Redpromise` (its base)."""

    registry: Registry  # the functions this process serves

    @overload
    def register(self, fn: F, /) -> F: ...

    @overload
    def register(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: Timeout | None = None,
    ) -> Callable[[F], F]: ...

    @overload
    def register(
        self,
        fn: F,
        /,
        *,
        name: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: Timeout | None = None,
    ) -> F: ...

    def register(
        self,
        fn: Any = None,
        /,
        *,
        name: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: Timeout | None = None,
    ) -> Any:
        """Register ``fn(ctx, *args, **kwargs)`` under ``name`` (default: its ``__name__``).

        Use as ``@rp.register``, ``@rp.register(name=…, retry=…)`` or
        ``rp.register(fn, name=…)``. ``fn`` may be ``async def``, a generator function
        (Resonate style: ``value = yield ctx.run(step, …)``) or a plain function (run in
        a thread). ``retry`` overrides ``Settings.retry``; ``timeout`` (seconds or a
        ``timedelta``, positive) bounds one attempt.
        """
        attempt_timeout = as_timeout(timeout)

        def add(f: F) -> F:
            self.registry.add(f, name, retry, attempt_timeout)
            return f

        return add(fn) if fn is not None else add

    def options(
        self,
        *,
        target: str | None = None,
        timeout: Timeout | None = None,
        retry: RetryPolicy | None = None,
        tags: dict[str, str] | None = None,
    ) -> Options:
        """An options bag for :meth:`begin_rpc` (``options=``), as in Resonate's SDKs.

        ``timeout`` is seconds or a ``timedelta``; :class:`ConfigurationError` unless
        positive and finite."""
        return Options(target=target, timeout=timeout, retry=retry, tags=tags)
