"""Schemathesis hooks (loaded through ``SCHEMATHESIS_HOOKS``) for tests/test_openapi_truth.py.

The gateway's OpenAPI document marks promise ids with ``format: promise-id`` (1-512 UTF-8
bytes, no control characters: JSON Schema cannot count bytes). This teaches schemathesis
that format, so the ids it generates as valid are valid by the gateway's rule.
"""

from __future__ import annotations

import schemathesis
from hypothesis import strategies as st

from redpromise.core.keys import MAX_ID_BYTES
from redpromise.http.openapi import ID_FORMAT


def _within_bytes(text: str) -> str:
    data = text.encode("utf-8")[:MAX_ID_BYTES]
    return data.decode("utf-8", "ignore") or "x"


schemathesis.openapi.format(
    ID_FORMAT,
    st.text(alphabet=st.characters(exclude_categories=["Cc", "Cs"]), min_size=1, max_size=512).map(
        _within_bytes
    ),
)
