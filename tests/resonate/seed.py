"""The seed's outside, for tests: its gateway's two routes and the workers' step ledger."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

__all__ = ["Gateway", "entries_of", "steps_of", "unrepeated_except_in_flight"]


def entries_of(ledger: Path, id: str) -> list[dict[str, Any]]:
    """The ledger lines (``{"id", "step", "pid"}``) of promise ``id``, in write order."""
    if not ledger.exists():
        return []
    entries = [json.loads(line) for line in ledger.read_text().splitlines() if line]
    return [e for e in entries if e["id"] == id]


def steps_of(ledger: Path, id: str) -> list[int]:
    """The steps of ``id`` that ran, sorted, one entry per execution."""
    return sorted(e["step"] for e in entries_of(ledger, id))


def unrepeated_except_in_flight(ledger: Path, id: str, killed_pid: int, steps: int) -> bool:
    """Every step 1..``steps`` of ``id`` ran, each once, but for the one the killed worker
    was running when it died (the last one it wrote: it may have written its line and died
    before its checkpoint was stored), which may run twice. Raises AssertionError with the
    ledger when not."""
    entries = entries_of(ledger, id)
    counts = Counter(e["step"] for e in entries)
    by_killed = [e["step"] for e in entries if e["pid"] == killed_pid]
    in_flight = by_killed[-1] if by_killed else None
    assert set(counts) == set(range(1, steps + 1)), entries
    for step, n in counts.items():
        assert n == 1 or (n == 2 and step == in_flight), entries
    return True


class Gateway:
    """The seed gateway's two routes, over HTTP."""

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http = http
        self.url = url

    async def begin(self, id: str, data: Any, retry: Any = None) -> tuple[int, Any]:
        """``/begin``; ``retry``: an SDK retry policy ``{type, data}`` for the call."""
        params = {"id": id, "data": json.dumps(data)}
        if retry is not None:
            params["retry"] = json.dumps(retry)
        async with self.http.post(f"{self.url}/begin", params=params) as resp:
            return resp.status, await resp.json()

    async def wait(self, id: str) -> tuple[int, Any]:
        async with self.http.get(f"{self.url}/wait", params={"id": id}) as resp:
            return resp.status, await resp.json()

    async def settled(self, id: str) -> dict[str, Any] | None:
        """The /wait body once it is no longer pending (for assert_eventually)."""
        status, body = await self.wait(id)
        assert status == 200, body
        return None if body == {"status": "pending"} else body
