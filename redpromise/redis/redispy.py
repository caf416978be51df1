"""Everything redpromise takes from redis-py beyond its documented API, in one place.

redpromise sends its batches on redis-py's own connections (see :mod:`._wire`) and routes
them through redis-py's cluster topology (see :mod:`._cluster`). Doing so fast needs a few
of redis-py's internals: private attributes, an internal module, undocumented methods.
This module is the only one in redpromise that touches them; every accessor says what it
reads, why, and what redpromise does when a redis-py release no longer has it: the
hot-path ones fall back to redis-py's public (slower) path, the others raise a clear
:class:`RedisInternalsChanged`. ``tests/test_redispy.py`` has a test per accessor that
fails, naming the accessor, on a redis-py whose internals no longer fit
(``scripts/compat`` runs it against the lowest and the newest redis-py allowed).
"""

from __future__ import annotations

import asyncio
import select
from collections.abc import Callable, Collection
from typing import Any

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import SlotNotCoveredError

try:  # what redis-py's hiredis parser has its reader return for "no whole reply yet"
    from redis._parsers.hiredis import NOT_ENOUGH_DATA as _NOT_ENOUGH_DATA
except ImportError:  # pragma: no cover - another redis-py layout: read_response only
    _NOT_ENOUGH_DATA = None

__all__ = [
    "NOT_ENOUGH_DATA",
    "RedisInternalsChanged",
    "acquire",
    "buffered_replies",
    "checkout",
    "connection_recipe",
    "handle_push",
    "in_use",
    "mark_used",
    "node_at",
    "node_for_slot",
    "push_type",
    "read_more",
    "release",
    "reread_slots",
    "stale",
]

NOT_ENOUGH_DATA: Any = object() if _NOT_ENOUGH_DATA is None else _NOT_ENOUGH_DATA
"""What a :func:`buffered_replies` function returns when no whole reply is buffered:
``redis._parsers.hiredis.NOT_ENOUGH_DATA`` (the marker redis-py's parser gives hiredis),
or a marker of our own where that module has none (no buffered replies are then taken)."""


class RedisInternalsChanged(RuntimeError):
    """The installed redis-py no longer has an internal that redpromise needs and has no
    fallback for: redpromise does not support that redis-py release (yet)."""


# ---------------------------------------------------------------- pools


async def checkout(pool: Any) -> Any:
    """A connected connection from ``pool`` (``ConnectionPool.get_connection()``).

    Without a command name: the name is optional since redis-py 5.3 and deprecated since
    (a warning per call); before 6.0 ``redis.asyncio`` still required it, which is why
    redpromise needs redis-py >= 6.
    """
    return await pool.get_connection()


def in_use(pool: Any) -> Collection[Any] | None:
    """The pool's set of checked-out connections (``pool._in_use_connections``), read
    afresh on every call: ``ConnectionPool.reset()`` replaces the set, and a connection
    in the old one is no longer the pool's to take back.

    ``None`` when the pool has no such set (another pool class, another redis-py
    layout): :mod:`._wire` then keeps no connection between batches, and every batch
    checks one out of the pool and back as redis-py's own commands do.
    """
    got = getattr(pool, "_in_use_connections", None)
    return got if isinstance(got, Collection) else None


def stale(conn: Any) -> bool:
    """Whether a connection kept idle (checked out, nothing written, nothing expected)
    must not be written to: not connected, or its socket has something to read (the
    server closed it, or sent something unasked).

    Reads ``conn._reader`` (the ``asyncio.StreamReader``, which knows an end of stream
    once the event loop read it) and polls the socket of ``conn._writer`` itself (the
    loop may not have read it yet: a server that closed the connection a moment ago).
    Where either is not laid out as expected the connection counts as stale: the pool's
    checkout, which checks and reconnects, then hands out a connection instead.
    """
    reader = getattr(conn, "_reader", None)
    writer = getattr(conn, "_writer", None)
    if reader is None or writer is None or not conn.is_connected:
        return True
    try:
        if reader.at_eof():
            return True
        transport = writer.transport
    except AttributeError:
        return True
    return _readable(transport)


def _readable(transport: Any) -> bool:
    sock = transport.get_extra_info("socket")
    if sock is None or not hasattr(select, "poll"):
        return False  # no socket to poll (a test double, Windows): at_eof() only
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN | select.POLLPRI)
    return bool(poller.poll(0))


# ---------------------------------------------------------------- the hiredis parser


def buffered_replies(conn: Any) -> Callable[[], Any] | None:
    """A function returning the next reply already whole in ``conn``'s parser buffer,
    raw as hiredis gives it (an error reply as the exception object, a lost connection
    as redis-py's ``ConnectionError`` object or a list starting with one), or
    :data:`NOT_ENOUGH_DATA` when there is none or the connection was disconnected.

    Reads ``conn._parser`` (redis-py's ``_AsyncHiredisParser``), its ``_reader`` (the
    ``hiredis.Reader`` it feeds from the socket) and its ``_connected`` (false after
    ``on_disconnect``: its buffer is then stale). ``read_response`` costs several µs
    per reply around the same reader; a batch's replies mostly arrive together.

    ``None`` (callers then use ``read_response`` for every reply) for any other parser,
    for a parser not laid out as expected, and on RESP3 when :func:`push_type` is
    ``None``: a push would look like a reply.
    """
    parser: Any = getattr(conn, "_parser", None)
    if (
        _NOT_ENOUGH_DATA is None
        or type(parser).__name__ != "_AsyncHiredisParser"
        or not hasattr(parser, "_connected")
    ):
        return None
    if push_type(conn) is None and str(getattr(conn, "protocol", 2)) not in ("2", "None"):
        return None
    reader: Any = getattr(parser, "_reader", None)
    if not hasattr(reader, "gets"):
        return None
    gets = reader.gets

    def take() -> Any:
        if not parser._connected:
            return NOT_ENOUGH_DATA
        return gets()

    return take


