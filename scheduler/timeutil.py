"""Time: everything stored is UTC; local wall times live in IANA zones.

The one rule for wall-clock times that DST makes awkward, used by plans and slots alike:

* **Gap** (the clock jumps forward, e.g. 02:30 does not exist on the spring-forward day):
  a fixed plan time in a gap is an error (the user must say what they mean); a weekly slot in a
  gap is shifted forward by the length of the gap (02:30 becomes 03:30 in New York, 02:45 in
  Lord Howe's 30-minute gap), so the slot is never silently skipped.
* **Fold** (the clock falls back, e.g. 01:30 happens twice): the first occurrence is used, for
  plan times and slots alike, so a slot fires once. A plan time with an explicit offset
  (``2026-11-01T01:30-05:00``) picks the second occurrence.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from scheduler.errors import excerpt

__all__ = [
    "UTC",
    "Clock",
    "FixedClock",
    "LocalTimeError",
    "SystemClock",
    "format_utc",
    "is_fold",
    "is_gap",
    "localize",
    "parse_duration",
    "parse_wall_time",
    "utcnow",
    "zone",
]


class LocalTimeError(ValueError):
    """A wall-clock time that cannot be turned into an instant; ``hint`` says how to fix it."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


def utcnow() -> datetime:
    """The current instant, timezone-aware UTC."""
    return datetime.now(UTC)


class Clock:
    """Where the daemon gets "now" and how it waits; virtual clocks drive simulations."""

    def now(self) -> datetime:
        raise NotImplementedError


class SystemClock(Clock):
    """The real wall clock."""

    def now(self) -> datetime:
        return utcnow()


class FixedClock(Clock):
    """A clock stopped at one instant (reading a plan as of a simulation's first day...)."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at


def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``; raises LocalTimeError with a hint when unknown."""
    try:
        if len(name) > 255 or "\0" in name:  # no zone is; the file system would refuse it
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        shown = repr(name) if len(name) <= 60 else repr(name[:57]) + "…"
        raise LocalTimeError(
            f"unknown time zone {shown}",
            "use an IANA name such as Europe/Riga or America/New_York",
        ) from exc


def _same_wall(dt: datetime) -> bool:
    """True when ``dt`` survives a round trip through UTC unchanged (it is not in a gap)."""
    back = dt.astimezone(UTC).astimezone(dt.tzinfo)
    return back.replace(tzinfo=None) == dt.replace(tzinfo=None)


def is_gap(naive: datetime, tz: ZoneInfo) -> bool:
    """True when the wall time ``naive`` does not exist in ``tz`` (skipped by a DST jump)."""
    return not _same_wall(naive.replace(tzinfo=tz))


def is_fold(naive: datetime, tz: ZoneInfo) -> bool:
    """True when the wall time ``naive`` happens twice in ``tz`` (repeated by a DST fall-back)."""
    a = naive.replace(tzinfo=tz, fold=0).utcoffset()
    b = naive.replace(tzinfo=tz, fold=1).utcoffset()
    return a != b and not is_gap(naive, tz)


def localize(naive: datetime, tz: ZoneInfo, *, gap: str = "error") -> datetime:
    """Turn a wall time in ``tz`` into a UTC instant by the module's DST rule.

    ``gap="error"`` raises LocalTimeError for a time that does not exist; ``gap="forward"``
    shifts it forward by the length of the gap. Folds take the first occurrence.
    """
    first = naive.replace(tzinfo=tz, fold=0)
    if is_gap(naive, tz):
        if gap == "error":
            raise LocalTimeError(
                f"{naive:%Y-%m-%d %H:%M} does not exist in {tz.key} (the clocks jump forward)",
                "pick a time outside the daylight-saving gap, or give an explicit UTC offset",
            )
        # fold=0 in a gap is read with the offset in force before the jump: the instant that
        # lands "gap length" later on the new wall clock.
        return first.astimezone(UTC)
    return first.astimezone(UTC)


_TIME_RE = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$")


def parse_clock_time(text: str) -> time:
    """``"9:30"`` or ``"09:30:00"`` -> time; raises ValueError otherwise."""
    m = _TIME_RE.match(text.strip())
    if not m:
        raise ValueError(f"not a time of day: {text!r} (expected HH:MM)")
    h, mi, s = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
    if h > 23 or mi > 59 or s > 59:
        raise ValueError(f"not a time of day: {text!r} (expected HH:MM)")
    return time(h, mi, s)


def parse_wall_time(value: str | datetime | date, tz: ZoneInfo) -> datetime:
    """Parse a plan or CLI time into a UTC instant.

    Accepts ISO 8601 with a space or ``T``, minutes or seconds, with or without an offset
    (``Z`` or ``+02:00``). Without an offset the time is local to ``tz`` (DST rule above).
    """
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        raise LocalTimeError(
            f"{value.isoformat()} has no time of day", "write it as YYYY-MM-DD HH:MM"
        )
    else:
        text = value.strip()
        try:
            dt = datetime.fromisoformat(text)
        except ValueError as exc:
            raise LocalTimeError(
                f"cannot read {excerpt(text, 40)} as a date and time",
                "write YYYY-MM-DD HH:MM (local to the account), or add an offset: "
                "2026-12-01 09:00+02:00",
            ) from exc
        if len(text) <= 10 and "T" not in text and " " not in text:
            raise LocalTimeError(f"{text!r} has no time of day", "write it as YYYY-MM-DD HH:MM")
    if dt.tzinfo is not None:
        return dt.astimezone(UTC)
    return localize(dt, tz, gap="error")


_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


#: The longest duration a setting takes (ten years): anything longer is a typo.
MAX_DURATION = timedelta(days=3650)


def parse_duration(value: str | int | float) -> timedelta:
    """``"90s"``, ``"15m"``, ``"1h30m"``, ``"2d"`` or a number of seconds -> timedelta."""
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:59] + "…"
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        kind = "a table" if isinstance(value, dict) else type(value).__name__
        raise ValueError(f"not a duration: {shown if isinstance(value, bool) else kind}")
    if isinstance(value, int | float):
        if value != value:  # NaN
            raise ValueError("not a duration: nan")
        if value < 0:
            raise ValueError(f"a duration cannot be negative: {shown}")
        total = float(value)
    else:
        text = value.strip().replace(" ", "")
        pos, total = 0, 0.0
        for m in _DURATION_RE.finditer(text):
            if m.start() != pos:
                break
            total += float(m.group(1)) * _UNITS[m.group(2)]
            pos = m.end()
        if pos != len(text) or not text:
            raise ValueError(f"not a duration: {shown}")
    if not total <= MAX_DURATION.total_seconds():  # inf and 1e300 included
        raise ValueError(f"a duration of at most {MAX_DURATION.days} days, got {shown}")
    return timedelta(seconds=total)


def format_utc(dt: datetime | None) -> str | None:
    """ISO 8601 in UTC with a ``Z``, to the second: what ``--json`` prints."""
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def as_utc(dt: datetime) -> datetime:
    """Attach UTC to a naive datetime read back from SQLite; convert aware ones."""
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
