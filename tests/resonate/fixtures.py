"""Fixtures shared by the Resonate tests that run real programs on the session's Redis.

Import them into a test module (``from tests.resonate.fixtures import ledger, rp, serve``):
each test gets its own namespace, so its ``serve`` and ``rp`` see only its own promises.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from redpromise import Redpromise, Settings
from tests.resonate.programs import Program, Programs, resonate_programs

__all__ = ["ledger", "resonate_programs", "rp", "serve"]


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    """The file every worker step appends ``{"id", "step", "pid"}`` to."""
    return tmp_path / "steps.jsonl"


@pytest.fixture
def serve(resonate_programs: Programs, real_url: str, namespace: str) -> Program:
    """One ``redpromise serve`` on the session's real Redis, in the test's namespace."""
    return resonate_programs.start_serve(real_url, namespace)


@pytest.fixture
async def rp(real_url: str, namespace: str) -> AsyncIterator[Redpromise]:
    """redpromise's own client on the namespace ``serve`` uses (stopped after the test)."""
    client = Redpromise(real_url, settings=Settings(namespace=namespace))
    try:
        yield client
    finally:
        await client.stop(grace=1)
