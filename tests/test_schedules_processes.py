"""A redpromise schedule fired by real worker processes only (no ``serve``): while workers
die and join, every run of a per-second cron makes exactly one promise, none is skipped,
and each is resolved by a worker."""

from __future__ import annotations

import os

import pytest

from redpromise import Redpromise
from tests.helpers import assert_eventually
from tests.proctools import MakeClient, StartWorker, client

pytestmark = pytest.mark.real

__all__ = ["client"]  # fixture

SECOND = 1000
# The proof runs a minute; REDPROMISE_SCHEDULE_SPAN_S shortens it for quick runs.
SPAN = int(os.environ.get("REDPROMISE_SCHEDULE_SPAN_S", "60")) * SECOND


async def _ran_through(rp: Redpromise, id: str, run: int) -> int | None:
    """The schedule's last run once it is at or past ``run`` (ms)."""
    info = await rp.schedule_get(id)
    assert info is not None
    last = info["last_run_at"]
    return last if last is not None and last >= run else None


async def test_workers_fire_a_per_second_schedule_once_per_run_while_they_die_and_join(
    workers: StartWorker, client: MakeClient
) -> None:
    procs = [workers(), workers(), workers()]
    rp = client()
    made = await rp.schedule("beat", "* * * * * *", "echo", "tick", timeout=60)
    first = made["next_run_at"]

    third = SPAN // 3
    await assert_eventually(lambda: _ran_through(rp, "beat", first + third), timeout=SPAN / 1000)
    procs[1].kill()  # SIGKILL mid-way: whatever it was firing, another ticker finishes
    await assert_eventually(
        lambda: _ran_through(rp, "beat", first + 2 * third), timeout=SPAN / 1000
    )
    procs.append(workers())  # the killed worker's replacement joins later
    await assert_eventually(lambda: _ran_through(rp, "beat", first + SPAN), timeout=SPAN / 1000)
    assert await rp.unschedule("beat") is True
    # A ticker that read the last due run before the delete may still make its promise:
    # the runs are every second from the first to the newest promise, whichever it is.
    records: dict[str, str] = {}

    async def all_resolved() -> bool:
        records.clear()
        cursor = None
        while True:
            page = await rp.search(tags={"redpromise:schedule": "beat"}, cursor=cursor, limit=1000)
            records.update({r.id: r.state for r in page.records})
            cursor = page.cursor
            if cursor is None:
                break
        return bool(records) and all(s == "resolved" for s in records.values())

    await assert_eventually(all_resolved, timeout=20)
    runs = sorted(int(id.rsplit(".", 1)[1]) for id in records)
    assert runs[-1] >= first + SPAN
    assert runs == list(range(first, runs[-1] + SECOND, SECOND)), "a gap or a stray run"
    assert len(records) == len(runs)  # one promise per run: ids are unique per run
    for id in records:
        assert await (await rp.get(id)).result(timeout=5) == "tick"
    assert sum("Traceback" in p.output() for p in procs) == 0
