#!/usr/bin/env python3
"""Validate compose.yaml against the compose-spec JSON schema, and check what we promise.

    python scripts/validate_compose.py [compose.yaml]

The schema is vendored in scripts/schema/ (see its README); no Docker engine is needed.
Beyond the schema, checks the deployment the README describes: Redis with AOF
(``appendfsync always``), ``maxmemory-policy noeviction``, a data volume and a
healthcheck; the gateway; two worker replicas; services configured by environment.
Exit status 0 when valid, 1 with one line per problem otherwise.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft201909Validator

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "scripts" / "schema" / "compose-spec.json"


def schema_errors(doc: Any) -> list[str]:
    schema = json.loads(SCHEMA.read_text())
    validator = Draft201909Validator(schema)
    return [
        f"{'/'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
        for e in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    ]


def _flags(command: Any) -> dict[str, str]:
    """``--name value`` pairs of a redis-server command (list or string form)."""
    words = command.split() if isinstance(command, str) else [str(w) for w in command or []]
    return {
        w[2:]: words[i + 1]
        for i, w in enumerate(words[:-1])
        if w.startswith("--") and not words[i + 1].startswith("--")
    }


def deployment_errors(doc: dict[str, Any]) -> list[str]:
    errors: list[str] = []
    services = doc.get("services") or {}
    for name in ("redis", "gateway", "worker"):
        if name not in services:
            errors.append(f"services/{name}: missing")
    if errors:
        return errors
    redis, gateway, worker = services["redis"], services["gateway"], services["worker"]
    flags = _flags(redis.get("command"))
    for flag, want in (
        ("appendonly", "yes"),
        ("appendfsync", "always"),
        ("maxmemory-policy", "noeviction"),
    ):
        if flags.get(flag) != want:
            errors.append(f"services/redis: --{flag} must be {want!r}, is {flags.get(flag)!r}")
    if not any(str(v).endswith(":/data") for v in redis.get("volumes") or []):
        errors.append("services/redis: needs a volume mounted at /data")
    if not redis.get("healthcheck"):
        errors.append("services/redis: needs a healthcheck")
    if (worker.get("deploy") or {}).get("replicas") != 2:
        errors.append("services/worker: deploy.replicas must be 2")
    for name, svc in (("gateway", gateway), ("worker", worker)):
        env = svc.get("environment") or {}
        if not isinstance(env, dict) or "REDPROMISE_URL" not in env:
            errors.append(f"services/{name}: REDPROMISE_URL must be set in environment")
        dep = (svc.get("depends_on") or {}).get("redis") or {}
        if dep.get("condition") != "service_healthy":
            errors.append(f"services/{name}: must depend on redis being healthy")
    return errors


def validate(path: Path) -> list[str]:
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        return [f"{path}: cannot read: {exc}"]
    if not isinstance(doc, dict):
        return [f"{path}: not a mapping"]
    return schema_errors(doc) or deployment_errors(doc)


def main(argv: list[str]) -> int:
    path = Path(argv[0]) if argv else ROOT / "compose.yaml"
    errors = validate(path)
    for e in errors:
        print(f"{path.name}: {e}", file=sys.stderr)
    if not errors:
        print(f"{path.name}: valid (compose-spec schema and deployment checks)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