def push_type(conn: Any) -> type | None:
    """The type hiredis gives RESP3 push messages, as redis-py's parser of ``conn``
    recorded it (``parser._hiredis_PushNotificationType``: ``hiredis.PushNotification``
    with hiredis >= 3.2 and a redis-py whose parser handles pushes), or ``None``."""
    got = getattr(getattr(conn, "_parser", None), "_hiredis_PushNotificationType", None)
    return got if isinstance(got, type) else None


async def handle_push(conn: Any, reply: Any) -> None:
    """Hand a RESP3 push taken from the buffer to what ``read_response`` would hand it
    to (``parser.handle_push_response``); only called for a reply of :func:`push_type`,
    which redis-py records only where its parser has that method."""
    await conn._parser.handle_push_response(reply)


async def read_more(conn: Any) -> None:
    """Read what the socket has into the parser's buffer (``parser.read_from_socket``);
    for a test that takes buffered replies and found none yet."""
    await conn._parser.read_from_socket()


def mark_used(conn: Any) -> None:
    """Postpone ``conn``'s next health check, as ``read_response`` does after each reply
    (``conn.next_health_check``): replies taken from the buffer skip it. Nothing is
    done where the attribute is absent (a health check comes sooner: harmless)."""
    interval = getattr(conn, "health_check_interval", 0)
    if interval and hasattr(conn, "next_health_check"):
        conn.next_health_check = asyncio.get_running_loop().time() + interval


def connection_recipe(source: Any) -> tuple[Any, dict[str, Any]]:
    """The class and keyword arguments ``source`` (a client's pool, or a cluster node)
    makes its connections with (``connection_class``, ``connection_kwargs``): for a
    connection of redpromise's own with the same address, TLS, ACL user and timeouts."""
    try:
        return source.connection_class, dict(source.connection_kwargs)
    except AttributeError as exc:
        raise RedisInternalsChanged(
            f"redis-py's {type(source).__name__} has no connection_class/connection_kwargs"
            " (redpromise.redis.redispy.connection_recipe)"
        ) from exc


# ---------------------------------------------------------------- the cluster topology


def _nodes(rc: RedisCluster) -> Any:
    try:
        return rc.nodes_manager
    except AttributeError as exc:
        raise RedisInternalsChanged(
            "redis-py's RedisCluster has no nodes_manager (redpromise.redis.redispy)"
        ) from exc


def node_for_slot(rc: RedisCluster, slot: int) -> ClusterNode:
    """The primary serving ``slot`` in ``rc``'s slot map
    (``rc.nodes_manager.get_node_from_slot``); raises redis-py's ``SlotNotCoveredError``
    for a slot no node serves (redis-py 6.0 raised a ``KeyError``: turned into that)."""
    try:
        node: ClusterNode = _nodes(rc).get_node_from_slot(slot)
    except KeyError as exc:
        raise SlotNotCoveredError(f"slot {slot} is not covered by the cluster") from exc
    return node


def node_at(rc: RedisCluster, host: str, port: int) -> ClusterNode:
    """The node at ``host:port``, added to ``rc``'s nodes when a redirection names one it
    does not know yet (``nodes_manager.connection_kwargs``, ``nodes_manager.nodes_cache``),
    as redis-py does for its own redirections."""
    node = rc.get_node(host=host, port=port)
    if node is None:
        manager = _nodes(rc)
        node = ClusterNode(host, port, **manager.connection_kwargs)
        manager.nodes_cache[node.name] = node
    return node


async def reread_slots(rc: RedisCluster) -> None:
    """Read the slot map again from the nodes (``nodes_manager.initialize()``); what
    redis-py's own commands do after a redirection or a lost node."""
    await _nodes(rc).initialize()


def acquire(node: ClusterNode) -> Any:
    """A connection of ``node``'s own pool (``ClusterNode.acquire_connection``: not
    connected yet; its first write connects it); give it back with :func:`release`."""
    return node.acquire_connection()


def release(node: ClusterNode, conn: Any) -> None:
    """Give a connection from :func:`acquire` back to ``node`` (``ClusterNode.release``;
    where redis-py has none, 6.0 to 6.x, what its own commands did: put it back on the
    node's ``_free`` queue)."""
    give = getattr(node, "release", None)
    if give is not None:
        give(conn)
        return
    free = getattr(node, "_free", None)
    if free is None:
        raise RedisInternalsChanged(
            "redis-py's ClusterNode has neither release() nor _free "
            "(redpromise.redis.redispy.release)"
        )
    free.append(conn)
