"""Create or delete a schedule of ``foo`` with the Python SDK's schedule API.

    python seed_schedule.py create <id> <cron> [<data as JSON>]
    python seed_schedule.py delete <id>

``create`` makes schedule ``id`` fire ``foo(data)`` on ``poll://any@worker`` by ``cron``
(the fired promises are named ``<id>-<timestamp>`` by the SDK); prints ``OK``. Env:
``RESONATE_URL`` (else ``REDPROMISE_URL``: the connector, see connect.py),
``RESONATE_TOKEN`` (optional). Runs under the 3.12 venv (.venv-resonate).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from connect import resonate_kwargs
from resonate.resonate import Resonate


async def main(argv: list[str]) -> None:
    resonate = Resonate(
        **resonate_kwargs("scheduler"),
        token=os.environ.get("RESONATE_TOKEN") or None,
    )
    try:
        if argv[0] == "create":
            data = json.loads(argv[3]) if len(argv) > 3 else {}
            opts = resonate.options(target="poll://any@worker")
            await opts.schedule(argv[1], argv[2], "foo", args=(data,))
        elif argv[0] == "delete":
            await resonate.schedules.delete(argv[1])
        else:
            sys.exit(f"unknown command {argv[0]!r}")
    finally:
        await resonate.stop()
    print("OK", flush=True)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: seed_schedule.py create <id> <cron> [<data>] | delete <id>")
    asyncio.run(main(sys.argv[1:]))
