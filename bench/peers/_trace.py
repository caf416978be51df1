"""Diagnosis: every redis-py socket write of this process, by node, origin and commands.

Installed by ``_proto.parse`` when ``BENCH_TRACE`` names a directory (bench/cluster.py
``--trace``); writes ``<dir>/<role>-<pid>.json`` at exit. One client write is one socket
read on the server (when no other client's bytes share it), so summed per node this is
what the server's ``total_reads_processed`` counts, split by who caused it:

- ``origin``: the innermost redpromise function outside the batch path (_wire, _cluster,
  _scripts' pipeline) that led to the write, e.g. ``_reads.PartitionReads._read``;
- ``what``: the commands in the write, scripts by name, ``XREADGROUP`` split into
  ``XREADGROUP-BLOCK`` and ``XREADGROUP-NOBLOCK``; their set joined by ``+``.

Counts only; never part of a timed comparison.
"""

from __future__ import annotations

import atexit
import collections
import json
import os
import sys
from typing import Any

_BATCH_PATH = ("/_wire.py", "/_cluster.py", "/_scripts.py")


def _names(buf: bytes) -> list[str]:
    """Command names of a RESP buffer of arrays of bulk strings."""
    out: list[str] = []
    i, n = 0, len(buf)
    while i < n and buf[i : i + 1] == b"*":
        j = buf.index(b"\r\n", i)
        argc = int(buf[i + 1 : j])
        i = j + 2
        args: list[bytes] = []
        for _ in range(argc):
            j = buf.index(b"\r\n", i)
            ln = int(buf[i + 1 : j])
            i = j + 2
            if len(args) < 2 or not args or args[0].upper() == b"XREADGROUP":
                args.append(buf[i : i + ln])
            i += ln + 2
        name = args[0].upper().decode() if args else "?"
        if name == "EVALSHA" and len(args) > 1:
            name = _SHAS.get(args[1].decode(), "EVALSHA")
        elif name == "XREADGROUP":
            name += "-BLOCK" if any(a.upper() == b"BLOCK" for a in args) else "-NOBLOCK"
        out.append(name)
    return out


_SHAS: dict[str, str] = {}
_counts: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])


def _origin() -> str:
    f: Any = sys._getframe(2)
    chain: list[str] = []
    while f is not None:
        fn = f.f_code.co_filename
        if "/redpromise/" in fn and not fn.endswith(_BATCH_PATH):
            chain.append(f"{os.path.basename(fn)[:-3]}.{f.f_code.co_qualname}")
            if len(chain) == 2:
                break
        f = f.f_back
    return " < ".join(chain) or "(redis-py)"


def install(directory: str, role: str) -> None:
    from redis.asyncio import connection as aconn

    from redpromise.store.scripts import load_scripts

    _SHAS.update({s.sha: s.name for s in load_scripts().values()})
    orig = aconn.AbstractConnection.send_packed_command

    async def send(self: Any, command: Any, check_health: bool = True) -> None:
        buf = command if isinstance(command, bytes) else b"".join(command)
        try:
            names = _names(buf)
        except ValueError:
            names = ["?"]
        what = "+".join(sorted(set(names)))
        c = _counts[f"{self.port}|{_origin()}|{what}"]
        c[0] += 1
        c[1] += len(names)
        await orig(self, command, check_health)

    aconn.AbstractConnection.send_packed_command = send  # type: ignore[method-assign]

    def dump() -> None:
        path = os.path.join(directory, f"{role}-{os.getpid()}.json")
        with open(path, "w") as f:
            json.dump({"role": role, "counts": dict(_counts)}, f)

    atexit.register(dump)
