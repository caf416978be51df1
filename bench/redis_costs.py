"""What one redis-server's CPU pays per read, per wake-up and per script call (issue 11).

    python bench/redis_costs.py [read|call|wakeup ...]   (default: all three)

Each probe starts its own redis-server(s) (REDPROMISE_REDIS_SERVER or redis-server on
PATH; free port, temp dir, no persistence), drives it from one raw socket (hiredis
packing, so the client adds nothing on the server's side) and reads the server's
``used_cpu_sys + used_cpu_user`` from INFO around each phase. Medians of 3.

- ``read``: 60,000 HMGETs in batches of B = 1, 3, 10, 30, 100 written back to back:
  Redis CPU per read (one socket read, one reply write, one event-loop pass) and per
  command. The fixed part per read is what a batch split over more nodes adds.
- ``call``: EVALSHA of a script doing 0 or 20 ``redis.call('HSET', ...)``, on a plain
  server and on a one-node cluster (cluster-enabled, every slot): the cost of cluster
  mode's per-call slot check (Redis 7.0 checks every ``redis.call`` in cluster mode).
- ``wakeup``: 3,000 reads of 10 HMGETs over 200k hashes, back to back or with the client
  pausing 0.5 ms after each reply (the server goes to sleep in epoll_wait and wakes for
  the next read), with and without two processes sweeping 64 MB each: what a wake-up of
  an idle server costs beyond the read itself.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis
from hiredis import Reader, pack_command

SERVER = os.environ.get("REDPROMISE_REDIS_SERVER") or shutil.which("redis-server") or ""


def free_port() -> int:
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port <= 55535:  # room for a cluster bus port (+10000)
            return port


@contextmanager
def server(cluster: bool = False) -> Iterator[tuple[int, redis.Redis]]:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="rp-costs-") as d:
        args = [SERVER, "--port", str(port), "--save", "", "--appendonly", "no", "--dir", d]
        if cluster:
            args += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        r = redis.Redis(port=port, socket_timeout=10)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    r.ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            if cluster:
                r.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)  # type: ignore[no-untyped-call]
                while b"cluster_state:ok" not in r.execute_command("CLUSTER", "INFO"):  # type: ignore[no-untyped-call]
                    time.sleep(0.05)
            yield port, r
        finally:
            r.close()
            proc.terminate()
            proc.wait()


def cpu(r: redis.Redis) -> float:
    info = r.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


class Raw:
    """One raw connection: write a buffer, read back n replies."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = Reader()

    def roundtrip(self, buf: bytes, n: int) -> None:
        self.sock.sendall(buf)
        got = 0
        while got < n:
            self.reader.feed(self.sock.recv(1 << 16))
            while self.reader.gets() is not False:
                got += 1

    def close(self) -> None:
        self.sock.close()


def median_of(runs: int, f: Callable[[], float]) -> float:
    return statistics.median(f() for _ in range(runs))


def probe_read() -> None:
    print("read: Redis CPU per read and per command, HMGETs in batches of B, back to back")
    with server() as (port, r):
        for i in range(1000):
            r.hset(f"h{i}", mapping={"a": "x" * 50, "b": 1, "c": 2})
        raw = Raw(port)
        n = 60_000
        for b in (1, 3, 10, 30, 100):
            buf = b"".join(pack_command(("HMGET", f"h{i % 1000}", "a", "b", "c")) for i in range(b))

            def once(buf: bytes = buf, b: int = b) -> float:
                c0 = cpu(r)
                for _ in range(n // b):
                    raw.roundtrip(buf, b)
                return (cpu(r) - c0) * 1e6 / (n // b)

            per_read = median_of(3, once)
            print(f"  B={b:3d}: {per_read:6.1f} µs per read, {per_read / b:5.2f} µs per command")
        raw.close()


SCRIPTS = {
    0: "return 1",
    20: "for i=1,20 do redis.call('HSET', KEYS[1], 'f'..i, ARGV[1]) end return 1",
}


def probe_call() -> None:
    print("call: Redis CPU per script (EVALSHA, 30 per read), plain server vs one-node cluster")
    out: dict[tuple[str, int], float] = {}
    for mode in ("plain", "cluster"):
        with server(cluster=mode == "cluster") as (port, r):
            raw = Raw(port)
            for calls, src in SCRIPTS.items():
                sha = r.script_load(src)
                buf = b"".join(
                    pack_command(("EVALSHA", sha, 1, f"{{t}}:h{i % 100}", "v")) for i in range(30)
                )

                def once(buf: bytes = buf, raw: Raw = raw) -> float:
                    c0 = cpu(r)
                    for _ in range(2000):
                        raw.roundtrip(buf, 30)
                    return (cpu(r) - c0) * 1e6 / 60_000

                out[(mode, calls)] = median_of(3, once)
                print(f"  {mode:7s} {calls:2d} redis.call: {out[(mode, calls)]:6.2f} µs per script")
            raw.close()
    for mode in ("plain", "cluster"):
        per = (out[(mode, 20)] - out[(mode, 0)]) / 20
        print(f"  {mode:7s}: {per:.3f} µs per redis.call('HSET')")


def _sweep(stop: Any) -> None:
    buf = bytearray(64 << 20)
    while not stop.is_set():
        for j in range(0, len(buf), 64):
            buf[j] = (buf[j] + 1) & 255


def probe_wakeup() -> None:
    print("wakeup: Redis CPU per read of 10 HMGETs (200k hashes), back to back or pausing")
    with server() as (port, r):
        pipe = r.pipeline(transaction=False)
        for i in range(200_000):
            pipe.hset(f"h{i}", mapping={"a": "x" * 50, "b": i, "c": "y" * 20})
            if i % 5000 == 4999:
                pipe.execute()
        pipe.execute()
        raw = Raw(port)

        def once(gap: float) -> float:
            c0 = cpu(r)
            for _ in range(3000):
                buf = b"".join(
                    pack_command(("HMGET", f"h{random.randrange(200_000)}", "a", "b", "c"))
                    for _ in range(10)
                )
                raw.roundtrip(buf, 10)
                if gap:
                    time.sleep(gap)
            return (cpu(r) - c0) * 1e6 / 3000

        for sweepers in (0, 2):
            stop = mp.Event()
            procs = [mp.Process(target=_sweep, args=(stop,)) for _ in range(sweepers)]
            for p in procs:
                p.start()
            try:
                for gap in (0.0, 0.0005):
                    v = median_of(3, lambda gap=gap: once(gap))
                    print(f"  {sweepers} sweepers, pause {gap * 1000:.1f} ms: {v:6.1f} µs per read")
            finally:
                stop.set()
                for p in procs:
                    p.join()
        raw.close()


PROBES = {"read": probe_read, "call": probe_call, "wakeup": probe_wakeup}


def main() -> int:
    wanted = sys.argv[1:] or list(PROBES)
    if set(wanted) - set(PROBES) or not SERVER:
        print(__doc__, file=sys.stderr)
        return 2
    print(f"{SERVER}; load {os.getloadavg()[0]:.2f}")
    for name in wanted:
        PROBES[name]()
    return 0


if __name__ == "__main__":
    sys.exit(main())
