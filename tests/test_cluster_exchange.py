"""The cluster batch path's node buffers (redpromise/_cluster.py ``_NodeQueue``), on the
session Redis Cluster: exchanges begun together share one buffer per node, one begun
while a buffer is out goes in the next, a lost connection fails every exchange of the
buffer (the replay-safe ones are resent), and a blocking read never holds others up.

What is counted is ``_send_node`` calls (one buffer written to one node), wrapped here;
the replies are checked against what Redis holds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from redis import exceptions as rex
from redis.asyncio.cluster import ClusterNode, RedisCluster

from redpromise import _cluster
from redpromise._wire import exchange
from tests.redis_cluster import RedisCluster as LocalCluster

pytestmark = [pytest.mark.real, pytest.mark.cluster]


@pytest.fixture
async def rc(redis_cluster: LocalCluster) -> AsyncIterator[RedisCluster]:
    client = RedisCluster.from_url(redis_cluster.url)
    await client.initialize()
    yield client
    await client.aclose()


def keys_on_every_master(rc: RedisCluster, namespace: str) -> list[str]:
    """One key per master (hash tags tried until each master has one)."""
    found: dict[str, str] = {}
    i = 0
    while len(found) < len(rc.get_primaries()):
        key = f"{{{namespace}-{i}}}:k"
        node = rc.get_node_from_key(key)
        found.setdefault(node.name, key)
        i += 1
    return list(found.values())


class Sends:
    """``_cluster._send_node`` wrapped: each buffer's node and commands, in order."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[str, list[Any]]] = []
        self.hold: asyncio.Event | None = None
        self.fail: set[str] = set()  # nodes whose next buffer loses its connection
        original = _cluster._send_node

        async def send(node: ClusterNode, commands: Sequence[Sequence[Any]]) -> list[Any]:
            self.calls.append((node.name, [c[0] for c in commands]))
            if self.hold is not None:
                await self.hold.wait()
            if node.name in self.fail:
                self.fail.discard(node.name)
                raise rex.ConnectionError("connection lost (test)")
            return await original(node, commands)

        monkeypatch.setattr(_cluster, "_send_node", send)

    def per_node(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for name, _ in self.calls:
            out[name] = out.get(name, 0) + 1
        return out


async def test_exchanges_begun_together_share_one_buffer_per_node(
    rc: RedisCluster, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = keys_on_every_master(rc, namespace)
    sends = Sends(monkeypatch)
    a, b = await asyncio.gather(
        exchange(rc, [["SET", k, f"a{i}"] for i, k in enumerate(keys)]),
        exchange(rc, [["SET", f"{k}:b", f"b{i}"] for i, k in enumerate(keys)]),
    )
    assert a == [b"OK"] * len(keys) and b == [b"OK"] * len(keys)
    assert sends.per_node() == {rc.get_node_from_key(k).name: 1 for k in keys}
    got = await exchange(rc, [["GET", k] for k in keys] + [["GET", f"{k}:b"] for k in keys])
    assert got == [f"a{i}".encode() for i in range(len(keys))] + [
        f"b{i}".encode() for i in range(len(keys))
    ]


async def test_an_exchange_begun_while_a_buffer_is_out_goes_in_the_next(
    rc: RedisCluster, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = keys_on_every_master(rc, namespace)[0]
    sends = Sends(monkeypatch)
    sends.hold = asyncio.Event()
    first = asyncio.create_task(exchange(rc, [["SET", key, "1"]]))
    while not sends.calls:
        await asyncio.sleep(0.001)
    later = [asyncio.create_task(exchange(rc, [["INCR", key]])) for _ in range(3)]
    await asyncio.sleep(0.05)
    assert len(sends.calls) == 1  # the three wait for the buffer that is out
    sends.hold.set()
    assert await first == [b"OK"]
    assert sorted([(await t)[0] for t in later]) == [2, 3, 4]
    assert [names for _, names in sends.calls] == [["SET"], ["INCR", "INCR", "INCR"]]


async def test_a_lost_connection_fails_the_whole_buffer_and_the_replay_safe_are_resent(
    rc: RedisCluster, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = keys_on_every_master(rc, namespace)[0]
    await rc.set(key, "v")
    sends = Sends(monkeypatch)
    sends.fail.add(rc.get_node_from_key(key).name)
    safe, once = await asyncio.gather(
        exchange(rc, [["GET", key]]), exchange(rc, [["GET", key]], resend=False)
    )
    assert safe == [b"v"]  # resent after the slot map was read again
    assert isinstance(once[0], rex.ConnectionError)  # not resent: the caller decides
    assert [names for _, names in sends.calls] == [["GET", "GET"], ["GET"]]


async def test_a_blocking_read_does_not_hold_up_other_exchanges_to_its_node(
    rc: RedisCluster, namespace: str
) -> None:
    stream = f"{{{namespace}}}:s"
    await rc.xgroup_create(stream, "g", id="0", mkstream=True)
    read = asyncio.create_task(
        exchange(
            rc,
            [["XREADGROUP", "GROUP", "g", "c", "BLOCK", 3000, "STREAMS", stream, ">"]],
            resend=False,
            alone=True,
        )
    )
    await asyncio.sleep(0.1)  # the read is blocked in Redis
    got = await asyncio.wait_for(exchange(rc, [["XLEN", stream]]), 2.0)
    assert got == [0] and not read.done()
    await exchange(rc, [["XADD", stream, "*", "f", "v"]])
    (resp,) = await asyncio.wait_for(read, 2.0)
    assert resp and len(resp[0][1] if isinstance(resp, list) else next(iter(resp.values()))) == 1
