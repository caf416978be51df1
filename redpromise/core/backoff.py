"""The one backoff every retrying loop uses: exponential, capped, with jitter."""

from __future__ import annotations

import random

__all__ = ["Backoff"]


class Backoff:
    """Delays ``base``, ``2·base``, … up to ``cap`` seconds, each drawn from its upper half.

    The jitter spreads the retries of many processes that lost Redis at the same moment,
    so they do not all come back in the same millisecond; the lower bound keeps a retry
    from firing at once.
    """

    __slots__ = ("_n", "base", "cap")

    def __init__(self, base: float = 0.05, cap: float = 5.0) -> None:
        self.base = base
        self.cap = cap
        self._n = 0

    def next(self) -> float:
        """The next delay (seconds); each call doubles the ceiling until ``cap``."""
        ceiling = min(self.cap, self.base * (1 << min(self._n, 30)))
        self._n += 1
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def reset(self) -> None:
        """Start again from ``base`` (after a success)."""
        self._n = 0
