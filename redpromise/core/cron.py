"""Cron expressions, read the way the Resonate reference server reads them.

The reference (the TypeScript SDK's in-memory ``Server``) computes a schedule's next run
with the npm package ``cron-parser`` (v5): ``parse(cron, {currentDate}).next()``. This is
our own reader of the same language, written from its documented and observed behaviour
and held to it by a differential test (``tests/test_cron.py`` runs cron-parser on
thousands of random expressions and start times and compares accept/reject and every next
time).

What is accepted:

- 1 to 6 whitespace-separated fields ``[second] minute hour day-of-month month
  day-of-week``. Six fields: the first is the second. Fewer than six: the missing leading
  fields are ``0 * * * *`` in that order (so 5 fields = second 0; cron-parser does the
  same for 1-4 fields, and so do we). The empty string means ``0 * * * * *``.
- ``*`` and ``?`` (any), numbers, ranges ``a-b`` (a <= b), steps ``*/n``, ``a-b/n`` and
  ``a/n`` (= ``a-<max>/n``), lists ``x,y``; no value may appear twice in a field
  (``*,5`` and ``0,7`` in day-of-week are refused, as cron-parser refuses them).
- month names ``JAN``-``DEC`` and weekday names ``SUN``-``SAT`` (any case, standing
  alone); weekday 7 is Sunday.
- ``L`` in day-of-month (last day of the month), ``nL`` in day-of-week (the last weekday
  n of the month), ``n#k`` in day-of-week (the k-th weekday n of the month, k in 1-5).
- the aliases ``@yearly @annually @monthly @weekly @daily @hourly @minutely @secondly
  @weekdays @weekends`` (exact text).
- day-of-month and day-of-week both restricted (neither is exactly ``*`` or ``?``): a day
  matching either fires (the classic cron OR rule).

Refused (raises :class:`InvalidCron`): anything else, an expression longer than 1024
characters, and an expression that can never fire (``0 0 31 2 *``: cron-parser refuses it
on the first ``next()``, which the reference treats as invalid).

Deviation: cron-parser's ``H`` (a *random* value per parse) is refused: a schedule must
fire at the same times on every replica.

Time zone: cron-parser works in the process's local zone; the reference server therefore
fires in whatever zone its Node process runs in. We compute in UTC by default (the
differential test runs Node with ``TZ=UTC``). :meth:`Cron.next_after` takes another
``tzinfo``; then a wall time that does not exist (spring forward) never fires, and a
repeated wall time (fall back) fires once, at its first occurrence after the start.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from bisect import bisect_left
from collections.abc import Callable

from redpromise.core.errors import InvalidCron

__all__ = ["UTC", "Cron"]

UTC = _dt.UTC

# JavaScript's \s (what cron-parser splits fields on and trims), not Python's whitespace.
_JS_SPACE = "\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
_SPLIT = re.compile(f"[{_JS_SPACE}]+")
_TRIM = re.compile(f"^[{_JS_SPACE}]+|[{_JS_SPACE}]+$")

_ALIASES = {
    "@yearly": "0 0 0 1 1 *",
    "@annually": "0 0 0 1 1 *",
    "@monthly": "0 0 0 1 * *",
    "@weekly": "0 0 0 * * 0",
    "@daily": "0 0 0 * * *",
    "@hourly": "0 0 * * * *",
    "@minutely": "0 * * * * *",
    "@secondly": "* * * * * *",
    "@weekdays": "0 0 0 * * 1-5",
    "@weekends": "0 0 0 * * 0,6",
}
_DEFAULTS = ("0", "*", "*", "*", "*", "*")
_MAX_LENGTH = 1024  # UTF-16 code units, as JavaScript counts a string's length

_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTHS = {n: i + 1 for i, n in enumerate(_MONTH_NAMES)}
_WEEKDAYS = {n: i for i, n in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
# Days a month can have (February: 29, in leap years): what "can this day ever fire" uses.
_MAX_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)

_NAME = re.compile(r"[A-Za-z]{3}")
_NAME_BEFORE = re.compile(r"[A-Za-z0-9/]")
# After a name: no letter or digit, except the L of the last-weekday form (FRIL).
_NAME_AFTER = re.compile(r"(?!L(?![a-z0-9]))[a-z0-9]", re.IGNORECASE | re.ASCII)
_WILDCARD = re.compile(r"(^|,)[*?](?=/|,|\Z)")
_DIGITS = re.compile(r"[0-9]+")
_NTH_FORBIDDEN = re.compile(r"[,\-/L]")
_JS_DECIMAL = re.compile(r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|Infinity)")
_JS_RADIX = {"x": 16, "o": 8, "b": 2}
_JS_RADIX_DIGITS = {
    16: re.compile(r"[0-9a-fA-F]+"),
    8: re.compile(r"[0-7]+"),
    2: re.compile(r"[01]+"),
}

Value = int | str  # a field's parsed values: numbers, or L forms ("L", "5L")


class _Unit:
    """One field of the expression: its bounds and the characters it may hold."""

    __slots__ = ("hi", "last", "lo", "name", "names", "valid")

    def __init__(
        self,
        name: str,
        lo: int,
        hi: int,
        extra: str = "",
        names: dict[str, int] | None = None,
        last: Callable[[str], bool] | None = None,
    ) -> None:
        self.name = name
        self.lo = lo
        self.hi = hi
        self.valid = re.compile(rf"(?:[?,*0-9H/{extra}-]|H\([0-9]+-[0-9]+\))+")
        self.names = names
        self.last = last  # which L forms the field accepts (None: no L at all)


_SECOND = _Unit("second", 0, 59)
_MINUTE = _Unit("minute", 0, 59)
_HOUR = _Unit("hour", 0, 23)
_DOM = _Unit("day of month", 1, 31, "L", last=lambda v: v == "L")
_MONTH = _Unit("month", 1, 12, names=_MONTHS)
_DOW = _Unit(
    "day of week",
    0,
    7,
    "L#",
    names=_WEEKDAYS,
    last=lambda v: re.fullmatch("[0-7]?L", v) is not None,
)


class Cron:
    """A parsed cron expression. Immutable; :meth:`next_after` is pure (no clock, no I/O)."""

    __slots__ = (
        "dom",
        "dom_last",
        "dom_restricted",
        "dow",
        "dow_last",
        "dow_nth",
        "dow_restricted",
        "hours",
        "minutes",
        "months",
        "seconds",
        "text",
    )

    text: str
    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    months: frozenset[int]
    dom: frozenset[int]
    dom_last: bool
    dom_restricted: bool
    dow: frozenset[int]  # 0 = Sunday ... 6 = Saturday
    dow_last: frozenset[int]
    dow_nth: float  # 0: every week; k: only the k-th such weekday of the month
    dow_restricted: bool

    def __repr__(self) -> str:
        return f"Cron({self.text!r})"

    @classmethod
    def parse(cls, text: str) -> Cron:
        """Read ``text``; raises :class:`InvalidCron` (with the reason) for an expression
        cron-parser refuses, one that never fires, or one using ``H``."""
        if not isinstance(text, str):
            raise InvalidCron(f"a cron expression must be a string, not {type(text).__name__}")
        try:
            return cls._parse(text)
        except InvalidCron as exc:
            raise InvalidCron(f"invalid cron expression {text!r}: {exc}") from None

    @classmethod
    def _parse(cls, text: str) -> Cron:
        expression = _ALIASES.get(text, text) or "0 * * * * *"
        if len(expression.encode("utf-16-le")) // 2 > _MAX_LENGTH:
            raise InvalidCron(f"longer than {_MAX_LENGTH} characters")
        atoms = _SPLIT.split(_TRIM.sub("", expression))
        if len(atoms) > 6:
            raise InvalidCron(f"{len(atoms)} fields; at most 6 (second ... day-of-week)")
        raw = list(_DEFAULTS[: 6 - len(atoms)]) + atoms
        dow_text, nth = _split_nth(raw[5])
        months = _parse_field(_MONTH, raw[4])
        dom = _parse_field(_DOM, raw[3])
        if len(months) == 1:
            # A single month: days it never has are dropped (unless that drops all).
            days = _MAX_DAYS[int(months[0]) - 1]
            dom = [d for d in dom if not isinstance(d, int) or d <= days] or dom
        dow = _parse_field(_DOW, dow_text)
        fields = {
            _SECOND: _parse_field(_SECOND, raw[0]),
            _MINUTE: _parse_field(_MINUTE, raw[1]),
            _HOUR: _parse_field(_HOUR, raw[2]),
            _MONTH: months,
            _DOM: dom,
            _DOW: dow,
        }
        for unit, values in fields.items():
            _check_values(unit, values)
        if "L" in dow:
            raise InvalidCron("day of week: L must follow a weekday (5L: the last Friday)")
        self = object.__new__(cls)
        self.text = text
        self.seconds = _numbers(fields[_SECOND])
        self.minutes = _numbers(fields[_MINUTE])
        self.hours = _numbers(fields[_HOUR])
        self.months = frozenset(_numbers(months))
        self.dom = frozenset(_numbers(dom))
        self.dom_last = "L" in dom
        self.dom_restricted = raw[3] not in ("*", "?")
        self.dow = frozenset(v % 7 for v in _numbers(dow))
        self.dow_last = frozenset(int(v[0]) % 7 for v in dow if isinstance(v, str))
        self.dow_nth = nth
        self.dow_restricted = raw[5] not in ("*", "?")
        if not any(self._month_can_fire(m) for m in self.months):
            raise InvalidCron("it never fires (no allowed month has an allowed day)")
        return self

    # -- matching -------------------------------------------------------------------------

    def _month_can_fire(self, month: int) -> bool:
        """Whether some year's ``month`` has a day this expression fires on."""
        dom_ok = self.dom_last or any(d <= _MAX_DAYS[month - 1] for d in self.dom)
        nth_ok = self.dow_nth == 0 or self.dow_nth in (1, 2, 3, 4, 5)
        dow_ok = bool(self.dow_last) or (bool(self.dow) and nth_ok)
        if self.dom_restricted and self.dow_restricted:
            return dom_ok or dow_ok
        if self.dom_restricted or not self.dow_restricted:
            return dom_ok
        return dow_ok

    def _day_matches(self, day: _dt.date) -> bool:
        last = _last_day(day.year, day.month)
        dom = day.day in self.dom or (self.dom_last and day.day == last)
        weekday = day.isoweekday() % 7  # 0 = Sunday
        dow = (
            weekday in self.dow and (self.dow_nth == 0 or math.ceil(day.day / 7) == self.dow_nth)
        ) or (weekday in self.dow_last and day.day > last - 7)
        if self.dom_restricted and self.dow_restricted:
            return dom or dow
        if not self.dow_restricted:
            return dom
        return dow

    def _time_at_or_after(self, second_of_day: int) -> int | None:
        """The first second of a day at or after ``second_of_day`` that fires, if any."""
        h0, rest = divmod(second_of_day, 3600)
        m0, s0 = divmod(rest, 60)
        for h in self.hours[bisect_left(self.hours, h0) :]:
            if h > h0:
                return h * 3600 + self.minutes[0] * 60 + self.seconds[0]
            for m in self.minutes[bisect_left(self.minutes, m0) :]:
                if m > m0:
                    return h * 3600 + m * 60 + self.seconds[0]
                i = bisect_left(self.seconds, s0)
                if i < len(self.seconds):
                    return h * 3600 + m * 60 + self.seconds[i]
        return None

    def _wall_at_or_after(self, day: _dt.date, second_of_day: int) -> tuple[_dt.date, int]:
        """The first firing wall-clock time at or after ``day`` + ``second_of_day``."""
        horizon = day.year + 400  # the Gregorian calendar repeats every 400 years
        try:
            while day.year <= horizon:
                if day.month not in self.months:
                    day = (day.replace(day=28) + _dt.timedelta(days=4)).replace(day=1)
                    second_of_day = 0
                    continue
                if self._day_matches(day):
                    t = self._time_at_or_after(second_of_day)
                    if t is not None:
                        return day, t
                day += _dt.timedelta(days=1)
                second_of_day = 0
        except OverflowError:
            raise InvalidCron(f"{self.text!r} does not fire before the year 10000") from None
        raise InvalidCron(f"{self.text!r} does not fire within 400 years")  # pragma: no cover

    def next_after(self, ms: int, tz: _dt.tzinfo = UTC) -> int:
        """The first fire time strictly after ``ms`` (ms since the epoch), in ms.

        Fire times are whole seconds of wall-clock time in ``tz`` (UTC by default, which
        is cron-parser's answer in a process with ``TZ=UTC``).
        """
        start = ms // 1000 + 1  # the first whole second after ms
        if tz is UTC:
            days, sod = divmod(start, 86400)
            day, t = self._wall_at_or_after(_EPOCH_DAY + _dt.timedelta(days=days), sod)
            return ((day - _EPOCH_DAY).days * 86400 + t) * 1000
        wall = _dt.datetime.fromtimestamp(start, tz).replace(tzinfo=None)
        day, sod = wall.date(), wall.hour * 3600 + wall.minute * 60 + wall.second
        while True:
            day, t = self._wall_at_or_after(day, sod)
            local = _dt.datetime.combine(day, _dt.time()) + _dt.timedelta(seconds=t)
            for fold in (0, 1):
                instant = local.replace(tzinfo=tz, fold=fold)
                exists = instant.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == local
                at = int(instant.timestamp())
                if exists and at * 1000 > ms:
                    return at * 1000
            sod = t + 1
            if sod == 86400:
                day, sod = day + _dt.timedelta(days=1), 0


