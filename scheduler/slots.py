"""Weekly posting slots: turning "Mondays at 09:00 in Europe/Riga" into UTC instants.

The DST rule (see scheduler.timeutil): a slot that falls in a gap is shifted forward by the
length of the gap, so it is never skipped; a slot in a fold happens once, at its first
occurrence.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from scheduler.timeutil import localize


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
