"""Every error reply a production Redis gives: what a caller sees, what the worker logs,
and how long after recovery the same worker serves a new promise.

    /.venv/bin/python bench/faults.py [--runs 3] [--hold 1.5] [--only MISCONF,OOM]

Runs tests/faults.py ``run_scenario`` (a real worker process, the real gateway, a private
redis-server per run) for each condition ``--runs`` times and prints a markdown table.
"Recovery" is the moment the server stops answering with the error (tests/faults.py
says for each condition when that is); "served" is the ``completed_at`` of the first
promise begun after it, run by the same worker process. Medians over the runs.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.faults import FAULTS, Observation, first_word, run_scenario  # noqa: E402

_WORDS = 14


def _short(text: str, words: int = _WORDS) -> str:
    parts = text.replace("|", "/").split()
    return " ".join(parts[:words]) + (" …" if len(parts) > words else "")


def _caller(obs: list[Observation]) -> str:
    errors = Counter(first_word(c) for o in obs for c in o.calls if c != "ok")
    return ", ".join(sorted(errors)) or "no error"


def _gateway(obs: list[Observation]) -> str:
    seen = sorted(
        {
            f"{o.gateway_status}"
            + (f" Retry-After {o.gateway_retry_after}" if o.gateway_retry_after else "")
            for o in obs
        }
    )
    return "; ".join(seen)


def _worker_log(o: Observation, cause: str) -> str:
    alerts = o.alerts()
    named = [w for w in alerts if cause in w]
    first = named[0] if named else (alerts[0] if alerts else "")
    level, _, text = first.partition(" redpromise.worker: ")
    level = level.rsplit(" ", 1)[-1]
    recovered = "yes" if o.recovered_lines() else "no"
    return (
        f"{len(o.warnings())} WARNING, {len(alerts) - len(o.warnings())} ERROR; "
        f"first naming it: {level} `{_short(text)}`; `recovered` line: {recovered}"
    )


def _served(obs: list[Observation]) -> str:
    times = [
        o.served_after for o in obs if o.served_after is not None and o.served_by == o.worker_pid
    ]
    never = len(obs) - len(times)
    text = f"{statistics.median(times):.2f} s" if times else "never (10 s)"
    if times and never:
        text += f" ({never}/{len(obs)} never)"
    return text


def _inflight(obs: list[Observation]) -> str:
    out = Counter(
        "resolved (same worker)"
        if o.inflight == f"resolved by {o.worker_pid}"
        else o.inflight or "n/a (data gone)"
        for o in obs
    )
    return "; ".join(_short(k, 8) + (f" x{n}" if n > 1 else "") for k, n in out.items())


def _health(obs: list[Observation]) -> str:
    def one(h: tuple[int, object] | None) -> str:
        return "unreachable" if h is None else str(h[0])

    during = sorted({one(o.health_during) for o in obs})
    after = sorted({one(o.health_after) for o in obs})
    return f"{'/'.join(during)} → {'/'.join(after)}"


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--hold", type=float, default=1.5, help="seconds each condition lasts (at least)"
    )
    parser.add_argument("--only", default="", help="comma-separated: " + ",".join(FAULTS))
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n] or list(FAULTS)
    rows = []
    for name in names:
        fault = FAULTS[name]
        obs = []
        for i in range(args.runs):
            with tempfile.TemporaryDirectory(prefix=f"fault-{name}-") as d:
                obs.append(await run_scenario(fault, Path(d), hold=args.hold))
            print(f"{name} run {i + 1}: served after {obs[-1].served_after}", file=sys.stderr)
        exits = sorted({str(o.worker_exit) for o in obs if o.worker_exit is not None})
        rows.append(
            [
                name,
                _caller(obs),
                _gateway(obs),
                _worker_log(obs[0], fault.cause),
                _health(obs),
                _served(obs),
                _inflight(obs),
                "none" if not exits else "exited " + ",".join(exits),
            ]
        )
    head = [
        "condition",
        "caller sees",
        "gateway /begin",
        "worker log (run 1)",
        "worker /healthz during → after",
        f"recovery → first new promise served (median of {args.runs})",
        "promise in flight",
        "process exits",
    ]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
