"""The README's demo command (``bash scripts/demo``) ends with a resolved promise and
leaves no process behind.

Runs the script itself, as CI does (CI=true, no stdin), with this interpreter instead of
creating .venv (REDPROMISE_PYTHON), so the test needs no network.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.procs import ROOT

pytestmark = pytest.mark.real


def run_demo(**env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("REDPROMISE_")}
    full.update(
        CI="true",
        REDPROMISE_PYTHON=sys.executable,
        REDPROMISE_WORKER_PROCESS_SECONDS="1",
        **env,
    )
    if "REDPROMISE_REDIS_SERVER" in os.environ:
        full.setdefault("REDPROMISE_REDIS_SERVER", os.environ["REDPROMISE_REDIS_SERVER"])
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "demo")],
        cwd=ROOT,
        env=full,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=110,
    )


def assert_resolved_and_all_stopped(proc: subprocess.CompletedProcess[str]) -> list[int]:
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert re.search(r"^==> promise demo-[0-9a-f]{8} resolved$", proc.stdout, re.M), out
    assert '"status": "pending"' in proc.stdout  # the begin answer, at least
    assert "Processed: " in proc.stdout
    stopped = re.search(r"^==> stopped: .*\(pids ([\d ]+)\)$", proc.stdout, re.M)
    assert stopped, out
    pids = [int(p) for p in stopped.group(1).split()]
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    return pids


def test_demo_starts_its_own_redis_and_ends_resolved() -> None:
    proc = run_demo()
    assert "==> Redis: started redis-server" in proc.stdout, proc.stdout + proc.stderr
    pids = assert_resolved_and_all_stopped(proc)
    assert len(pids) == 4  # gateway, two workers, redis-server


def test_demo_uses_redis_from_redpromise_url(real_url: str) -> None:
    proc = run_demo(REDPROMISE_URL=real_url)
    assert f"==> Redis: {real_url} (from REDPROMISE_URL)" in proc.stdout, proc.stdout
    assert len(assert_resolved_and_all_stopped(proc)) == 3
