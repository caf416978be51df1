"""Redis cost of each hot-path script, one at a time, on a private redis-server.

    PYTHONPATH=. python bench/script_cost.py [--n 20000] [--batch 100] [--repeat 5]
    PYTHONPATH=. python bench/script_cost.py --callgrind [--n 2000] [--repeat 1]
    PYTHONPATH=. python bench/script_cost.py --callgrind --cluster-mode [--n 2000] [--repeat 1]

Starts its own redis-server (as ``bench/run.py`` does: ``REDPROMISE_REDIS_SERVER`` or PATH,
no persistence), then for ``--n`` promises runs, phase by phase and in pipelined batches of
``--batch`` (as the worker and the coalescer send them), ``--window`` promises at a time:
``create`` (dispatched to one group), ``XREADGROUP`` of the entries, ``acquire`` of each
entry, ``complete`` (resolve, by the acquired version), and one ``HMGET`` read of each
result; then as many promises again taken the way a busy worker takes them: ``create``,
``take`` (one call per partition reads and acquires its window's entries), ``complete``
and ``read``. Per phase it prints the Redis
CPU per promise (``INFO cpu`` user+sys delta / N, so the server's socket reads and writes
count) and the commands per promise from ``INFO commandstats`` (which counts the commands
a script runs inside it as well as the EVALSHA). Medians (and minimums) over ``--repeat``
runs, each on a fresh FLUSHALL, the scripts loaded beforehand. The redpromise measured is
the one on PYTHONPATH, so two checkouts compare with the same file.

Redis CPU figures are CPU time, so they hold up on a shared machine better than wall-clock
ones, but still move by several µs when other processes share the cores: compare
before/after runs made back to back. ``--callgrind`` runs redis-server under valgrind's
callgrind and reports instructions executed per promise instead (zeroed and dumped around
each phase with ``callgrind_control``): exact and repeatable whatever else runs, so it
resolves a change of one command inside a script, which CPU time cannot on a busy machine.
``--cluster-mode`` starts the server with ``--cluster-enabled yes`` and gives it every slot:
the same commands on the same single node, so the difference from a plain run is what
Redis's cluster mode itself costs per command (slot checks of every key, in scripts too).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aredis

sys.path.insert(0, str(Path(__file__).resolve().parent))  # redpromise: from PYTHONPATH

import run as bench

from redpromise.core.codec import encode
from redpromise.core.keys import Keys
from redpromise.core.options import Settings
from redpromise.store.scripts import Command
from redpromise.store.store import _FIELDS, _HMGET, Call, Store

GROUP = "g"
PHASES = ("create", "xreadgroup", "acquire", "take", "complete", "read")
# The two ways a worker gets its entries, each with create, complete and read around it.
PATHS = {"xreadgroup+acquire": ("xreadgroup", "acquire"), "take": ("take",)}


class Callgrind:
    """Instructions redis-server executed between :meth:`start` and :meth:`stop`."""

    def __init__(self, pid: int, out: Path) -> None:
        self.pid = pid
        self.out = out

    def start(self) -> None:
        subprocess.run(["callgrind_control", "-z", str(self.pid)], check=True, capture_output=True)

    def stop(self) -> float:
        before = set(self.out.parent.glob(self.out.name + "*"))
        subprocess.run(["callgrind_control", "-d", str(self.pid)], check=True, capture_output=True)
        (dump,) = set(self.out.parent.glob(self.out.name + "*")) - before
        for line in dump.read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                return float(line.split()[1])
        raise RuntimeError(f"no summary in {dump}")


def cluster_args(d: Path) -> list[str]:
    return ["--cluster-enabled", "yes", "--cluster-config-file", str(d / "nodes.conf")]


def own_every_slot(client: redis.Redis) -> None:
    """Make a lone cluster-mode node serve all 16384 slots (ADDSLOTS: Redis 6.2 too)."""
    client.execute_command("CLUSTER", "ADDSLOTS", *range(16384))
    deadline = time.monotonic() + 30
    while b"cluster_state:ok" not in client.execute_command("CLUSTER", "INFO"):
        if time.monotonic() > deadline:
            raise SystemExit("the cluster-mode node did not reach cluster_state:ok")
        time.sleep(0.1)


@contextlib.contextmanager
def server(
    callgrind: bool, cluster_mode: bool
) -> Iterator[tuple[str, redis.Redis, Callgrind | None]]:
    """A private redis-server, under callgrind if asked; with ``cluster_mode`` started with
    ``--cluster-enabled yes`` and given every slot, so the same commands on the same one
    node show what Redis's cluster mode itself adds per command."""

    def valgrind(d: Path) -> list[str]:
        return ["valgrind", "--tool=callgrind", f"--callgrind-out-file={d / 'cg.out'}"]

    with bench.redis_process(
        valgrind if callgrind else None,
        start_timeout=60 if callgrind else 10,
        extra=cluster_args if cluster_mode else None,
    ) as (url, client, pid, d):
        if cluster_mode:
            own_every_slot(client)
        yield url, client, Callgrind(pid, d / "cg.out") if callgrind else None


