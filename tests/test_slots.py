"""The worker's slot gate (redpromise.worker.execution.Slots): what asyncio.Semaphore guaranteed
the executions before — at most n at once, first come first served, and a slot handed to
a waiter that is cancelled at that moment is not lost."""

from __future__ import annotations

import asyncio

from redpromise.worker.execution import Slots


async def _hold(slots: Slots, running: list[int], peak: list[int], order: list[int], i: int,
                release: asyncio.Event) -> None:
    if not slots.take():
        await slots.wait()
    try:
        order.append(i)
        running[0] += 1
        peak[0] = max(peak[0], running[0])
        await release.wait()
    finally:
        running[0] -= 1
        slots.give()


async def test_at_most_n_at_once_in_arrival_order() -> None:
    slots = Slots(3)
    running, peak, order = [0], [0], []
    release = asyncio.Event()
    tasks = [asyncio.create_task(_hold(slots, running, peak, order, i, release)) for i in range(10)]
    await asyncio.sleep(0)
    assert running[0] == 3 and order == [0, 1, 2]
    release.set()
    await asyncio.gather(*tasks)
    assert peak[0] == 3
    assert order == list(range(10))
    # Every slot came back: three can be taken again at once, not a fourth.
    assert [slots.take() for _ in range(4)] == [True, True, True, False]


async def test_a_slot_handed_to_a_cancelled_waiter_passes_on() -> None:
    slots = Slots(1)
    assert slots.take()
    first = asyncio.create_task(slots.wait())
    second = asyncio.create_task(slots.wait())
    await asyncio.sleep(0)
    slots.give()  # hands the slot to `first`...
    first.cancel()  # ...which is cancelled before it runs: the slot must go to `second`
    await asyncio.wait_for(second, 1)
    assert first.cancelled()
    slots.give()
    assert slots.take()  # and, given back, it is free again

