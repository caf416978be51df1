"""``redpromise groups``, ``stats`` and ``dead list|requeue|purge``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from redpromise.cli.output import Progress, ago, duration_ms, emit_json, iso, table
from redpromise.client.client import Redpromise
from redpromise.client.inspect import DeadRecordNotFound, Inspector, NotRequeueable
from redpromise.store.states import STATES

__all__ = ["EXIT_REFUSED", "dead_list", "dead_purge", "dead_requeue", "groups", "stats"]

EXIT_REFUSED = 4
_REQUEUE_CONCURRENCY = 16


def _group_name(g: str) -> str:
    return g or "(latent)"


async def groups(rp: Redpromise, args: argparse.Namespace) -> int:
    inspector = Inspector(rp)
    found = await inspector.groups(args.group)
    dead = await inspector.dead_count()
    if args.json:
        emit_json({"groups": found, "dead": dead})
        return 0
    table(
        ["group", "backlog", "in_flight", "dispatched", "consumers"],
        [
            (g["name"], g["backlog"], g["in_flight"], g["dispatched"], len(g["consumers"]))
            for g in found
        ],
    )
    consumers = [(g["name"], c) for g in found for c in g["consumers"]]
    if consumers:
        print()
        table(
            ["group", "consumer", "status", "pending", "idle"],
            [
                (g, c["name"], c["status"], c["pending"], ago(c["idle_ms"]))
                for g, c in consumers
            ],
        )
    print(f"\ndead records: {dead} (redpromise dead list)")
    return 0


async def stats(rp: Redpromise, args: argparse.Namespace) -> int:
    counts = await rp.counts()
    totals = {s: sum(per_group.values()) for s, per_group in counts.items()}
    short = await Inspector(rp).replicas_short()
    if args.json:
        emit_json({"counts": counts, "totals": totals, "replicas_short": short})
        return 0
    for r in short:
        print(
            f"shard {r['shard']}: {r['replicas']} of {r['needed']} replicas "
            "(REDPROMISE_REPLICAS_ACK): writes refused (NOREPLICAS) until one returns"
        )
    names = sorted({g for per_group in counts.values() for g in per_group})
    rows: list[tuple[Any, ...]] = [
        (
            _group_name(g),
            *(counts[s].get(g, 0) for s in STATES),
            sum(counts[s].get(g, 0) for s in STATES),
        )
        for g in names
    ]
    rows.append(("TOTAL", *(totals[s] for s in STATES), sum(totals.values())))
    table(["group", "pending", "resolved", "rejected", "canceled", "timedout", "total"], rows)
    return 0


async def dead_list(rp: Redpromise, args: argparse.Namespace) -> int:
    page = await Inspector(rp).dead_listing(args.limit, args.group, args.cursor)
    records = page["records"]
    if args.json:
        emit_json(page)
        return 0
    table(
        ["key", "recorded", "id", "group", "function", "deliveries", "reason", "requeued_as"],
        [
            (
                r["key"],
                iso(r["recorded_at"]),
                r["id"],
                r["group"],
                r["function"],
                r["deliveries"],
                r["reason"],
                r["requeued_as"],
            )
            for r in records
        ],
    )
    if page["cursor"] is not None:
        print(f"more: add --cursor {page['cursor']}", file=sys.stderr)
    return 0


async def _requeue_one(inspector: Inspector, key: str) -> dict[str, Any]:
    try:
        return {"key": key, **await inspector.requeue(key)}
    except DeadRecordNotFound as exc:
        return {"key": key, "error": "not_found", "message": str(exc)}
    except NotRequeueable as exc:
        return {"key": key, "error": "not_requeueable", "message": str(exc)}


async def dead_requeue(rp: Redpromise, args: argparse.Namespace) -> int:
    inspector = Inspector(rp)
    if args.all:
        # Every record kept, a page at a time (each stream holds dead_max_entries at most).
        keys = []
        cursor: str | None = None
        while True:
            page = await inspector.dead(1000, cursor=cursor)
            keys += [r.key for r in page.records]
            if (cursor := page.cursor) is None:
                break
    else:
        keys = list(dict.fromkeys(args.entries))
    progress = Progress(len(keys), "requeueing")
    gate = asyncio.Semaphore(_REQUEUE_CONCURRENCY)

    async def one(key: str) -> dict[str, Any]:
        async with gate:
            result = await _requeue_one(inspector, key)
        progress.step()
        return result

    try:
        results = await asyncio.gather(*(one(k) for k in keys))
    finally:
        progress.close()
    errors = {r.get("error") for r in results}
    summary = {
        "results": results,
        "requeued": sum(1 for r in results if "error" not in r),
        "failed": sum(1 for r in results if "error" in r),
    }
    if args.json:
        emit_json(summary)
    else:
        table(
            ["key", "action", "id"],
            [
                (r["key"], r.get("action") or r["error"], r.get("id") or r.get("message"))
                for r in results
            ],
        )
        print(f"\nrequeued {summary['requeued']}, failed {summary['failed']}")
    if "not_requeueable" in errors:
        return EXIT_REFUSED
    return 1 if "not_found" in errors else 0


async def dead_purge(rp: Redpromise, args: argparse.Namespace) -> int:
    before = None
    if args.older_than is not None:
        # Entry ids are times on Redis' clock.
        before = rp.store.clock.now_ms() - duration_ms(args.older_than)
    purged = await Inspector(rp).purge_dead(before)
    if args.json:
        emit_json({"purged": purged})
    else:
        print(f"purged {purged} dead record{'s' if purged != 1 else ''}")
    return 0
