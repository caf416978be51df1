"""Generic async test helpers (no pytest import)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis

from redpromise.store.scripts import SCRIPT_NAMES, Script
from redpromise.testing import tap

__all__ = ["Counted", "CuttingProxy", "assert_eventually"]

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


class CuttingProxy:
    """A TCP proxy to a Redis that cuts one client connection in the middle of an exchange.

    After :meth:`cut`, the next client write containing ``marker`` ends that connection:
    before the bytes reach Redis, or (``after_reply=True``) once Redis has run them and
    answered, the reply never reaching the client: the ambiguous write. Every other byte
    is relayed as is, so a client reconnecting through the proxy gets a working link.
    """

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.accepted = 0  # client connections, the cut one included
        self.cuts = 0  # connections cut so far
        self._armed: tuple[bytes, bool] | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> str:
        """Listen on a free local port; the ``redis://`` URL that goes through the proxy."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"redis://127.0.0.1:{port}/0"

    def cut(self, marker: bytes, *, after_reply: bool) -> None:
        self._armed = (marker, after_reply)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.accepted += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        redis_r, redis_w = await asyncio.open_connection(*self.upstream)
        swallow = asyncio.Event()  # set: the next reply from Redis is dropped, link cut

        async def to_redis() -> None:
            while data := await client_r.read(65536):
                if self._armed is not None and self._armed[0] in data:
                    after_reply = self._armed[1]
                    self._armed = None
                    if not after_reply:
                        self.cuts += 1
                        return
                    swallow.set()
                redis_w.write(data)
                await redis_w.drain()

        async def to_client() -> None:
            while data := await redis_r.read(65536):
                if swallow.is_set():
                    self.cuts += 1
                    return
                client_w.write(data)
                await client_w.drain()

        try:
            # Either side hanging up (or a cut) ends the link both ways.
            pumps = [asyncio.ensure_future(p) for p in (to_redis(), to_client())]
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
        finally:
            for writer in (client_w, redis_w):
                writer.close()
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()
            self._tasks.discard(task)


class Counted:
    """Counts the commands (scripts by name) written on a client's connections."""

    def __init__(self, redis: Redis) -> None:
        self.sent: Counter[str] = Counter()
        self._names = {Script(n).sha: n for n in SCRIPT_NAMES}
        tap(redis, self)

    async def on_write(
        self, conn: Any, commands: list[list[bytes]], send: Callable[[], Awaitable[None]]
    ) -> None:
        for c in commands:
            name = c[0].decode().upper()
            sha = c[1].decode() if len(c) > 1 else ""
            self.sent[self._names.get(sha, name) if name == "EVALSHA" else name] += 1
        await send()
