"""The GitHub workflow (.github/workflows/ci.yml) is a workflow GitHub can read: valid YAML
whose every step either uses an action or runs a command, and whose Python steps install
from the hash lock. A plain scalar holding ``: `` (as ``--only-binary=:all: -r``) is a YAML
error that makes GitHub reject the whole file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

WORKFLOW = Path(__file__).resolve().parents[1] / ".github" / "workflows" / "ci.yml"


def _jobs() -> dict[str, Any]:
    doc = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    assert isinstance(doc, dict), doc
    jobs: dict[str, Any] = doc["jobs"]
    return jobs


def test_the_workflow_parses_and_every_step_uses_an_action_or_runs_a_command() -> None:
    jobs = _jobs()
    assert {"unit", "real-redis", "redis-py-compat"} <= set(jobs)
    for name, job in jobs.items():
        for step in job["steps"]:
            assert ("uses" in step) != ("run" in step), (name, step)
            if "run" in step:
                assert isinstance(step["run"], str) and step["run"].strip(), (name, step)


def test_the_jobs_install_from_the_hash_lock() -> None:
    for name in ("unit", "real-redis"):
        runs = " ".join(s.get("run", "") for s in _jobs()[name]["steps"])
        assert "--require-hashes" in runs and "requirements/dev.txt" in runs, (name, runs)


def test_the_real_redis_job_has_the_python_the_resonate_sdk_needs() -> None:
    setup = next(s for s in _jobs()["real-redis"]["steps"] if "setup-python" in s.get("uses", ""))
    versions = str(setup["with"]["python-version"]).split()
    assert "3.12" in versions and versions[-1] == "3.11", versions  # the last is the default
