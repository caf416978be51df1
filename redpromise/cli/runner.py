"""Running a worker process until SIGTERM/SIGINT, and the ``python -m redpromise`` CLI."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import signal
import sys
import traceback
from collections.abc import Callable, Sequence

from redpromise.cli.health import serve_health
from redpromise.client.client import Redpromise
from redpromise.core.errors import ConfigurationError, RedpromiseError, StoreUnavailable
from redpromise.observe import metrics as _metrics

__all__ = ["event_loop_factory", "load_target", "main", "run_worker"]

log = logging.getLogger("redpromise")


async def run_worker(
    rp: Redpromise,
    *,
    health_port: int | None = None,
    health_host: str = "127.0.0.1",
    metrics_port: int | None = None,
    metrics_host: str | None = None,
) -> None:
    """Start ``rp``, serve until SIGTERM or SIGINT, then stop gracefully.

    On the signal the worker stops reading, lets in-flight functions finish within
    ``Settings.shutdown_grace`` and leaves the rest to be reclaimed by other workers.
    Redis outages and error replies are ridden out (logged once per cause). If one of the
    worker's loops ends unexpectedly (a bug, not Redis), the worker stops and this raises
    ``SystemExit`` with the reason: the process exits non-zero for its supervisor to
    restart it. ``health_port`` serves ``/healthz`` and ``/readyz`` (see
    :meth:`Redpromise.health`); ``metrics_port`` serves Prometheus' ``/metrics`` on
    ``metrics_host`` (default ``health_host``), from the health server when the ports are
    equal. Raises :class:`ConfigurationError` for ``metrics_port`` without
    ``prometheus-client`` installed.
    """
    if metrics_port is not None and not _metrics.AVAILABLE:
        raise ConfigurationError(
            "--metrics-port needs prometheus-client: pip install redpromise[metrics]"
        )
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    servers: list[asyncio.Server] = []
    reason = ""
    try:
        await rp.start()
        servers = await _serve(
            rp, health_port, health_host, metrics_port, metrics_host or health_host
        )
        waits = [asyncio.ensure_future(stop.wait())]
        if rp.worker is not None:
            waits.append(asyncio.ensure_future(rp.worker.supervisor.died.wait()))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        if stop.is_set():
            log.info("signal received: stopping gracefully")
        elif rp.worker is not None:
            reason = rp.worker.supervisor.reason
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        for server in servers:
            server.close()
        await rp.stop()
    if reason:
        raise SystemExit(f"redpromise: worker stopped: {reason}")


async def _exposition() -> tuple[bytes, str]:
    return await _metrics.exposition(), _metrics.CONTENT_TYPE


async def _serve(
    rp: Redpromise,
    health_port: int | None,
    health_host: str,
    metrics_port: int | None,
    metrics_host: str,
) -> list[asyncio.Server]:
    """The health and metrics servers: one when both are on the same address."""
    servers = []
    shared = (metrics_port, metrics_host) == (health_port, health_host)
    if health_port is not None:
        servers.append(
            await serve_health(health_host, health_port, rp.health, _exposition if shared else None)
        )
        log.info("health on http://%s:%d/healthz", health_host, health_port)
    if metrics_port is not None:
        if not shared:
            servers.append(await serve_health(metrics_host, metrics_port, None, _exposition))
        log.info("metrics on http://%s:%d/metrics", metrics_host, metrics_port)
    return servers


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when it is installed (the ``fast`` extra), unless REDPROMISE_UVLOOP=0."""
    if os.environ.get("REDPROMISE_UVLOOP", "1") == "0":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def load_target(spec: str) -> Redpromise:
    """Import ``module:attr``; ``attr`` is a Redpromise or a callable returning one.

    Raises :class:`ConfigurationError` with a one-line reason and a hint when the spec is
    malformed, the module cannot be found or raises while importing, the attribute is
    missing, or it is not a Redpromise.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigurationError(f"expected module:attribute (e.g. myapp.worker:rp), got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            raise ConfigurationError(
                f"no module named {module_name!r}: run from the directory that holds it "
                "or add that directory to PYTHONPATH"
            ) from exc
        raise ConfigurationError(_import_failed(module_name, exc)) from exc
    except Exception as exc:  # the user's module raised while importing
        raise ConfigurationError(_import_failed(module_name, exc)) from exc
    try:
        obj = getattr(module, attr)
    except AttributeError:
        found = sorted(n for n, v in vars(module).items() if isinstance(v, Redpromise))
        hint = f" (its Redpromise instances: {', '.join(found)})" if found else ""
        raise ConfigurationError(
            f"module {module_name!r} has no attribute {attr!r}{hint}"
        ) from None
    if not isinstance(obj, Redpromise) and callable(obj):
        try:
            obj = obj()
        except Exception as exc:
            raise ConfigurationError(
                f"calling {spec}() failed: {_one_line(exc)}{_where(exc)}"
            ) from exc
    if not isinstance(obj, Redpromise):
        raise ConfigurationError(
            f"{spec} is of type {type(obj).__name__!r}, not a Redpromise "
            "(or a function returning one)"
        )
    return obj


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _where(exc: BaseException) -> str:
    """`` (file:line)`` of the innermost frame outside importlib, if any."""
    if isinstance(exc, SyntaxError):
        return ""  # its message names the file and line already
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<")]
    return f" ({frames[-1].filename}:{frames[-1].lineno})" if frames else ""


def _import_failed(module_name: str, exc: BaseException) -> str:
    return (
        f"importing {module_name!r} failed: {_one_line(exc)}{_where(exc)}; "
        f'run python -c "import {module_name}" to see the traceback'
    )


def _env_port(name: str) -> int | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"redpromise: {name}={raw!r} is not a port number") from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m redpromise")
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("worker", help="run a worker process for a Redpromise instance")
    w.add_argument("target", help="module:attr of a Redpromise (or a factory returning one)")
    w.add_argument("--log-level", default="INFO")
    w.add_argument(
        "--health-port",
        type=int,
        default=_env_port("REDPROMISE_HEALTH_PORT"),
        help="serve /healthz (loops alive) and /readyz (Redis answering) on this port "
        "(env REDPROMISE_HEALTH_PORT)",
    )
    w.add_argument(
        "--health-host",
        default=os.environ.get("REDPROMISE_HEALTH_HOST") or "127.0.0.1",
        help="address for --health-port (env REDPROMISE_HEALTH_HOST; 0.0.0.0 for a "
        "Kubernetes probe)",
    )
    w.add_argument(
        "--metrics-port",
        type=int,
        default=_env_port("REDPROMISE_METRICS_PORT"),
        help="serve Prometheus /metrics on this port (env REDPROMISE_METRICS_PORT; the same "
        "port as --health-port shares its server; needs redpromise[metrics])",
    )
    w.add_argument(
        "--metrics-host",
        default=os.environ.get("REDPROMISE_METRICS_HOST") or None,
        help="address for --metrics-port (env REDPROMISE_METRICS_HOST; default: "
        "--health-host)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    sys.path.insert(0, "")
    try:
        rp = load_target(args.target)
    except ConfigurationError as exc:
        print(f"redpromise: {exc}", file=sys.stderr)
        return 2
    try:
        with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
            runner.run(
                run_worker(
                    rp,
                    health_port=args.health_port,
                    health_host=args.health_host,
                    metrics_port=args.metrics_port,
                    metrics_host=args.metrics_host,
                )
            )
    except StoreUnavailable as exc:
        print(f"redpromise: cannot reach Redis at {rp.url}: {exc}", file=sys.stderr)
        return 2
    except RedpromiseError as exc:
        print(f"redpromise: {exc}", file=sys.stderr)
        return 2
    return 0
