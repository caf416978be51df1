"""The redis-py internals redpromise relies on (redpromise/redis/redispy.py), one test each.

Each test checks, on the installed redis-py, that the internal its accessor reads still
exists and behaves as the accessor says; a redis-py release that changed it fails here,
naming the accessor, before anything subtler fails elsewhere. Where the accessor has a
fallback, a second test proves the fallback: redpromise still answers without it.
``scripts/compat`` runs this file against the lowest and the newest redis-py allowed.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import AsyncIterator
from typing import Any

import hiredis
import pytest
from redis.asyncio import Redis
from redis.asyncio import RedisCluster as ClusterClient
from redis.crc import key_slot
from redis.exceptions import ResponseError, SlotNotCoveredError

from redpromise.redis import redispy as _redispy
from redpromise.redis import wire as _wire
from redpromise.redis.batch import send_batch
from redpromise.redis.connect import connect
from redpromise.redis.wire import pack
from tests.helpers import assert_eventually
from tests.redis_cluster import RedisCluster

CHANGED = "redis-py changed an internal redpromise relies on: redpromise.redis.redispy."


@pytest.fixture
async def conn(real_url: str) -> AsyncIterator[Any]:
    """A connected RESP2 connection of redis-py's own (hiredis parser)."""
    client = Redis.from_url(real_url, protocol=2)
    c = client.connection_pool.make_connection()
    await c.connect()
    try:
        yield c
    finally:
        await c.disconnect()
        await client.aclose()


async def _next_buffered(c: Any, take: Any) -> Any:
    while (reply := take()) is _redispy.NOT_ENOUGH_DATA:
        await _redispy.read_more(c)
    return reply


# ---------------------------------------------------------------- the hiredis parser


@pytest.mark.real
async def test_buffered_replies_takes_whole_replies_from_redis_pys_hiredis_parser(
    conn: Any,
) -> None:
    take = _redispy.buffered_replies(conn)
    assert take is not None, CHANGED + "buffered_replies (conn._parser / its _reader)"
    assert take() is _redispy.NOT_ENOUGH_DATA, CHANGED + "NOT_ENOUGH_DATA"
    await conn.send_packed_command(pack([["ECHO", "a"], ["NOSUCHCOMMAND"], ["ECHO", "b"]]))
    assert await _next_buffered(conn, take) == b"a", CHANGED + "buffered_replies"
    assert isinstance(await _next_buffered(conn, take), ResponseError), CHANGED + "buffered"
    assert await _next_buffered(conn, take) == b"b", CHANGED + "buffered_replies"
    await conn.disconnect()
    assert take() is _redispy.NOT_ENOUGH_DATA, CHANGED + "buffered_replies (parser._connected)"


@pytest.mark.real
async def test_buffered_replies_off_on_resp3_unless_pushes_are_told_apart(real_url: str) -> None:
    client = Redis.from_url(real_url, protocol=3)
    c = client.connection_pool.make_connection()
    await c.connect()
    try:
        parser_handles_pushes = hasattr(c._parser, "handle_push_response")
        if parser_handles_pushes and hasattr(hiredis, "PushNotification"):
            # A redis-py whose hiredis parser handles pushes records hiredis' push type.
            assert _redispy.push_type(c) is hiredis.PushNotification, CHANGED + "push_type"
            assert _redispy.buffered_replies(c) is not None, CHANGED + "buffered_replies"
        else:
            assert _redispy.push_type(c) is None
            assert _redispy.buffered_replies(c) is None  # a push would look like a reply
    finally:
        await c.disconnect()
        await client.aclose()


@pytest.mark.real
async def test_handle_push_hands_a_resp3_push_to_the_connections_handler(real_url: str) -> None:
    client = Redis.from_url(real_url, protocol=3)
    c = client.connection_pool.make_connection()
    await c.connect()
    try:
        push = _redispy.push_type(c)
        if push is None:
            pytest.skip("this redis-py's hiredis parser does not tell pushes apart")
        got: list[Any] = []

        async def heard(message: Any) -> None:
            got.append(message)

        c._parser.set_pubsub_push_handler(heard)
        await c.send_command("SUBSCRIBE", "redispy-test-channel")
        take = _redispy.buffered_replies(c)
        assert take is not None
        reply = await _next_buffered(c, take)
        assert isinstance(reply, push), CHANGED + "push_type"
        await _redispy.handle_push(c, reply)
        assert got and got[0][0] in (b"subscribe", "subscribe"), CHANGED + "handle_push"
    finally:
        await c.disconnect()
        await client.aclose()


