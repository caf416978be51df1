"""Redis Cluster: detecting it, and sending redpromise's batches node by node.

Every redpromise key and script touches one slot (the partition's hash tag), so a batch
of commands splits cleanly by node: :func:`send_to_cluster` packs one buffer per node,
sends them concurrently, and puts the replies back in order. A reply that says the
command did not run where it was sent (``MOVED``, ``ASK``, ``TRYAGAIN``, ``CLUSTERDOWN``)
and, for replay-safe batches, a lost connection, refresh the slot map and send those
commands again (a few times, with backoff); what still fails comes back in its slot as
the error, as on a single node.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from redis import exceptions as rex
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot

from redpromise.core.backoff import Backoff
from redpromise.redis import redispy as _redispy
from redpromise.redis.wire import Ack, AnyRedis, pack, roundtrip, with_wait

__all__ = [
    "channels_by_node",
    "cluster_enabled",
    "command_key",
    "connect_cluster",
    "refresh_slots",
    "send_to_cluster",
]

log = logging.getLogger("redpromise")

_ATTEMPTS = 4  # sends of one command before its error is returned
_REFRESH_TIMEOUT = 5.0  # seconds one reading of the slot map may take
# Replies meaning "not run here": always safe to send again elsewhere.
_REROUTE = (rex.AskError, rex.TryAgainError, rex.ClusterDownError)  # MovedError is an AskError


async def cluster_enabled(redis: AnyRedis) -> bool:
    """Whether the server behind ``redis`` runs in cluster mode (``cluster_enabled:1``)."""
    info = await redis.info("cluster")
    return bool(int(info.get("cluster_enabled", 0) or 0))


def connect_cluster(url: str, **kwargs: Any) -> RedisCluster:
    """A cluster client from the URL of any one node (TLS, ACL user and timeouts kept)."""
    return RedisCluster.from_url(url, **kwargs)


def command_key(command: Sequence[Any]) -> Any:
    """The key a redpromise command is routed by (all its keys share one slot)."""
    name = str(command[0]).upper()
    if name in ("EVALSHA", "EVAL"):
        return command[3]
    if name == "XREADGROUP":
        return command[list(map(str, command)).index("STREAMS") + 1]
    return command[1]


def _slot(command: Sequence[Any]) -> int:
    key = command_key(command)
    return key_slot(key if isinstance(key, bytes) else str(key).encode("utf-8"))


async def _send_node(node: ClusterNode, commands: Sequence[Sequence[Any]]) -> list[Any]:
    conn = _redispy.acquire(node)
    try:
        return await roundtrip(conn, pack(commands), len(commands))
    except BaseException:
        with contextlib.suppress(Exception):
            await conn.disconnect()
        raise
    finally:
        _redispy.release(node, conn)


async def send_to_cluster(
    rc: RedisCluster,
    commands: Sequence[Sequence[Any]],
    *,
    resend: bool = True,
    durable: Sequence[bool] | None = None,
    ack: Ack | None = None,
) -> list[Any]:
    """Send ``commands`` grouped by node; their replies (or errors) in order.

    ``resend=False``: a connection lost mid-exchange is not resent (the commands may have
    run); its error comes back in the slots of that node's commands.
    """
    ex = _Exchange(rc, commands, resend, durable, ack)
    backoff = Backoff(0.05, 1.0)
    for attempt in range(_ATTEMPTS):
        if attempt:
            await asyncio.sleep(backoff.next())
        if not await ex.round(last=attempt == _ATTEMPTS - 1):
            break
    return ex.results


class _Exchange:
    """One batch on its way through a cluster: what is answered, what is to resend."""

    def __init__(
        self,
        rc: RedisCluster,
        commands: Sequence[Sequence[Any]],
        resend: bool,
        durable: Sequence[bool] | None,
        ack: Ack | None,
    ) -> None:
        self.rc = rc
        self.commands = commands
        self.resend = resend
        self.durable = durable
        self.ack = ack
        self.results: list[Any] = [None] * len(commands)
        self.slots = [_slot(c) for c in commands]
        self.todo = list(range(len(commands)))
        self.asking: dict[int, ClusterNode] = {}
        self.moved: dict[int, ClusterNode] = {}

    def _flags(self, n: int, idx: list[int], where: list[int]) -> list[bool] | None:
        """Which of a node's ``n`` commands (ASKING included) are durable writes."""
        if self.durable is None:
            return None
        flags = [False] * n
        for i, p in zip(idx, where, strict=True):
            flags[p] = self.durable[i]
        return flags

    async def _send(
        self, node: ClusterNode, commands: list[Sequence[Any]], durable: list[bool] | None
    ) -> list[Any]:
        cmds, check = with_wait(commands, durable, self.ack, node.name)
        return check(await _send_node(node, cmds))

    def _route(self) -> list[tuple[ClusterNode, list[int]]]:
        # By name: redis-py < 6.1's ClusterNode has __eq__ and no __hash__.
        by_node: dict[str, tuple[ClusterNode, list[int]]] = {}
        for i in self.todo:
            node = self.asking.get(i) or self.moved.get(i)
            if node is None:
                try:
                    node = _redispy.node_for_slot(self.rc, self.slots[i])
                except rex.SlotNotCoveredError as exc:
                    self.results[i] = rex.ClusterDownError(str(exc))
                    continue
            by_node.setdefault(node.name, (node, []))[1].append(i)
        return list(by_node.values())

    async def round(self, *, last: bool) -> bool:
        """Send what is left once; whether anything is left to send again."""
        groups = self._route()
        packed = [
            _with_asking([self.commands[i] for i in idx], idx, self.asking) for _, idx in groups
        ]
        sent = await asyncio.gather(
            *(
                self._send(node, cmds, self._flags(len(cmds), idx, where))
                for (node, idx), (cmds, where) in zip(groups, packed, strict=True)
            ),
            return_exceptions=True,
        )
        self.todo, self.asking, self.moved = [], {}, {}
        refresh = False
        for (_, idx), (_, where), out in zip(groups, packed, sent, strict=True):
            if isinstance(out, BaseException):
                if not isinstance(out, rex.ConnectionError | rex.TimeoutError | OSError):
                    raise out
                refresh = True
                for i in idx:
                    self.results[i] = out
                if self.resend and not last:
                    self.todo.extend(idx)
                continue
            for i, reply in zip(idx, [out[p] for p in where], strict=True):
                self.results[i] = reply
                if isinstance(reply, _REROUTE) and not last:
                    self.todo.append(i)
                    if type(reply) is rex.AskError:
                        self.asking[i] = _redispy.node_at(self.rc, reply.host, reply.port)
                    else:
                        refresh = True
                        if isinstance(reply, rex.MovedError):
                            # Straight to the node that says it owns the slot: the map
                            # read from the other nodes may lag during a failover.
                            self.moved[i] = _redispy.node_at(self.rc, reply.host, reply.port)
        if refresh:
            await refresh_slots(self.rc)
        return bool(self.todo)


