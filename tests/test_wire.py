"""Batches sent as one pre-packed buffer: encoding, error replies in place, replay."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import DataError, NoScriptError, ResponseError

from redpromise.redis import redispy as _redispy
from redpromise.redis.batch import send_batch
from redpromise.redis.connect import connect
from redpromise.redis.wire import pack
from tests.helpers import CuttingProxy, assert_eventually
from tests.redis_server import RedisServer


def test_batch_is_packed_as_resp_arrays_of_bulk_strings() -> None:
    assert pack([["SET", "k", 1], ["GET", "é"]]) == (
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n1\r\n*2\r\n$3\r\nGET\r\n$2\r\n\xc3\xa9\r\n"
    )


@pytest.mark.parametrize("bad", [None, True, [1], {"a": 1}])
def test_unsupported_argument_types_are_refused(bad: object) -> None:
    with pytest.raises(DataError):
        pack([["SET", "k", bad]])


async def test_replies_come_back_in_order_with_errors_in_their_slots(
    redis: Redis, namespace: str
) -> None:
    key = f"{namespace}:w"
    out = await send_batch(
        redis,
        [
            ["SET", key, "v"],
            ["EVALSHA", "0" * 40, 0],
            ["HGET", key, "f"],  # wrong type
            ["GET", key],
        ],
    )
    assert out[0] in (b"OK", "OK", True)
    assert isinstance(out[1], NoScriptError)
    assert isinstance(out[2], ResponseError) and "WRONGTYPE" in str(out[2])
    assert out[3] == b"v"


async def test_connection_is_reusable_after_a_batch_with_errors(
    redis: Redis, namespace: str
) -> None:
    key = f"{namespace}:c"
    for i in range(3):
        out = await send_batch(redis, [["INCR", key], ["NOSUCHCOMMAND"], ["GET", key]])
        assert out[0] == i + 1
        assert isinstance(out[1], ResponseError)
        assert out[2] == str(i + 1).encode()


@pytest.mark.real
async def test_a_batch_on_a_pooled_connection_killed_while_idle_is_answered(
    own_redis_server: RedisServer,
) -> None:
    """As after a Redis restart: the pool's idle connection is dead. Whether the pool's
    checkout notices it or the batch fails on it and ``_send`` retries depends on
    redis-py's version (8.1 with hiredis does not notice); the test below forces the
    retry path."""
    client = connect(own_redis_server.url)
    admin = Redis.from_url(own_redis_server.url)
    try:
        await send_batch(client, [["SET", "r", "1"]])  # a pooled connection now exists
        killed = await admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        assert killed >= 1
        out = await send_batch(client, [["INCR", "r"], ["GET", "r"]])
        assert out == [2, b"2"]
    finally:
        await client.aclose()
        await admin.aclose()


@pytest.mark.real
@pytest.mark.parametrize(
    ("after_reply", "runs"),
    [
        pytest.param(False, 1, id="cut-before-redis-read-the-batch"),
        pytest.param(True, 2, id="cut-after-redis-ran-the-batch"),
    ],
)
async def test_a_batch_whose_connection_is_cut_mid_exchange_is_resent_and_answered(
    redis_server: RedisServer, namespace: str, after_reply: bool, runs: int
) -> None:
    """The connection carrying the batch dies after it was written: ``_send`` reconnects
    and sends the same batch again (the client's ``Retry``), and returns the new replies.

    Cut after Redis ran the batch, the INCR runs twice: the first run landed, its reply
    was lost, and the resend's reply is the one returned.
    """
    proxy = CuttingProxy("127.0.0.1", redis_server.port)
    client = connect(await proxy.start())  # redpromise's own client: pool + Retry
    key = f"{namespace}:resend-me"
    try:
        assert await send_batch(client, [["SET", key, 0]]) in ([b"OK"], [True])
        assert proxy.accepted == 1
        proxy.cut(key.encode(), after_reply=after_reply)
        out = await send_batch(client, [["INCR", key], ["GET", key]])
        assert proxy.cuts == 1  # the batch's own connection was cut under it…
        assert proxy.accepted == 2  # …and the batch went again on a new one
        assert out == [runs, str(runs).encode()]
    finally:
        await client.aclose()
        await proxy.close()


@pytest.mark.real
@pytest.mark.parametrize("protocol", [2, 3])
async def test_replies_split_over_many_socket_reads_come_back_whole_and_in_order(
    real_url: str, namespace: str, protocol: int
) -> None:
    """Replies are taken straight from the parser's buffer while it holds them whole, and
    read from the socket otherwise: a batch whose replies span many reads (large values,
    error replies between them) comes back exactly as sent, on RESP2 and RESP3."""
    client = Redis.from_url(real_url, protocol=protocol)
    try:
        big = b"x" * 100_000  # larger than a socket read: replies arrive in pieces
        key = f"{namespace}:big"
        await client.set(key, big)
        commands: list[list[object]] = []
        for i in range(60):
            commands += [["GET", key], ["INCR", f"{namespace}:n"], ["HGET", key, "f"]]
            commands.append(["ECHO", str(i)])
        out = await send_batch(client, commands)
        assert len(out) == len(commands)
        for i in range(60):
            got, n, wrong, echo = out[4 * i : 4 * i + 4]
            assert got == big
            assert n == i + 1
            assert isinstance(wrong, ResponseError) and "WRONGTYPE" in str(wrong)
            assert echo == str(i).encode()
        # The connection is left clean: the next batch's replies are its own.
        assert await send_batch(client, [["ECHO", "after"]]) == [b"after"]
    finally:
        await client.aclose()


@pytest.mark.real
async def test_a_connection_closed_under_a_batch_is_a_connection_error(real_url: str) -> None:
    """redis-py's cluster client disconnects every connection of a node it drops from its
    topology, one in use included: the batch's write then meets a writer set to None. That
    must reach the caller as a lost connection (retried, logged), never as the
    AttributeError that stopped a worker in a failover."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    from redpromise.redis.wire import roundtrip

    client = Redis.from_url(real_url)
    conn = client.connection_pool.make_connection()
    await conn.connect()
    try:
        batch = asyncio.create_task(roundtrip(conn, pack([["PING"]]), 1))
        # Runs while the batch's write waits its turn (what ClusterNode's
        # disconnect_connections does to a connection in use).
        closing = asyncio.create_task(conn.disconnect(nowait=True))
        # The type is the contract (a lost connection, retried and logged); the words are
        # redis-py's or ours depending on which of its layers notices first.
        with pytest.raises(RedisConnectionError):
            await batch
        await closing
    finally:
        await conn.disconnect()
        await client.aclose()


@pytest.mark.real
async def test_replies_whole_in_the_buffer_are_taken_in_order_and_errors_raised(
    real_url: str,
) -> None:
    """What the completion listener reads a burst of messages with: after one
    read_response, the rest of the burst straight from the parser's buffer."""
    from redpromise.redis.wire import NOTHING_BUFFERED, buffered

    client = Redis.from_url(real_url, protocol=2)
    conn = client.connection_pool.make_connection()
    await conn.connect()
    try:
        take = buffered(conn)
        assert take is not None
        await conn.send_packed_command(
            pack([["ECHO", "a"], ["ECHO", "é"], ["NOSUCHCOMMAND"], ["ECHO", "b"]])
        )
        assert await conn.read_response() == b"a"

        async def next_reply() -> object:
            while (reply := take()) is NOTHING_BUFFERED:
                await _redispy.read_more(conn)  # the rest of the burst, if split
            return reply

        assert await next_reply() == "é".encode()
        with pytest.raises(ResponseError) as refused:  # NOSUCHCOMMAND's error reply
            await next_reply()
        assert type(refused.value) is ResponseError  # redis-py's type for a plain error
        assert await next_reply() == b"b"
        assert take() is NOTHING_BUFFERED
    finally:
        await conn.disconnect()
        await client.aclose()


def _count_checkouts(client: Redis) -> list[int]:
    pool = client.connection_pool
    checkouts = [0]
    get = pool.get_connection

    async def counted(*args: object, **kwargs: object) -> object:
        checkouts[0] += 1
        return await get(*args, **kwargs)

    pool.get_connection = counted  # type: ignore[method-assign]
    return checkouts


@pytest.mark.real
async def test_batches_in_a_row_reuse_one_kept_connection_given_back_when_idle(
    real_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checking a connection out of redis-py's pool and back costs more than a small
    batch: one that served a batch in full serves the next, until batches stop."""
    from redpromise.redis import wire as _wire

    monkeypatch.setattr(_wire, "_KEEP_IDLE", 0.1)
    client = connect(real_url)
    checkouts = _count_checkouts(client)
    try:
        for i in range(5):
            assert await send_batch(client, [["ECHO", str(i)]]) == [str(i).encode()]
        assert checkouts == [1]
        pool: Any = client.connection_pool
        assert len(_redispy.in_use(pool) or ()) == 1
        await assert_eventually(lambda: len(_redispy.in_use(pool) or ()) == 0)
        assert await send_batch(client, [["ECHO", "again"]]) == [b"again"]
        assert checkouts == [2]
    finally:
        await client.aclose()


@pytest.mark.real
async def test_a_kept_connection_the_server_closed_is_not_written_to(
    own_redis_server: RedisServer,
) -> None:
    """Without any retry left, a batch right after Redis closed the kept connection (a
    timeout, a restart) still goes through: the pool's checkout reconnects instead.

    Right after: Redis closes it through a blocking client, so the event loop has not
    run since and has not read the end of the stream (what a busy worker meets); the
    batch must not rely on the loop having noticed."""
    import redis as sync_redis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    client = Redis.from_url(own_redis_server.url, retry=Retry(NoBackoff(), 0))
    admin = sync_redis.Redis.from_url(own_redis_server.url)
    try:
        await send_batch(client, [["SET", "r", "1"]])
        kept: Any = client.connection_pool._redpromise_kept  # type: ignore[attr-defined]
        assert len(kept.conns) == 1
        # No await between the kill and the batch: nothing of the loop runs in between.
        killed = admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        assert killed == 1
        assert await send_batch(client, [["INCR", "r"], ["GET", "r"]]) == [2, b"2"]
    finally:
        await client.aclose()
        admin.close()


@pytest.mark.real
async def test_kept_connections_survive_pool_reset_and_disconnect_unshared_and_unleaked(
    own_redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """redis-py's ``ConnectionPool.reset()`` forgets every connection (a new set of those
    in use) and ``disconnect()`` closes them, kept ones included, between batches or
    under one: batches go on answered each with its own replies, no connection serves
    two batches at once, and none stays open once the client is closed."""
    from redpromise.redis import wire as _wire

    monkeypatch.setattr(_wire, "_KEEP_IDLE", 0.05)
    client = connect(own_redis_server.url)
    admin = Redis.from_url(own_redis_server.url)
    pool: Any = client.connection_pool

    async def burst(tag: str) -> None:
        # Concurrent batches: a connection shared by two would mix their replies.
        got = await asyncio.gather(
            *(send_batch(client, [["ECHO", f"{tag}{i}"], ["ECHO", f"{tag}{i}+"]]) for i in range(8))
        )
        assert got == [[f"{tag}{i}".encode(), f"{tag}{i}+".encode()] for i in range(8)]

    async def blocking() -> bool:
        return any(c.get("cmd") == "blpop" for c in await admin.client_list(_type="normal"))

    async def all_closed() -> bool:  # no connection to Redis but admin's
        return len(await admin.client_list(_type="normal")) == 1

    try:
        await burst("a")
        assert pool._redpromise_kept.conns, "nothing kept: the test would prove nothing"
        # reset() forgets the pool's idle connections without closing them: closed first.
        await pool.disconnect(inuse_connections=False)
        pool.reset()
        await burst("b")
        await burst("c")
        await pool.disconnect()
        await burst("d")
        # A reset while a batch is in flight: its connection is no longer the pool's.
        blocked = asyncio.create_task(send_batch(client, [["BLPOP", "q", 0]]))
        await assert_eventually(blocking, message="the batch never reached Redis")
        await pool.disconnect(inuse_connections=False)
        pool.reset()
        await admin.lpush("q", "x")
        assert await blocked == [[b"q", b"x"]]
        await burst("e")
        await assert_eventually(lambda: not pool._redpromise_kept.conns)
        await client.aclose()
        await assert_eventually(all_closed, message="a connection was left open")
    finally:
        await client.aclose()
        await admin.aclose()


@pytest.mark.real
async def test_a_small_pool_keeps_no_connection_between_batches(real_url: str) -> None:
    client = Redis.from_url(real_url, max_connections=4)
    checkouts = _count_checkouts(client)
    try:
        for _ in range(3):
            await send_batch(client, [["PING"]])
        assert checkouts == [3]
        assert len(_redispy.in_use(client.connection_pool) or ()) == 0
    finally:
        await client.aclose()