_EPOCH_DAY = _dt.date(1970, 1, 1)


def _last_day(year: int, month: int) -> int:
    if month == 2:
        leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
        return 29 if leap else 28
    return _MAX_DAYS[month - 1]


def _numbers(values: list[Value]) -> tuple[int, ...]:
    return tuple(sorted({v for v in values if isinstance(v, int)}))


def _js_number(text: str) -> float:
    """JavaScript's ``+text`` for the texts a ``#`` suffix can hold (NaN when not a number)."""
    if text == "":
        return 0.0
    if _JS_DECIMAL.fullmatch(text):
        return float(text.replace("Infinity", "inf"))
    if len(text) > 2 and text[0] == "0" and text[1].lower() in _JS_RADIX:
        radix = _JS_RADIX[text[1].lower()]
        if _JS_RADIX_DIGITS[radix].fullmatch(text[2:]):
            return float(int(text[2:], radix))
    return math.nan


def _split_nth(raw: str) -> tuple[str, float]:
    """Day of week ``n#k`` -> (``n``, k); without ``#``: (raw, 0)."""
    parts = raw.split("#")
    if len(parts) == 1:
        return raw, 0.0
    if _NTH_FORBIDDEN.search(raw):
        raise InvalidCron("day of week: # cannot be combined with , - / or L")
    nth = _js_number(parts[-1])
    if len(parts) > 2 or not 1 <= nth <= 5:  # NaN fails the comparison too
        raise InvalidCron("day of week: the occurrence after # must be 1 to 5")
    return parts[0], nth


