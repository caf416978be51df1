"""Promises created by a running function (``ctx.rpc``, ``ctx.promise``): starting and
awaiting them through the client (:class:`ClientChildPromises`, the worker's
:class:`~redpromise.worker.execution.ChildPromises`), remembering them as their parent's,
and canceling them with it (:func:`cancel_children`)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Protocol

from redpromise.client.handle import outcome
from redpromise.core.keys import Keys, validate_id
from redpromise.core.options import Timeout
from redpromise.redis.classify import translate_errors
from redpromise.redis.wire import AnyRedis
from redpromise.store.store import Completion, Record, Store

__all__ = ["ClientChildPromises", "cancel_children"]

_MAX_DEPTH = 32  # generations of children a cancel reaches


class ParentClient(Protocol):
    """What child promises use of the client (a :class:`~redpromise.Redpromise`): its
    readiness, its waiter, its store, and ``begin_rpc``."""

    redis: AnyRedis
    keys: Keys
    store: Store

    async def _ready(self) -> None: ...

    async def _wait(self, id: str, timeout: float | None) -> Record | Completion: ...

    async def begin_rpc(
        self,
        id: str,
        name: str,
        *args: Any,
        target: str | None = None,
        timeout: Timeout | None = None,
        **kwargs: Any,
    ) -> Any: ...


async def cancel_children(rp: ParentClient, id: str, blob: bytes, depth: int = 0) -> None:
    """Cancel (with rejection ``blob``) every child canceled promise ``id`` created, and
    theirs, up to :data:`_MAX_DEPTH` generations."""
    if depth > _MAX_DEPTH:
        return
    members = await rp.redis.smembers(rp.keys.children(id))
    for raw in members:
        child = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        await rp.store.complete(child, None, None, "rejected_canceled", blob)
        await cancel_children(rp, child, blob, depth + 1)


class ClientChildPromises:
    """The worker's way to start and await child promises (``ctx.rpc``, ``ctx.promise``):
    through this client (its readiness, its waiter)."""

    __slots__ = ("_rp",)

    def __init__(self, rp: ParentClient) -> None:
        self._rp = rp

    async def adopt(self, parent: str, child: str) -> None:
        """Remember ``child`` as created by ``parent`` (for cancellation), before creating it.

        The set lives as long as the parent's record: no expiry while the parent is
        pending (it can be canceled until it completes, however long that takes), then
        the record's own retention, which ``settle.lua`` gives the set too.
        """
        rp = self._rp
        key = rp.keys.children(parent)
        async with translate_errors():
            pipe = rp.redis.pipeline(transaction=False)
            pipe.sadd(key, child)
            pipe.pttl(rp.keys.promise(parent))
            _, ttl = await pipe.execute()
            if ttl == -2 or ttl > 0:  # completed before our SADD (a late execution)
                await rp.redis.pexpire(key, max(int(ttl), 1))

    async def begin(
        self,
        id: str,
        name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        target: str | None,
        timeout: timedelta,
    ) -> None:
        await self._rp.begin_rpc(id, name, *args, target=target, timeout=timeout, **kwargs)

    async def create_latent(self, id: str, timeout: timedelta) -> None:
        """Create a promise with no function: something outside completes it."""
        validate_id(id)
        await self._rp._ready()
        timeout_ms = max(1, int(timeout.total_seconds() * 1000))
        async with translate_errors():
            await self._rp.store.create(id, "", b"", "", timeout_ms, b"", b"")

    async def wait_outcome(self, id: str) -> Any:
        return outcome(await self._rp._wait(id, None))
