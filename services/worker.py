"""The worker service: group ``worker``, serving ``foo`` as the seed's worker does.

    python services/worker.py
    python -m redpromise worker services.worker:rp

``foo`` is the seed's function made realistic: each side effect is a checkpointed
``ctx.run`` step, so a worker killed mid-way resumes, on another worker, after the last
step that completed::

    validate   the argument must be a JSON object (else: rejected, never retried)
    process    the slow part (an async sleep of REDPROMISE_WORKER_PROCESS_SECONDS, default 1)
    build      {"result": "Processed: <json>", "timestamp": <ms>}: recorded once, so a
               replay returns the same timestamp

Environment: ``REDPROMISE_URL``, ``REDPROMISE_GROUP`` (default ``worker``),
``REDPROMISE_CONCURRENCY``, ``REDPROMISE_LEASE`` (seconds), ``REDPROMISE_NAMESPACE`` and
the rest of ``Settings.from_env``; ``REDPROMISE_WORKER_PROCESS_SECONDS``;
``REDPROMISE_HEALTH_PORT`` (serve ``/healthz`` and ``/readyz``); ``REDPROMISE_METRICS_PORT``
(serve Prometheus ``/metrics``).
Exits with status 2 and a message when Redis is unreachable at start; once running, it
rides out Redis outages and error replies (logged once per cause, retried with backoff);
it exits non-zero only if one of its loops truly dies.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `redpromise` importable from the repo
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from redpromise import ApplicationError, Context, Redpromise, RedpromiseError, run_worker
from redpromise.cli.runner import event_loop_factory

__all__ = ["foo", "main", "rp"]

log = logging.getLogger("redpromise.worker")

rp = Redpromise.from_env()


def _process_seconds() -> float:
    raw = os.environ.get("REDPROMISE_WORKER_PROCESS_SECONDS") or "1"
    try:
        return max(0.0, float(raw))
    except ValueError:
        return 1.0


def validate(data: Any) -> dict[str, Any]:
    """The argument must be a JSON object."""
    if not isinstance(data, dict):
        raise ApplicationError(
            f"expected a JSON object, got {type(data).__name__}",
            type="ValidationError",
            non_retryable=True,
        )
    return data


async def process(id: str, data: dict[str, Any], seconds: float) -> str:
    """The slow part of the work (stands in for a database write or an API call)."""
    log.info("processing %s on worker pid %d: %s", id, os.getpid(), data)
    await asyncio.sleep(seconds)
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def build(processed: str) -> dict[str, Any]:
    return {"result": f"Processed: {processed}", "timestamp": int(time.time() * 1000)}


@rp.register
async def foo(ctx: Context, data: Any) -> dict[str, Any]:
    checked = await ctx.run(validate, data)
    processed = await ctx.run(process, ctx.id, checked, _process_seconds())
    result: dict[str, Any] = await ctx.run(build, processed)
    log.info("resolved %s on worker pid %d", ctx.id, os.getpid())
    return result


def main() -> int:
    logging.basicConfig(
        level=os.environ.get("REDPROMISE_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        port = os.environ.get("REDPROMISE_HEALTH_PORT")
        metrics_port = os.environ.get("REDPROMISE_METRICS_PORT")
        # The loop `python -m redpromise worker` runs on: uvloop when the `fast` extra is
        # installed (unless REDPROMISE_UVLOOP=0), else asyncio's own.
        with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
            runner.run(
                run_worker(
                    rp,
                    health_port=int(port) if port else None,
                    health_host=os.environ.get("REDPROMISE_HEALTH_HOST") or "127.0.0.1",
                    metrics_port=int(metrics_port) if metrics_port else None,
                    metrics_host=os.environ.get("REDPROMISE_METRICS_HOST") or None,
                )
            )
    except RedpromiseError as exc:
        print(f"worker: cannot start: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
