"""Every Redis key and channel name redpromise uses; nothing else formats key strings.

A promise id maps to one of ``partitions`` partitions by ``crc32(id) % partitions``. All
keys of a partition carry the hash tag ``{<namespace>:<k>}``, so every script touches one
slot and runs unchanged on Redis Cluster.
"""

from __future__ import annotations

import re
import unicodedata
import zlib

from ._errors import InvalidId

__all__ = ["MAX_ID_BYTES", "Keys", "validate_group", "validate_id"]

MAX_ID_BYTES = 512
_GROUP = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")


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
    """Builds the keys of one namespace. Immutable; safe to share."""

    __slots__ = ("_tags", "meta", "namespace", "partitions")

    def __init__(self, namespace: str = "rp", partitions: int = 16) -> None:
        self.namespace = namespace
        self.partitions = partitions
        self.meta = f"{namespace}:meta"
        self._tags = [f"{{{namespace}:{k}}}" for k in range(partitions)]

    def partition(self, id: str) -> int:
        """The partition of a promise id."""
        return zlib.crc32(id.encode("utf-8")) % self.partitions

    def _tag(self, k: int) -> str:
        return self._tags[k]

    def promise(self, id: str) -> str:
        return f"{self._tags[self.partition(id)]}:p:{id}"

    def steps(self, id: str) -> str:
        return f"{self._tags[self.partition(id)]}:s:{id}"

    def children(self, id: str) -> str:
        """The set of child promise ids a promise's executions created."""
        return f"{self._tags[self.partition(id)]}:k:{id}"

    def stream(self, k: int, group: str) -> str:
        return f"{self._tag(k)}:q:{group}"

    def delayed(self, k: int) -> str:
        return f"{self._tag(k)}:delayed"

    def timeouts(self, k: int) -> str:
        return f"{self._tag(k)}:timeouts"

    def dead(self, k: int) -> str:
        return f"{self._tag(k)}:dead"

    def channel(self, k: int) -> str:
        return f"{self._tag(k)}:c"

    def channels(self) -> list[str]:
        return [self.channel(k) for k in range(self.partitions)]
