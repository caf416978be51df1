"""How a worker takes new entries from its group's streams (``XREADGROUP ... >``).

- :class:`StreamReads`, on one server: one blocking ``XREADGROUP`` names every
  partition's stream, so one command waits for all of them.
- :class:`PartitionReads`, on a cluster, which refuses a read of several slots: one
  blocking ``XREADGROUP`` per partition, each on a connection of the node that holds it,
  all waiting at once. A new entry wakes its read at once, as on one server.

Both are :class:`GroupReads` (the setup they share) and, while entries flow, read in
:class:`NonBlockingPasses`.

Either way an idle worker costs only its blocking reads (one command per ``block``
period, per partition on a cluster). While entries keep coming (a read delivered
several), the next reads are non-blocking passes over every partition, pipelined (one
buffer per node): ``take`` (``redpromise/store/lua/take.lua``) on each partition that gave
entries when it was last read, which reads its new entries *and acquires them* (the
worker skips the acquire round trip, Redis the per-entry script call), and a plain
``XREADGROUP`` of the others, whose entries are acquired as usual. A pass that finds
nothing goes back to blocking reads. A pass reads at most the worker's free slots in all.

Reads and takes are never resent after a lost connection (a second one would deliver
other entries; those of a lost reply wait in the consumer's pending list until
reclaimed). An error reply is raised (after the entries other partitions delivered, at
the next call); the caller decides (``NOGROUP``: create the groups again). A ``take`` a
cluster refuses while its partition's slot migrates (``ASK``/``TRYAGAIN``, see take.lua)
read nothing; its partition is no longer hot, so it is read with a plain ``XREADGROUP``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from redpromise.core.codec import as_text
from redpromise.redis.batch import send_batch
from redpromise.redis.replies import ErrorReply
from redpromise.redis.wire import AnyRedis
from redpromise.store.scripts import Command, run_calls
from redpromise.store.store import Call

__all__ = [
    "Batch", "Delivery", "GroupReads", "NonBlockingPasses", "PartitionReads", "StreamReads",
    "Taken", "parse_read",
]  # fmt: skip

Delivery = tuple[int, str, Any]  # (partition, entry id, fields)
Taken = tuple[int, str, str | None, Any]
"""(partition, entry id, promise id or None, acquire.lua's reply), one per entry a
``take`` read: see take.lua."""
TakeCall = Callable[[int, int], Call]
"""The ``take`` call of a partition for at most ``count`` entries: ``(k, count) -> Call``."""

_MAX_COUNT = 500  # entries per read, whatever the free slots


@dataclass(slots=True)
class Batch:
    """What one read brought: entries to acquire, and entries ``take`` already acquired
    (their leases counted from ``sent``, when the takes were sent)."""

    deliveries: list[Delivery] = field(default_factory=list)
    taken: list[Taken] = field(default_factory=list)
    sent: float = 0.0

    def __len__(self) -> int:
        return len(self.deliveries) + len(self.taken)


def parse_read(resp: Any, index: dict[str, int]) -> list[Delivery]:
    """Entries of a raw XREADGROUP reply: a map (RESP3) or pairs (RESP2) of streams."""
    out: list[Delivery] = []
    items = resp.items() if isinstance(resp, dict) else (resp or [])
    for stream, entries in items:
        k = index.get(as_text(stream))
        if k is None:
            continue
        for entry_id, fields in entries:
            out.append((k, as_text(entry_id), fields))
    return out


def parse_take(k: int, resp: Any) -> list[Taken]:
    """The entries of partition ``k``'s take reply, each with acquire.lua's reply."""
    return [
        (k, as_text(entry), as_text(id) if id is not None else None, reply)
        for entry, id, reply in resp or []
    ]


_XREADGROUP = Command("XREADGROUP")


class NonBlockingPasses:
    """Passes over the active partitions while entries flow, at most ``free`` entries in all:
    ``take`` on the partitions that gave entries when last read ("hot"), and a
    non-blocking ``XREADGROUP`` of the others (one for all of them on one server, one per
    partition on a cluster), whose entries are acquired as usual. An empty ``take`` costs
    Redis a script call (~58k instructions, against ~2.3k per stream of an XREADGROUP
    naming several), so it is spent only where entries are likely."""

    def __init__(
        self,
        redis: AnyRedis,
        take: TakeCall,
        head: list[Any],
        streams: list[str],
        index: dict[str, int],
        multi: bool,
    ) -> None:
        self.redis = redis
        self._take = take
        self._args = head[1:]  # GROUP <group> <consumer>
        self._streams = streams
        self._index = index
        self._multi = multi  # one XREADGROUP may name several streams (not on a cluster)
        self._next = 0  # where the next pass starts when there are fewer slots than partitions
        self.hot: set[int] = set()

    def plan(self, ks: Sequence[int], free: int) -> tuple[list[int], int]:
        """Which partitions to take from and how many entries each: all of them, evenly,
        or (fewer free slots than partitions) one each from ``free`` of them in turn."""
        n = min(free, _MAX_COUNT)
        if not ks:
            return [], 0
        if n >= len(ks):
            return list(ks), n // len(ks)
        start, self._next = self._next, self._next + n
        return [ks[(start + i) % len(ks)] for i in range(n)], 1

    def _reads(self, ks: list[int], count: int) -> list[Call]:
        groups = [ks] if self._multi else [[k] for k in ks]
        return [
            (_XREADGROUP, [], [*self._args, "COUNT", count, "STREAMS",
                               *[self._streams[k] for k in g], *[">"] * len(g)])
            for g in groups if g
        ]  # fmt: skip

    async def run(self, ks: Sequence[int], free: int) -> tuple[Batch, BaseException | None]:
        """One pass: the entries taken and those read, and the first error reply (or lost
        connection of a node) among the partitions, for the caller to raise once the
        entries are used."""
        chosen, count = self.plan(ks, free)
        batch = Batch(sent=time.monotonic())
        if not chosen:
            return batch, None
        hot = [k for k in chosen if k in self.hot]
        calls = [self._take(k, count) for k in hot]
        calls += self._reads([k for k in chosen if k not in self.hot], count)
        replies = await run_calls(self.redis, calls, resend=False)
        error: BaseException | None = None
        for i, resp in enumerate(replies):
            if isinstance(resp, BaseException):
                error = error or resp
            elif i < len(hot):
                batch.taken += parse_take(hot[i], resp)
            else:
                batch.deliveries += parse_read(resp, self._index)
        # A partition stays hot until a pass finds it empty (one left out of this pass, as
        # happens with few free slots, keeps its state); one that gave entries turns hot.
        got = {k for k, *_ in batch.taken} | {k for k, *_ in batch.deliveries}
        self.hot = (self.hot - set(chosen)) | got
        return batch, error


class GroupReads(ABC):
    """How a worker takes new entries of its group's streams: blocking reads while idle
    (how they wait differs: :class:`StreamReads`, :class:`PartitionReads`), passes of
    :class:`NonBlockingPasses` while entries flow. The setup both share is here."""

    _one_read_for_all: ClassVar[bool]
    """Whether one XREADGROUP may name every stream (one server), else one per partition."""

    def __init__(
        self,
        redis: AnyRedis,
        head: list[Any],
        streams: list[str],
        block_ms: int,
        take: TakeCall,
    ) -> None:
        self._redis = redis
        self._head = head  # XREADGROUP GROUP <group> <consumer>
        self._streams = streams
        self._index = {s: k for k, s in enumerate(streams)}
        self._block_ms = block_ms
        self._active: list[int] = []
        self._passes = NonBlockingPasses(
            redis, take, head, streams, self._index, multi=self._one_read_for_all
        )
        self._busy = False  # the last read delivered several entries: pass over them next
        self._error: BaseException | None = None  # raised by the next read

    def use(self, partitions: Sequence[int]) -> None:
        """Read only these partitions from now on."""
        self._active = list(partitions)

    @abstractmethod
    async def read(self, free: int) -> Batch:
        """The next entries (at most ``free``, one blocking read's worth when idle); an
        error a previous read kept back (after its entries were used) is raised first."""

    async def close(self) -> None:
        """Give up what is outstanding (a blocking read), at shutdown."""
        return None

    def _kept_error(self) -> BaseException | None:
        """The error kept back for this call (and forget it)."""
        error, self._error = self._error, None
        return error

    def _blocking_read_gave(self, out: list[Delivery]) -> Batch:
        """What a blocking read delivered; more than one entry at once means entries are
        flowing, so the next reads are passes (``take`` on the partitions that gave)."""
        self._busy = len(out) > 1
        self._passes.hot = {k for k, _, _ in out}
        return Batch(out)


class StreamReads(GroupReads):
    """One blocking read over every usable partition's stream (a single server); passes
    of ``take`` while entries are flowing."""

    _one_read_for_all = True

    def __init__(
        self,
        redis: AnyRedis,
        head: list[Any],
        streams: list[str],
        block_ms: int,
        take: TakeCall,
    ) -> None:
        super().__init__(redis, head, streams, block_ms, take)
        self._tail: list[Any] = []  # BLOCK <ms> STREAMS <active streams> > ...

    def use(self, partitions: Sequence[int]) -> None:
        super().use(partitions)
        streams = [self._streams[k] for k in partitions]
        self._tail = (
            ["BLOCK", self._block_ms, "STREAMS", *streams, *[">"] * len(streams)]
            if streams
            else []
        )

    async def read(self, free: int) -> Batch:
        failed = self._kept_error()
        if failed is not None:
            raise failed
        if not self._tail:
            await asyncio.sleep(self._block_ms / 1000)
            return Batch()
        if self._busy:
            batch, error = await self._passes.run(self._active, free)
            if error is not None:
                if not batch:
                    self._busy = False
                    raise error
                self._error = error  # raised by the next call, after these are used
            if batch:
                return batch
            self._busy = False  # a quiet moment: block again
        count = max(1, min(free, _MAX_COUNT) // len(self._streams))
        (resp,) = await send_batch(
            self._redis, [[*self._head, "COUNT", count, *self._tail]], resend=False
        )
        if isinstance(resp, ErrorReply):
            raise resp
        return self._blocking_read_gave(parse_read(resp, self._index))


class PartitionReads(GroupReads):
    """One blocking read per partition, all outstanding at once (a cluster); passes of
    ``take`` while entries are flowing."""

    _one_read_for_all = False

    def __init__(
        self,
        redis: AnyRedis,
        head: list[Any],
        streams: list[str],
        block_ms: int,
        take: TakeCall,
    ) -> None:
        super().__init__(redis, head, streams, block_ms, take)
        self._reads: dict[int, asyncio.Task[Any]] = {}  # the parked read of each partition

    def use(self, partitions: Sequence[int]) -> None:
        super().use(partitions)
        for k in set(self._reads) - set(partitions):
            self._reads.pop(k).cancel()

    async def _read(self, k: int, count: int) -> Any:
        cmd = [*self._head, "COUNT", count, "BLOCK", self._block_ms, "STREAMS"]
        (resp,) = await send_batch(self._redis, [[*cmd, self._streams[k], ">"]], resend=False)
        return resp

    async def read(self, free: int) -> Batch:
        failed = self._kept_error()
        if failed is not None:
            raise failed
        if not self._active:
            await asyncio.sleep(self._block_ms / 1000)
            return Batch()
        if self._busy:
            batch = await self._poll(free)
            if batch:
                return batch
            self._busy = False  # a quiet moment: park a read on every partition again
            failed = self._kept_error()
            if failed is not None:
                raise failed
        count = max(1, min(free, _MAX_COUNT) // len(self._active))
        for k in self._active:
            if k not in self._reads:
                self._reads[k] = asyncio.create_task(self._read(k, count))
        done, _ = await asyncio.wait(self._reads.values(), return_when=asyncio.FIRST_COMPLETED)
        out = self._collect({k for k, t in self._reads.items() if t in done})
        failed = self._kept_error()
        if failed is not None and not out:
            raise failed
        self._error = failed
        return self._blocking_read_gave(out)

    async def _poll(self, free: int) -> Batch:
        """While entries keep coming: one pass of ``take`` over every partition without a
        parked read, one buffer per node, instead of a wake-up (and a round trip) per
        partition and entry. Also hands over what parked reads delivered meanwhile."""
        ks = [k for k in self._active if k not in self._reads]
        batch, error = await self._passes.run(ks, free)
        if error is not None:
            self._error = self._error or error  # raised by the next call
        batch.deliveries += self._collect({k for k, t in self._reads.items() if t.done()})
        return batch

    def _collect(self, ks: set[int]) -> list[Delivery]:
        """Entries of the finished parked reads of partitions ``ks``; an error is kept
        for the next call, after the entries other partitions delivered."""
        out: list[Delivery] = []
        for k in ks:
            task = self._reads.pop(k)
            try:
                resp = task.result()
                # An error reply, or (on a cluster, where a node's lost connection comes
                # back in its commands' places instead of being raised) a connection error.
                if isinstance(resp, Exception):
                    raise resp
            except Exception as exc:
                self._error = self._error or exc
                continue
            out += parse_read(resp, self._index)
        return out

    async def close(self) -> None:
        tasks = list(self._reads.values())
        self._reads.clear()
        for t in tasks:
            t.cancel()
        if tasks:
            with contextlib.suppress(Exception):
                await asyncio.wait(tasks, timeout=5)
