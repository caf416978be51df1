"""Search and counts over the indexes the transition scripts keep.

Each partition has one zset per state (``Keys.index``) whose members are
``<group>|<id>`` scored by the promise's ``created_at``, and one counters hash
(``Keys.counts``): ``<state>|<group>`` -> entries of that index with that group. ``create``
adds the pending entry, ``settle`` (in ``complete`` and ``acquire``'s poison path) moves it
to the final state's index, in the same script as the write they describe, and a counter
moves exactly when an entry is added or removed.

A completed record expires by ``PEXPIRE`` (its own retention, given by whoever completed
it), which no script sees. ``settle`` also records when: a member of the partition's
expiries zset (``Keys.expiries``) scored by the expiry time. Its entry is dropped by
``forget.lua``, called by every worker's upkeep (the sweep:
:mod:`redpromise.store.index_sweep`), which reads the expiries that are due, so each
count follows its record's own retention whatever the worker's. Entries of records
completed before the expiries zset existed are found by age instead: created more than
the worker's ``retention`` ago. The script checks the hash
atomically, so an entry whose promise is still there is never dropped. A search never
writes (it runs with read-only rights, and any number of readers cost Redis no writes):
it steps over an entry whose promise is gone, and the counters keep counting that entry
until the sweep drops it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redpromise.core.codec import as_text, decode, decode_error
from redpromise.core.errors import PayloadError
from redpromise.core.keys import validate_group
from redpromise.store.scripts import Command
from redpromise.store.states import FAILING, PENDING, STATES
from redpromise.store.store import Call, Record, Store

__all__ = [
    "LastError", "PromiseInfo", "SearchPage", "counts",
    "search",
]

_HGETALL = Command("HGETALL")
_MAX_SCORE = 1 << 53  # above any created_at in ms; exact as a double
_MAX_LIMIT = 1000

Key = tuple[int, bytes]  # (created_at, member): the order of every index and of pages


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _ms(t: int | datetime | None, name: str) -> int | None:
    if t is None:
        return None
    if isinstance(t, datetime):
        return int(t.timestamp() * 1000)
    if isinstance(t, int) and not isinstance(t, bool):
        return t
    raise ValueError(f"{name} must be milliseconds since the epoch or a datetime, not {t!r}")


@dataclass(frozen=True, slots=True)
class LastError:
    """The error of a promise's last failed attempt, recorded when it was retried:
    ``attempt`` is the failed run's ``attempt`` (what its ``Context.attempt`` was: the
    retries before it, 0 for the first run), ``at`` when it failed, ``next_retry_at``
    when the retry is (or was) due; ``None`` when a release that kept no times retried it (and
    ``next_retry_at`` once the promise completed)."""

    type: str
    message: str
    at: datetime | None
    attempt: int
    next_retry_at: datetime | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (times in ms since the epoch)."""
        return {
            "type": self.type,
            "message": self.message,
            "at": _epoch_ms(self.at) if self.at else None,
            "attempt": self.attempt,
            "next_retry_at": _epoch_ms(self.next_retry_at) if self.next_retry_at else None,
        }

    @classmethod
    def parse(
        cls, blob: bytes | None, at: int | None, retry_at: int | None, attempt: int, pending: bool
    ) -> LastError | None:
        """From a record's ``last_error``, ``error_at``, ``retry_at`` and ``attempt``."""
        if not blob:
            return None
        try:
            type_name, message = decode_error(blob)
        except PayloadError as exc:
            type_name, message = "PayloadError", str(exc)
        return cls(
            type=type_name,
            message=message,
            at=_dt(at) if at is not None else None,
            # Only a retry raises the record's attempt, in the same script that recorded
            # this error: the run that failed had the one before.
            attempt=max(attempt - 1, 0),
            next_retry_at=_dt(retry_at) if retry_at is not None and pending else None,
        )


