"""The dead-record listing (dashboard, ``redpromise dead list``) pages through the dead
streams, newest first, without ever reading a whole stream."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from redpromise import Redpromise
from redpromise.client.inspect import Inspector
from tests.conftest import fast_settings
from tests.redis_server import RedisServer

MakeRp = Callable[..., Awaitable[Redpromise]]


async def fill(rp: Redpromise, n: int) -> list[str]:
    """``n`` dead records over the partitions (every tenth of group ``rare``), two of them
    with the same entry id in two partitions; their keys, newest first."""
    pipe = rp.redis.pipeline(transaction=False)
    written: list[tuple[int, int, int]] = []
    for i in range(n):
        k = i % rp.keys.partitions
        fields = {"id": f"p{i}", "group": "rare" if i % 10 == 0 else "g", "reason": "test"}
        pipe.xadd(rp.keys.dead(k), fields, id=f"{1000 + i}-0")
        written.append((1000 + i, 0, k))
    for k in range(min(2, rp.keys.partitions)):  # a tie across partitions
        pipe.xadd(rp.keys.dead(k), {"id": f"tie{k}", "group": "g"}, id="9000-0")
        written.append((9000, 0, k))
    await pipe.execute()
    return [f"{k}:{ms}-{seq}" for ms, seq, k in sorted(written, reverse=True)]


async def walk(inspector: Inspector, limit: int, group: str | None = None) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        page = await inspector.dead_listing(limit, group, cursor)
        pages.append([r["key"] for r in page["records"]])
        if (cursor := page["cursor"]) is None:
            return pages


async def test_pages_list_every_dead_record_once_newest_first(make_rp: MakeRp) -> None:
    rp = await make_rp()
    keys = await fill(rp, 250)
    pages = await walk(Inspector(rp), 7)
    assert [k for p in pages for k in p] == keys
    assert all(len(p) == 7 for p in pages[:-1])
    rare = [k for p in await walk(Inspector(rp), 3, group="rare") for k in p]
    assert rare == [
        k for k in keys if (ms := int(k[k.index(":") + 1 : -2])) < 9000 and ms % 10 == 0
    ]


async def test_a_bad_cursor_is_refused(make_rp: MakeRp) -> None:
    rp = await make_rp()
    for bad in ("x", "99:1-0", "0:1", "0:a-b", "-1:1-0"):
        with pytest.raises(ValueError, match="not a dead-record cursor"):
            await Inspector(rp).dead(10, cursor=bad)


@pytest.mark.real
async def test_a_page_never_reads_a_whole_dead_stream(
    own_redis_server: RedisServer, namespace: str
) -> None:
    rp = Redpromise(own_redis_server.url, settings=fast_settings(namespace, partitions=1))
    try:
        await fill(rp, 3000)
        # The server's own log of every command with its arguments (a private server).
        await rp.redis.config_set("slowlog-log-slower-than", 0)
        await rp.redis.config_set("slowlog-max-len", 10000)
        await rp.redis.slowlog_reset()
        page = await Inspector(rp).dead_listing(5, group="absent")
        first = await Inspector(rp).dead_listing(5)
        log = await rp.redis.slowlog_get(10000)
        reads = [
            [a.decode() if isinstance(a, bytes) else str(a) for a in e["command"].split()]
            for e in log
            if e["command"].upper().startswith(b"XREVRANGE")
        ]
        assert reads and all(r[-2].upper() == "COUNT" and int(r[-1]) <= 100 for r in reads)
        # A filter that matches nothing: a short page, with a cursor to go on from.
        assert page["records"] == [] and page["cursor"] is not None
        assert len(first["records"]) == 5
    finally:
        await rp.stop()
