"""Weekly slots in IANA zones, across DST gaps and folds."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from scheduler.slots import free_slots, iter_slots, minute

DAILY = {d: (time(9, 0),) for d in range(7)}


def take(n: int, it):  # type: ignore[no-untyped-def]
    return list(itertools.islice(it, n))


def test_slots_follow_the_local_clock_across_a_dst_change() -> None:
    # Riga moves from UTC+2 to UTC+3 on 2026-03-29: 09:00 local is 07:00 UTC before, 06:00 after.
    tz = ZoneInfo("Europe/Riga")
    got = take(3, iter_slots(DAILY, tz, datetime(2026, 3, 28, 0, 0, tzinfo=UTC)))
    assert got == [
        datetime(2026, 3, 28, 7, 0, tzinfo=UTC),
        datetime(2026, 3, 29, 6, 0, tzinfo=UTC),
        datetime(2026, 3, 30, 6, 0, tzinfo=UTC),
    ]


@pytest.mark.parametrize(
    ("zone", "day", "slot", "expected_local", "offset"),
    [
        # Riga: 03:00 -> 04:00 on 2026-03-29; a 03:30 slot is shifted to 04:30 EEST.
        ("Europe/Riga", datetime(2026, 3, 29), time(3, 30), time(4, 30), timedelta(hours=3)),
        # New York: 02:00 -> 03:00 on 2026-03-08; 02:30 becomes 03:30 EDT.
        ("America/New_York", datetime(2026, 3, 8), time(2, 30), time(3, 30), timedelta(hours=-4)),
        # Lord Howe: 02:00 -> 02:30 on 2026-10-04 (a 30-minute shift); 02:15 becomes 02:45.
        (
            "Australia/Lord_Howe",
            datetime(2026, 10, 4),
            time(2, 15),
            time(2, 45),
            timedelta(hours=11),
        ),
    ],
)
def test_a_slot_in_a_dst_gap_is_shifted_forward_by_the_gap(
    zone: str, day: datetime, slot: time, expected_local: time, offset: timedelta
) -> None:
    tz = ZoneInfo(zone)
    slots = {day.weekday(): (slot,)}
    start = day.replace(tzinfo=tz) - timedelta(hours=1)
    (got,) = take(1, iter_slots(slots, tz, start))
    local = got.astimezone(tz)
    assert local.date() == day.date()
    assert local.time() == expected_local
    assert local.utcoffset() == offset


@pytest.mark.parametrize(
    ("zone", "day", "slot", "first_offset"),
    [
        ("Europe/Riga", datetime(2026, 10, 25), time(3, 30), timedelta(hours=3)),
        ("America/New_York", datetime(2026, 11, 1), time(1, 30), timedelta(hours=-4)),
        # Lord Howe falls back 02:00 -> 01:30 on 2026-04-05: 01:45 happens twice.
        ("Australia/Lord_Howe", datetime(2026, 4, 5), time(1, 45), timedelta(hours=11)),
    ],
)
def test_a_slot_in_a_fold_fires_once_at_the_first_occurrence(
    zone: str, day: datetime, slot: time, first_offset: timedelta
) -> None:
    tz = ZoneInfo(zone)
    slots = {day.weekday(): (slot,)}
    start = day.replace(tzinfo=tz) - timedelta(hours=1)
    got = [
        t for t in take(3, iter_slots(slots, tz, start)) if t.astimezone(tz).date() == day.date()
    ]
    assert len(got) == 1
    assert got[0].astimezone(tz).utcoffset() == first_offset


def test_two_slots_shifted_onto_one_instant_are_kept_once() -> None:
    tz = ZoneInfo("America/New_York")
    day = datetime(2026, 3, 8)
    slots = {day.weekday(): (time(2, 0), time(3, 0))}  # 02:00 shifts to 03:00 EDT
    got = take(2, iter_slots(slots, tz, datetime(2026, 3, 8, 0, 0, tzinfo=tz)))
    assert got[0] == datetime(2026, 3, 8, 7, 0, tzinfo=UTC)
    assert got[1] > got[0]


def test_slots_before_start_are_skipped() -> None:
    tz = ZoneInfo("UTC")
    slots = {d: (time(9), time(12)) for d in range(7)}
    got = take(2, iter_slots(slots, tz, datetime(2026, 1, 1, 10, 0, tzinfo=UTC)))
    assert got == [datetime(2026, 1, 1, 12, tzinfo=UTC), datetime(2026, 1, 2, 9, tzinfo=UTC)]


def test_no_slots_yield_nothing() -> None:
    assert list(iter_slots({}, ZoneInfo("UTC"), datetime(2026, 1, 1, tzinfo=UTC))) == []


def test_iteration_stops_at_until() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    got = list(iter_slots(DAILY, ZoneInfo("UTC"), start, until=start + timedelta(days=3)))
    assert len(got) == 3


def test_free_slots_skip_taken_minutes() -> None:
    tz = ZoneInfo("UTC")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    taken = {minute(datetime(2026, 1, 1, 9, 0, 30, tzinfo=UTC))}
    got = free_slots(DAILY, tz, start, taken, 2)
    assert got == [datetime(2026, 1, 2, 9, tzinfo=UTC), datetime(2026, 1, 3, 9, tzinfo=UTC)]


def test_gap_shifted_slots_stay_in_order_and_unique() -> None:
    # New York, 2026-03-08: 02:00 and 02:30 do not exist and shift to 03:00 and 03:30 EDT,
    # onto and past the real 03:00 slot.
    tz = ZoneInfo("America/New_York")
    day = datetime(2026, 3, 8)
    slots = {day.weekday(): (time(2, 0), time(2, 30), time(3, 0))}
    got = [
        t
        for t in take(4, iter_slots(slots, tz, datetime(2026, 3, 8, 0, 0, tzinfo=tz)))
        if t.astimezone(tz).date() == day.date()
    ]
    assert got == sorted(set(got))
    assert [t.astimezone(tz).strftime("%H:%M") for t in got] == ["03:00", "03:30"]
