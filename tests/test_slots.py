"""Weekly slots in IANA zones, across DST gaps and folds."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


def _reference_slots(slots, tz, start, count):  # type: ignore[no-untyped-def]
    """The DST rule applied slot by slot, with no shortcut for days without a clock change."""
    from scheduler.timeutil import localize

    out: list[datetime] = []
    day = start.astimezone(tz).date()
    last = None
    while len(out) < count:
        for instant in sorted(
            {
                localize(datetime.combine(day, t), tz, gap="forward")
                for t in slots.get(day.weekday(), ())
            }
        ):
            if instant >= start and instant != last and len(out) < count:
                out.append(instant)
                last = instant
        day += timedelta(days=1)
    return out


# Zones with DST at midnight (Havana, Santiago, Beirut), 30-minute shifts (Lord Howe), the
# southern hemisphere, a zone that skipped a whole day (Apia, 2011-12-30) and one without DST.
_ZONES = [
    "Europe/Riga",
    "America/New_York",
    "Australia/Lord_Howe",
    "America/Havana",
    "America/Santiago",
    "Asia/Beirut",
    "Pacific/Apia",
    "Asia/Tokyo",
]


@settings(max_examples=300, deadline=None)
@given(
    zone=st.sampled_from(_ZONES),
    start=st.datetimes(min_value=datetime(2010, 1, 1), max_value=datetime(2030, 12, 31)),
    times=st.lists(
        st.times().map(lambda t: t.replace(second=0, microsecond=0)), min_size=1, max_size=6
    ),
    weekdays=st.sets(st.integers(0, 6), min_size=1),
)
def test_slot_times_match_the_dst_rule_applied_slot_by_slot(
    zone: str, start: datetime, times: list[time], weekdays: set[int]
) -> None:
    tz = ZoneInfo(zone)
    slots = {d: tuple(times) for d in weekdays}
    begin = start.replace(tzinfo=UTC)
    assert take(60, iter_slots(slots, tz, begin)) == _reference_slots(slots, tz, begin, 60)


@pytest.mark.parametrize(
    ("zone", "day"),
    [
        ("America/Havana", datetime(2024, 3, 10)),  # clocks jump at midnight
        ("America/Havana", datetime(2024, 11, 3)),  # and fall back at 01:00
        ("America/Santiago", datetime(2024, 9, 8)),  # midnight does not exist
        ("Pacific/Apia", datetime(2011, 12, 29)),  # the whole of 30 December 2011 is skipped
        ("Australia/Lord_Howe", datetime(2024, 4, 7)),  # a 30-minute fold
    ],
)
def test_slot_times_on_days_the_clocks_change_at_or_near_midnight(zone: str, day: datetime) -> None:
    tz = ZoneInfo(zone)
    every_half_hour = tuple(time(h, m) for h in range(24) for m in (0, 30))
    slots = dict.fromkeys(range(7), every_half_hour)
    begin = (day - timedelta(days=1)).replace(tzinfo=UTC)
    assert take(200, iter_slots(slots, tz, begin)) == _reference_slots(slots, tz, begin, 200)


def test_new_queue_posts_in_plan_order_get_the_slots_the_general_ordering_gives() -> None:
    """A first import takes a shortcut (nothing stored moves, the rows are in plan order):
    it must give the same times as the general path, which sorts every entry."""
    import random

    from scheduler.config import AccountConfig
    from scheduler.queue import plan_order, plan_queue_slots

    rng = random.Random(5)
    account = AccountConfig(
        name="a",
        platform="sim",
        timezone="Europe/Riga",
        slots={**dict.fromkeys(range(5), (time(9, 0), time(13, 30))), 5: (time(11, 0),)},
    )
    start = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)  # the clocks change on the 29th

    def rows() -> tuple[list[dict[str, object]], list[datetime]]:
        rng.seed(5)
        queue = [
            {"schedule": "queue", "plan_order": i, "content_type": "t", "due_at": None}
            for i in range(0, 400, 2)
        ]
        fixed = [
            start + timedelta(days=rng.randrange(60), hours=rng.randrange(24)) for _ in range(40)
        ]
        # Some fixed times sit exactly on slots: those slots are taken.
        fixed += [datetime(2026, 3, 23, 7, 0, tzinfo=UTC), datetime(2026, 4, 1, 6, 0, tzinfo=UTC)]
        return queue, fixed

    fast_rows, fixed = rows()
    general_rows, _ = rows()
    assert plan_queue_slots(account, [], start, new_rows=fast_rows, new_taken=fixed) == []
    plan_queue_slots(
        account,
        [],
        start,
        new_rows=general_rows,
        new_taken=fixed,
        order=lambda entries: plan_order(entries),  # not the shortcut's own function
    )
    assert [r["due_at"] for r in fast_rows] == [r["due_at"] for r in general_rows]
    assert all(r["due_at"] is not None for r in fast_rows)
    assert datetime(2026, 3, 23, 7, 0, tzinfo=UTC) not in {r["due_at"] for r in fast_rows}