def create_call(store: Store, id: str, args: bytes) -> Call:
    keys, k = store.keys, store.keys.partition(id)
    return (
        store.scripts["create"],
        [
            keys.promise(id),
            keys.stream(k, GROUP),
            keys.timeouts(k),
            keys.index(k, "pending"),
            keys.counts(k),
        ],
        [id, "f", args, GROUP, 86_400_000, b"", b""],
    )


Phase = Callable[..., Awaitable[list[Any]]]


async def by_take(phase: Phase, store: Store, window: int, m: int) -> dict[str, int]:
    """The window's entries taken, one call per partition: {id: version acquired}."""
    calls = [store.take_call(k, GROUP, "c", window, b"") for k in range(store.keys.partitions)]
    versions: dict[str, int] = {}
    for res in await phase("take", calls, m, take=True):
        for _entry, id, got in res:
            versions[id.decode()] = int(got[1])
    return versions


async def by_read_and_acquire(phase: Phase, store: Store, window: int, m: int) -> dict[str, int]:
    """The window's entries read (XREADGROUP per partition), then acquired one by one."""
    keys, xread = store.keys, Command("XREADGROUP")
    reads: list[Call] = [
        (xread, [], ["GROUP", GROUP, "c", "COUNT", window, "STREAMS", keys.stream(k, GROUP), ">"])
        for k in range(keys.partitions)
    ]
    entries: list[tuple[int, str, str]] = []
    for res in await phase("xreadgroup", reads, m):
        for _stream, rows in res.items() if isinstance(res, dict) else res or []:
            for entry, fields in rows:
                id = fields[1].decode()
                entries.append((keys.partition(id), entry.decode(), id))
    calls = [store.acquire_call(k, GROUP, e, id, "c", b"") for k, e, id in entries]
    got = await phase("acquire", calls, m)
    return {id: int(r[1]) for (_, _, id), r in zip(entries, got, strict=True)}


