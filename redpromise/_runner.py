"""Running a worker process until SIGTERM/SIGINT, and the ``python -m redpromise`` CLI."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence

from ._client import Redpromise
from ._errors import RedpromiseError, StoreUnavailable

__all__ = ["event_loop_factory", "load_target", "main", "run_worker"]

log = logging.getLogger("redpromise")


async def run_worker(rp: Redpromise) -> None:
    """Start ``rp``, serve until SIGTERM or SIGINT, then stop gracefully.

    On the signal the worker stops reading, lets in-flight functions finish within
    ``Settings.shutdown_grace`` and leaves the rest to be reclaimed by other workers.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await rp.start()
        await stop.wait()
        log.info("signal received: stopping gracefully")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await rp.stop()


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
    """Import ``module:attr``; ``attr`` is a Redpromise or a callable returning one."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise SystemExit(f"expected module:attribute, got {spec!r}")
    obj = getattr(importlib.import_module(module_name), attr)
    if not isinstance(obj, Redpromise) and callable(obj):
        obj = obj()
    if not isinstance(obj, Redpromise):
        raise SystemExit(f"{spec} is not a Redpromise instance")
    return obj


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m redpromise")
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("worker", help="run a worker process for a Redpromise instance")
    w.add_argument("target", help="module:attr of a Redpromise (or a factory returning one)")
    w.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    sys.path.insert(0, "")
    rp = load_target(args.target)
    try:
        with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
            runner.run(run_worker(rp))
    except StoreUnavailable as exc:
        print(f"redpromise: cannot reach Redis at {rp.url}: {exc}", file=sys.stderr)
        return 2
    except RedpromiseError as exc:
        print(f"redpromise: {exc}", file=sys.stderr)
        return 2
    return 0
