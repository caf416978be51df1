"""Error replies a production Redis gives, induced on a private redis-server, and one
scenario that runs a real worker and gateway through each (tests/test_faults.py asserts
on it, bench/faults.py measures it).

Each :class:`Fault` puts a running server into one condition and takes it out again:

- ``MISCONF``: a save point and a BGSAVE that fails (``dump.rdb`` is a directory, which
  stops Redis even as root); recovered by removing the directory and a good BGSAVE.
- ``READONLY``: a failover and back. A second server B replicates A, B is promoted once
  it has caught up, A is demoted to a replica of B (A's writes answer READONLY, A keeps
  its data: it resyncs from B, a copy of itself), then A is promoted again
  (``REPLICAOF NO ONE``). Writes A takes between B's promotion and its own demotion (a
  few ms) are lost, as in a real failover.
- ``BUSY``: another client runs a read-only Lua busy loop past ``busy-reply-threshold``
  (100 ms); recovered by ``SCRIPT KILL``.
- ``LOADING``: ``DEBUG RELOAD`` of enough filler keys with ``key-load-delay`` set; ends
  by itself when the reload replies (clients see LOADING meanwhile, checked).
- ``OOM``: ``maxmemory`` under the memory used, ``noeviction``; recovered by ``maxmemory 0``.
- ``FLUSHALL``: everything vanishes at once (streams and groups too: NOGROUP).
- ``NOPERM``: worker, client and gateway run as an ACL user whose key patterns are
  taken away (``resetkeys``), then given back (``~*``); ``NOPERM-SCRIPTS``: the same user
  loses the script commands instead (keys stay readable: entries are still read).

No pytest import: importable from bench/ too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import time
import uuid
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

import aiohttp
import redis

from redpromise import ConfigurationError, Redpromise, RedpromiseError, Settings, StoreUnavailable
from redpromise.core.keys import Keys
from tests.procs import WorkerProcess
from tests.redis_server import RedisServer, free_port
from tests.services import GatewayProcess

__all__ = ["FAULTS", "Fault", "Observation", "first_word", "run_scenario"]


def _resp(*args: str) -> bytes:
    out = b"*%d\r\n" % len(args)
    for a in args:
        raw = a.encode()
        out += b"$%d\r\n%s\r\n" % (len(raw), raw)
    return out


def _wait(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not true within {timeout}s")
        time.sleep(0.02)


class Fault:
    """One condition of a running redis-server: :meth:`induce`, then :meth:`recover`.

    ``cause`` is the first word of the error reply (what the worker's warning names);
    ``error`` the redpromise error public calls raise meanwhile (``None``: the condition
    does not last, calls just work).
    """

    name: ClassVar[str]
    cause: ClassVar[str]
    error: ClassVar[type[RedpromiseError] | None] = StoreUnavailable
    server_args: ClassVar[Sequence[str]] = ()
    # Whether the data survives: a promise in flight across the fault must end resolved.
    keeps_data: ClassVar[bool] = True
    # Whether the worker's loops meet the error (then /healthz names it and "recovered"
    # is logged), or only a write of the function in flight does.
    loops_fail: ClassVar[bool] = True

    def __init__(self, dir: Path) -> None:
        self.dir = dir
        self.server = RedisServer(dir / "redis", extra_args=self.server_args)
        self.admin: redis.Redis = redis.Redis(port=self.server.port, decode_responses=True)

    @property
    def url(self) -> str:
        """What the worker, the client and the gateway connect with."""
        return self.server.url

    def start(self) -> None:
        self.server.start()

    def prepare(self) -> None:
        """Slow set-up of the condition, done before the in-flight promise starts."""

    def induce(self) -> None:
        raise NotImplementedError

    def recover(self) -> None:
        """Undo the condition; returns once Redis no longer answers with the error."""
        raise NotImplementedError

    def close(self) -> None:
        self.admin.close()
        self.server.kill()


class Misconf(Fault):
    name = cause = "MISCONF"

    def induce(self) -> None:
        # A directory where the RDB is renamed to: rename(2) fails, for root too.
        (self.server.dir / "dump.rdb").mkdir()
        self.admin.config_set("save", "3600 1")
        self.admin.bgsave()
        _wait(self._saved("err"), 10, "BGSAVE failing")

    def _saved(self, status: str) -> Any:
        def check() -> bool:
            info = self.admin.info("persistence")
            return not info["rdb_bgsave_in_progress"] and info["rdb_last_bgsave_status"] == status

        return check

    def recover(self) -> None:
        (self.server.dir / "dump.rdb").rmdir()
        self.admin.bgsave()
        _wait(self._saved("ok"), 10, "BGSAVE succeeding")


class ReadOnly(Fault):
    name = cause = "READONLY"

    # A full sync starts at once (Redis 7 waits 5 s for more replicas to join by default).
    server_args = ("--repl-diskless-sync-delay", "0")

    def __init__(self, dir: Path) -> None:
        super().__init__(dir)
        self.other = RedisServer(dir / "redis-b", extra_args=self.server_args)
        self.other_admin: redis.Redis = redis.Redis(port=self.other.port, decode_responses=True)

    def start(self) -> None:
        super().start()
        self.other.start()

    def prepare(self) -> None:
        # B becomes a live replica of A; then B is promoted (the failover) and A demoted
        # under it: what Sentinel does to an old master that comes back. Writes to A
        # between B's promotion and A's demotion would be lost, as in a real failover.
        self.other_admin.replicaof("127.0.0.1", self.server.port)
        _wait(lambda: self._synced(self.other_admin), 15, "B in sync with A")

    def induce(self) -> None:
        # Promote B only once it has every write A acknowledged so far (the promise in
        # flight included): the test is about READONLY, not about replication lag, whose
        # loss the README documents (Settings.replicas_ack is the remedy).
        offset = int(self.admin.info("replication")["master_repl_offset"])
        _wait(
            lambda: int(self.other_admin.info("replication")["slave_repl_offset"]) >= offset,
            10,
            "B caught up with A",
        )
        self.other_admin.replicaof("NO", "ONE")
        self.admin.replicaof("127.0.0.1", self.other.port)

    @staticmethod
    def _synced(r: redis.Redis) -> bool:
        info = r.info("replication")
        return bool(
            info.get("master_link_status") == "up" and not info.get("master_sync_in_progress")
        )

    def recover(self) -> None:
        _wait(lambda: self._synced(self.admin), 15, "A in sync with B")
        self.admin.replicaof("NO", "ONE")

    def close(self) -> None:
        self.other_admin.close()
        self.other.kill()
        super().close()


class Busy(Fault):
    name = cause = "BUSY"
    _SCRIPT = "while true do end"  # no writes: SCRIPT KILL may stop it

    def induce(self) -> None:
        self.admin.config_set("busy-reply-threshold", 100)
        self.sock = socket.create_connection(("127.0.0.1", self.server.port), timeout=10)
        self.sock.sendall(_resp("EVAL", self._SCRIPT, "0"))
        probe = redis.Redis(port=self.server.port, socket_timeout=5)

        def busy() -> bool:
            try:
                probe.get("x")
            except redis.ResponseError as exc:
                return str(exc).startswith("BUSY")
            return False

        _wait(busy, 10, "BUSY replies")
        probe.close()

    def recover(self) -> None:
        self.admin.script_kill()
        self.sock.recv(256)  # the script's own (error) reply: it has ended
        self.sock.close()


class Loading(Fault):
    name = cause = "LOADING"
    server_args = ("--enable-debug-command", "yes")
    FILLER = 12_000  # keys, 100 bytes each, outside any namespace
    DELAY_US = 250  # per key loaded: ~3 s of LOADING

    def prepare(self) -> None:
        pipe = self.admin.pipeline(transaction=False)
        for i in range(0, self.FILLER, 1000):
            pipe.mset({f"filler:{j}": "x" * 100 for j in range(i, i + 1000)})
        pipe.execute()

    def induce(self) -> None:
        self.admin.config_set("loading-process-events-interval-bytes", 1024)
        self.admin.config_set("key-load-delay", self.DELAY_US)
        self.sock = socket.create_connection(("127.0.0.1", self.server.port), timeout=30)
        self.sock.sendall(_resp("DEBUG", "RELOAD"))

        def loading() -> bool:
            with socket.create_connection(("127.0.0.1", self.server.port), timeout=2) as s:
                s.sendall(_resp("GET", "x"))
                return s.recv(64).startswith(b"-LOADING")

        _wait(loading, 10, "LOADING replies")

    def recover(self) -> None:
        reply = self.sock.recv(64)  # DEBUG RELOAD answers once loading is over
        self.sock.close()
        if not reply.startswith(b"+OK"):
            raise RuntimeError(f"DEBUG RELOAD answered {reply!r}")
        self.admin.config_set("key-load-delay", 0)


class Oom(Fault):
    name = cause = "OOM"
    # The loops send no command OOM refuses (XREADGROUP, XAUTOCLAIM, reads, and scripts
    # whose first write is not a deny-oom command); the in-flight checkpoint meets it.
    loops_fail = False

    def induce(self) -> None:
        self.admin.config_set("maxmemory-policy", "noeviction")
        # Below what is used: every command that may grow memory is refused.
        used = int(self.admin.info("memory")["used_memory"])
        self.admin.config_set("maxmemory", max(1, used // 2))

    def recover(self) -> None:
        self.admin.config_set("maxmemory", 0)


class Flushall(Fault):
    name = "FLUSHALL"
    cause = "NOGROUP"
    error = None
    keeps_data = False

    def induce(self) -> None:
        self.admin.flushall()

    def recover(self) -> None:
        return None  # nothing to undo: the server is fine, the data is gone


class NoPerm(Fault):
    name = cause = "NOPERM"
    error = ConfigurationError
    USER = "app"
    PASSWORD = "app-secret"

    def start(self) -> None:
        super().start()
        self.admin.acl_setuser(
            self.USER,
            enabled=True,
            passwords=[f"+{self.PASSWORD}"],
            keys=["*"],
            channels=["*"],
            commands=["+@all"],
        )

    @property
    def url(self) -> str:
        return f"redis://{self.USER}:{self.PASSWORD}@127.0.0.1:{self.server.port}/0"

    def induce(self) -> None:
        self.admin.acl_setuser(self.USER, enabled=True, reset_keys=True)

    def recover(self) -> None:
        self.admin.acl_setuser(self.USER, enabled=True, keys=["*"])


class NoPermScripts(NoPerm):
    """The keys stay readable (XREADGROUP works) but scripts are refused: entries are read
    and their acquire, the in-flight checkpoint and every creation meet NOPERM."""

    name = "NOPERM-SCRIPTS"
    _SCRIPTS = ("eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro")

    def induce(self) -> None:
        self.admin.acl_setuser(self.USER, enabled=True, commands=[f"-{c}" for c in self._SCRIPTS])

    def recover(self) -> None:
        self.admin.acl_setuser(self.USER, enabled=True, commands=["+@all"])


FAULTS: dict[str, type[Fault]] = {
    f.name: f for f in (Misconf, ReadOnly, Busy, Loading, Oom, Flushall, NoPerm, NoPermScripts)
}


# ---------------------------------------------------------------- the scenario


@dataclass
class Observation:
    """What a caller, the gateway and the worker showed through one fault."""

    fault: str
    worker_pid: int
    # public calls (begin_rpc, get) made while the condition lasted: "Type: message"
    calls: list[str] = field(default_factory=list)
    gateway_status: int | None = None
    gateway_retry_after: str | None = None
    gateway_body: Any = None
    health_during: tuple[int, Any] | None = None  # (status, JSON) or None: unreachable
    health_after: tuple[int, Any] | None = None
    log_during: str = ""  # worker log from the induce to the recovery
    log_after: str = ""  # worker log after the recovery
    served_after: float | None = None  # s from recovery to the first new promise completed
    served_by: int | None = None  # the pid that ran it
    inflight: str | None = None  # outcome of the promise running when the fault hit
    gateway_after: int | None = None
    gateway_log: str = ""  # the gateway's log while the condition lasted
    worker_exit: int | None = None  # None: still running at the end

    def warnings(self) -> list[str]:
        return [ln for ln in self.log_during.splitlines() if " WARNING " in ln]

    def gateway_warnings(self) -> list[str]:
        return [ln for ln in self.gateway_log.splitlines() if " WARNING " in ln]

    def alerts(self) -> list[str]:
        """Worker log lines at WARNING or above while the condition lasted."""
        levels = (" WARNING ", " ERROR ", " CRITICAL ")
        return [ln for ln in self.log_during.splitlines() if any(lv in ln for lv in levels)]

    def recovered_lines(self) -> list[str]:
        # From the induce on: after FLUSHALL the loops recover before recover() is called.
        log = self.log_during + self.log_after
        return [ln for ln in log.splitlines() if " INFO " in ln and "recovered" in ln]


def _settings(namespace: str) -> Settings:
    return Settings(
        namespace=namespace,
        lease=timedelta(seconds=1),
        poll_interval=timedelta(milliseconds=50),
        block=timedelta(milliseconds=100),
        safety_poll=timedelta(seconds=1),
    )


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:90]}"


async def _http(
    http: aiohttp.ClientSession, method: str, url: str, **kw: Any
) -> tuple[int, dict[str, str], Any]:
    async with http.request(method, url, **kw) as resp:
        text = await resp.text()
        try:
            body: Any = json.loads(text)
        except ValueError:
            body = text
        return resp.status, dict(resp.headers), body


async def _health(http: aiohttp.ClientSession, port: int) -> tuple[int, Any] | None:
    try:
        status, _, body = await _http(http, "GET", f"http://127.0.0.1:{port}/healthz")
    except aiohttp.ClientError:
        return None
    return status, body


def _completed_at(admin: redis.Redis, keys: Keys, id: str) -> float | None:
    raw = admin.hget(keys.promise(id), "completed_at")
    return int(raw) / 1000 if raw else None


async def _during(
    fault: Fault,
    rp: Redpromise,
    http: aiohttp.ClientSession,
    gw: GatewayProcess,
    worker: WorkerProcess,
    health_port: int,
    obs: Observation,
    hold: float,
) -> None:
    """Probe while the condition lasts: public calls, the gateway, the worker's health.

    Holds at least ``hold`` s (the in-flight function completes meanwhile) and until the
    worker has said something about it (at most ``hold`` + 5 s, and 8 s). LOADING ends
    by itself (about 3 s), whatever ``hold`` says.
    """
    start = time.monotonic()
    n = 0
    while True:
        n += 1
        calls: list[Awaitable[object]] = [rp.begin_rpc(f"during-{n}", "nap", 0), rp.get("baseline")]
        for call in calls:
            try:
                await call
            except Exception as exc:
                obs.calls.append(_describe(exc))
            else:
                obs.calls.append("ok")
        # Every round: a gateway that logs each refused request shows in its log.
        status, headers, body = await _http(
            http, "POST", f"{gw.base}/begin", params={"id": f"gw-during-{n}"}, json={"n": n}
        )
        if obs.gateway_status in (None, 200):
            obs.gateway_status, obs.gateway_body = status, body
            obs.gateway_retry_after = headers.get("Retry-After")
        said = fault.cause in worker.output()
        if (said or fault.error is None) and time.monotonic() - start >= hold:
            break
        if time.monotonic() - start > max(8.0, hold + 5.0):
            break
        await asyncio.sleep(0.1)
    obs.health_during = await _health(http, health_port)


async def _first_served(rp: Redpromise, admin: redis.Redis, keys: Keys, since: float) -> Any:
    """Begin a promise as soon as Redis takes it; wait (10 s) until the worker ran it."""
    deadline = time.monotonic() + 10
    id = f"after-{uuid.uuid4().hex[:8]}"
    while True:
        try:
            handle = await rp.begin_rpc(id, "nap", 0)
            break
        except Exception:
            if time.monotonic() > deadline:
                return None, None
            await asyncio.sleep(0.02)
    try:
        value = await handle.result(timeout=max(0.1, deadline - time.monotonic()))
    except (TimeoutError, RedpromiseError):
        return None, None
    done = _completed_at(admin, keys, id)
    return (done - since if done is not None else None), value["pid"]


async def run_scenario(fault_cls: type[Fault], dir: Path, *, hold: float = 1.5) -> Observation:
    """A worker and a gateway through ``fault_cls``, observed; everything stopped after."""
    fault = fault_cls(dir)
    namespace = f"f{uuid.uuid4().hex[:10]}"
    keys = Keys(namespace, _settings(namespace).partitions)
    fault.start()
    health_port = free_port()
    worker = WorkerProcess(
        fault.url, namespace, dir, env={"REDPROMISE_HEALTH_PORT": str(health_port)}
    )
    gw = GatewayProcess(fault.url, namespace, dir, env={"REDPROMISE_GATEWAY_FUNCTION": "echo"})
    rp = Redpromise(fault.url, group="gateway", settings=_settings(namespace))
    admin = redis.Redis(port=fault.server.port)
    timeout = aiohttp.ClientTimeout(total=15)
    try:
        worker.start()
        gw.start()
        obs = Observation(fault.name, worker.pid)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            baseline = await (await rp.begin_rpc("baseline", "nap", 0)).result(timeout=30)
            if baseline["pid"] != worker.pid:
                raise RuntimeError(f"baseline ran on {baseline}, not on worker {worker.pid}")
            await asyncio.to_thread(fault.prepare)
            inflight = await rp.begin_rpc("inflight", "nap_step", 1.0)
            await _until_owned(admin, keys, "inflight")

            mark, gw_mark = len(worker.output()), len(gw.output())
            await asyncio.to_thread(fault.induce)
            await _during(fault, rp, http, gw, worker, health_port, obs, hold)
            after = len(worker.output())
            obs.log_during = worker.output()[mark:after]
            obs.gateway_log = gw.output()[gw_mark:]
            await asyncio.to_thread(fault.recover)
            recovered_at = time.time()

            obs.served_after, obs.served_by = await _first_served(rp, admin, keys, recovered_at)
            if fault.keeps_data:
                try:
                    value = await inflight.result(timeout=15)
                    obs.inflight = f"resolved by {value['pid']}"
                except Exception as exc:
                    obs.inflight = _describe(exc)
            status, _, _ = await _http(
                http, "POST", f"{gw.base}/begin", params={"id": "gw-after"}, json={"n": 0}
            )
            obs.gateway_after = status
            obs.health_after = await _health(http, health_port)
            # The "recovered" line may follow the first success by one loop tick.
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and "recovered" not in worker.output()[after:]:
                await asyncio.sleep(0.05)
            obs.log_after = worker.output()[after:]
            obs.worker_exit = worker.proc.poll() if worker.proc is not None else None
        return obs
    finally:
        with contextlib.suppress(Exception):
            await rp.stop()
        admin.close()
        gw.close()
        worker.close()
        fault.close()


async def _until_owned(admin: redis.Redis, keys: Keys, id: str) -> None:
    deadline = time.monotonic() + 10
    while not admin.hget(keys.promise(id), "owner"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{id} was never acquired by the worker")
        await asyncio.sleep(0.02)


def first_word(line: str) -> str:
    """``StoreUnavailable: Redis unavailable: MISCONF …`` → ``StoreUnavailable``."""
    return re.split(r"[:\s]", line, maxsplit=1)[0]
