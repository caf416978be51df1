"""Begin ``foo`` on ``poll://any@worker`` under an id and wait for its outcome (Python SDK).

    python seed_client.py <id> [<data as JSON>]

Prints one JSON line: ``{"id", "status": "resolved", "result"}`` or
``{"id", "status": "rejected", "error": <message>}``. Env: ``RESONATE_URL`` (else
``REDPROMISE_URL`` + ``REDPROMISE_NAMESPACE``: Redis through the connector, see connect.py),
``RESONATE_TOKEN`` (optional), ``CLIENT_REFRESH_SECS`` (listener re-registration, default 1).
Runs under the 3.12 venv (.venv-resonate).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

from connect import resonate_kwargs
from resonate.resonate import Resonate


async def main(id: str, data: Any) -> dict[str, Any]:
    resonate = Resonate(
        **resonate_kwargs("client"),
        token=os.environ.get("RESONATE_TOKEN") or None,
        # The first promise.register_listener can reach the server before this process's
        # SSE stream is open, and an unblock sent then is lost; re-registering every second
        # (the SDK's default is 60 s) turns that loss into a short delay.
        subscription_refresh_secs=float(os.environ.get("CLIENT_REFRESH_SECS", "1")),
    )
    try:
        handle = resonate.options(target="poll://any@worker").rpc(id, "foo", data)
        try:
            result = await handle.result()
        except Exception as exc:  # the workflow's rejection, as the SDK decodes it
            return {"id": id, "status": "rejected", "error": str(exc)}
        return {"id": id, "status": "resolved", "result": result}
    finally:
        await resonate.stop()


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: seed_client.py <id> [<data as JSON>]")
    payload = json.loads(sys.argv[2]) if len(sys.argv) == 3 else {}
    print(json.dumps(asyncio.run(main(sys.argv[1], payload))), flush=True)
