"""The one bearer-token check of every HTTP face (the gateway, its dashboard, the Resonate
face): constant-time, by the ``Authorization: Bearer <token>`` header the SDKs send."""

from __future__ import annotations

import hmac

__all__ = ["bearer_allows"]


def bearer_allows(header: str | None, token: str | None) -> bool:
    """Whether a request whose ``Authorization`` header is ``header`` may pass: no
    ``token`` is set, or the header carries it as ``Bearer <token>`` (scheme in any case).
    The comparison takes the same time whatever the given token, so it tells nothing."""
    if token is None:
        return True
    scheme, _, given = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode("utf-8", "replace"), token.encode("utf-8")
    )
