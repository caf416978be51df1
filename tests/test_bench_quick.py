"""The benchmark's --quick mode still runs end to end (performance is not asserted here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.real
@pytest.mark.timeout(180)
def test_bench_quick_runs_redpromise_and_prints_the_table() -> None:
    cp = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--only", "redpromise"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert cp.returncode == 0, cp.stderr[-2000:]
    assert "| library | jobs/s, 1 worker |" in cp.stdout
    row = next(ln for ln in cp.stdout.splitlines() if ln.startswith("| redpromise |"))
    assert "n/a" not in row.split("|")[2], row  # the 1-worker throughput was measured
    assert "error" not in cp.stdout.lower(), cp.stdout
