"""``redpromise schedules list|get|create|delete``: the namespace's schedules (both the
ones of :meth:`Redpromise.schedule` and the Resonate protocol's)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from redpromise.cli.output import UsageError, compact, emit_json, iso, table
from redpromise.client.client import Redpromise

__all__ = ["ScheduleNotFound", "create", "delete", "get", "list_"]


class ScheduleNotFound(LookupError):
    """No schedule of that id (exit 1)."""

    def __init__(self, id: str) -> None:
        super().__init__(f"schedule {id!r} not found")
        self.id = id


def _json_arg(text: str | None, what: str, kind: type) -> Any:
    if text is None:
        return kind()
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{what} is not JSON: {exc}") from None
    if not isinstance(value, kind):
        raise UsageError(f"{what} must be a JSON {'array' if kind is list else 'object'}")
    return value


def _show(args: argparse.Namespace, s: dict[str, Any]) -> None:
    if args.json:
        emit_json(s)
        return
    table(
        ["field", "value"],
        [
            ("id", s["id"]),
            ("kind", s["kind"]),
            ("cron", s["cron"]),
            ("function", s["function"]),
            ("group", s["group"]),
            ("args", compact(s["args"], 60) if s["args"] is not None else None),
            ("kwargs", compact(s["kwargs"], 60) if s["kwargs"] is not None else None),
            ("timeout", f"{s['timeout_ms'] / 1000:g}s" if s["timeout_ms"] is not None else None),
            ("promise id", s["promise_id"]),
            ("created", iso(s["created_at"])),
            ("next run", iso(s["next_run_at"])),
            ("last run", iso(s["last_run_at"])),
        ],
    )


async def list_(rp: Redpromise, args: argparse.Namespace) -> int:
    schedules = await rp.schedules()
    if args.json:
        emit_json({"schedules": schedules})
        return 0
    table(
        ["id", "kind", "cron", "function", "group", "next run", "last run"],
        [
            (
                s["id"],
                s["kind"],
                s["cron"],
                s["function"],
                s["group"],
                iso(s["next_run_at"]),
                iso(s["last_run_at"]),
            )
            for s in schedules
        ],
    )
    return 0


async def get(rp: Redpromise, args: argparse.Namespace) -> int:
    s = await rp.schedule_get(args.id)
    if s is None:
        raise ScheduleNotFound(args.id)
    _show(args, s)
    return 0


async def create(rp: Redpromise, args: argparse.Namespace) -> int:
    call_args = _json_arg(args.args, "--args", list)
    kwargs = _json_arg(args.kwargs, "--kwargs", dict)
    # schedule() takes these two by keyword itself: the call cannot have them.
    clash = {"target", "timeout"} & set(kwargs)
    if clash:
        raise UsageError(f"--kwargs cannot name {', '.join(sorted(clash))}")
    s = await rp.schedule(
        args.id,
        args.cron,
        args.function,
        *call_args,
        target=args.target,
        timeout=args.timeout,
        **kwargs,
    )
    _show(args, s)
    return 0


async def delete(rp: Redpromise, args: argparse.Namespace) -> int:
    if not await rp.unschedule(args.id):
        raise ScheduleNotFound(args.id)
    if args.json:
        emit_json({"id": args.id, "deleted": True})
    else:
        print(f"schedule {args.id!r} deleted")
    return 0
