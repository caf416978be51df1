"""bench/resonate_flow.py's --quick mode still runs end to end (performance is not asserted)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.resonate.env import node_dir

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.real
@pytest.mark.timeout(300)
def test_bench_resonate_quick_runs_every_system_and_prints_the_table() -> None:
    node_dir()  # installs Node and the TypeScript SDK when missing
    link = ROOT / "bench" / "resonate" / "node_modules"
    if not link.exists():
        link.symlink_to(Path("..", "..", "tests", "resonate", "node", "node_modules"))
    env = dict(os.environ)
    env.pop("RESONATE_PG_SQL", None)  # the optional anchor is skipped, with its reason
    cp = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "resonate_flow.py"), "--quick", "--cases", "w1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=290,
    )
    assert cp.returncode == 0, cp.stderr[-2000:]
    assert "| case | system | promises/s (runs) |" in cp.stdout
    rows = [ln for ln in cp.stdout.splitlines() if ln.startswith("| window")]
    # One case (one in flight) keeps the smoke test short; every system runs it.
    for system in ("serve", "oracle", "python", "ts-py", "py-ts"):
        measured = [r for r in rows if f"| {system} |" in r]
        assert len(measured) == 1, (system, cp.stdout)
        assert all("skipped" not in r for r in measured), measured
    assert any("| pg | skipped: resonate-pg's resonate.sql not given" in r for r in rows), rows
    assert "4.00 requests" in cp.stdout  # the SDK's protocol traffic was counted
