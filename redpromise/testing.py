"""Test helpers for code built on redpromise.

:class:`FaultyRedis` reproduces the *ambiguous write*: Redis runs a command, and the reply
is lost on the way back. redis-py then raises ``ConnectionError`` (or, with its retry
policy, sends the command again), so the caller cannot know whether the write happened.
Every redpromise transition must be safe to run twice; this makes that testable.

It works on the client's connections (:func:`tap`): redpromise's own code has no test
hook, and what a test sees is what the socket carried.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.exceptions import ConnectionError, NoScriptError, ResponseError

from redpromise.store.scripts import SCRIPT_NAMES, Script

__all__ = ["FaultyRedis"]


class Tap(Protocol):
    """Sees every write on a client's connections (see :func:`tap`)."""

    async def on_write(self, conn: Any, commands: list[list[bytes]], send: Send) -> None:
        """Called for each write, in place of it: ``commands`` are the commands the write
        carries (a batch or a pipeline: several); ``send()`` writes them (no reply read).
        The caller reads one reply per command from ``conn`` once this returns."""


Send = Callable[[], Awaitable[None]]


def tap(redis: Redis, listener: Tap) -> None:
    """Route every write on ``redis``'s connections through ``listener``: those the pool
    makes from now on (its ``connection_class``) and those it already has."""
    pool = redis.connection_pool
    base = pool.connection_class
    if issubclass(base, _Tapped):
        base.taps.append(listener)
        return
    tapped = type(f"Tapped{base.__name__}", (_Tapped, base), {"taps": [listener]})
    pool.connection_class = tapped
    for group in ("_available_connections", "_in_use_connections"):
        for conn in getattr(pool, group, ()):
            conn.__class__ = tapped


class ReplyLost(ConnectionError):
    """The reply :class:`FaultyRedis` lost: a ``ConnectionError`` for the caller, never
    retried by redis-py (the test chose the loss; ``resend=True`` is the retry)."""


class _Through(Exception):
    """Carries a :class:`ReplyLost` past a ``Retry``, which retries connection errors."""

    def __init__(self, error: ReplyLost) -> None:
        super().__init__(str(error))
        self.error = error


class _NoRetryOfLostReplies:
    """A connection's ``Retry``, except that a :class:`ReplyLost` is raised at once."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def call_with_retry(self, do: Callable[[], Awaitable[Any]], *args: Any, **kw: Any) -> Any:
        async def once() -> Any:
            try:
                return await do()
            except ReplyLost as exc:
                raise _Through(exc) from None

        try:
            return await self.inner.call_with_retry(once, *args, **kw)
        except _Through as through:
            raise through.error from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class _Tapped:
    """Mixed in before a pool's connection class by :func:`tap`."""

    taps: list[Tap]

    @property
    def retry(self) -> Any:
        return _NoRetryOfLostReplies(self.__dict__["retry"])

    @retry.setter
    def retry(self, value: Any) -> None:
        self.__dict__["retry"] = value

    async def send_packed_command(
        self, command: bytes | str | Iterable[bytes], check_health: bool = True
    ) -> None:
        if isinstance(command, str):
            data = command.encode()
        elif isinstance(command, bytes):
            data = command
        else:
            data = b"".join(command)
        commands = _commands(data)
        write: Send = lambda: self.write(data, check_health)  # noqa: E731
        for listener in reversed(self.taps):
            write = _through(listener, self, commands, write)
        await write()

    async def write(self, data: bytes, check_health: bool = True) -> None:
        """Write ``data`` as the connection class itself would, past the taps."""
        await super().send_packed_command(data, check_health)  # type: ignore[misc]

    async def read(self) -> Any:
        """Read one reply (an error reply returned, not raised), past nothing."""
        try:
            return await super().read_response()  # type: ignore[misc]
        except ResponseError as exc:
            return exc


def _through(listener: Tap, conn: Any, commands: list[list[bytes]], send: Send) -> Send:
    return lambda: listener.on_write(conn, commands, send)


def _commands(data: bytes) -> list[list[bytes]]:
    """The commands of a RESP-encoded write (arrays of bulk strings, as clients send)."""
    out: list[list[bytes]] = []
    at = 0
    while at < len(data):
        end = data.index(b"\r\n", at)
        count = int(data[at + 1 : end])
        at = end + 2
        args: list[bytes] = []
        for _ in range(count):
            end = data.index(b"\r\n", at)
            size = int(data[at + 1 : end])
            args.append(data[end + 2 : end + 2 + size])
            at = end + 4 + size
        out.append(args)
    return out


class FaultyRedis:
    """Makes chosen commands of one client lose their reply *after* Redis ran them.

    Works on the client's connections (its pool's ``connection_class``, and the
    connections it already has), so every user of that client (a
    :class:`~redpromise.Redpromise`, its store, its worker) is affected, whatever way a
    command goes: one command, redpromise's own batches, a redis-py pipeline. A target
    is a redpromise script name (``"complete"``: its EVALSHA) or a command name
    (``"HSET"``). When a write carries several commands, losing one reply loses them
    all (the connection dropped).
    """

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self.lost: list[str] = []
        self._armed: dict[str, tuple[int, bool]] = {}
        self._sha = {Script(name).sha: name for name in SCRIPT_NAMES}
        tap(redis, self)

    async def on_write(self, conn: Any, commands: list[list[bytes]], send: Send) -> None:
        """A write on one of the client's connections: sent; maybe its replies lost."""
        hit = await self._hit(conn, commands)
        if hit is None:
            await send()
            return
        target, resend = hit
        await send()
        for _ in commands:  # Redis ran them: their replies are what gets lost
            await conn.read()
        if resend:  # what redis-py's Retry does: send it again; the caller reads that
            await send()
            return
        await conn.disconnect()
        raise ReplyLost(f"FaultyRedis: the reply to {target} was lost")

    async def _hit(self, conn: Any, commands: Sequence[list[bytes]]) -> tuple[str, bool] | None:
        """``(target, resend)`` of the first command whose reply is to be lost (one armed
        loss used), or ``None``. A script Redis does not have would answer NOSCRIPT, and
        not run: nothing ambiguous about it, so no loss is used on it."""
        for args in commands:
            target = self._target(args)
            times, resend = self._armed.get(target, (0, False))
            if times <= 0:
                continue
            if target in self._sha.values() and not await _loaded(conn, args[1]):
                continue
            self._armed[target] = (times - 1, resend)
            self.lost.append(target)
            return target, resend
        return None

    def _target(self, args: Sequence[bytes]) -> str:
        command = args[0].decode().upper() if args else ""
        if command in ("EVALSHA", "EVALSHA_RO") and len(args) > 1:
            return self._sha.get(args[1].decode(), command)
        return command

    def lose_reply(self, target: str, times: int = 1, *, resend: bool = False) -> None:
        """Lose the reply of the next ``times`` calls of ``target``.

        ``resend=False``: the caller gets ``ConnectionError`` (redis-py does not retry
        it). ``resend=True``: the command runs a second time and the caller gets the
        second reply, as when redis-py retries on its own.
        """
        name = target if target in self._sha.values() else target.upper()
        self._armed[name] = (times, resend)


async def _loaded(conn: Any, sha: bytes) -> bool:
    await conn.write(b"*3\r\n$6\r\nSCRIPT\r\n$6\r\nEXISTS\r\n$%d\r\n%b\r\n" % (len(sha), sha))
    reply = await conn.read()
    return not isinstance(reply, (ResponseError, NoScriptError)) and bool(reply and reply[0])
