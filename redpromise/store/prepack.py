"""The create call of ``begin_rpc``, RESP-encoded from cached pieces.

Packing a command costs per argument (hiredis formats each length with ``sprintf``); a
create has 15 arguments (``EVALSHA``, the SHA, the key count, 5 keys, 7 args), and about
half of them are the same for every begin of a partition and group: the head of the
command, the stream, timeouts, index and counts keys, and the group. Those are encoded
once and kept; the rest is formatted in one step. The result is byte for byte what
``_wire.pack`` makes of the call's command (tested), which is still built too: a cluster
client routes by it, and a NOSCRIPT resend packs it again.
"""

from __future__ import annotations

from typing import Any

from redpromise.core.keys import Keys
from redpromise.redis.wire import bulk
from redpromise.store.scripts import Script

__all__ = ["CreatePacker"]

# Partitions x groups whose pieces are kept; past it the cache starts over (a process
# that begins into more distinct groups than this only packs more, nothing else).
_MAX_PIECES = 4096

_NKEYS, _NARGS = 5, 7

# head, promise key, the partition's keys, id, func, payload, group, timeout, tags, retry
_FORMAT = (
    b"%b$%d\r\n%b\r\n%b$%d\r\n%b\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n%b$%d\r\n%b\r\n$%d\r\n%b\r\n"
    b"$%d\r\n%b\r\n"
)


class CreatePacker:
    """Builds ``create.lua`` calls: keys, args, and the command's RESP bytes."""

    __slots__ = ("_keys", "_pieces")

    def __init__(self) -> None:
        self._keys: Keys | None = None
        # (partition, group) -> (its four keys, their RESP encoding, the group's)
        self._pieces: dict[tuple[int, str], tuple[list[str], bytes, bytes]] = {}

    def call(
        self,
        script: Script,
        keys: Keys,
        id: str,
        func: str,
        payload: bytes,
        group: str,
        timeout_ms: int,
        tags: bytes,
        retry: bytes,
    ) -> tuple[list[str], list[Any], bytes]:
        """The keys and args of the create of ``id`` (as ``create.lua`` takes them),
        and its EVALSHA command of ``script`` RESP-encoded."""
        if keys is not self._keys:  # a key layout adopted since: other key names
            self._keys, self._pieces = keys, {}
        k = keys.partition(id)
        pieces = self._pieces.get((k, group))
        if pieces is None:
            pieces = self._cache(keys, k, group)
        shared, shared_resp, group_resp = pieces
        promise = keys.promise_in(k, id)
        pk, ib, fb, tb = promise.encode(), id.encode(), func.encode(), b"%d" % timeout_ms
        packed = _FORMAT % (
            script.head(_NKEYS, _NARGS), len(pk), pk, shared_resp, len(ib), ib, len(fb), fb,
            len(payload), payload, group_resp, len(tb), tb, len(tags), tags,
            len(retry), retry,
        )  # fmt: skip
        return (
            [promise, *shared],
            [id, func, payload, group, timeout_ms, tags, retry],
            packed,
        )

    def _cache(self, keys: Keys, k: int, group: str) -> tuple[list[str], bytes, bytes]:
        if len(self._pieces) >= _MAX_PIECES:
            self._pieces = {}
        shared = [keys.stream(k, group), keys.timeouts(k), keys.index(k, "pending"),
                  keys.counts(k)]  # fmt: skip
        pieces = shared, b"".join(map(bulk, shared)), bulk(group)
        self._pieces[k, group] = pieces
        return pieces
