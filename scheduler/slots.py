"""Weekly posting slots: turning "Mondays at 09:00 in Europe/Riga" into UTC instants.

The DST rule (see scheduler.timeutil): a slot that falls in a gap is shifted forward by the
length of the gap, so it is never skipped; a slot in a fold happens once, at its first
occurrence.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from scheduler.timeutil import localize, parse_clock_time


def iter_slots(
    slots: Mapping[int, tuple[time, ...]],
    tz: ZoneInfo,
    start: datetime,
    *,
    until: datetime | None = None,
) -> Iterator[datetime]:
    """UTC instants of the weekly ``slots`` (weekday 0 = Monday) at or after ``start``, in order.

    Endless unless ``until`` is given; yields nothing when there are no slots.
    """
    if not any(slots.values()):
        return
    day = start.astimezone(tz).date()
    day_start = _midnight(day, tz)
    last: datetime | None = None
    # Each weekday's wall times as offsets from midnight, in order, each once.
    offsets = {
        weekday: [
            timedelta(hours=t.hour, minutes=t.minute, seconds=t.second, microseconds=t.microsecond)
            for t in sorted(set(times))
        ]
        for weekday, times in slots.items()
    }
    while True:
        next_day = day + timedelta(days=1)
        next_start = _midnight(next_day, tz)
        times = slots.get(day.weekday(), ())
        offset = _steady_offset(day, day_start, next_day, next_start, tz) if times else None
        if offset is not None:
            # The clocks do not change this day: one offset turns every wall time into UTC.
            base = datetime.combine(day, time(0), tzinfo=UTC) - offset
            instants = [base + delta for delta in offsets[day.weekday()]]
        else:
            # A slot shifted out of a DST gap can land on, or after, a later slot of the same
            # day: sort the day's instants and keep each once.
            instants = sorted(
                {localize(datetime.combine(day, t), tz, gap="forward") for t in times}
            )
        for instant in instants:
            if instant < start or instant == last:
                continue
            if until is not None and instant > until:
                return
            last = instant
            yield instant
        day, day_start = next_day, next_start
        if until is not None and day_start > until:
            return


def _midnight(day: date, tz: ZoneInfo) -> datetime:
    return localize(datetime.combine(day, time(0)), tz, gap="forward")


def _steady_offset(
    day: date, day_start: datetime, next_day: date, next_start: datetime, tz: ZoneInfo
) -> timedelta | None:
    """The UTC offset of ``day`` when it has one all day long (no DST change, and both
    midnights exist as written); None when the day needs the full DST rule, slot by slot."""
    offset = day_start.astimezone(tz).utcoffset()
    if (
        offset is None
        or next_start - day_start != _DAY
        or next_start.astimezone(tz).utcoffset() != offset
        or (day_start + offset).replace(tzinfo=None) != datetime.combine(day, time(0))
        or (next_start + offset).replace(tzinfo=None) != datetime.combine(next_day, time(0))
    ):
        return None
    return offset


_DAY = timedelta(days=1)


def free_slots(
    slots: Mapping[int, tuple[time, ...]],
    tz: ZoneInfo,
    start: datetime,
    taken: set[datetime],
    count: int,
) -> list[datetime]:
    """The first ``count`` slot instants at or after ``start`` not in ``taken``.

    ``taken`` holds instants truncated to the minute (see ``minute``)."""
    out: list[datetime] = []
    if count <= 0:
        return out
    for instant in iter_slots(slots, tz, start):
        if minute(instant) in taken:
            continue
        out.append(instant)
        if len(out) == count:
            break
    return out


def minute(instant: datetime) -> datetime:
    """``instant`` truncated to the minute: two posts in the same minute share a slot."""
    if instant.second or instant.microsecond:
        return instant.replace(second=0, microsecond=0)
    return instant  # already on the minute (every slot is)


# --------------------------------------------------------------------------- learned slots

#: A weekly slot table: weekday (0 = Monday) -> sorted local times.
WeekTable = Mapping[int, tuple[time, ...]]
#: Weekly tables in force one after the other: (UTC instant from which it holds, table); the
#: first one's instant is None (it has always held).
SlotPlan = Sequence[tuple[datetime | None, WeekTable]]
#: A window within which learned slots may move: (first, last) local time, both included.
Window = tuple[time, time]

#: Learned slots sit on a grid of whole hours from each window's start ...
WINDOW_STEP = timedelta(hours=1)
#: ... and at least this far apart on a day, so that posts do not crowd each other out.
MIN_GAP = timedelta(hours=1)


def parse_window(text: str) -> Window:
    """``"08:00-22:00"`` -> (08:00, 22:00); ValueError with a reason otherwise."""
    first, sep, last = text.partition("-")
    if not sep:
        raise ValueError(f"not a window: {text[:40]!r} (expected HH:MM-HH:MM)")
    start, end = parse_clock_time(first), parse_clock_time(last)
    if end <= start:
        raise ValueError(
            f"the window {text[:40]!r} ends before it starts (one past midnight is two windows, "
            'e.g. "20:00-23:59" and "00:00-01:00")'
        )
    return start, end


def window_times(windows: Sequence[Window]) -> list[time]:
    """The times a learned slot may take in ``windows``: every ``WINDOW_STEP`` from each
    window's start up to its end, each time once, sorted."""
    out: set[time] = set()
    for start, end in windows:
        at = _minutes(start)
        while at <= _minutes(end):
            out.add(time(at // 60, at % 60))
            at += int(WINDOW_STEP.total_seconds() // 60)
    return sorted(out)


def fits_windows(times: Sequence[time], windows: Sequence[Window]) -> bool:
    """Whether every time lies in one of ``windows``."""
    return all(any(s <= t <= e for s, e in windows) for t in times)


def spaced(times: Sequence[time], gap: timedelta = MIN_GAP) -> bool:
    """Whether consecutive times of a day are at least ``gap`` apart."""
    minutes = sorted(_minutes(t) for t in times)
    return all(b - a >= gap.total_seconds() // 60 for a, b in itertools.pairwise(minutes))


def _minutes(t: time) -> int:
    return t.hour * 60 + t.minute


def iter_plan(plan: SlotPlan, tz: ZoneInfo, start: datetime) -> Iterator[datetime]:
    """UTC slot instants at or after ``start`` of the tables of ``plan``, each table from its
    instant until the next one's (endless when the last table has slots)."""
    for i, (since, table) in enumerate(plan):
        until = plan[i + 1][0] if i + 1 < len(plan) else None
        if until is not None and until <= start:
            continue
        begin = start if since is None or since < start else since
        for instant in iter_slots(table, tz, begin):
            if until is not None and instant >= until:
                break
            yield instant


def free_plan_slots(
    plan: SlotPlan, tz: ZoneInfo, start: datetime, taken: set[datetime], count: int
) -> list[datetime]:
    """``free_slots`` over the tables of ``plan`` in turn."""
    out: list[datetime] = []
    if count <= 0:
        return out
    for instant in iter_plan(plan, tz, start):
        if minute(instant) in taken:
            continue
        out.append(instant)
        if len(out) == count:
            break
    return out


#: The day keys of slot tables (and of learning windows): which weekdays each names.
DAY_GROUPS: Mapping[str, tuple[int, ...]] = {
    "daily": tuple(range(7)),
    "weekdays": tuple(range(5)),
    "weekend": (5, 6),
    **{d: (i,) for i, d in enumerate(("mon", "tue", "wed", "thu", "fri", "sat", "sun"))},
}


def parse_windows(raw: object) -> tuple[dict[int, tuple[Window, ...]], list[tuple[str, str]]]:
    """Learning windows as written: a table of day keys (as slots: mon..sun, weekdays,
    weekend, daily), each a window ``"HH:MM-HH:MM"`` or a list of them; a plain string is
    every day's. Returns weekday -> windows, and the problems as (key suffix, message)."""
    if isinstance(raw, str):
        raw = {"daily": raw}
    problems: list[tuple[str, str]] = []
    if not isinstance(raw, Mapping):
        return {}, [("", 'learn must be a table of windows, e.g. { daily = "08:00-22:00" }')]
    out: dict[int, set[Window]] = {}
    for key, value in raw.items():
        if key not in DAY_GROUPS:
            problems.append((f".{key}", f"unknown day {str(key)[:40]!r}"))
            continue
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not items:
            problems.append((f".{key}", 'a window "HH:MM-HH:MM" or a list of them'))
            continue
        for i, item in enumerate(items):
            where = f".{key}" if isinstance(value, str) else f".{key}[{i}]"
            if not isinstance(item, str):
                problems.append((where, 'a window is written "HH:MM-HH:MM"'))
                continue
            try:
                window = parse_window(item)
            except ValueError as exc:
                problems.append((where, str(exc)))
                continue
            for day in DAY_GROUPS[key]:
                out.setdefault(day, set()).add(window)
    return {d: tuple(sorted(w)) for d, w in sorted(out.items())}, problems


def check_learning(
    slots: Mapping[int, tuple[time, ...]], windows: Mapping[int, Sequence[Window]]
) -> list[str]:
    """Why ``slots`` cannot learn within ``windows`` (empty: they can): every slot of a day
    with windows must lie in them, and the day's slots must fit them ``MIN_GAP`` apart. Days
    with the same problem are named together."""
    if windows and not any(slots.get(day) for day in windows):
        # Windows only on days without slots: nothing would ever move.
        return [
            "no day with learning windows has slots to move: learning moves the slots the "
            'table gives, e.g. weekdays = ["09:00", "18:00"]'
        ]
    found: dict[str, list[int]] = {}
    gap = int(MIN_GAP.total_seconds() // 60)
    for day, wins in sorted(windows.items()):
        times = slots.get(day, ())
        outside = [t for t in times if not fits_windows([t], wins)]
        shown = ", ".join(f"{s:%H:%M}-{e:%H:%M}" for s, e in wins)
        if outside:
            found.setdefault(
                f"the {outside[0]:%H:%M} slot on {{days}} lies outside the learning windows "
                f"({shown})",
                [],
            ).append(day)
            continue
        room, last = 0, -gap
        for t in window_times(wins):  # the most slots the grid holds a gap apart, greedily
            if _minutes(t) - last >= gap:
                room, last = room + 1, _minutes(t)
        if len(times) > room:
            found.setdefault(
                f"{len(times)} slots on {{days}} do not fit the learning windows ({shown}) "
                f"an hour apart: room for {room}",
                [],
            ).append(day)
    names = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
    out = []
    for text, days in found.items():
        listed = [names[d] for d in days]
        joined = listed[0] if len(listed) == 1 else ", ".join(listed[:-1]) + " and " + listed[-1]
        out.append(text.format(days=joined))
    return out
