"""Manage a throw-away local Redis Cluster (3 masters + 3 replicas) for tests and benches.

No pytest import here: usable from scripts and fixtures alike. Each node is a
:class:`tests.redis_server.RedisServer` in its own directory, AOF on, bound to 127.0.0.1
on a free port (never 6379) whose cluster-bus port (``port + 10000``, the only choice on
Redis 6.2) is free too. The cluster is built with ``redis-cli --cluster create`` (fewer
than 3 masters, which it refuses, by hand with no replicas), and a slot can be moved
between masters step by step as a reshard moves it. It is
ready only when every node reports ``cluster_state:ok``, all nodes agree on the slot map,
and every replica's link to its master is up (so a failover has a synced replica to promote).
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import redis
import redis.asyncio

from tests.redis_server import RedisServer, redis_server_binary

__all__ = ["ClusterNode", "RedisCluster", "async_client", "is_cluster_url", "redis_cli_binary"]

SLOTS = 16384
_FORBIDDEN_PORT = 6379
_BUS_OFFSET = 10000
_READY_TIMEOUT = 30.0
_FAILOVER_TIMEOUT = 30.0

SlotMap = tuple[tuple[int, int, int], ...]
"""``(first_slot, last_slot, master_port)`` ranges, sorted."""


def redis_cli_binary() -> str:
    """A ``redis-cli`` matching the chosen ``redis-server``: its sibling, else ``PATH``."""
    sibling = Path(redis_server_binary()).parent / "redis-cli"
    if sibling.is_file() and os.access(sibling, os.X_OK):
        return str(sibling)
    found = shutil.which("redis-cli")
    if found:
        return found
    raise RuntimeError("no redis-cli found next to redis-server or on PATH")


def is_cluster_url(url: str) -> bool:
    """Whether the Redis at ``url`` is a cluster node (``cluster_enabled:1``); ``False``
    when it cannot be reached (a plain client then fails on use, as any would)."""
    with contextlib.closing(redis.Redis.from_url(url, socket_timeout=5)) as probe:
        try:
            return bool(int(probe.info("cluster").get("cluster_enabled", 0) or 0))
        except (redis.ConnectionError, redis.TimeoutError):
            return False


def async_client(url: str) -> redis.asyncio.Redis:
    """An asyncio client of the Redis at ``url``: a ``RedisCluster`` when it is a cluster
    node, so test code and test workers reach any key from any node's URL.

    Typed as ``Redis``: tests use single-key commands and non-transactional pipelines,
    which ``RedisCluster`` offers with the same signatures.
    """
    if is_cluster_url(url):
        client: Any = redis.asyncio.RedisCluster.from_url(url)
        return cast(redis.asyncio.Redis, client)
    return redis.asyncio.Redis.from_url(url)


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _cluster_ports(n: int) -> list[int]:
    """``n`` distinct ports whose cluster-bus ports are free too (all below 65536)."""
    rng = random.Random()
    chosen: list[int] = []
    while len(chosen) < n:
        port = rng.randrange(20000, 55000)
        taken = {p for c in chosen for p in (c, c + _BUS_OFFSET)}
        if port == _FORBIDDEN_PORT or {port, port + _BUS_OFFSET} & taken:
            continue
        if _bindable(port) and _bindable(port + _BUS_OFFSET):
            chosen.append(port)
    return chosen


class ClusterNode:
    """One node of a :class:`RedisCluster`; its role may change after a failover."""

    def __init__(self, server: RedisServer) -> None:
        self.server = server

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def running(self) -> bool:
        return self.server.running

    def client(self, **kwargs: Any) -> redis.Redis:
        """A plain (non-cluster) client of this node alone."""
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2, **kwargs)

    def command(self, *args: Any) -> Any:
        with contextlib.closing(self.client(decode_responses=True)) as c:
            return c.execute_command(*args)

    def info(self, section: str) -> dict[str, Any]:
        with contextlib.closing(self.client()) as c:
            return dict(c.info(section))

    def node_id(self) -> str:
        return str(self.command("CLUSTER", "MYID"))

    def __repr__(self) -> str:
        return f"ClusterNode(port={self.port}, running={self.running})"


class RedisCluster:
    """A local cluster of ``masters`` masters with ``replicas`` replicas each.

    :attr:`url` is the URL of one node, as a user would configure it. Roles are read live
    from the nodes, so :meth:`masters`, :meth:`replicas` and :meth:`master_of` follow
    failovers. :meth:`stop` SIGKILLs every node (the data dirs are throw-away).
    """

    def __init__(
        self,
        dir: Path,
        *,
        masters: int = 3,
        replicas: int = 1,
        node_timeout_ms: int = 1000,
        appendfsync: str = "always",
    ) -> None:
        if masters < 1 or (masters < 3 and replicas):
            raise ValueError("fewer than 3 masters: only without replicas (built by hand)")
        self._dir = Path(dir).resolve()
        self._masters = masters
        self._replicas = replicas
        self.node_timeout_ms = node_timeout_ms
        ports = _cluster_ports(masters * (1 + replicas))
        self.nodes = [
            ClusterNode(
                RedisServer(
                    self._dir / f"node-{port}",
                    port,
                    appendfsync=appendfsync,
                    extra_args=(
                        "--cluster-enabled", "yes",
                        "--cluster-config-file", "nodes.conf",
                        "--cluster-node-timeout", str(node_timeout_ms),
                        # a replica promotes however long its link was down: tests kill nodes
                        "--cluster-replica-validity-factor", "0",
                        # full syncs start at once, not after the default 5 s wait
                        "--repl-diskless-sync-delay", "0",
                    ),
                )
            )
            for port in ports
        ]  # fmt: skip
        self.startup_seconds: float | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start every node, create the cluster, wait until it is ready (:meth:`wait_ready`)."""
        t0 = time.monotonic()
        try:
            for node in self.nodes:
                node.server.spawn()
            for node in self.nodes:
                node.server.wait_started()
            if self._masters < 3:
                self._join()
                self.wait_ready(replicas=False)
                self.startup_seconds = time.monotonic() - t0
                return
            addrs = [f"127.0.0.1:{n.port}" for n in self.nodes]
            replicas = ["--cluster-replicas", str(self._replicas)]
            done = subprocess.run(
                [redis_cli_binary(), "--cluster", "create", *addrs, *replicas, "--cluster-yes"],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=60,
                check=False,
            )
            if done.returncode != 0:
                raise RuntimeError(
                    f"redis-cli --cluster create failed ({done.returncode}):\n"
                    f"{done.stdout.decode(errors='replace')[-2000:]}"
                    f"{done.stderr.decode(errors='replace')[-2000:]}"
                )
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0

    def _join(self) -> None:
        """What ``redis-cli --cluster create`` does, which refuses fewer than 3 masters:
        an even share of the slots and a distinct config epoch each, then one MEET each."""
        n = len(self.nodes)
        for i, node in enumerate(self.nodes):
            first, last = SLOTS * i // n, SLOTS * (i + 1) // n - 1
            node.command("CLUSTER", "ADDSLOTS", *range(first, last + 1))
            node.command("CLUSTER", "SET-CONFIG-EPOCH", i + 1)
        for node in self.nodes[1:]:
            node.command("CLUSTER", "MEET", "127.0.0.1", self.nodes[0].port)

    def migrate(self, slot: int, source: ClusterNode, target: ClusterNode) -> None:
        """Begin moving ``slot`` from ``source`` to ``target`` as a reshard does: the
        target IMPORTING, the source MIGRATING; no key moves yet (:meth:`move_keys`)."""
        target.command("CLUSTER", "SETSLOT", slot, "IMPORTING", source.node_id())
        source.command("CLUSTER", "SETSLOT", slot, "MIGRATING", target.node_id())

    def move_keys(self, keys: list[str], source: ClusterNode, target: ClusterNode) -> None:
        """``MIGRATE`` these keys of a migrating slot from ``source`` to ``target``."""
        if keys:
            source.command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)

    def finish_migration(self, slot: int, source: ClusterNode, target: ClusterNode) -> None:
        """Move the slot's remaining keys, then hand it to ``target`` on both nodes (the
        end of a reshard); waits until every node agrees on the new owner."""
        while keys := source.command("CLUSTER", "GETKEYSINSLOT", slot, 100):
            self.move_keys(list(keys), source, target)
        for node in (target, source):
            node.command("CLUSTER", "SETSLOT", slot, "NODE", target.node_id())

        def handed() -> str | None:
            if self.master_of(slot) is not target:
                return f"slot {slot} still served by {self.master_of(slot)}"
            return self._problem(expect_replicas=False)

        self._wait(handed, _READY_TIMEOUT, f"slot {slot} handed to {target}")

    def stop(self) -> None:
        """SIGKILL every node still running."""
        for node in self.nodes:
            node.server.kill()

    def kill(self, node: ClusterNode) -> None:
        """SIGKILL one node (a crash; its fsynced AOF survives for :meth:`restart`)."""
        node.server.kill()

    def restart(self, node: ClusterNode) -> None:
        """Start a killed node again on its port and dir; it rejoins from its nodes.conf."""
        node.server.kill()
        node.server.start()

    def __enter__(self) -> RedisCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ topology
    @property
    def url(self) -> str:
        """The URL of one running master: point redpromise at any one node."""
        return self.masters()[0].url

    def running(self) -> list[ClusterNode]:
        return [n for n in self.nodes if n.running]

    def _by_port(self, port: int) -> ClusterNode:
        for node in self.nodes:
            if node.port == port:
                return node
        raise LookupError(f"no node of this cluster on port {port}")

    def _roles(self) -> dict[int, str]:
        """``port -> "master" | "replica"`` for running nodes, from CLUSTER NODES of one."""
        for node in self.running():
            try:
                text = node.command("CLUSTER", "NODES")
            except redis.RedisError:
                continue
            roles: dict[int, str] = {}
            for line in str(text).splitlines():
                fields = line.split()
                port = int(fields[1].split("@")[0].rsplit(":", 1)[1])
                flags = fields[2].split(",")
                if "fail" in flags or "fail?" in flags or "noaddr" in flags:
                    continue
                roles[port] = "master" if "master" in flags else "replica"
            return {p: r for p, r in roles.items() if self._by_port(p).running}
        raise RuntimeError("no running node answers CLUSTER NODES")

    def masters(self) -> list[ClusterNode]:
        """Running nodes that are masters now (a failover changes this)."""
        roles = self._roles()
        return [n for n in self.nodes if roles.get(n.port) == "master"]

    def replicas(self) -> list[ClusterNode]:
        """Running nodes that are replicas now."""
        roles = self._roles()
        return [n for n in self.nodes if roles.get(n.port) == "replica"]

    def slot_map(self, node: ClusterNode | None = None) -> SlotMap:
        """The slot ranges and their masters as ``node`` (default: any running) sees them."""
        source = node or self.running()[0]
        ranges = source.command("CLUSTER", "SLOTS")
        return tuple(sorted((int(r[0]), int(r[1]), int(r[2][1])) for r in ranges))

    def master_of(self, slot: int) -> ClusterNode:
        """The node serving ``slot`` now."""
        for first, last, port in self.slot_map():
            if first <= slot <= last:
                return self._by_port(port)
        raise LookupError(f"slot {slot} is not served")

    def slots_of(self, node: ClusterNode) -> int:
        """How many slots ``node`` serves now."""
        return sum(last - first + 1 for first, last, port in self.slot_map() if port == node.port)

    # ------------------------------------------------------------------ waiting
    def _problem(self, expect_replicas: bool) -> str | None:
        """Why the cluster is not ready yet, or ``None`` when it is."""
        maps: dict[int, SlotMap] = {}
        for node in self.running():
            try:
                state = node.command("CLUSTER", "INFO")
                if "cluster_state:ok" not in str(state):
                    return f"{node} is not cluster_state:ok"
                maps[node.port] = self.slot_map(node)
            except redis.RedisError as exc:
                return f"{node}: {exc}"
        if len(set(maps.values())) != 1:
            return f"nodes disagree on the slot map: {maps}"
        (slot_map,) = set(maps.values())
        covered = sum(last - first + 1 for first, last, _ in slot_map)
        if covered != SLOTS:
            return f"{covered} slots served, not {SLOTS}"
        if any(not self._by_port(port).running for _, _, port in slot_map):
            return "a dead node still serves slots"
        if expect_replicas:
            replicas = self.replicas()
            if len(replicas) != self._masters * self._replicas:
                return f"{len(replicas)} replicas known"
            for node in replicas:
                link = node.info("replication").get("master_link_status")
                if link != "up":
                    return f"{node} master_link_status={link}"
        return None

    def _wait(self, done: Callable[[], str | None], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        problem: str | None = "not checked"
        while time.monotonic() < deadline:
            problem = done()
            if problem is None:
                return
            time.sleep(0.05)
        raise TimeoutError(f"{what} not reached within {timeout:.0f}s: {problem}")

    def wait_ready(self, timeout: float = _READY_TIMEOUT, *, replicas: bool = True) -> None:
        """Until every running node is ``cluster_state:ok``, all agree on a slot map that
        covers 0..16383 served only by running nodes, and (``replicas``) every master has its
        replicas with their links up."""
        self._wait(lambda: self._problem(replicas), timeout, "cluster ready")

    def wait_failover(self, old_master: ClusterNode, timeout: float = _FAILOVER_TIMEOUT) -> None:
        """Until the slots ``old_master`` served belong to a promoted replica and the
        running nodes agree again with ``cluster_state:ok`` everywhere."""

        def done() -> str | None:
            if old_master.running:
                return f"{old_master} still runs: kill it first"
            return self._problem(expect_replicas=False)

        self._wait(done, timeout, "failover")

    def __repr__(self) -> str:
        return f"RedisCluster(ports={[n.port for n in self.nodes]})"
