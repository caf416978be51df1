"""Real worker processes for tests: start, wait until ready, kill, stop, freeze."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["WorkerProcess"]

ROOT = Path(__file__).resolve().parent.parent


class WorkerProcess:
    """``python -m redpromise worker tests.workers:make`` in its own process."""

    def __init__(
        self,
        url: str,
        namespace: str,
        log_dir: Path,
        *,
        group: str = "worker",
        lease: float = 1.0,
        concurrency: int = 100,
        grace: float = 5.0,
        target: str = "tests.workers:make",
        env: dict[str, str] | None = None,
        args: Sequence[str] = (),
    ) -> None:
        self.log = log_dir / f"worker-{time.monotonic_ns()}.log"
        self.env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "REDPROMISE_URL": url,
            "TEST_FX_URL": url,
            "REDPROMISE_NAMESPACE": namespace,
            "REDPROMISE_GROUP": group,
            "REDPROMISE_LEASE": str(lease),
            "REDPROMISE_CONCURRENCY": str(concurrency),
            "REDPROMISE_SHUTDOWN_GRACE": str(grace),
            **(env or {}),
        }
        self.target = target
        self.args = list(args)  # extra CLI arguments, e.g. ["--health-port", "8123"]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wait: bool = True) -> WorkerProcess:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "redpromise", "worker", self.target, *self.args],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "serving group" in self.output():
                return
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{self.output()}")
            time.sleep(0.05)
        raise RuntimeError(f"worker not ready after {timeout}s:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL: no cleanup of any kind runs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def freeze(self) -> None:
        self.signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.signal(signal.SIGCONT)

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait for the graceful exit; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.proc.wait(timeout)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)
