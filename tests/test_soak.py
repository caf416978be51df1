"""The soak, short: steady load with worker kills; memory flat after warm-up, nothing lost.

The 30-minute version is ``python bench/soak.py`` (not run in CI).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.real
def test_short_soak_keeps_memory_flat_and_loses_nothing() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "bench/soak.py",
            "--minutes",
            "0.6",
            "--rate",
            "40",
            "--retention",
            "4",
            "--sample",
            "2",
            "--kill-every",
            "6",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "peak memory after warm-up" in out, out[-4000:]
    assert "; lost: 0" in out, out[-4000:]
