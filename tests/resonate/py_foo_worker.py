"""A redpromise (Python) worker of group "worker" with the seed's ``foo``, for the
cross-language tests: ``python -m redpromise worker tests.resonate.py_foo_worker:make``.

``foo(ctx, data)`` does ``data.steps`` (default 2) ``ctx.run`` steps, each appending
``{"id", "step", "pid"}`` to the file in env ``STEP_LEDGER`` (when set) before it returns
(``data.stepMs`` ms of sleep first), then returns ``{"result": "Processed: <JSON of
data.input>", "steps": [...]}``, or raises ``ValueError(data.fail)`` after the steps: what
the TypeScript seed worker (tests/resonate/node/seed_worker.mjs) does. With
``data.failUntilAttempt`` = n, attempts before the n-th retry raise ``RuntimeError`` after
the steps.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from redpromise import Context, Redpromise


async def step(id: str, k: int, step_ms: float) -> str:
    if step_ms > 0:
        await asyncio.sleep(step_ms / 1000)
    ledger = os.environ.get("STEP_LEDGER")
    if ledger:
        with open(ledger, "a") as out:
            out.write(json.dumps({"id": id, "step": k, "pid": os.getpid()}) + "\n")
    return f"step {k} done"


async def foo(ctx: Context, data: Any) -> Any:
    d = data if isinstance(data, dict) else {}
    n = d.get("steps", 2)
    step_ms = d.get("stepMs", 0)
    steps = [await ctx.run(step, ctx.id, k, step_ms) for k in range(1, n + 1)]
    if isinstance(d.get("fail"), str):
        raise ValueError(d["fail"])
    if isinstance(d.get("failUntilAttempt"), int) and ctx.attempt < d["failUntilAttempt"]:
        raise RuntimeError(f"attempt {ctx.attempt} failed")
    return {"result": f"Processed: {json.dumps(d.get('input', data))}", "steps": steps}


def make() -> Redpromise:
    rp = Redpromise.from_env()
    rp.register(foo)
    return rp
