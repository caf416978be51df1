"""Redis' clock, read locally: every Python-side due time is on the clock the scripts use.

The Lua scripts take "now" from Redis ``TIME``. A process whose own wall clock is off
(a VM without NTP, a container on a skewed host) would otherwise compute due times that
disagree with Redis: a waiter would wake every few milliseconds to find its promise
"not due yet", a worker would promote timeouts an hour late or reject a retry as too
late. :class:`RedisClock` samples ``TIME`` once when the process connects and then now
and then in the background; between samples it advances with the local *monotonic*
clock, so reading it costs no round trip and a jump of the local wall clock does not
move it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

__all__ = ["RedisClock"]

log = logging.getLogger("redpromise")


class RedisClock:
    """Milliseconds on Redis' clock, without a round trip per reading.

    Until the first :meth:`sync` it reads the local wall clock.
    """

    def __init__(self, redis: Any, refresh_every: float = 60.0) -> None:
        self.redis = redis
        """The client ``TIME`` is read from (any node of a cluster)."""
        self._refresh_every = refresh_every
        self._base_ms = time.time() * 1000.0  # Redis ms at _base_mono (local until synced)
        self._base_mono = time.monotonic()
        self._next_sync = float("-inf")
        self._refresh: asyncio.Task[None] | None = None

    @property
    def offset_ms(self) -> float:
        """Redis' clock minus the local wall clock, in ms (as of the last sample)."""
        return self._base_ms + (time.monotonic() - self._base_mono) * 1000.0 - time.time() * 1000

    async def sync(self) -> None:
        """Sample Redis ``TIME`` (one round trip), taken at the middle of the trip."""
        t0 = time.monotonic()
        secs, micros = await self.redis.time()
        t1 = time.monotonic()
        self._base_ms = int(secs) * 1000.0 + int(micros) / 1000.0
        self._base_mono = (t0 + t1) / 2
        self._next_sync = t1 + self._refresh_every

    def now_ms(self) -> int:
        """Now, in ms since the epoch, on Redis' clock. Never blocks, never does I/O.

        When the last sample is older than ``refresh_every``, a background task takes a
        new one (the monotonic clock drifts from Redis' by parts per million).
        """
        mono = time.monotonic()
        if mono >= self._next_sync and self._refresh is None:
            self._spawn_refresh(mono)
        return int(self._base_ms + (mono - self._base_mono) * 1000.0)

    def _spawn_refresh(self, mono: float) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop in this thread: the next reading from the loop refreshes
        if self._next_sync == float("-inf"):
            return  # never synced: the client syncs when it connects (Redpromise._ready)
        self._next_sync = mono + self._refresh_every  # one refresh at a time, even if it fails
        self._refresh = loop.create_task(self._background_sync())

    async def _background_sync(self) -> None:
        try:
            await self.sync()
        except Exception as exc:  # keep the last sample; Redis errors surface elsewhere
            log.debug("refreshing the Redis clock failed: %s", exc)
        finally:
            self._refresh = None

    async def close(self) -> None:
        """Cancel a refresh in flight."""
        task, self._refresh = self._refresh, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