def _replace_names(unit: _Unit, value: str, names: dict[str, int]) -> str:
    out: list[str] = []
    pos = 0
    for match in _NAME.finditer(value):
        number = names.get(match.group().lower())
        if number is None:
            raise InvalidCron(f"{unit.name}: unknown name {match.group()!r}")
        start, end = match.span()
        if (start and _NAME_BEFORE.match(value[start - 1])) or _NAME_AFTER.match(value, end):
            raise InvalidCron(f"{unit.name}: a name must stand alone, got {value!r}")
        out.append(value[pos:start])
        out.append(str(number))
        pos = end
    out.append(value[pos:])
    return "".join(out)


def _parse_field(unit: _Unit, value: str) -> list[Value]:
    """A field's values in cron-parser's order, duplicates kept (checked later)."""
    if unit.names is not None:
        value = _replace_names(unit, value, unit.names)
    if not unit.valid.fullmatch(value):
        raise InvalidCron(f"{unit.name}: invalid characters in {value!r}")
    if "H" in value:
        raise InvalidCron(f"{unit.name}: H (a random value) is not supported")
    value = _WILDCARD.sub(lambda m: f"{m.group(1)}{unit.lo}-{unit.hi}", value)
    if "*" in value or "?" in value:
        raise InvalidCron(f"{unit.name}: * and ? must stand alone in a list item")
    values: list[Value] = []
    for item in value.split(","):
        if not item:
            raise InvalidCron(f"{unit.name}: empty list item")
        result = _parse_item(unit, item)
        if isinstance(result, list):
            values.extend(result)
        elif isinstance(result, str):  # an L form: checked with the other values
            values.append(result)
        elif not unit.lo <= result <= unit.hi:
            raise InvalidCron(f"{unit.name}: {result} is outside {unit.lo}-{unit.hi}")
        else:
            values.append(result % 7 if unit is _DOW else result)
    return values


