"""redpromise.core.cron: our cron reader agrees with cron-parser, the reference's library.

The differential test feeds seeded random expressions (mostly well-formed, some broken in
the ways people break them) and start times to ``tests/resonate/cron_oracle.mjs`` and to
:class:`Cron`, and compares accept/reject and every next fire time.
``REDPROMISE_CRON_CASES`` (default 3000) and ``REDPROMISE_CRON_SEED`` size and seed it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import subprocess
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from redpromise.core.cron import Cron
from redpromise.core.errors import InvalidCron, RedpromiseError
from tests.resonate.env import node_bin, node_dir

ORACLE = Path(__file__).parent / "resonate" / "cron_oracle.mjs"
CASES = int(os.environ.get("REDPROMISE_CRON_CASES", "3000"))
SEED = int(os.environ.get("REDPROMISE_CRON_SEED", "20"))
YEAR_2100 = 4_102_444_800_000


def ms(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp() * 1000)


def after(cron: str, start: str) -> str:
    n = Cron.parse(cron).next_after(ms(start))
    return dt.datetime.fromtimestamp(n / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


# ------------------------------------------------------------------------ behaviour


def test_next_is_strictly_after_the_start() -> None:
    assert after("*/5 * * * *", "2024-01-01 00:05:00") == "2024-01-01 00:10:00"
    assert after("*/5 * * * *", "2024-01-01 00:04:59.999") == "2024-01-01 00:05:00"
    assert after("* * * * * *", "2024-01-01 00:00:00.001") == "2024-01-01 00:00:01"


def test_six_fields_lead_with_seconds_and_five_fields_fire_at_second_zero() -> None:
    assert after("30 * * * * *", "2024-01-01 00:00:00") == "2024-01-01 00:00:30"
    assert after("* * * * *", "2024-01-01 00:00:30") == "2024-01-01 00:01:00"


def test_names_and_sunday_as_seven() -> None:
    assert after("0 0 * JAN-MAR MON", "2024-03-26 00:00:00") == "2025-01-06 00:00:00"
    assert after("0 0 * * 7", "2024-01-01 00:00:00") == "2024-01-07 00:00:00"
    assert after("0 0 * * sun", "2024-01-01 00:00:00") == "2024-01-07 00:00:00"


def test_day_of_month_and_day_of_week_both_restricted_fire_on_either() -> None:
    # 2024-01-13 is a Saturday; the 15th a Monday: "the 15th or any Saturday".
    assert after("0 0 15 * 6", "2024-01-12 00:00:00") == "2024-01-13 00:00:00"
    assert after("0 0 15 * 6", "2024-01-14 00:00:00") == "2024-01-15 00:00:00"
    # One of them "*" or "?": only the other counts.
    assert after("0 0 15 * ?", "2024-01-12 00:00:00") == "2024-01-15 00:00:00"


def test_last_day_last_weekday_and_nth_weekday() -> None:
    assert after("0 0 L 2 *", "2023-03-01 00:00:00") == "2024-02-29 00:00:00"
    assert after("0 0 * * 5L", "2024-01-01 00:00:00") == "2024-01-26 00:00:00"
    assert after("0 0 * * FRI#2", "2024-01-01 00:00:00") == "2024-01-12 00:00:00"


def test_aliases_and_the_empty_expression() -> None:
    assert after("@hourly", "2024-01-01 00:30:00") == "2024-01-01 01:00:00"
    assert after("@weekly", "2024-01-01 00:00:00") == "2024-01-07 00:00:00"
    assert after("", "2024-01-01 00:00:30") == "2024-01-01 00:01:00"


@pytest.mark.parametrize(
    "cron",
    [
        "   ",
        "1 2 3 4 5 6 7",
        "60 * * * *",
        "5-1 * * * *",
        "*/0 * * * *",
        "*,5 * * * *",
        "0 0 * * 0,7",
        "0 0 31 2 *",
        "0 0 * * L",
        "0 0 * * 1#6",
        "0 0 * * 1-2#1",
        "0 0 * FOO *",
        "0 0 * * MONDAY",
        "H * * * *",
        "@HOURLY",
        "x" * 1025,
    ],
)
def test_refused_expressions_raise_invalid_cron(cron: str) -> None:
    with pytest.raises(InvalidCron) as info:
        Cron.parse(cron)
    assert isinstance(info.value, RedpromiseError)
    assert "invalid cron expression" in str(info.value)


def test_next_in_another_time_zone_skips_missing_wall_times() -> None:
    paris = ZoneInfo("Europe/Paris")
    # 2024-03-31 02:30 does not exist in Paris: the next 02:30 is the day after.
    start = ms("2024-03-30 02:00:00")  # 03:00 in Paris
    nxt = Cron.parse("30 2 * * *").next_after(start, paris)
    assert dt.datetime.fromtimestamp(nxt / 1000, paris).isoformat() == "2024-04-01T02:30:00+02:00"


# ------------------------------------------------------------------ differential


def _number(r: random.Random, lo: int, hi: int) -> str:
    n = r.randint(lo, hi) if r.random() < 0.97 else r.choice([lo - 1, hi + 1, hi + 40])
    return f"0{n}" if r.random() < 0.04 and n >= 0 else str(n)


_MONTH_NAMES = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
_DAY_NAMES = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]
_JUNK = ["", "**", "1-", "-1", "1//2", "x", "1-2-3", "5*", "*-5", "L", "#", "1,", "/5", "1/", "00"]


def _name(r: random.Random, names: list[str]) -> str:
    name = r.choice(names)
    name = r.choice([name, name.lower(), name.title()])
    return f"{name}-{r.choice(names)}" if r.random() < 0.3 else name


def _special(r: random.Random, field: int) -> str:
    """L and # forms (day of month: 3, day of week: 5), now and then misplaced."""
    if field == 3:
        return "L"
    if r.random() < 0.5:
        day = r.choice([str(r.randint(0, 7)), r.choice(_DAY_NAMES), "*", "?"])
        return f"{day}#{r.randint(0, 6)}"
    if r.random() < 0.9:
        return f"{r.randint(0, 7)}L"
    return r.choice(["L", "8L", f"{r.choice(_DAY_NAMES)}L", "5LL"])


