"""compose.yaml is a valid Compose file (compose-spec JSON schema) with the promised setup.

CI has no Docker engine, so ``docker compose config`` cannot run; the vendored schema
(scripts/schema/compose-spec.json) is the validator.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from scripts.validate_compose import ROOT, validate

COMPOSE = ROOT / "compose.yaml"


def test_compose_file_passes_schema_and_deployment_checks() -> None:
    assert validate(COMPOSE) == []


def test_validator_script_exits_zero_on_the_compose_file() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "validate_compose.py")],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    assert "valid" in proc.stdout


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d["services"]["gateway"].update(bogus_key=1), "bogus_key"),
        (lambda d: d["services"]["worker"]["deploy"].update(replicas="two"), "replicas"),
        (lambda d: d["services"]["redis"].update(healthcheck={"retries": "x"}), "retries"),
        (lambda d: d.update(unknown_top_level={}), "unknown_top_level"),
    ],
    ids=["unknown-service-key", "replicas-not-int", "bad-healthcheck", "unknown-top-level"],
)
def test_schema_rejects_an_invalid_compose_file(
    tmp_path: Path, change: Callable[[dict[str, Any]], Any], expected: str
) -> None:
    """The schema check is live: a broken file fails it, naming the culprit."""
    doc = yaml.safe_load(COMPOSE.read_text())
    change(doc)
    broken = tmp_path / "compose.yaml"
    broken.write_text(yaml.safe_dump(doc))
    errors = validate(broken)
    assert errors and any(expected in e for e in errors), errors


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["services"]["redis"].update(command=["redis-server"]), "appendfsync"),
        (
            lambda d: d["services"]["redis"].update(
                command="redis-server --appendonly yes --appendfsync everysec "
                "--maxmemory-policy noeviction"
            ),
            "appendfsync",
        ),
        (lambda d: d["services"]["redis"].pop("volumes"), "/data"),
        (lambda d: d["services"]["worker"]["deploy"].update(replicas=1), "replicas"),
        (lambda d: d["services"]["gateway"]["environment"].clear(), "REDPROMISE_URL"),
    ],
    ids=["no-aof", "everysec", "no-volume", "one-worker", "no-url"],
)
def test_deployment_checks_reject_weaker_setups(
    tmp_path: Path, mutate: Callable[[dict[str, Any]], Any], expected: str
) -> None:
    doc = yaml.safe_load(COMPOSE.read_text())
    mutate(doc)
    broken = tmp_path / "compose.yaml"
    broken.write_text(yaml.safe_dump(doc))
    errors = validate(broken)
    assert errors and any(expected in e for e in errors), errors
