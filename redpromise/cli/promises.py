"""``redpromise promises get|search|resolve|reject|cancel`` and ``redpromise tree``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from redpromise.cli.output import UsageError, ago, compact, emit_json, iso, table, time_ms
from redpromise.client.client import Redpromise
from redpromise.client.inspect import Inspector
from redpromise.core.codec import readable
from redpromise.core.errors import PromiseNotFound
from redpromise.redis.classify import translate_errors
from redpromise.store.search import PromiseInfo

__all__ = ["cancel", "get", "reject", "resolve", "search", "tree"]


async def _info(rp: Redpromise, id: str) -> dict[str, Any]:
    """The promise as :meth:`PromiseInfo.to_dict` shapes it (the search records' shape)."""
    await rp.get(id)  # PromiseNotFound; applies a timeout that has passed
    async with translate_errors():
        rec = await rp.store.read(id, failure=True)
    if rec is None:  # its retention ended between the two reads
        raise PromiseNotFound(id)
    return PromiseInfo.of(rec).to_dict()


def _took(p: dict[str, Any]) -> str | None:
    done, created = p.get("completed_at"), p.get("created_at")
    return ago(done - created) if done is not None and created is not None else None


def _error_text(p: dict[str, Any]) -> str | None:
    err = p.get("error")
    return f"{err['type']}: {err['message']}" if err else None


def _last_error_rows(p: dict[str, Any]) -> list[tuple[str, Any]]:
    """A failed attempt on record: the last error, and (pending) when it is retried."""
    last = p.get("last_error")
    if not last:
        return []
    text = f"{last['type']}: {last['message']}" if "message" in last else last["type"]
    rows: list[tuple[str, Any]] = [
        ("last error", f"{text} (attempt {last['attempt']}, {iso(last['at']) or 'time unknown'})")
    ]
    if last.get("next_retry_at") is not None:
        rows.append(("next retry", iso(last["next_retry_at"])))
    return rows


def _tags_text(tags: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(tags.items()))


def _show_promise(args: argparse.Namespace, p: dict[str, Any]) -> None:
    if args.json:
        emit_json(p)
        return
    rows = [
        ("id", p["id"]),
        ("state", p["state"]),
        ("function", p["function"] or "(latent)"),
        ("group", p["group"]),
        ("created", iso(p["created_at"])),
        ("timeout", iso(p["timeout_at"])),
        ("completed", iso(p["completed_at"])),
        ("took", _took(p)),
        ("attempt", p["attempt"]),
        ("tags", _tags_text(p["tags"]) or None),
        ("value", json.dumps(readable(p["value"])) if p["state"] == "resolved" else None),
        ("error", _error_text(p)),
        *_last_error_rows(p),
    ]
    table(["field", "value"], rows)


async def get(rp: Redpromise, args: argparse.Namespace) -> int:
    _show_promise(args, await _info(rp, args.id))
    return 0


def _value_arg(raw: str | None) -> Any:
    if raw is None:
        return None
    text = sys.stdin.read() if raw == "-" else raw
    try:
        return json.loads(text)
    except ValueError as exc:
        raise UsageError(f"VALUE is not JSON: {exc}") from None


async def resolve(rp: Redpromise, args: argparse.Namespace) -> int:
    await rp.resolve(args.id, _value_arg(args.value))
    _show_promise(args, await _info(rp, args.id))
    return 0


async def reject(rp: Redpromise, args: argparse.Namespace) -> int:
    await rp.reject(args.id, args.message)
    _show_promise(args, await _info(rp, args.id))
    return 0


async def cancel(rp: Redpromise, args: argparse.Namespace) -> int:
    await rp.cancel(args.id)
    _show_promise(args, await _info(rp, args.id))
    return 0


def _tags_arg(pairs: list[str]) -> dict[str, str]:
    tags = {}
    for pair in pairs:
        k, sep, v = pair.partition("=")
        if not sep or not k:
            raise UsageError(f"--tag takes key=value, not {pair!r}")
        tags[k] = v
    return tags


async def search(rp: Redpromise, args: argparse.Namespace) -> int:
    now = rp.store.clock.now_ms()  # --since 15m: on Redis' clock, as created_at is
    query: dict[str, Any] = {
        "state": args.state,
        "group": args.group,
        "function": args.function,
        "tags": _tags_arg(args.tag),
        "since": None if args.since is None else time_ms(args.since, now),
        "until": None if args.until is None else time_ms(args.until, now),
        "limit": args.limit,
        "newest_first": args.newest_first,
    }
    records: list[dict[str, Any]] = []
    cursor = args.cursor
    while True:
        page = await rp.search(**query, cursor=cursor)
        records += [r.to_dict() for r in page.records]
        cursor = page.cursor
        if not args.all or cursor is None:
            break
    if args.json:
        emit_json({"records": records, "cursor": cursor})
        return 0
    table(
        ["id", "state", "function", "group", "created", "took", "tags"],
        [
            (
                r["id"],
                "failing" if r["state"] == "pending" and r.get("last_error") else r["state"],
                r["function"] or "(latent)",
                r["group"],
                iso(r["created_at"]),
                _took(r),
                _tags_text(r["tags"]) or None,
            )
            for r in records
        ],
    )
    if cursor is not None:
        print(f"more: add --cursor {cursor} (or --all)", file=sys.stderr)
    return 0


async def _node(inspector: Inspector, id: str, depth: int, seen: set[str]) -> dict[str, Any]:
    """One promise's detail with its children's details nested, down to ``depth``."""
    seen.add(id)
    try:
        node = await inspector.detail(id)
    except PromiseNotFound:
        return {"id": id, "state": "expired", "children": []}
    children = []
    for child in node["children"]:
        if depth <= 0 or child["id"] in seen or child["state"] in ("expired", "unreadable"):
            children.append({**child, "children": [], "truncated": depth <= 0})
        else:
            children.append(await _node(inspector, child["id"], depth - 1, seen))
    node["children"] = children
    return node


def _step_text(s: dict[str, Any]) -> str:
    parts = [f"step {s['seq']}", s.get("kind", "?"), s.get("name") or ""]
    parts.append("ok" if s.get("ok", True) else f"failed {compact(s.get('error'), 60)}")
    if s.get("wake_at") is not None:
        parts.append(f"wakes {iso(s['wake_at'])}")
    if s.get("child"):
        parts.append(f"-> {s['child']}")
    return " ".join(p for p in parts if p)


def _print_tree(
    node: dict[str, Any], prefix: str = "", last: bool = True, top: bool = True
) -> None:
    branch = "" if top else ("└─ " if last else "├─ ")
    bits = [node["id"], node["state"]]
    if node.get("function") is not None:
        bits.append(node["function"] or "(latent)")
    if node.get("created_at") is not None:
        bits.append(f"created {iso(node['created_at'])}")
    if _took(node):
        bits.append(f"took {_took(node)}")
    if node.get("truncated"):
        bits.append("(deeper levels not shown: --depth)")
    print(prefix + branch + "  ".join(bits))
    inner = prefix + ("" if top else ("   " if last else "│  "))
    steps = node.get("steps", [])
    lines = [f"{k}: {v}" for k, v in _last_error_rows(node)] + [_step_text(s) for s in steps]
    if not steps and node["state"] not in ("pending", "expired", "unreadable") and "steps" in node:
        lines = ["(steps are not kept once a promise completes)"]
    children = node.get("children", [])
    for i, line in enumerate(lines):
        tail = i == len(lines) - 1 and not children
        print(inner + ("└─ " if tail else "├─ ") + line)
    for i, child in enumerate(children):
        _print_tree(child, inner, i == len(children) - 1, top=False)


async def tree(rp: Redpromise, args: argparse.Namespace) -> int:
    root = await _node(Inspector(rp), args.id, args.depth, set())
    if root["state"] == "expired":
        raise PromiseNotFound(args.id)
    if args.json:
        emit_json(root)
    else:
        _print_tree(root)
    return 0
