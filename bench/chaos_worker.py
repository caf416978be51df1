"""The chaos run's worker: a several-step workflow whose every step is written to a ledger.

``python -m redpromise worker chaos_worker:make`` (with ``bench/`` on PYTHONPATH).
The ledger is a SQLite file (``CHAOS_LEDGER``), outside redpromise's keys and outside
Redis, so it survives every fault the nemesis injects. Rows:

- ``exec``: a step's body started (before its checkpoint exists);
- ``ack``: ``ctx.run`` returned, i.e. the step's checkpoint was acknowledged;
- ``completed`` / ``refused`` / ``already_completed``: the worker's completion events.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import sqlite3
import time
from datetime import timedelta
from typing import Any

from redpromise import Context, Exponential, Redpromise

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    kind TEXT NOT NULL, pid TEXT NOT NULL, step INTEGER, version INTEGER,
    proc INTEGER NOT NULL, ts REAL NOT NULL
)
"""


class Ledger:
    """Append-only SQLite ledger; each row is committed before the call returns."""

    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(SCHEMA)
        self.proc = os.getpid()

    def write(self, kind: str, pid: str, step: int | None, version: int | None) -> None:
        self.db.execute(
            "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)",
            (kind, pid, step, version, self.proc, time.time()),
        )


class LedgerHandler(logging.Handler):
    """Writes the worker's structured completion events to the ledger."""

    def __init__(self, ledger: Ledger) -> None:
        super().__init__(level=logging.DEBUG)
        self.ledger = ledger

    def emit(self, record: logging.LogRecord) -> None:
        event = getattr(record, "redpromise_event", None)
        if event is not None:
            self.ledger.write(
                event, getattr(record, "promise_id", ""), None, getattr(record, "version", None)
            )


def make() -> Redpromise:
    rp = Redpromise.from_env()
    ledger = Ledger(os.environ["CHAOS_LEDGER"])
    steps = int(os.environ.get("CHAOS_STEPS", "4"))
    wlog = logging.getLogger("redpromise.worker")
    wlog.setLevel(logging.DEBUG)
    wlog.addHandler(LedgerHandler(ledger))
    for handler in logging.getLogger().handlers:  # keep stderr at INFO
        handler.setLevel(logging.INFO)

    async def do_step(pid: str, step: int, version: int) -> int:
        ledger.write("exec", pid, step, version)
        await asyncio.sleep(random.uniform(0.005, 0.03))
        return step * 10

    @rp.register(
        retry=Exponential(delay=timedelta(milliseconds=100), max_delay=timedelta(seconds=2))
    )
    async def chaos(ctx: Context, data: Any) -> dict[str, Any]:
        values = []
        for step in range(1, steps + 1):
            values.append(await ctx.run(do_step, ctx.id, step, ctx.version))
            ledger.write("ack", ctx.id, step, ctx.version)
        return {"input": data, "steps": values}

    return rp