@dataclass(frozen=True, slots=True)
class PromiseInfo:
    """A read-only snapshot of one promise, as :meth:`Redpromise.search` finds it.

    ``value`` is the decoded result of a ``resolved`` promise (else ``None``); ``error``
    is ``(type, message)`` of a rejected one (any ``rejected*`` state; else ``None``).
    ``last_error``: the last failed attempt, when one was retried (a pending promise with
    one is *failing*: ``search(state="failing")``).
    Times are timezone-aware UTC datetimes of the Redis clock, to the millisecond.
    """

    id: str
    state: str
    function: str
    group: str
    created_at: datetime
    timeout_at: datetime
    completed_at: datetime | None
    attempt: int
    tags: Mapping[str, str]
    value: Any
    error: tuple[str, str] | None
    last_error: LastError | None = None

    @property
    def pending(self) -> bool:
        """Whether the promise is not completed yet."""
        return self.state == PENDING

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (times in ms since the epoch); ``value`` as decoded."""
        return {
            "id": self.id,
            "state": self.state,
            "function": self.function,
            "group": self.group,
            "created_at": _epoch_ms(self.created_at),
            "timeout_at": _epoch_ms(self.timeout_at),
            "completed_at": _epoch_ms(self.completed_at) if self.completed_at else None,
            "attempt": self.attempt,
            "tags": dict(self.tags),
            "value": self.value,
            "error": {"type": self.error[0], "message": self.error[1]} if self.error else None,
            "last_error": self.last_error.to_dict() if self.last_error else None,
        }

    @classmethod
    def of(cls, rec: Record) -> PromiseInfo:
        value: Any = None
        error: tuple[str, str] | None = None
        if rec.value is not None:
            try:
                if rec.state == "resolved":
                    value = decode(rec.value)
                elif rec.state.startswith("rejected"):
                    error = decode_error(rec.value)
            except PayloadError as exc:  # one bad record must not hide a whole page
                error = ("PayloadError", str(exc))
        return cls(
            id=rec.id,
            state=rec.state,
            function=rec.func,
            group=rec.group,
            created_at=_dt(rec.created_at),
            timeout_at=_dt(rec.timeout_at),
            completed_at=_dt(rec.completed_at) if rec.completed_at is not None else None,
            attempt=rec.attempt,
            tags=_tags(rec.tags),
            value=value,
            error=error,
            last_error=LastError.parse(
                rec.last_error, rec.error_at, rec.retry_at, rec.attempt, rec.pending
            ),
        )


def _epoch_ms(t: datetime) -> int:
    return round(t.timestamp() * 1000)


def _tags(blob: bytes | None) -> dict[str, str]:
    if not blob:
        return {}
    try:
        raw = decode(blob)
    except PayloadError:
        return {}
    return {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}


@dataclass(frozen=True, slots=True)
class SearchPage:
    """One page of :meth:`Redpromise.search`: ``records`` in (created_at, id) order and
    the ``cursor`` of the next page, ``None`` once the walk has reached the end."""

    records: list[PromiseInfo]
    cursor: str | None


def _encode_cursor(desc: bool, key: Key) -> str:
    raw = json.dumps([1, int(desc), key[0], base64.b64encode(key[1]).decode()])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, desc: bool) -> Key:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        version, d, score, member = json.loads(raw)
        key = (int(score), base64.b64decode(member, validate=True))
        ok = version == 1 and bool(d) == desc
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not a search cursor: {cursor!r}") from exc
    if not ok:
        raise ValueError("the cursor belongs to a search of the other order")
    return key


class _PartitionSlice:
    """One partition's candidates: a consistent slice of its state indexes, in order."""

    __slots__ = ("buf", "done", "k", "last")

    def __init__(self, k: int, last: Key | None) -> None:
        self.k = k
        self.buf: list[tuple[Key, str]] = []  # reversed: the next candidate is buf[-1]
        self.done = False
        self.last = last


class _CandidateWalk:
    """A search's candidates across every partition's state indexes, merged into the page
    order ((created_at, member), newest first or oldest first), read a slice at a time."""

    def __init__(
        self,
        store: Store,
        states: Sequence[str],
        desc: bool,
        lo: int,
        hi: int,
        after: Key | None,
        chunk: int,
    ) -> None:
        self.store = store
        self.states = states
        self.desc = desc
        self.lo = lo
        self.hi = hi
        self.chunk = chunk
        self.parts = [_PartitionSlice(k, after) for k in range(store.keys.partitions)]

    def _scan(self, p: _PartitionSlice) -> Call:
        lo, hi = self.lo, self.hi
        score: int | str = ""
        member = b""
        if p.last is not None:
            score, member = p.last
            lo, hi = (lo, min(hi, score)) if self.desc else (max(lo, score), hi)
        keys = [self.store.keys.index(p.k, s) for s in self.states]
        return (
            self.store.scripts["scan"],
            keys,
            ["1" if self.desc else "0", score, member, lo, hi, self.chunk],
        )

    async def refill(self) -> None:
        """Read the next slice of every partition that ran dry (one round trip)."""
        dry = [p for p in self.parts if not p.buf and not p.done]
        if not dry:
            return
        results = await self.store.run_calls([self._scan(p) for p in dry])
        for p, res in zip(dry, results, strict=True):
            if isinstance(res, BaseException):
                raise res
            found: list[tuple[Key, str]] = []
            bound: Key | None = None
            for state, rows in zip(self.states, res[1:], strict=True):
                keys = [(int(float(rows[i + 1])), bytes(rows[i])) for i in range(0, len(rows), 2)]
                found += [(key, state) for key in keys]
                if len(keys) >= self.chunk:  # this index has more: nothing past its last
                    bound = keys[-1] if bound is None else self._first(bound, keys[-1])
            found.sort(key=lambda c: c[0], reverse=self.desc)
            if bound is not None:
                found = [c for c in found if not self._before(bound, c[0])]
            p.done = bound is None
            p.buf = found[::-1]

    def _before(self, a: Key, b: Key) -> bool:
        """Whether ``a`` comes before ``b`` in the walk's order."""
        return a > b if self.desc else a < b

    def _first(self, a: Key, b: Key) -> Key:
        return a if self._before(a, b) else b

    def next_batch(self, n: int) -> list[tuple[int, Key, str]]:
        """Up to ``n`` next candidates in order, stopping where a partition needs a refill."""
        out: list[tuple[int, Key, str]] = []
        while len(out) < n:
            best: _PartitionSlice | None = None
            for p in self.parts:
                if p.buf and (best is None or self._before(p.buf[-1][0], best.buf[-1][0])):
                    best = p
            if best is None:
                break
            key, state = best.buf.pop()
            best.last = key
            out.append((best.k, key, state))
            if not best.buf and not best.done:
                break
        return out

    @property
    def finished(self) -> bool:
        return all(p.done and not p.buf for p in self.parts)


