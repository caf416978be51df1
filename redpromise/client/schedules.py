"""Schedules in redpromise's own API: a cron expression that makes one ``begin_rpc`` per run.

The part of :class:`~redpromise.Redpromise` (its base) that writes and reads schedules;
the records and the firing are :mod:`redpromise.store.schedules`'. A schedule is stored
beside the Resonate protocol's (same hash and due zset, so ``schedule.get`` of
``redpromise serve`` shows it), and fired by every worker's upkeep and every ``serve``
replica, each run exactly once.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from redpromise.core.codec import encode
from redpromise.core.cron import Cron
from redpromise.core.keys import validate_group, validate_id
from redpromise.core.options import Settings, Timeout, as_timeout, parse_target
from redpromise.redis.classify import translate_errors
from redpromise.store.schedules import (
    create_schedule,
    delete_schedule,
    list_schedules,
    read_schedule,
    run_id,
)
from redpromise.store.store import Store

__all__ = ["Scheduling"]

# The longest run time in ms a schedule id must leave room for in its runs' promise ids
# (``<id>.<ms>``): 13 digits reach the year 2286.
_LONGEST_RUN = 10**13 - 1


class Scheduling:
    """``schedule``, ``unschedule``, ``schedule_get`` and ``schedules`` of
    :class:`~redpromise.Redpromise`."""

    store: Store
    settings: Settings
    _default_timeout_ms: int
    _default_group: str

    def _ready(self) -> Awaitable[None]:
        raise NotImplementedError  # the client's

    async def schedule(
        self,
        id: str,
        cron: str,
        function: str,
        /,
        *args: Any,
        target: str | None = None,
        timeout: Timeout | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """Schedule ``function(*args, **kwargs)`` on ``target``'s group at every time of
        ``cron``; returns the schedule (:meth:`schedule_get`'s shape).

        Each run ``t`` (ms) makes one promise ``<id>.<t>``, as :meth:`begin_rpc` would
        (tagged ``redpromise:schedule: <id>``, its ``timeout`` counted from its creation;
        default ``Settings.timeout``), whatever the number of workers and ``serve``
        replicas firing it; the first run is the cron's first time after now. ``cron``:
        5 fields, or 6 with a leading seconds field, in UTC (docs/resonate.md, "Cron").
        ``target``: ``poll://any@<group>`` or a group name (default ``poll://any@worker``,
        as ``begin_rpc``). Creating an id that exists (of either kind) changes nothing
        and returns the stored schedule. ``id``, ``cron`` and ``function`` are positional
        only, so any other keyword but ``target`` and ``timeout`` is the call's. Raises
        :class:`InvalidCron`, :class:`InvalidId` (the id, or ``function``),
        :class:`ConfigurationError` (target, timeout), and :class:`PayloadError` /
        :class:`PayloadTooLarge` (the arguments).
        """
        validate_id(id)
        validate_id(run_id(id, _LONGEST_RUN))
        validate_group(function)
        parsed = Cron.parse(cron)
        group = parse_target(target) if target is not None else self._default_group
        td = as_timeout(timeout)
        timeout_ms = self._default_timeout_ms if td is None else int(td.total_seconds() * 1000)
        payload = encode({"a": list(args), "k": kwargs}, self.settings.max_payload_bytes)
        await self._ready()
        async with translate_errors():
            _, info = await create_schedule(
                self.store, id, parsed, function, payload, group, timeout_ms
            )
        return info

    async def unschedule(self, id: str) -> bool:
        """Delete schedule ``id`` (either kind); whether it existed. A run a ticker had
        already read as due may still make its promise; no later one does."""
        validate_id(id)
        await self._ready()
        async with translate_errors():
            return await delete_schedule(self.store, id)

    async def schedule_get(self, id: str) -> dict[str, Any] | None:
        """Schedule ``id``, or None: ``{id, kind, cron, function, group, args, kwargs,
        timeout_ms, promise_id, created_at, next_run_at, last_run_at}`` (times in ms on
        Redis' clock; ``kind`` ``"redpromise"`` or ``"protocol"`` for one made by the
        Resonate protocol's ``schedule.create``, whose ``args``/``kwargs`` are None)."""
        validate_id(id)
        await self._ready()
        async with translate_errors():
            return await read_schedule(self.store, id)

    async def schedules(self) -> list[dict[str, Any]]:
        """Every schedule of the namespace, both kinds, by id (:meth:`schedule_get`'s
        shape)."""
        await self._ready()
        async with translate_errors():
            return await list_schedules(self.store)
