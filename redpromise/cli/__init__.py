"""The ``redpromise`` command (also ``python -m redpromise``); reference in docs/cli.md.

``redpromise worker …`` is handed to :mod:`redpromise.cli.runner` before anything else is
parsed or imported, so a worker starts exactly as it did before this CLI existed. Every
other command opens the namespace, does one thing and exits with a code scripts can
trust (:data:`EXIT_CODES`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from redpromise.store.states import FAILING, STATES

__all__ = ["EXIT_CODES", "main"]

EXIT_CODES = {
    0: "ok (found, done)",
    1: "not found (a promise, a schedule, a dead record, or the namespace itself)",
    2: "usage or configuration error (bad arguments, bad settings, Redis refused the "
    "credentials or a right redpromise needs)",
    3: "Redis unavailable (unreachable, timing out, loading, read-only…): try again later",
    4: "refused or failed (a dead record that cannot be requeued; an unexpected Redis error)",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"redpromise: {message} (see {self.prog} --help)\n")


def _checked(parse: Callable[[str], object]) -> Callable[[str], str]:
    """An argparse ``type=`` that checks the text with ``parse`` and keeps it as typed
    (times relative to now are computed once connected, on Redis' clock)."""

    from redpromise.cli.output import UsageError

    def check(text: str) -> str:
        try:
            parse(text)
        except UsageError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return text

    return check


def _limit(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 1 <= n <= 1000:
        raise argparse.ArgumentTypeError(f"must be an integer from 1 to 1000, not {text!r}")
    return n


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON (stable keys, docs/cli.md)")
    p.add_argument(
        "--url", help="Redis URL (default: $REDPROMISE_URL, else redis://127.0.0.1:6379/0)"
    )
    p.add_argument("--namespace", help="key namespace (default: $REDPROMISE_NAMESPACE, else rp)")


def _add_promises(sub: argparse._SubParsersAction[_Parser]) -> None:
    from redpromise.cli import promises as cmd
    from redpromise.cli.output import time_ms

    p = sub.add_parser("promises", help="get, search and settle promises")
    psub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    g = psub.add_parser("get", help="one promise")
    g.add_argument("id")
    g.set_defaults(run=cmd.get)
    s = psub.add_parser("search", help="promises matching every filter given, a page at a time")
    s.add_argument(
        "--state",
        choices=[*STATES, FAILING],
        help="failing: pending with a failed attempt on record (retried, not settled)",
    )
    s.add_argument("--group")
    s.add_argument("--function")
    s.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE")
    when = "ms since the epoch, ISO 8601 (UTC unless zoned), or a duration ago (15m, 2h, 7d)"
    s.add_argument("--since", type=_checked(time_ms), help=f"created at or after: {when}")
    s.add_argument("--until", type=_checked(time_ms), help=f"created at or before: {when}")
    s.add_argument("--limit", type=_limit, default=100, help="page size, 1..1000 (default 100)")
    s.add_argument("--cursor", help="the cursor a previous page printed (same filters)")
    s.add_argument("--all", action="store_true", help="follow the cursor to the end")
    s.add_argument("--newest-first", action="store_true")
    s.set_defaults(run=cmd.search)
    r = psub.add_parser("resolve", help="resolve a pending promise (first completion wins)")
    r.add_argument("id")
    r.add_argument("value", nargs="?", metavar="VALUE_JSON", help="JSON value; - reads stdin")
    r.set_defaults(run=cmd.resolve)
    j = psub.add_parser("reject", help="reject a pending promise (first completion wins)")
    j.add_argument("id")
    j.add_argument("message")
    j.set_defaults(run=cmd.reject)
    c = psub.add_parser("cancel", help="cancel a pending promise and the children it created")
    c.add_argument("id")
    c.set_defaults(run=cmd.cancel)
    for q in (g, s, r, j, c):
        _common(q)
    t = sub.add_parser("tree", help="a promise, its recorded steps and its children")
    t.add_argument("id")
    t.add_argument("--depth", type=int, default=8, help="levels of children (default 8)")
    t.set_defaults(run=cmd.tree)
    _common(t)


def _add_operations(sub: argparse._SubParsersAction[_Parser]) -> None:
    from redpromise.cli import ops as cmd
    from redpromise.cli.output import duration_ms

    g = sub.add_parser("groups", help="backlog, in flight and consumers per group; dead count")
    g.add_argument("--group", action="append", default=[], help="also show this group")
    g.set_defaults(run=cmd.groups)
    s = sub.add_parser("stats", help="promises per state and group")
    s.set_defaults(run=cmd.stats)
    d = sub.add_parser("dead", help="list, requeue and purge dead records")
    dsub = d.add_subparsers(dest="action", required=True, metavar="ACTION")
    dl = dsub.add_parser("list", help="the newest dead records")
    dl.add_argument("--limit", type=_limit, default=50, help="1..1000 (default 50)")
    dl.add_argument("--group")
    dl.add_argument("--cursor", help="the cursor a previous page printed (same --group)")
    dl.set_defaults(run=cmd.dead_list)
    dr = dsub.add_parser("requeue", help="requeue dead records (docs/operations.md)")
    dr.add_argument("entries", nargs="*", metavar="KEY", help="<partition>:<entry> from dead list")
    dr.add_argument("--all", action="store_true", help="every dead record kept")
    dr.set_defaults(run=cmd.dead_requeue)
    dp = dsub.add_parser("purge", help="delete dead records")
    dp.add_argument(
        "--older-than",
        type=_checked(duration_ms),
        metavar="DURATION",
        help="recorded more than this long ago (30s, 15m, 2h, 7d)",
    )
    dp.add_argument("--all", action="store_true", help="every dead record")
    dp.set_defaults(run=cmd.dead_purge)
    for q in (g, s, dl, dr, dp):
        _common(q)


def _seconds(text: str) -> float:
    try:
        n = float(text)
    except ValueError:
        n = 0.0
    if not 0 < n < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text!r}")
    return n


def _add_schedules(sub: argparse._SubParsersAction[_Parser]) -> None:
    from redpromise.cli import schedules as cmd

    p = sub.add_parser("schedules", help="list, create and delete cron schedules")
    psub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    ls = psub.add_parser("list", help="every schedule of the namespace (both kinds)")
    ls.set_defaults(run=cmd.list_)
    g = psub.add_parser("get", help="one schedule")
    g.add_argument("id")
    g.set_defaults(run=cmd.get)
    c = psub.add_parser("create", help="call FUNCTION at every time of CRON (UTC)")
    c.add_argument("id")
    c.add_argument("cron", help='5 fields, or 6 with seconds first; e.g. "0 3 * * *"')
    c.add_argument("function")
    c.add_argument("--args", metavar="JSON_ARRAY", help="positional arguments (default [])")
    c.add_argument("--kwargs", metavar="JSON_OBJECT", help="keyword arguments (default {})")
    c.add_argument("--target", help="poll://any@GROUP or GROUP (default poll://any@worker)")
    c.add_argument(
        "--timeout", type=_seconds, help="each run's promise timeout, seconds (default: settings)"
    )
    c.set_defaults(run=cmd.create)
    d = psub.add_parser("delete", help="delete a schedule: no later run fires")
    d.add_argument("id")
    d.set_defaults(run=cmd.delete)
    for q in (ls, g, c, d):
        _common(q)


def parser() -> argparse.ArgumentParser:
    top = _Parser(
        prog="redpromise",
        description="Operate redpromise: run workers, inspect and settle promises.",
        epilog="exit codes: " + "; ".join(f"{k} {v}" for k, v in EXIT_CODES.items()),
    )
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    sub.add_parser(
        "worker",
        help="run a worker process: redpromise worker module:attr (see redpromise worker --help)",
        add_help=False,
    )
    _add_promises(sub)
    _add_operations(sub)
    _add_schedules(sub)
    from redpromise.cli import serve

    serve.add_parser(sub)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit code (:data:`EXIT_CODES`)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["worker"]:
        from redpromise.cli.runner import main as worker_main

        return worker_main(args_list)
    top = parser()
    args = top.parse_args(args_list)
    if args.command == "serve":
        from redpromise.cli.serve import serve

        return serve(args)
    # Before connecting: a wrong command line must not reach Redis, nor depend on it.
    if args.command == "dead" and args.action in ("requeue", "purge"):
        given = bool(args.entries) if args.action == "requeue" else args.older_than is not None
        if given == args.all:
            what = (
                "dead record keys (see dead list)"
                if args.action == "requeue"
                else ("--older-than DURATION")
            )
            top.error(f"dead {args.action} takes {what}, or --all (one of the two)")
    from redpromise.cli.run import run

    return run(args)
