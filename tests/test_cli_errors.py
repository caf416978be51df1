"""``python -m redpromise worker module:attr`` with a bad target: one clear line, exit 2.

Each case runs the real CLI in a subprocess from a directory holding the test modules;
none of them reaches Redis.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

MODULES = {
    "good_mod.py": (
        "from redpromise import Redpromise\n"
        "rp = Redpromise('redis://127.0.0.1:1/0')\n"
        "not_rp = 42\n"
        "def broken_factory():\n"
        "    raise RuntimeError('factory exploded')\n"
    ),
    "raising_mod.py": "import os\n\nraise RuntimeError('boom at import')\n",
    "dep_mod.py": "import some_missing_dependency_xyz\n",
    "syntax_mod.py": "def f(:\n    pass\n",
}


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("cli-app")
    for name, text in MODULES.items():
        (d / name).write_text(text)
    return d


def run_cli(app_dir: Path, target: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "redpromise", "worker", target],
        cwd=app_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("typo:rp", ["no module named 'typo'", "PYTHONPATH"]),
        ("good_mod.sub:rp", ["no module named 'good_mod.sub'"]),
        ("good_mod:rpx", ["module 'good_mod' has no attribute 'rpx'", "rp"]),
        ("good_mod:not_rp", ["good_mod:not_rp is of type 'int', not a Redpromise"]),
        ("good_mod:broken_factory", ["RuntimeError: factory exploded", "good_mod.py:5"]),
        (
            "raising_mod:rp",
            ["importing 'raising_mod' failed: RuntimeError: boom at import", "raising_mod.py:3"],
        ),
        (
            "dep_mod:rp",
            ["importing 'dep_mod' failed", "some_missing_dependency_xyz", "dep_mod.py:1"],
        ),
        ("syntax_mod:rp", ["importing 'syntax_mod' failed: SyntaxError"]),
        ("good_mod", ["expected module:attribute"]),
    ],
)
def test_bad_worker_target_exits_2_with_one_clear_line(
    app_dir: Path, target: str, expected: list[str]
) -> None:
    proc = run_cli(app_dir, target)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("redpromise: ")
    for part in expected:
        assert part in lines[0]
