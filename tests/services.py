"""The services (services/gateway.py, services/worker.py) as real processes for tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.procs import ROOT, WorkerProcess
from tests.redis_server import free_port

__all__ = ["GatewayProcess", "service_worker"]


class GatewayProcess:
    """``python services/gateway.py`` on a free port; SIGKILL-able, restartable."""

    def __init__(
        self, url: str, namespace: str, log_dir: Path, *, env: dict[str, str] | None = None
    ) -> None:
        self.port = free_port()
        self.log = log_dir / f"gateway-{time.monotonic_ns()}.log"
        self.env = {
            **os.environ,
            "REDPROMISE_URL": url,
            "REDPROMISE_NAMESPACE": namespace,
            "REDPROMISE_GATEWAY_HOST": "127.0.0.1",
            "REDPROMISE_GATEWAY_PORT": str(self.port),
            **(env or {}),
        }
        if "REDPROMISE_GATEWAY_TOKEN" not in (env or {}):
            self.env.pop("REDPROMISE_GATEWAY_TOKEN", None)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> GatewayProcess:
        start = len(self.output())
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, str(ROOT / "services" / "gateway.py")],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "gateway listening" in self.output()[start:]:
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}:\n{self.output()}")
            time.sleep(0.05)
        raise RuntimeError(f"gateway not ready after {timeout}s:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no cleanup runs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def service_worker(
    url: str, namespace: str, log_dir: Path, *, process_seconds: float = 0.0, lease: float = 1.0
) -> WorkerProcess:
    """A ``python -m redpromise worker services.worker:rp`` process (not started)."""
    return WorkerProcess(
        url,
        namespace,
        log_dir,
        lease=lease,
        target="services.worker:rp",
        env={"REDPROMISE_WORKER_PROCESS_SECONDS": str(process_seconds)},
    )
