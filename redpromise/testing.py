"""Test helpers for code built on redpromise.

:class:`FaultyRedis` reproduces the *ambiguous write*: Redis runs a command, and the reply
is lost on the way back. redis-py then raises ``ConnectionError`` (or, with its retry
policy, sends the command again), so the caller cannot know whether the write happened.
Every redpromise transition must be safe to run twice; this makes that testable.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ConnectionError, NoScriptError

from redpromise.store.scripts import SCRIPT_NAMES, Script

__all__ = ["FaultyRedis"]


class FaultyRedis:
    """Makes chosen commands of one client lose their reply *after* Redis ran them.

    Patches ``redis.execute_command`` on the instance and hooks the batches redpromise
    sends itself, so every user of that client (a :class:`~redpromise.Redpromise`, its
    store, its worker) is affected; redis-py pipelines are not. A target is a
    redpromise script name (``"complete"``: its EVALSHA) or a command name (``"HSET"``).
    In a batch, losing one reply loses the whole batch's (the connection dropped).
    """

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self.lost: list[str] = []
        self._armed: dict[str, tuple[int, bool]] = {}
        self._sha = {Script(name).sha: name for name in SCRIPT_NAMES}
        inner: Callable[..., Awaitable[Any]] = redis.execute_command

        async def execute_command(*args: Any, **options: Any) -> Any:
            result = await inner(*args, **options)
            hit = self._lose(args)
            if hit is None:
                return result
            if hit[1]:  # what redis-py's Retry does: send it again, return that reply
                return await inner(*args, **options)
            raise ConnectionError(f"FaultyRedis: the reply to {hit[0]} was lost")

        redis.execute_command = execute_command  # type: ignore[method-assign]
        redis._redpromise_faults = self  # type: ignore[attr-defined]

    async def exchange(
        self, commands: Sequence[Sequence[Any]], send: Callable[[], Awaitable[list[Any]]]
    ) -> list[Any]:
        """Hook for redpromise's own batches: they ran; now maybe lose their replies."""
        result = await send()
        hit = None
        for command, reply in zip(commands, result, strict=True):
            # A NOSCRIPT reply did not run: nothing ambiguous about it.
            if not isinstance(reply, NoScriptError) and (hit := self._lose(tuple(command))):
                break
        if hit is None:
            return result
        if hit[1]:
            return await send()
        raise ConnectionError(f"FaultyRedis: the reply to {hit[0]} was lost")

    def _lose(self, args: tuple[Any, ...]) -> tuple[str, bool] | None:
        """``(target, resend)`` if this call's reply is to be lost (one armed loss used)."""
        target = self._target(args)
        times, resend = self._armed.get(target, (0, False))
        if times <= 0:
            return None
        self._armed[target] = (times - 1, resend)
        self.lost.append(target)
        return target, resend

    def _target(self, args: tuple[Any, ...]) -> str:
        command = str(args[0]).upper() if args else ""
        if command in ("EVALSHA", "EVALSHA_RO") and len(args) > 1:
            return self._sha.get(str(args[1]), command)
        return command

    def lose_reply(self, target: str, times: int = 1, *, resend: bool = False) -> None:
        """Lose the reply of the next ``times`` calls of ``target``.

        ``resend=False``: the caller gets ``ConnectionError``. ``resend=True``: the
        command runs a second time and the caller gets the second reply, as when
        redis-py retries on its own.
        """
        name = target if target in self._sha.values() else target.upper()
        self._armed[name] = (times, resend)