@pytest.mark.real
async def test_batches_are_answered_without_any_buffered_reader(
    real_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fallback of buffered_replies/push_type/NOT_ENOUGH_DATA: read_response only."""
    monkeypatch.setattr(_redispy, "buffered_replies", lambda c: None)
    monkeypatch.setattr(_redispy, "push_type", lambda c: None)
    client = connect(real_url)
    try:
        got = await send_batch(client, [["ECHO", "x"], ["NOSUCHCOMMAND"], ["ECHO", "y"]])
        assert got[0] == b"x" and isinstance(got[1], ResponseError) and got[2] == b"y"
    finally:
        await client.aclose()


@pytest.mark.real
async def test_mark_used_postpones_the_connections_health_check(real_url: str) -> None:
    client = Redis.from_url(real_url, health_check_interval=15)
    c = client.connection_pool.make_connection()
    try:
        assert hasattr(c, "next_health_check"), CHANGED + "mark_used (next_health_check)"
        before = asyncio.get_running_loop().time()
        _redispy.mark_used(c)
        assert c.next_health_check >= before + 15, CHANGED + "mark_used"
    finally:
        await client.aclose()


def test_mark_used_does_nothing_without_a_health_check_attribute() -> None:
    class Bare:
        health_check_interval = 15

    _redispy.mark_used(Bare())  # the fallback: no error, nothing set
    assert not hasattr(Bare(), "next_health_check")


# ---------------------------------------------------------------- pools


@pytest.mark.real
async def test_checkout_takes_a_connection_without_a_command_name_or_warning(
    real_url: str,
) -> None:
    client = connect(real_url)
    pool = client.connection_pool
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # redis-py deprecated the command name
            c = await _redispy.checkout(pool)
        assert c.is_connected, CHANGED + "checkout"
        await pool.release(c)
    finally:
        await client.aclose()


@pytest.mark.real
async def test_in_use_is_the_pools_current_set_of_checked_out_connections(real_url: str) -> None:
    client = connect(real_url)
    pool = client.connection_pool
    try:
        c = await _redispy.checkout(pool)
        in_use = _redispy.in_use(pool)
        assert in_use is not None, CHANGED + "in_use (pool._in_use_connections)"
        assert c in in_use, CHANGED + "in_use"
        await pool.release(c)
        assert c not in (_redispy.in_use(pool) or ()), CHANGED + "in_use"
        c = await _redispy.checkout(pool)
        await pool.disconnect(inuse_connections=False)
        pool.reset()
        assert c not in (_redispy.in_use(pool) or ()), CHANGED + "in_use (after reset())"
        await c.disconnect()
    finally:
        await client.aclose()


@pytest.mark.real
async def test_without_an_in_use_set_no_connection_is_kept(
    real_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fallback of in_use: every batch checks a connection out and back."""
    monkeypatch.setattr(_redispy, "in_use", lambda pool: None)
    client = connect(real_url)
    try:
        for i in range(3):
            assert await send_batch(client, [["ECHO", str(i)]]) == [str(i).encode()]
        assert _wire._kept_connections(client.connection_pool) is None
    finally:
        await client.aclose()


@pytest.mark.real
async def test_stale_tells_a_connection_redis_closed_before_the_loop_read_it(
    own_redis_server: Any,
) -> None:
    import redis as sync_redis

    client = Redis.from_url(own_redis_server.url)
    admin = sync_redis.Redis.from_url(own_redis_server.url)
    c = client.connection_pool.make_connection()
    await c.connect()
    try:
        assert not _redispy.stale(c), CHANGED + "stale"
        admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        assert _redispy.stale(c), CHANGED + "stale (conn._writer's socket)"
        await assert_eventually(lambda: c._reader.at_eof())
        assert _redispy.stale(c), CHANGED + "stale (conn._reader.at_eof())"
        await c.disconnect()
        assert _redispy.stale(c), CHANGED + "stale (is_connected)"
    finally:
        await c.disconnect()
        await client.aclose()
        admin.close()


def test_a_connection_not_laid_out_as_expected_is_stale() -> None:
    """The fallback of stale: given back to the pool, whose checkout checks it."""

    class Other:
        is_connected = True

    assert _redispy.stale(Other())


def test_connection_recipe_is_what_the_pool_makes_connections_with() -> None:
    client = Redis.from_url("redis://127.0.0.1:1/0?socket_timeout=7", protocol=2)
    cls, kwargs = _redispy.connection_recipe(client.connection_pool)
    made = cls(**kwargs)
    assert (made.host, made.port, made.socket_timeout) == ("127.0.0.1", 1, 7.0), (
        CHANGED + "connection_recipe"
    )


def test_connection_recipe_names_itself_when_redis_py_changed() -> None:
    with pytest.raises(_redispy.RedisInternalsChanged, match="connection_recipe"):
        _redispy.connection_recipe(object())


# ---------------------------------------------------------------- the cluster topology


@pytest.fixture
async def rc(redis_cluster: RedisCluster) -> AsyncIterator[ClusterClient]:
    client = ClusterClient.from_url(redis_cluster.url)
    await client.initialize()
    try:
        yield client
    finally:
        await client.aclose()


@pytest.mark.real
@pytest.mark.cluster
async def test_node_for_slot_is_the_primary_serving_it(
    rc: ClusterClient, redis_cluster: RedisCluster
) -> None:
    slot = key_slot(b"{redispy}")
    node = _redispy.node_for_slot(rc, slot)
    assert node.port == redis_cluster.master_of(slot).port, CHANGED + "node_for_slot"
    rc.nodes_manager.slots_cache.pop(slot)  # what an uncovered slot looks like
    with pytest.raises(SlotNotCoveredError):
        _redispy.node_for_slot(rc, slot)


@pytest.mark.real
@pytest.mark.cluster
async def test_node_at_adds_a_node_the_map_does_not_know(rc: ClusterClient) -> None:
    known = _redispy.node_for_slot(rc, 0)
    assert _redispy.node_at(rc, known.host, known.port) is known, CHANGED + "node_at"
    new = _redispy.node_at(rc, "127.0.0.1", 1)
    assert rc.get_node(host="127.0.0.1", port=1) is new, CHANGED + "node_at (nodes_cache)"
    assert new.connection_kwargs.get("socket_timeout") == known.connection_kwargs.get(
        "socket_timeout"
    ), CHANGED + "node_at (connection_kwargs)"


@pytest.mark.real
@pytest.mark.cluster
async def test_reread_slots_rebuilds_the_slot_map(rc: ClusterClient) -> None:
    slot = key_slot(b"{redispy}")
    before = _redispy.node_for_slot(rc, slot)
    rc.nodes_manager.slots_cache.clear()  # what a stale map looks like at its worst
    await _redispy.reread_slots(rc)
    assert _redispy.node_for_slot(rc, slot).name == before.name, CHANGED + "reread_slots"


@pytest.mark.real
@pytest.mark.cluster
async def test_acquire_and_release_a_nodes_connection(rc: ClusterClient) -> None:
    node = _redispy.node_for_slot(rc, 0)
    c = _redispy.acquire(node)
    try:
        await c.send_packed_command(pack([["PING"]]))
        assert await c.read_response() in (b"PONG", "PONG", True), CHANGED + "acquire"
    finally:
        _redispy.release(node, c)
    assert _redispy.acquire(node) is c, CHANGED + "release (the node's free connections)"
    _redispy.release(node, c)


@pytest.mark.real
@pytest.mark.cluster
async def test_release_without_cluster_node_release_puts_it_back_on_the_free_queue(
    rc: ClusterClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fallback of release (redis-py before ClusterNode.release)."""
    from redis.asyncio.cluster import ClusterNode

    if hasattr(ClusterNode, "release"):
        monkeypatch.delattr(ClusterNode, "release")
    node = _redispy.node_for_slot(rc, 0)
    c = _redispy.acquire(node)
    _redispy.release(node, c)
    assert _redispy.acquire(node) is c, CHANGED + "release (ClusterNode._free)"
    _redispy.release(node, c)


def test_cluster_accessors_name_themselves_when_redis_py_changed() -> None:
    with pytest.raises(_redispy.RedisInternalsChanged, match="nodes_manager"):
        _redispy.node_for_slot(object(), 0)  # type: ignore[arg-type]
