"""Real processes for the Resonate tests: the oracle server, the seed's TypeScript worker and
gateway, the Python SDK worker and client.

Every program takes the server by URL, so the same test drives the oracle
(``tests/resonate/node/oracle_server.mjs``) or ``redpromise serve``. Use the
``resonate_programs`` fixture: it starts programs on demand and kills every one it started
when the test ends. Each program's stdout and stderr go to a log file in the test's tmp dir
(``Program.output()`` reads it; a failed start raises with it).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.resonate.env import node_bin, node_dir, py312_bin, py_dir

__all__ = [
    "OracleStdio",
    "Program",
    "Programs",
    "connector_env",
    "oracle_stdio",
    "resonate_programs",
]

_READY = re.compile(r"^READY(?: (\d+))?\s*$", re.MULTILINE)
_LISTENING = re.compile(r"^redpromise serve: listening on http://[^\s:]+:(\d+)\s*$", re.MULTILINE)
_ROOT = Path(__file__).resolve().parents[2]


class Program:
    """One subprocess; started means it printed ``READY`` (with its port, for servers)."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        cwd: Path,
        log_dir: Path,
        env: Mapping[str, str] | None = None,
        ready: re.Pattern[str] = _READY,
    ) -> None:
        self.name = name
        self.ready = ready
        self.argv = list(argv)
        self.cwd = cwd
        self.log = log_dir / f"{name}-{time.monotonic_ns()}.log"
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.port: int | None = None

    def start(self, timeout: float = 30.0) -> Program:
        """Start it and wait for its READY line; raises RuntimeError with the log if it dies."""
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.ready.search(self.output())
            if found:
                self.port = int(found.group(1)) if found.group(1) else None
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode}:\n{self.output()}"
                )
            time.sleep(0.05)
        self.close()
        raise RuntimeError(f"{self.name} not ready after {timeout}s:\n{self.output()}")

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` of a program that serves HTTP."""
        if self.port is None:
            raise AttributeError(f"{self.name} serves no HTTP port")
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill(self) -> None:
        """SIGKILL (the crash a durable system must survive) and reap it."""
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGCONT)  # a frozen process dies too
            self.proc.kill()
            self.proc.wait(10)

    def freeze(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait for the exit; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.proc.wait(timeout)

    close = kill


class Programs:
    """Starts the Resonate test programs; :meth:`close` kills every one it started."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[Program] = []

    def _start(
        self,
        name: str,
        argv: Sequence[str],
        cwd: Path,
        env: Mapping[str, str] | None,
        timeout: float = 30.0,
        ready: re.Pattern[str] = _READY,
    ) -> Program:
        program = Program(name, argv, cwd=cwd, log_dir=self.log_dir, env=env, ready=ready)
        self.started.append(program)
        return program.start(timeout)

    def start_oracle(
        self, port: int = 0, *, debug: bool = False, env: Mapping[str, str] | None = None
    ) -> Program:
        """The SDK's in-memory reference server over HTTP + SSE (``.url``). ``debug``: no
        1 s tick, time moves only by debug.* requests. Env ``ORACLE_LOG`` = a file to log
        every request and message to; ``ORACLE_TOKEN`` = a bearer token to require."""
        argv = [str(node_bin()), "oracle_server.mjs", "--port", str(port)]
        return self._start("oracle", [*argv, "--debug"] if debug else argv, node_dir(), env)

    def start_serve(
        self,
        redis_url: str,
        namespace: str,
        port: int = 0,
        *,
        debug: bool = False,
        token: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Program:
        """``redpromise serve`` (this interpreter, this checkout) on ``redis_url`` and
        ``namespace`` (``.url``); ``port`` 0 = a free one. A second call with the first
        one's port restarts it on the same address."""
        argv = [sys.executable, "-m", "redpromise", "serve", "--port", str(port)]
        argv += ["--url", redis_url, "--namespace", namespace]
        if debug:
            argv.append("--debug")
        if token is not None:
            argv += ["--token", token]
        full_env = {"PYTHONPATH": str(_ROOT), **(env or {})}
        return self._start("serve", argv, _ROOT, full_env, ready=_LISTENING)

    def start_ts_worker(self, url: str, env: Mapping[str, str] | None = None) -> Program:
        """The seed's TypeScript worker (group "worker", function ``foo``). Env
        ``STEP_LEDGER`` = a file each step appends a JSON line to; ``WORKER_PID``."""
        argv = [str(node_bin()), "seed_worker.mjs"]
        return self._start("ts-worker", argv, node_dir(), {"RESONATE_URL": url, **(env or {})})

    def start_ts_gateway(
        self, url: str, port: int = 0, env: Mapping[str, str] | None = None
    ) -> Program:
        """The seed's Express gateway (``.url``: /begin and /wait)."""
        argv = [str(node_bin()), "seed_gateway.mjs"]
        full_env = {"RESONATE_URL": url, "PORT": str(port), **(env or {})}
        return self._start("ts-gateway", argv, node_dir(), full_env)

    def start_py_worker(self, url: str | None, env: Mapping[str, str] | None = None) -> Program:
        """The Python SDK worker (group "worker", ``foo`` as the TypeScript one). ``url``
        None: on Redis through the connector (``env`` from :func:`connector_env`)."""
        argv = [str(py312_bin()), "seed_worker.py"]
        return self._start("py-worker", argv, py_dir(), {**_server(url), **(env or {})})

    def run_py_client(
        self,
        url: str | None,
        id: str,
        data: Any = None,
        *,
        env: Mapping[str, str] | None = None,
        timeout: float = 60.0,
    ) -> dict[str, Any]:
        """Run the Python SDK client to the end: begin ``foo`` under ``id`` on
        ``poll://any@worker``, wait; its JSON line ({"id", "status", "result"|"error"})."""
        argv = [str(py312_bin()), "seed_client.py", id, json.dumps({} if data is None else data)]
        done = subprocess.run(
            argv,
            cwd=py_dir(),
            env={**os.environ, **_server(url), **(env or {})},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise RuntimeError(f"seed_client.py exited {done.returncode}:\n{done.stderr}")
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return result

    def run_py_schedule(
        self,
        url: str | None,
        *args: str,
        env: Mapping[str, str] | None = None,
        timeout: float = 60.0,
    ) -> None:
        """Run ``py/seed_schedule.py`` to the end (``create <id> <cron> [<data>]`` or
        ``delete <id>``): the Python SDK's schedule API on ``url``."""
        done = subprocess.run(
            [str(py312_bin()), "seed_schedule.py", *args],
            cwd=py_dir(),
            env={**os.environ, **_server(url), **(env or {})},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0 or "OK" not in done.stdout:
            raise RuntimeError(f"seed_schedule.py exited {done.returncode}:\n{done.stderr}")

    def close(self) -> None:
        for program in reversed(self.started):
            program.kill()


def _server(url: str | None) -> dict[str, str]:
    """The Python programs' server: ``url``, or none (Redis through the connector)."""
    return {"RESONATE_URL": url or ""}


def connector_env(redis_url: str, namespace: str) -> dict[str, str]:
    """The env of a Python program on Redis through redpromise's connector (no server):
    pass it with ``url=None``."""
    return {"RESONATE_URL": "", "REDPROMISE_URL": redis_url, "REDPROMISE_NAMESPACE": namespace}


@pytest.fixture
def resonate_programs(tmp_path: Path) -> Iterator[Programs]:
    """A :class:`Programs` whose processes die with the test (logs in the test's tmp dir)."""
    programs = Programs(tmp_path)
    try:
        yield programs
    finally:
        programs.close()


class OracleStdio:
    """The oracle in ``--stdio`` mode: one reference ``Server`` fed request by request, no HTTP.

    ``apply(now, req)`` returns ``{"status", "data", "messages": [{address, message}]}``
    exactly as the reference answered at time ``now`` (ms), for differential tests.
    """

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [str(node_bin()), "oracle_server.mjs", "--stdio"],
            cwd=node_dir(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )

    def apply(self, now: int, req: Mapping[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"now": now, "req": req}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the stdio oracle exited with {self.proc.wait(10)}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def oracle_stdio() -> Iterator[OracleStdio]:
    """A fresh reference server driven over stdin/stdout (no clock of its own)."""
    oracle = OracleStdio()
    try:
        yield oracle
    finally:
        oracle.close()