async def one_run(
    url: str, sync: redis.Redis, n: int, batch: int, window: int, meter: Callgrind | None = None
) -> dict[str, Any]:
    sync.flushall()
    client = aredis.Redis.from_url(url)
    keys = Keys("bench", 16)
    store = Store(client, keys, Settings(namespace="bench"))
    for script in store.scripts.values():
        await client.script_load(script.source)
    for k in range(keys.partitions):
        await client.xgroup_create(keys.stream(k, GROUP), GROUP, id="0", mkstream=True)
    args = encode([1], 1 << 20)
    value = encode(2, 1 << 20)
    out: dict[str, Any] = {
        name: {"us": 0.0, "cmds": 0.0, "n": 0, "by_cmd": collections.Counter()}
        for name in PHASES
    }

    async def phase(name: str, calls: list[Call], promises: int, take: bool = False) -> list[Any]:
        before_cmd = bench.commandstats(sync)
        if meter is not None:
            meter.start()
        before_cpu = bench.redis_cpu(sync)
        results: list[Any] = []
        for i in range(0, len(calls), batch):
            part = calls[i : i + batch]
            results += await (store.take(part) if take else store.run_calls(part))
        after_cpu = bench.redis_cpu(sync)
        if meter is not None:
            after_cpu = before_cpu + meter.stop() / 1e6  # so "us" below is instructions
        after_cmd = bench.commandstats(sync)
        for r in results:
            if isinstance(r, BaseException):
                raise r
        delta = bench.cmd_delta(before_cmd, after_cmd)
        delta.pop("info", None)
        # Totals here; per promise (of the phase's path) once the run is over.
        out[name]["us"] += (after_cpu - before_cpu) * 1e6
        out[name]["cmds"] += sum(c for c, _ in delta.values())
        out[name]["n"] += promises
        out[name]["by_cmd"].update({k: c for k, (c, _) in delta.items()})
        return results

    # A window of promises at a time, as a producer and its workers keep a few hundred in
    # flight: the pending index and timeouts zsets stay small, the final index grows.
    for path in PATHS:
        for first in range(0, n, window):
            ids = [f"{path}-{i}" for i in range(first, min(n, first + window))]
            m = len(ids)
            await phase("create", [create_call(store, i, args) for i in ids], m)
            get = by_take if path == "take" else by_read_and_acquire
            versions = await get(phase, store, window, m)
            assert len(versions) == m, (len(versions), m)
            done = await phase(
                "complete",
                [store.complete_call(id, GROUP, versions[id], "resolved", value) for id in ids],
                m,
            )
            assert all(int(r[0]) == 1 for r in done), done[:3]
            await phase("read", [(_HMGET, [keys.promise(id)], _FIELDS) for id in ids], m)
    for name in PHASES:
        per = max(1, out[name]["n"])
        out[name]["us"] /= per
        out[name]["cmds"] /= per
        out[name]["by_cmd"] = collections.Counter(
            {k: c / per for k, c in out[name]["by_cmd"].items()}
        )
    await client.aclose()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=20_000)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--window", type=int, default=200, help="promises in flight (200)")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--callgrind", action="store_true", help="count instructions (valgrind)")
    p.add_argument(
        "--cluster-mode",
        action="store_true",
        help="one node started with --cluster-enabled yes, serving every slot",
    )
    a = p.parse_args()
    with server(a.callgrind, a.cluster_mode) as (url, sync, meter):
        version = bench.redis_version(sync)
        runs = [
            asyncio.run(one_run(url, sync, a.n, a.batch, a.window, meter)) for _ in range(a.repeat)
        ]
    unit = (
        "Redis instructions/promise (callgrind)"
        if a.callgrind
        else "Redis CPU µs/promise (INFO cpu)"
    )
    mode = ", cluster mode (one node, every slot)" if a.cluster_mode else ""
    print(
        f"Redis {version}{mode}, N={a.n}, {a.window} in flight, batches of {a.batch}, "
        f"median of {a.repeat} runs"
    )
    print(f"| phase | {unit}, median (min) | commands/promise | commands |")
    print("|---|---:|---:|---|")
    for name in PHASES:
        us = statistics.median(r[name]["us"] for r in runs)
        low = min(r[name]["us"] for r in runs)
        cmds = statistics.median(r[name]["cmds"] for r in runs)
        by = runs[-1][name]["by_cmd"]
        detail = ", ".join(f"{k} {v:.2g}" for k, v in sorted(by.items(), key=lambda x: -x[1]))
        print(f"| {name} | {us:,.1f} ({low:,.1f}) | {cmds:.2f} | {detail} |")
    for path, own in PATHS.items():
        names = ("create", *own, "complete", "read")
        us = sum(statistics.median(r[p]["us"] for r in runs) for p in names)
        low = sum(min(r[p]["us"] for r in runs) for p in names)
        cmds = sum(statistics.median(r[p]["cmds"] for r in runs) for p in names)
        print(f"| total, {path} | {us:,.1f} ({low:,.1f}) | {cmds:.2f} | |")


if __name__ == "__main__":
    main()