async def search(
    store: Store,
    *,
    state: str | None = None,
    group: str | None = None,
    function: str | None = None,
    tags: Mapping[str, str] | None = None,
    since: int | datetime | None = None,
    until: int | datetime | None = None,
    limit: int = 100,
    cursor: str | None = None,
    newest_first: bool = False,
) -> SearchPage:
    """See :meth:`redpromise.Redpromise.search`."""
    if state is not None and state not in STATES and state != FAILING:
        raise ValueError(f"unknown state {state!r}; one of {sorted({*STATES, FAILING})}")
    # Failing promises are pending ones with a failed attempt on record: a filter over
    # the pending index (no index of their own, so retries and completions pay nothing).
    indexed = PENDING if state == FAILING else state
    if group is not None and group != "":
        validate_group(group)
    if not isinstance(limit, int) or not 1 <= limit <= _MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {_MAX_LIMIT}, not {limit!r}")
    lo, hi = _ms(since, "since"), _ms(until, "until")
    after = _decode_cursor(cursor, newest_first) if cursor is not None else None
    wanted_tags = {str(k): str(v) for k, v in (tags or {}).items()}

    def match(rec: Record) -> bool:
        return (
            (indexed is None or rec.state == indexed)
            and (state != FAILING or rec.last_error is not None)
            and (function is None or rec.func == function)
            and (not wanted_tags or wanted_tags.items() <= _tags(rec.tags).items())
        )

    prefix = None if group is None else f"{group}|".encode()
    walk = _CandidateWalk(
        store,
        [indexed] if indexed is not None else STATES,
        newest_first,
        0 if lo is None else lo,
        _MAX_SCORE if hi is None else hi,
        after,
        max(16, min(500, 2 * limit // store.keys.partitions + 1)),
    )
    # A filter that matches little must not read the whole namespace in one call: past
    # this many candidates the page comes back short, with a cursor to go on from.
    budget = max(1000, 10 * limit)
    records: list[PromiseInfo] = []
    examined = 0
    last = after
    while True:
        await walk.refill()
        batch = walk.next_batch(max(limit - len(records), 16))
        if not batch:
            return SearchPage(records, None)
        for n, (key, info) in enumerate(await _examine(store, batch, prefix, match)):
            examined += 1
            last = key
            if info is None:
                continue
            records.append(info)
            if len(records) == limit:
                done = walk.finished and n == len(batch) - 1
                return SearchPage(records, None if done else _encode_cursor(newest_first, key))
        if examined >= budget and last is not None:
            return SearchPage(records, _encode_cursor(newest_first, last))


async def _examine(
    store: Store,
    batch: Sequence[tuple[int, Key, str]],
    prefix: bytes | None,
    match: Callable[[Record], bool],
) -> list[tuple[Key, PromiseInfo | None]]:
    """Each candidate's key and its record if it matches. Entries of promises gone (or of
    an earlier promise by the same id) are stepped over, and left to the index sweep."""
    wanted = [prefix is None or key[1].startswith(prefix) for _, key, _ in batch]
    ids = [key[1].partition(b"|")[2].decode("utf-8", "replace") for _, key, _ in batch]
    wanted_ids = [i for i, w in zip(ids, wanted, strict=True) if w]
    reads = iter(await store.read_many(wanted_ids, failure=True))
    out: list[tuple[Key, PromiseInfo | None]] = []
    for (_, key, _), want in zip(batch, wanted, strict=True):
        rec = next(reads) if want else None
        # A record redpromise did not write (an exception here) is not listed.
        ok = isinstance(rec, Record) and rec.created_at == key[0] and match(rec)
        out.append((key, PromiseInfo.of(rec) if ok and isinstance(rec, Record) else None))
    return out


async def counts(store: Store) -> dict[str, dict[str, int]]:
    """See :meth:`redpromise.Redpromise.counts`."""
    calls: list[Call] = [
        (_HGETALL, [store.keys.counts(k)], []) for k in range(store.keys.partitions)
    ]
    out: dict[str, dict[str, int]] = {s: {} for s in STATES}
    for res in await store.run_calls(calls):
        if isinstance(res, BaseException):
            raise res
        pairs = res.items() if isinstance(res, dict) else zip(res[::2], res[1::2], strict=True)
        for field, n in pairs:
            state, _, group = as_text(field).partition("|")
            if state in out and int(n):
                out[state][group] = out[state].get(group, 0) + int(n)
    return out
