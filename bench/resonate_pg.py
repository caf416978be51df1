"""The optional resonate-pg anchor of bench/resonate_flow.py: a fresh PostgreSQL database
with Resonate's Postgres connector installed from its SQL file, read at run time.

resonate-pg's SQL is not part of this repository (another project's code); the bench takes
its path from ``--pg-sql`` / ``$RESONATE_PG_SQL`` and applies it with ``psql`` to a database
of its own (``rp_rsbench_<random>``), dropped when the bench ends.
"""

from __future__ import annotations

import atexit
import contextlib
import subprocess
import uuid

_made: list[tuple[str, str]] = []


def _psql(base: str, db: str, *args: str) -> None:
    cp = subprocess.run(["psql", f"{base}/{db}", "-v", "ON_ERROR_STOP=1", "-q", *args],
                        capture_output=True, text=True, timeout=120)
    if cp.returncode != 0:
        raise RuntimeError(f"psql {' '.join(args)[:80]}: {cp.stderr.strip()[-300:]}")


def fresh_database(sql: str, base: str) -> str:
    """Create a database, install resonate-pg in it from ``sql``; its URL."""
    db = f"rp_rsbench_{uuid.uuid4().hex[:10]}"
    _psql(base, "postgres", "-c", f"CREATE DATABASE {db}")
    _made.append((base, db))
    _psql(base, db, "-f", sql)
    return f"{base}/{db}"


@atexit.register
def drop_all() -> None:
    """Drop every database this process made (their connections are closed by then)."""
    while _made:
        base, db = _made.pop()
        with contextlib.suppress(RuntimeError, OSError, subprocess.TimeoutExpired):
            _psql(base, "postgres", "-c", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
