"""Every Redis key and channel name redpromise uses; nothing else formats key strings.

A promise id maps to one of ``partitions`` (P) partitions by ``crc32(id) % P``. All keys of
a partition carry one hash tag, so every script touches one slot and runs unchanged on
Redis Cluster. The tags follow the namespace's key layout, pinned in its meta hash:

- layout 1 (namespaces made before layouts existed): partition k's tag is ``{<ns>:<k>}``;
  its cluster slot is wherever CRC16 puts it, so partitions spread unevenly over masters.
- layout 2: partition k's tag is ``{<ns>:<k>:<n>}`` with the smallest n >= 0 whose slot
  falls in ``[k*16384//P, (k+1)*16384//P)``. Partitions then cover the slot space in
  order and evenly: the masters of a cluster with evenly split slots get P/masters each,
  give or take one.
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from binascii import crc_hqx
from zlib import crc32

from redpromise.core.errors import InvalidId

__all__ = [
    "LAYOUTS",
    "LAYOUT_LEGACY",
    "LAYOUT_SPREAD",
    "MAX_ID_BYTES",
    "SLOTS",
    "Keys",
    "slot_of_tag",
    "validate_group",
    "validate_id",
]

MAX_ID_BYTES = 512
_GROUP = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")

SLOTS = 16384
"""Hash slots of a Redis Cluster."""
LAYOUT_LEGACY = 1
"""Tags ``{<ns>:<k>}``: namespaces whose meta has ``partitions`` but no ``layout``."""
LAYOUT_SPREAD = 2
"""Tags ``{<ns>:<k>:<n>}``, partition k in slot range k: what new namespaces get."""
LAYOUTS = (LAYOUT_LEGACY, LAYOUT_SPREAD)

_MASK = SLOTS - 1  # 16384 is a power of two: slot = crc & _MASK
_MAX_DIGITS = 6  # the 900,000 six-digit suffixes hit all 16384 slots (tests check it)


def slot_of_tag(tag: str) -> int:
    """The cluster slot of every key carrying hash tag ``{tag}``.

    Redis hashes a tagged key by CRC16-XMODEM of the text between the braces, which is
    what :func:`binascii.crc_hqx` with initial value 0 computes.
    """
    return crc_hqx(tag.encode("utf-8"), 0) & _MASK


def slot_range(k: int, partitions: int) -> range:
    """The slots partition ``k`` of ``partitions`` must land in (layout 2)."""
    return range(k * SLOTS // partitions, (k + 1) * SLOTS // partitions)


# _suffixes[d][v]: the smallest d-digit decimal n whose CRC16 (init 0) has low 14 bits v.
# Built per digit count on first need and shared by every namespace.
_suffixes: dict[int, dict[int, int]] = {}


def _suffix_table(digits: int) -> dict[int, int]:
    table = _suffixes.get(digits)
    if table is None:
        table = {}
        first = 0 if digits == 1 else 10 ** (digits - 1)
        for n in range(10**digits - 1, first - 1, -1):  # downwards: the smallest n wins
            table[crc_hqx(b"%d" % n, 0) & _MASK] = n
        _suffixes[digits] = table
    return table


def spread_tags(namespace: str, partitions: int) -> list[str]:
    """The layout-2 tag of each partition: ``<ns>:<k>:<n>``, n the smallest whose slot is
    the middle of the partition's range.

    The middle, not just any slot of the range: a master of a cluster created with
    ``redis-cli --cluster create`` serves a contiguous share of the slots, so it then
    holds exactly the partitions whose middles fall in its share — ⌊P/M⌋ or ⌈P/M⌉ of
    them for M masters, whatever the namespace (16 on 3 masters: 5/6/5).

    Found without trying each n in turn: CRC16 with initial value 0 is linear over
    GF(2), so for a d-digit suffix ``crc(prefix + s) == crc(prefix + "\0" * d) ^ crc(s)``.
    For each digit count, in increasing order (fewer digits = smaller n), the middle slot
    names the one suffix CRC that lands there, looked up in a table of smallest suffixes.
    """
    tags: list[str] = []
    for k in range(partitions):
        prefix = f"{namespace}:{k}:".encode()
        wanted = slot_range(k, partitions)
        middle = (wanted.start + wanted.stop - 1) // 2
        for digits in range(1, _MAX_DIGITS + 1):
            base = crc_hqx(prefix + b"\0" * digits, 0) & _MASK
            n = _suffix_table(digits).get(base ^ middle)
            if n is not None:
                tags.append(f"{namespace}:{k}:{n}")
                break
        else:  # pragma: no cover - six-digit suffixes reach every slot from any prefix
            raise AssertionError(f"no hash tag of partition {k} lands on slot {middle}")
    return tags


def validate_id(id: object) -> str:
    """Return ``id`` if it is a usable promise id, else raise :class:`InvalidId`.

    An id is a non-empty string of at most 512 UTF-8 bytes without control characters
    (NUL, newlines, …). Any other unicode is fine.
    """
    if not isinstance(id, str):
        raise InvalidId(f"promise id must be a str, not {type(id).__name__}")
    if not id:
        raise InvalidId("promise id must not be empty")
    try:
        size = len(id) if id.isascii() else len(id.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidId("promise id is not valid unicode (lone surrogate)") from exc
    if size > MAX_ID_BYTES:
        raise InvalidId(f"promise id is {size} bytes; the limit is {MAX_ID_BYTES}")
    if id.isascii():
        # In ASCII exactly the control characters are not printable.
        if not id.isprintable():
            raise InvalidId("promise id must not contain control characters")
    elif any(unicodedata.category(c) == "Cc" for c in id):
        raise InvalidId("promise id must not contain control characters")
    return id


def validate_group(group: object) -> str:
    """Return ``group`` if it is a usable group name, else raise :class:`InvalidId`.

    Group names are 1-64 characters of ``A-Z a-z 0-9 _ . : -``, starting alphanumeric.
    """
    if not isinstance(group, str) or not _GROUP.match(group):
        raise InvalidId(
            f"group name {group!r} is invalid: use 1-64 characters of A-Z a-z 0-9 _ . : -"
        )
    return group


class Keys:
    """Builds the keys of one namespace in one key layout. Immutable; safe to share.

    ``layout`` is :data:`LAYOUT_SPREAD` for new namespaces; the client switches to the
    layout pinned in the namespace's meta hash before it uses any key.
    """

    __slots__ = ("_tags", "layout", "meta", "namespace", "partitions")

    def __init__(
        self, namespace: str = "rp", partitions: int = 16, layout: int = LAYOUT_SPREAD
    ) -> None:
        if not 1 <= partitions <= SLOTS:
            raise ValueError(f"partitions must be between 1 and {SLOTS}, not {partitions}")
        self.namespace = namespace
        self.partitions = partitions
        self.layout = layout
        self.meta = f"{namespace}:meta"
        if layout == LAYOUT_LEGACY:
            tags = [f"{namespace}:{k}" for k in range(partitions)]
        elif layout == LAYOUT_SPREAD:
            tags = spread_tags(namespace, partitions)
        else:
            raise ValueError(f"unknown key layout {layout!r}; this version knows {LAYOUTS}")
        self._tags = [f"{{{t}}}" for t in tags]

    def with_layout(self, layout: int) -> Keys:
        """These keys in ``layout`` (``self`` when it is already the one)."""
        return self if layout == self.layout else Keys(self.namespace, self.partitions, layout)

    def slot(self, k: int) -> int:
        """The cluster slot of partition ``k``'s keys."""
        return slot_of_tag(self._tags[k][1:-1])

    def partition(self, id: str) -> int:
        """The partition of a promise id."""
        return zlib.crc32(id.encode("utf-8")) % self.partitions

    # partition() inlined below: these run several times per job on the hot path.
    def promise(self, id: str) -> str:
        return f"{self._tags[crc32(id.encode()) % self.partitions]}:p:{id}"

    def promise_in(self, k: int, id: str) -> str:
        """:meth:`promise` for a caller that has the id's partition ``k`` already."""
        return f"{self._tags[k]}:p:{id}"

    def steps(self, id: str) -> str:
        return f"{self._tags[crc32(id.encode()) % self.partitions]}:s:{id}"

    def steps_in(self, k: int, id: str) -> str:
        """:meth:`steps` for a caller that has the id's partition ``k`` already."""
        return f"{self._tags[k]}:s:{id}"

    def children(self, id: str) -> str:
        """The set of child promise ids a promise's executions created."""
        return f"{self._tags[crc32(id.encode()) % self.partitions]}:k:{id}"

    def promise_prefix(self, k: int) -> str:
        """What :meth:`promise` puts before the id of a promise of partition ``k``: for a
        script that learns the ids only as it reads them (``take.lua``)."""
        return f"{self._tags[k]}:p:"

    def steps_prefix(self, k: int) -> str:
        """What :meth:`steps` puts before the id of a promise of partition ``k``."""
        return f"{self._tags[k]}:s:"

    def absent(self, k: int) -> str:
        """A key of partition ``k`` that is never written: a script that declares it is
        refused by Redis Cluster (ASK, TRYAGAIN) while the partition's slot migrates,
        since a migrating slot's node serves only calls whose keys it all holds
        (``take.lua``)."""
        return f"{self._tags[k]}:absent"

    def stream(self, k: int, group: str) -> str:
        return f"{self._tags[k]}:q:{group}"

    def delayed(self, k: int) -> str:
        return f"{self._tags[k]}:delayed"

    def timeouts(self, k: int) -> str:
        return f"{self._tags[k]}:timeouts"

    def dead(self, k: int) -> str:
        return f"{self._tags[k]}:dead"

    def index(self, k: int, state: str) -> str:
        """Partition ``k``'s search index of promises in ``state``: a zset of
        ``<group>|<id>`` scored by ``created_at`` (see ``docs/design.md``)."""
        return f"{self._tags[k]}:i:{state}"

    def counts(self, k: int) -> str:
        """Partition ``k``'s counters hash: ``<state>|<group>`` -> index entries."""
        return f"{self._tags[k]}:n"

    def expiries(self, k: int) -> str:
        """Partition ``k``'s zset of completed records with a retention:
        ``<state>|<group>|<id>`` scored by when the record expires (``settle.lua``)."""
        return f"{self._tags[k]}:e"

    def channel(self, k: int) -> str:
        return f"{self._tags[k]}:c"

    def channels(self) -> list[str]:
        return [self.channel(k) for k in range(self.partitions)]

    # -- the Resonate protocol's keys (docs/resonate.md, redpromise/store/protocol.py) ----
    # A protocol promise lives in its family's partition: the family is the id up to its
    # first `:`, so a root, its `:n` children, their callbacks and its task share a slot.
    # The scripts derive per-promise keys from a promise key's tag; these builders are the
    # one place Python spells them.

    def family_partition(self, id: str) -> int:
        """The partition of protocol promise ``id``: that of its family, the text before its
        first ``:``. Both Resonate SDKs name a child ``<parent>:<n>`` and refuse ``:`` in a
        root id, so a root, its children and its task share one slot, and a root sits where
        :meth:`promise` puts it (redpromise's own API finds it by id)."""
        return crc32(id.split(":", 1)[0].encode()) % self.partitions

    def tag(self, k: int) -> str:
        """Partition ``k``'s hash tag, braces included."""
        return self._tags[k]

    def rs_promise(self, id: str) -> str:
        """Protocol promise ``id``'s hash (the same layout as :meth:`promise`)."""
        return f"{self._tags[self.family_partition(id)]}:p:{id}"

    def rs_steps(self, id: str) -> str:
        """Steps hash of protocol promise ``id`` run by a redpromise worker (the layout of
        :meth:`steps`, in the family's partition; settling the promise deletes it)."""
        return f"{self._tags[self.family_partition(id)]}:s:{id}"

    def rs_callbacks(self, id: str) -> str:
        """Set of the promise keys of the tasks awaiting ``id``."""
        return f"{self._tags[self.family_partition(id)]}:rc:{id}"

    def rs_awaits(self, id: str) -> str:
        """Set of the promise keys ``id``'s task has callbacks on (rc's reverse)."""
        return f"{self._tags[self.family_partition(id)]}:ra:{id}"

    def rs_listeners(self, id: str) -> str:
        """Set of the addresses to unblock when ``id`` settles."""
        return f"{self._tags[self.family_partition(id)]}:rl:{id}"

    def rs_resumes(self, id: str) -> str:
        """Set of task ``id``'s buffered resumes (promise ids)."""
        return f"{self._tags[self.family_partition(id)]}:rr:{id}"

    def rs_branch(self, id: str, branch: str) -> str:
        """Set of the promise keys of ``id``'s family tagged with ``branch``."""
        return f"{self._tags[self.family_partition(id)]}:rb:{branch}"

    def rs_promise_timeouts(self, k: int) -> str:
        """Partition ``k``'s zset of protocol promise timeouts (id -> timeoutAt)."""
        return f"{self._tags[k]}:rpt"

    def rs_task_timeouts(self, k: int) -> str:
        """Partition ``k``'s zset of protocol task timeouts (id -> due time)."""
        return f"{self._tags[k]}:rtt"

    def rs_channel(self) -> str:
        """The channel of the protocol's unicast (``poll://uni@…``) messages."""
        return f"{self.namespace}:rs:poll"

    # -- Resonate protocol schedules: a schedule lives in :meth:`partition` of its id --

    def rs_schedule(self, k: int, id: str) -> str:
        """The hash of protocol schedule ``id`` (``k`` = ``partition(id)``)."""
        return f"{self._tags[k]}:rs:{id}"

    def rs_schedules_due(self, k: int) -> str:
        """Partition ``k``'s zset of protocol schedules: member id, score next_run_at."""
        return f"{self._tags[k]}:rst"