def _with_asking(
    commands: list[Sequence[Any]], idx: list[int], asking: dict[int, ClusterNode]
) -> tuple[list[Sequence[Any]], list[int]]:
    """Prefix commands redirected by ``ASK`` with ``ASKING``; also where each command's
    own reply will be in the node's replies."""
    out: list[Sequence[Any]] = []
    where: list[int] = []
    for i, c in zip(idx, commands, strict=True):
        if i in asking:
            out.append(["ASKING"])
        where.append(len(out))
        out.append(c)
    return out, where


def channels_by_node(rc: RedisCluster, channels: list[str]) -> list[tuple[ClusterNode, list[str]]]:
    """Shard channels grouped by the node serving their slot."""
    out: dict[str, tuple[ClusterNode, list[str]]] = {}  # by name: see _Exchange._route
    for ch in channels:
        node = _redispy.node_for_slot(rc, key_slot(ch.encode("utf-8")))
        out.setdefault(node.name, (node, []))[1].append(ch)
    return list(out.values())


async def refresh_slots(rc: RedisCluster) -> None:
    """Read the slot map again (after a failover, a slot move, or a lost node)."""
    try:
        # Bounded: it holds redis-py's lock on the slot map, which every other refresh
        # (and redis-py's own commands) wait for.
        await asyncio.wait_for(_redispy.reread_slots(rc), _REFRESH_TIMEOUT)
    except (rex.RedisError, OSError, TimeoutError) as exc:
        log.debug("refreshing the cluster's slot map failed: %r", exc)
