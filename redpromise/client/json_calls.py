"""Calls encoded as JSON: Resonate protocol promises begun by redpromise (issue 21).

``Redpromise.begin_rpc(..., options=Options(codec="json"))`` creates the promise a Resonate
SDK's ``beginRpc`` creates (``docs/resonate.md``): one ``promise.create`` through
:class:`~redpromise.store.protocol.ProtocolStore`, so a Resonate worker of the target group
connected through ``redpromise serve`` runs it, and redpromise's handle reads its outcome
(a protocol settlement writes redpromise's ``value`` too).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from redpromise.core.errors import (
    ConfigurationError,
    InvalidId,
    RedpromiseError,
)
from redpromise.store.protocol import ProtocolStore
from redpromise.store.protocol_records import json_param

__all__ = ["begin_json", "json_param"]


async def begin_json(
    protocol: ProtocolStore,
    id: str,
    param: dict[str, Any],
    group: str,
    timeout_at: int,
    tags: Mapping[str, str] | None,
) -> None:
    """Create protocol promise ``id`` (idempotent by id, as ``promise.create`` is) with the
    tags of an SDK root (origin, branch and parent ``id``, scope global) targeting
    ``poll://any@<group>``: the group's Resonate workers are sent an execute."""
    if ":" in id:
        raise InvalidId(
            f"a JSON call's id may not contain ':' ({id!r}): Resonate names a promise's "
            "children <id>:<n>"
        )
    data = {
        "id": id,
        "timeoutAt": timeout_at,
        "param": param,
        "tags": {
            **(tags or {}),
            "resonate:origin": id,
            "resonate:branch": id,
            "resonate:parent": id,
            "resonate:scope": "global",
            "resonate:target": f"poll://any@{group}",
        },
    }
    status, reply = await protocol.apply("promise.create", data, None)
    if status == 400:
        raise ConfigurationError(f"promise {id!r} refused: {reply}")
    if status != 200:
        raise RedpromiseError(f"promise {id!r}: promise.create answered {status} {reply}")
