"""bench/cluster.py --quick still runs end to end on one node and a local 3+3 cluster
(performance is not asserted here, only that every figure was measured)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.real
@pytest.mark.timeout(180)
def test_cluster_bench_quick_measures_both_targets_and_prints_the_table() -> None:
    cp = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "cluster.py"), "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert cp.returncode == 0, cp.stderr[-2000:]
    assert "| figure | single | cluster 3+3 | cluster 3+3 / single |" in cp.stdout
    rows = {ln.split("|")[1].strip(): ln for ln in cp.stdout.splitlines() if ln.startswith("| ")}
    for figure in ("throughput, promises/s", "Redis CPU µs/promise (masters)",
                   "round trip p50, ms", "idle worker, cmds/s per master"):
        assert "n/a" not in rows[figure], rows[figure]
    shares = rows["each master's share of the commands, %"].split("|")[3]
    assert len(shares.split("/")) == 3, shares  # one share per master
