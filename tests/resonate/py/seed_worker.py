"""The seed's worker on the Python SDK (group "worker"), run by the 3.12 venv.

Registers ``foo(ctx, data)`` with the TypeScript worker's behaviour: ``data["steps"]``
(default 2) checkpointed steps through ``ctx.run``, each appending
``{"id", "step", "pid"}`` as a JSON line to the file in env ``STEP_LEDGER`` (when set)
before it returns, sleeping ``data["stepMs"]`` ms first when given; then raises
``RuntimeError(data["fail"])`` when ``fail`` is a string, else returns
``{"result": "Processed: <JSON of data.input or data>", "steps": [...]}``.
Env: ``RESONATE_URL`` (else ``REDPROMISE_URL`` + ``REDPROMISE_NAMESPACE``: Redis through
redpromise's connector, see connect.py), ``RESONATE_TOKEN`` (optional), ``WORKER_PID`` (optional),
``WORKER_TTL_MS`` (the task lease; default the SDK's).
Prints ``READY`` once registered and started.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from datetime import timedelta
from typing import Any

from connect import resonate_kwargs
from resonate.context import Context
from resonate.resonate import Resonate

LEDGER = os.environ.get("STEP_LEDGER", "")


def js_json(value: Any) -> str:
    """JSON the way JavaScript's JSON.stringify writes it (no spaces), so both workers agree."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


async def step(ctx: Context, id: str, k: int, step_ms: float) -> str:
    if step_ms > 0:
        await asyncio.sleep(step_ms / 1000)
    if LEDGER:
        with open(LEDGER, "a", encoding="utf-8") as ledger:
            ledger.write(js_json({"id": id, "step": k, "pid": os.getpid()}) + "\n")
    return f"step {k} done"


async def foo(ctx: Context, data: Any) -> dict[str, Any]:
    d = data if isinstance(data, dict) else {}
    n = d.get("steps", 2)
    n = n if isinstance(n, int) and not isinstance(n, bool) else 2
    step_ms = d.get("stepMs", 0)
    step_ms = step_ms if isinstance(step_ms, (int, float)) else 0
    steps = []
    for k in range(1, n + 1):
        steps.append(await ctx.run(step, ctx.info.id, k, step_ms))
    if isinstance(d.get("fail"), str):
        raise RuntimeError(d["fail"])
    shown = d["input"] if d.get("input") is not None else data
    return {"result": "Processed: " + js_json(shown), "steps": steps}


async def main() -> None:
    ttl_ms = os.environ.get("WORKER_TTL_MS")
    resonate = Resonate(
        **resonate_kwargs("worker", os.environ.get("WORKER_PID") or None),
        token=os.environ.get("RESONATE_TOKEN") or None,
        ttl=timedelta(milliseconds=int(ttl_ms)) if ttl_ms else None,
        autostart=False,
    )
    resonate.register(foo, name="foo")
    resonate.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("READY", flush=True)
    await stop.wait()
    await resonate.stop()


if __name__ == "__main__":
    asyncio.run(main())
