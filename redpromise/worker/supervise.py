"""Loops that never silently stop: run, log each distinct cause once, back off, recover.

A worker's loops (read, heartbeat, reclaim, promote) each run under a :class:`Supervisor`:

- a Redis failure (connection loss, timeout, or any error reply: ``MISCONF``,
  ``READONLY``, ``NOPERM``, …) ends that iteration only; it is logged once per distinct
  cause (again every :data:`LOG_EVERY` seconds while it lasts, with a count), the loop
  backs off with jitter and tries again, and logs ``recovered`` when an iteration works;
- anything else is a bug: the loop ends, the supervisor records why, and
  :attr:`Supervisor.died` is set so the process can exit non-zero (``run_worker`` does)
  and its supervisor (compose, systemd, Kubernetes) restart it;
- :meth:`Supervisor.health` tells whether every loop is still iterating (liveness) and
  whether Redis currently answers them (readiness).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from redpromise.core.backoff import Backoff
from redpromise.core.hooks import NO_HOOKS, Metrics
from redpromise.redis.classify import cause_of, is_redis_failure

__all__ = ["LOG_EVERY", "CauseLog", "Supervisor"]

LOG_EVERY = 60.0  # seconds between repeats of the same cause while it lasts

# What each condition means, for the operator reading the log.
_MEANS = {
    "MISCONF": "Redis refuses writes after a failed background save",
    "READONLY": "connected to a replica, not a primary (a failover in progress?)",
    "LOADING": "Redis is loading its dataset",
    "BUSY": "Redis is running a slow script",
    "OOM": "Redis is out of memory (maxmemory under noeviction)",
    "NOPERM": "the Redis user lacks a right (see 'Running as an ACL user' in the README)",
    "NOGROUP": "the consumer groups are gone (a wiped dataset?): creating them again",
    "UNBLOCKED": "Redis ended a blocked read (this server turned replica: a failover?)",
    "NOSCRIPT": "the script cache was emptied: loading the scripts again",
    "TRYAGAIN": "a cluster slot is migrating (a reshard): its entries wait until it moved",
    "ASK": "a cluster slot is migrating (a reshard): its entries wait until it moved",
    "WRONGTYPE": "a key holds a value redpromise did not write: skipping that key",
    "ConnectionError": "Redis is unreachable",
    "TimeoutError": "Redis does not answer in time",
}


@dataclass
class CauseLog:
    """Logs a failing activity once per distinct cause, and once when it recovers."""

    what: str
    log: logging.Logger
    action: str = "retrying with backoff until it recovers"
    # Told each failure's cause (redpromise_redis_failures_total{loop} counts them): for
    # a small, fixed set of loops, never one per key.
    count: Callable[[str], None] | None = None
    since: float | None = None
    cause: str = ""
    failures: int = 0
    last_error: str = ""
    _logged_at: float = 0.0

    @property
    def failing(self) -> bool:
        return self.since is not None

    def failed(self, exc: BaseException) -> str:
        """Record a failure; log it if its cause is new or last logged long ago."""
        now = time.monotonic()
        cause = cause_of(exc)
        if self.since is None:
            self.since = now
        self.failures += 1
        self.last_error = f"{cause}: {exc}"
        if self.count is not None:
            self.count(cause)
        if cause != self.cause or now - self._logged_at >= LOG_EVERY:
            repeat = f" ({self.failures} failures in {now - self.since:.0f}s)" if (
                cause == self.cause
            ) else ""
            redis = is_redis_failure(exc)
            self.log.warning(
                "%s: %s %s (%s)%s; %s; %s",
                self.what,
                "Redis" if redis else "unexpected",
                cause,
                exc,
                repeat,
                _MEANS.get(cause, "an error reply redpromise does not expect")
                if redis
                else "a bug in redpromise or in its setup",
                self.action,
                extra={"redpromise_event": "redis_failure", "cause": cause, "loop": self.what},
            )
            self.cause = cause
            self._logged_at = now
        return cause

    def ok(self) -> None:
        """Record a success; log the recovery if it was failing."""
        if self.since is None:
            return
        self.log.info(
            "%s recovered after %.1fs (%d failures, last: %s)",
            self.what,
            time.monotonic() - self.since,
            self.failures,
            self.cause,
            extra={"redpromise_event": "redis_recovered", "cause": self.cause, "loop": self.what},
        )
        self.since = None
        self.cause = ""
        self.failures = 0


@dataclass
class _Loop:
    name: str
    every: float
    stall_after: float
    causes: CauseLog
    beat: float = field(default_factory=time.monotonic)
    idle: bool = False  # waiting by design (e.g. for a free slot): not a stall
    stopping: bool = False
    task: asyncio.Task[None] | None = None


def _told_to_stop(loop: _Loop) -> bool:
    return loop.stopping  # read afresh: stop() may have set it during the await


class Supervisor:
    """Runs named loops; see the module docstring for what it guarantees."""

    def __init__(self, log: logging.Logger, metrics: Metrics = NO_HOOKS.metrics) -> None:
        self._log = log
        self._metrics = metrics
        self._loops: dict[str, _Loop] = {}
        self.died = asyncio.Event()
        self.reason = ""

    def spawn(
        self,
        name: str,
        step: Callable[[], Awaitable[Any]],
        every: float,
        *,
        stall_after: float = 90.0,
    ) -> None:
        """Run ``step`` every ``every`` seconds (back to back when 0), supervised.

        ``stall_after``: seconds without a finished iteration after which :meth:`health`
        reports the loop stuck (an iteration is bounded by the client's socket timeout).
        """
        causes = CauseLog(
            f"{name} loop", self._log, count=functools.partial(self._metrics.redis_failure, name)
        )
        loop = _Loop(name, every, max(stall_after, 3 * every), causes)
        loop.task = asyncio.create_task(self._run(loop, step), name=f"redpromise-{name}")
        loop.task.add_done_callback(functools.partial(self._ended, loop))
        self._loops[name] = loop

    def idle(self, name: str, idle: bool) -> None:
        """Mark loop ``name`` as waiting by design (not stalled) or working again."""
        loop = self._loops.get(name)
        if loop is not None:
            loop.idle = idle
            loop.beat = time.monotonic()

    async def _run(self, loop: _Loop, step: Callable[[], Awaitable[Any]]) -> None:
        # Capped low: a failing Redis sees a few commands per second per loop, and a
        # recovered one is back in service within about two seconds.
        backoff = Backoff(0.05, 2.0)
        while not loop.stopping:
            try:
                await step()
            except Exception as exc:
                if _told_to_stop(loop):
                    # A cancellation that the Redis client turned into a connection
                    # error: the loop was told to stop, so it stops.
                    return
                if not is_redis_failure(exc):
                    raise
                loop.causes.failed(exc)
                loop.beat = time.monotonic()
                await asyncio.sleep(backoff.next())
                continue
            loop.beat = time.monotonic()
            loop.causes.ok()
            backoff.reset()
            if loop.every > 0:
                await asyncio.sleep(loop.every)
            else:
                await asyncio.sleep(0)  # let others run between back-to-back iterations

    def _ended(self, loop: _Loop, task: asyncio.Task[None]) -> None:
        if loop.stopping:
            return
        exc = None if task.cancelled() else task.exception()
        reason = f"{loop.name} loop ended: " + (
            f"{type(exc).__name__}: {exc}" if exc is not None else "cancelled"
        )
        self._log.critical(
            "%s; the worker cannot go on without it and stops (exit non-zero)",
            reason,
            exc_info=exc,
            extra={"redpromise_event": "loop_died", "loop": loop.name},
        )
        if not self.died.is_set():
            self.reason = reason
            self.died.set()

    async def stop(self, names: Sequence[str] | None = None, timeout: float = 5.0) -> None:
        """Cancel the loops ``names`` (default: all); an expected end, not a death."""
        tasks = []
        for name, lp in self._loops.items():
            if names is None or name in names:
                lp.stopping = True
                if lp.task is not None:
                    lp.task.cancel()
                    tasks.append(lp.task)
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    def health(self) -> dict[str, Any]:
        """``{"live": bool, "ready": bool, "loops": {name: {...}}}``.

        ``live`` is false when a loop died or has not finished an iteration for longer
        than its ``stall_after`` (a supervisor should restart the process); ``ready`` is
        false while any loop's last iteration failed on Redis (the process is waiting for
        Redis, restarting it would not help).
        """
        now = time.monotonic()
        loops: dict[str, Any] = {}
        live = not self.died.is_set()
        ready = live
        for name, lp in self._loops.items():
            stalled = not lp.idle and now - lp.beat > lp.stall_after
            dead = (lp.task is None or lp.task.done()) and not lp.stopping
            live = live and not stalled and not dead
            ready = ready and not lp.causes.failing
            loops[name] = {
                "alive": not dead,
                "stalled": stalled,
                "idle": lp.idle,
                "seconds_since_iteration": round(now - lp.beat, 3),
                "failing": lp.causes.failing,
                "cause": lp.causes.cause,
                "last_error": lp.causes.last_error,
            }
        out: dict[str, Any] = {"live": live, "ready": ready, "loops": loops}
        if self.reason:
            out["died"] = self.reason
        return out
