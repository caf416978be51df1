"""The chaos run, small: every fault kind, and the checker's verdict must be PASS.

The full run (``python bench/chaos.py --n 5000``) is marked slow; CI runs this one.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_chaos(tmp_path: Path, *args: str, timeout: float) -> dict[str, object]:
    out = tmp_path / "chaos.json"
    proc = subprocess.run(
        [sys.executable, "bench/chaos.py", "--json", str(out), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result: dict[str, object] = json.loads(out.read_text())
    return result


@pytest.mark.real
def test_chaos_small_loses_nothing_and_completes_nothing_twice(tmp_path: Path) -> None:
    r = run_chaos(tmp_path, "--n", "1500", "--seed", "11", "--rate", "100", timeout=400)
    assert r["lost"] == 0
    assert r["double_completions"] == 0
    assert r["checkpointed_steps_reexecuted"] == 0
    assert r["acknowledged_begins"] == r["completed"] == 1500
    faults = r["faults"]
    assert isinstance(faults, dict)
    # Every fault kind was injected at least once in the 15 s of sending.
    for kind in ("worker_kill", "worker_stop", "gateway_kill", "redis_restart"):
        assert faults.get(kind, 0) >= 1, faults


@pytest.mark.real
@pytest.mark.slow
def test_chaos_full_run(tmp_path: Path) -> None:
    r = run_chaos(tmp_path, "--n", "5000", "--seed", "1", timeout=1800)
    assert r["lost"] == r["double_completions"] == r["checkpointed_steps_reexecuted"] == 0
