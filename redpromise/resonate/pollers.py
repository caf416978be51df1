"""The SSE connections (``GET /poll/{group}/{pid}``) open on this replica, and the choice of
which one gets a message.

An address ``poll://uni@G/P`` means "the connection of process P of group G"; ``poll://any@G``
(or ``poll://any@G/P``, P preferred) means "any connected process of group G". A replica
only knows its own connections: messages for an address reach it through Redis
(:mod:`redpromise.resonate.delivery`), and each replica offers them to what it holds.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

__all__ = ["Address", "Poller", "Pollers", "parse_address"]

_ADDRESS = re.compile(r"^poll://(uni|any)@([^/]+)(?:/(.*))?$")


@dataclass(frozen=True)
class Address:
    """A parsed ``poll://`` address."""

    cast: str  # "uni" or "any"
    group: str
    pid: str | None


def parse_address(text: str) -> Address | None:
    """The address ``text`` names, or ``None`` when it is not a ``poll://`` address (those
    are stored, never delivered: this face pushes messages over SSE only)."""
    m = _ADDRESS.match(text)
    if m is None:
        return None
    return Address(m.group(1), m.group(2), m.group(3) or None)


def _never() -> bool:
    return False


@dataclass(eq=False)
class Poller:
    """One open SSE connection: frames queued for it are written by its request handler.

    ``closed`` tells whether the peer has gone: a process killed with SIGKILL closes its
    socket at once, but its handler only learns it on its next write, and a message queued
    for it meanwhile would be lost (acknowledged in Redis, written nowhere)."""

    group: str
    pid: str
    frames: asyncio.Queue[bytes] = field(default_factory=lambda: asyncio.Queue(maxsize=10_000))
    closed: Callable[[], bool] = _never

    def offer(self, frame: bytes) -> bool:
        """Queue ``frame``; false when the connection is gone or too far behind to take it
        (the message is then offered to another connection, or left to be offered again)."""
        if self.closed():
            return False
        try:
            self.frames.put_nowait(frame)
        except asyncio.QueueFull:
            return False
        return True


class Pollers:
    """The connections of this replica, by group and pid."""

    def __init__(self) -> None:
        self._by_group: dict[str, dict[str, list[Poller]]] = {}
        self._turn = itertools.count()
        self.changed = asyncio.Event()

    def add(self, poller: Poller) -> None:
        self._by_group.setdefault(poller.group, {}).setdefault(poller.pid, []).append(poller)
        self.changed.set()

    def remove(self, poller: Poller) -> None:
        pids = self._by_group.get(poller.group, {})
        held = pids.get(poller.pid, [])
        if poller in held:
            held.remove(poller)
        if not held:
            pids.pop(poller.pid, None)
        if not pids:
            self._by_group.pop(poller.group, None)
        self.changed.set()

    def groups(self) -> list[str]:
        """The groups with at least one connection here."""
        return list(self._by_group)

    def has(self, group: str) -> bool:
        return group in self._by_group

    def count(self) -> int:
        return sum(len(c) for pids in self._by_group.values() for c in pids.values())

    def holds(self, group: str, pid: str) -> bool:
        """Whether process ``pid`` of ``group`` has a connection here."""
        return bool(self._by_group.get(group, {}).get(pid))

    def _of(self, group: str, pid: str) -> Iterator[Poller]:
        yield from self._by_group.get(group, {}).get(pid, [])

    def unicast(self, address: Address, frame: bytes) -> bool:
        """Offer ``frame`` to the connection(s) of ``address``'s process; false if none here."""
        if address.pid is None:
            return False
        delivered = False
        for poller in self._of(address.group, address.pid):
            delivered = poller.offer(frame) or delivered
        return delivered

    def anycast(self, group: str, pid: str | None, frame: bytes) -> bool:
        """Offer ``frame`` to process ``pid`` of ``group`` when connected here, else to one
        connection of the group (in turn); false if the group has no connection here."""
        if pid is not None:
            for poller in self._of(group, pid):
                if poller.offer(frame):
                    return True
        pids = self._by_group.get(group)
        if not pids:
            return False
        candidates = [p for held in pids.values() for p in held]
        start = next(self._turn)
        for i in range(len(candidates)):
            if candidates[(start + i) % len(candidates)].offer(frame):
                return True
        return False
