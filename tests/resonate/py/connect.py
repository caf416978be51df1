"""How the Python SDK programs reach their server: ``RESONATE_URL`` (``redpromise serve`` or
the reference server, over HTTP + SSE), else, when ``REDPROMISE_URL`` is set, Redis itself
through redpromise's connector (``redpromise.resonate.connector``; namespace from
``REDPROMISE_NAMESPACE``).
"""

from __future__ import annotations

import os
import uuid
from typing import Any


def resonate_kwargs(group: str, pid: str | None = None) -> dict[str, Any]:
    """The connection arguments of ``Resonate(...)`` for a process of ``group``."""
    url = os.environ.get("RESONATE_URL") or None
    if url is not None or not os.environ.get("REDPROMISE_URL"):
        return {"url": url, "group": group, "pid": pid}
    from redpromise.resonate.connector import redis_connections

    pid = pid or uuid.uuid4().hex
    network, source = redis_connections(os.environ["REDPROMISE_URL"], group, pid)
    return {"network": network, "sources": [source], "group": group, "pid": pid}
