"""A durable promise by id (:class:`Handle`), and what a completed promise's record means
to its caller (:func:`outcome`: the value, or the rejection raised)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Protocol

from redpromise.store.store import Completion, Record, outcome

__all__ = ["Handle", "outcome", "seconds"]


def seconds(t: float | timedelta | None) -> float | None:
    """``t`` in seconds (``None`` stays ``None``)."""
    return t.total_seconds() if isinstance(t, timedelta) else t


class PromiseReader(Protocol):
    """What a :class:`Handle` asks of its client (a :class:`~redpromise.Redpromise`)."""

    async def _read(self, id: str) -> Record:
        """The promise's record, its passed timeout applied; :class:`PromiseNotFound`
        if unknown."""
        ...

    async def _wait(self, id: str, timeout: float | None) -> Record | Completion:
        """The promise once completed; :class:`TimeoutError` after ``timeout`` seconds."""
        ...


class Handle:
    """A durable promise, by id. Holds no state: every call reads Redis (``result()`` may
    instead take the outcome from the promise's completion message, see
    ``redpromise/client/waiter.py``)."""

    __slots__ = ("_id", "_rp")

    def __init__(self, rp: PromiseReader, id: str) -> None:
        self._rp = rp
        self._id = id

    @property
    def id(self) -> str:
        """The promise id."""
        return self._id

    def __repr__(self) -> str:
        return f"Handle({self._id!r})"

    async def state(self) -> str:
        """The current state: ``pending``, ``resolved``, ``rejected``, ``rejected_*``."""
        return (await self._rp._read(self._id)).state

    async def done(self) -> bool:
        """Whether the promise is completed. One read; never blocks on the promise."""
        return not (await self._rp._read(self._id)).pending

    async def result(self, timeout: float | timedelta | None = None) -> Any:
        """Wait for completion; return the value, or raise the rejection.

        Waits on a completion notification, not by polling; a small outcome comes in
        the notification itself, and a promise begun by this process while it was
        already listening is not even read first. Raises
        :class:`PromiseRejected` (with the remote error's type and message),
        :class:`PromiseCanceled`, :class:`PromiseTimedOut`, :class:`PromiseNotFound`, or
        :class:`TimeoutError` when ``timeout`` passes first (the promise stays pending).
        """
        return outcome(await self._rp._wait(self._id, seconds(timeout)))