def _item(r: random.Random, field: int, lo: int, hi: int) -> str:
    if r.random() < 0.03:
        return r.choice(_JUNK)
    kind = r.random()
    if kind < 0.12:
        return r.choice(["*", "*", "?"])
    if kind < 0.35:
        return _number(r, lo, hi)
    if kind < 0.52:
        a, b = sorted((r.randint(lo, hi), r.randint(lo, hi)))
        return f"{b}-{a}" if r.random() < 0.06 else f"{a}-{b}"
    if kind < 0.70:
        step = r.choice([r.randint(1, 10), r.randint(1, hi + 3)]) if r.random() < 0.98 else 0
        a, b = sorted((r.randint(lo, hi), r.randint(lo, hi)))
        head = r.choice(["*", "?", str(a), f"{a}-{b}"])
        return f"{head}/{step}"
    if kind < 0.80 and field in (4, 5):
        return _name(r, _MONTH_NAMES if field == 4 else _DAY_NAMES)
    if kind < 0.90 and field in (3, 5):
        return _special(r, field)
    return _number(r, lo, hi)


_BOUNDS = [(0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]
_ALIASES = [
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@hourly",
    "@minutely",
    "@secondly",
    "@weekdays",
    "@weekends",
]


def _expression(r: random.Random) -> str:
    if r.random() < 0.02:
        return r.choice([*_ALIASES, "@hourly ", "@Daily", "", " ", "\t"])
    fields = []
    for i, (lo, hi) in enumerate(_BOUNDS):
        # Most fields plain "*" so that restricted expressions still fire often enough.
        if r.random() < (0.45 if i in (3, 5) else 0.35):
            fields.append(r.choice(["*", "*", "?"]) if i in (3, 5) else "*")
            continue
        n = 1 if r.random() < 0.75 else r.randint(2, 3)
        fields.append(",".join(_item(r, i, lo, hi) for _ in range(n)))
    count = r.choices([6, 5, 4, 3, 2, 1, 7], [40, 50, 2, 2, 2, 2, 2])[0]
    if count == 7:
        fields.append("*")
    chosen = fields[-count:] if count <= 6 else fields
    sep = r.choice([" ", " ", " ", "  ", "\t"])
    text = sep.join(chosen)
    return f" {text} " if r.random() < 0.03 else text


def _starts(r: random.Random) -> list[int]:
    starts = [r.randint(0, YEAR_2100)]
    starts.append(r.randint(0, YEAR_2100 // 1000) * 1000)  # a whole second
    return starts


def _ours(cron: str, starts: list[int]) -> dict[str, object]:
    try:
        c = Cron.parse(cron)
    except InvalidCron:
        return {"ok": False}
    return {"ok": True, "nexts": [c.next_after(s) for s in starts]}


def test_cron_agrees_with_cron_parser_on_random_expressions_and_starts() -> None:
    r = random.Random(SEED)
    cases: list[tuple[str, list[int]]] = []
    fixed = [
        "0 0 29 2 *",
        "0 0 * 2 1#5",
        "0 0 30,31,31 4 *",
        "0 0 31,31 2 *",
        "0 0 * * 1,3L",
        "0 0 * * 5-7",
        "0 0 * * 1-7/2",
        "0 0 * * FRIL",
        "0 0 * * 1#1.5",
        "0 0 15 * 1#1.5",
        "0 0 * * 1#0x2",
        "0 0 * * 7L",
        "0 0 L * 5L",
        "0 0 L,15 * *",
    ]
    for cron in fixed:
        cases.append((cron, _starts(r)))
    while len(cases) < CASES:
        cases.append((_expression(r), _starts(r)))
    # The next run after a fire time, exactly: is "after" strict on both sides?
    for cron, starts in list(cases):
        mine = _ours(cron, starts[:1])
        if mine["ok"]:
            starts.append(mine["nexts"][0])  # type: ignore[index]
    lines = "".join(json.dumps({"cron": c, "starts": s}) + "\n" for c, s in cases)
    proc = subprocess.run(
        [str(node_bin()), str(ORACLE)],
        input=lines,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "TZ": "UTC", "RESONATE_NODE_MODULES": str(node_dir() / "node_modules")},
        timeout=600,
    )
    theirs = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(theirs) == len(cases)
    mismatches = []
    accepted = 0
    for (cron, starts), want in zip(cases, theirs, strict=True):
        got = _ours(cron, starts)
        accepted += bool(want["ok"] is True)
        if got != want:
            mismatches.append((cron, starts, want, got))
    assert not mismatches, f"{len(mismatches)} of {len(cases)} differ; first: {mismatches[:10]}"
    # The generator must keep producing both kinds (or the comparison proves little).
    assert accepted > len(cases) * 0.4
    assert len(cases) - accepted > len(cases) * 0.1
