"""The published OpenAPI document tells the truth about the live gateway.

Schemathesis (its CLI, as a subprocess) reads ``/openapi.json`` from a real gateway process
(services/gateway.py, with a bearer token) in front of a real worker process and a real
redis-server, then sends schema-valid and schema-invalid requests to every operation with
all its checks: status codes and response bodies conform to the document, content types,
documented headers (``Retry-After``), schema-valid requests accepted, schema-invalid ones
refused with 4xx, unknown methods answered 405, and a missing token answered 401.

Examples per operation are bounded (``-n``) to keep the run well under a minute on two cores.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.procs import ROOT
from tests.services import GatewayProcess, service_worker

pytestmark = pytest.mark.real

EXAMPLES_PER_OPERATION = 25


def test_schemathesis_finds_no_mismatch_between_openapi_and_the_live_gateway(
    real_url: str, tmp_path: Path
) -> None:
    pytest.importorskip("schemathesis")
    namespace = f"oa{uuid.uuid4().hex[:10]}"
    gateway = GatewayProcess(
        real_url,
        namespace,
        tmp_path,
        # A short long-poll cap: generated `timeout`s on a pending promise end quickly.
        env={"REDPROMISE_GATEWAY_TOKEN": "sekret", "REDPROMISE_GATEWAY_MAX_WAIT": "0.2"},
    )
    worker = service_worker(real_url, namespace, tmp_path)
    try:
        gateway.start()
        worker.start()
        cli = Path(sys.executable).with_name("schemathesis")
        command = [str(cli)] if cli.exists() else [sys.executable, "-m", "schemathesis.cli"]
        result = subprocess.run(
            [
                *command,
                "run",
                f"{gateway.base}/openapi.json",
                "--checks",
                "all",
                "--mode",
                "all",
                "--max-examples",
                str(EXAMPLES_PER_OPERATION),
                "--workers",
                "1",
                "--request-timeout",
                "10",
                "--header",
                "Authorization: Bearer sekret",
                "--no-color",
                "--report",
                "junit",
                "--report-dir",
                str(tmp_path / "schemathesis-report"),
            ],
            cwd=tmp_path,
            env={
                **os.environ,
                "PYTHONPATH": str(ROOT),
                "SCHEMATHESIS_HOOKS": "tests.schemathesis_hooks",
            },
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=300,
        )
        (tmp_path / "schemathesis.txt").write_text(result.stdout + result.stderr)
        assert result.returncode == 0, result.stdout[-15000:] + result.stderr[-3000:]
        assert "No issues found" in result.stdout or " passed" in result.stdout, result.stdout
    finally:
        gateway.close()
        worker.close()