def _parse_item(unit: _Unit, item: str) -> list[Value] | Value:
    parts = item.split("/")
    if len(parts) > 2:
        raise InvalidCron(f"{unit.name}: more than one / in {item!r}")
    step: int | None = 1
    if len(parts) == 2:
        item, step_text = parts
        if "-" not in item:
            item = f"{item}-{unit.hi}"
        step = int(step_text) if _DIGITS.fullmatch(step_text) else None
    bounds = item.split("-")
    if len(bounds) == 1:
        return int(item) if _DIGITS.fullmatch(item) else item
    if len(bounds) > 2 or not all(_DIGITS.fullmatch(b) for b in bounds):
        raise InvalidCron(f"{unit.name}: invalid range {item!r}")
    lo, hi = int(bounds[0]), int(bounds[1])
    if lo < unit.lo or hi > unit.hi:
        raise InvalidCron(f"{unit.name}: range {item} is outside {unit.lo}-{unit.hi}")
    if lo > hi:
        raise InvalidCron(f"{unit.name}: range {item} runs backwards")
    if step is None or step <= 0:
        raise InvalidCron(f"{unit.name}: the step of {item!r} must be a positive number")
    out: list[Value] = []
    # A weekday range reaching 7 also holds 0 (both are Sunday), listed first.
    if unit is _DOW and hi % 7 == 0 and (hi - lo) % step == 0:
        out.append(0)
    for v in range(lo, hi + 1, step):
        if v not in out:
            out.append(v)
    return out


def _check_values(unit: _Unit, values: list[Value]) -> None:
    for v in values:
        if isinstance(v, str) and (unit.last is None or not unit.last(v)):
            raise InvalidCron(f"{unit.name}: invalid value {v!r}")
    seen: set[Value] = set()
    for v in values:
        if v in seen:
            raise InvalidCron(f"{unit.name}: {v} appears twice")
        seen.add(v)
