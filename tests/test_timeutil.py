"""Wall-clock times under DST (the rule in scheduler.timeutil's docstring) and durations.

Three zones cover the shapes of DST: Europe/Riga and America/New_York jump by an hour (at
different local times), Australia/Lord_Howe by 30 minutes, on the southern calendar.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scheduler.timeutil import (
    LocalTimeError,
    is_fold,
    is_gap,
    localize,
    parse_duration,
    parse_wall_time,
)


@dataclass(frozen=True)
class DstZone:
    """One zone's 2026 transitions, written out by hand from the tz database."""

    name: str
    gap_start: datetime  # first wall time that does not exist on the spring-forward day
    shift: timedelta  # length of the gap (and of the fold)
    fold_time: datetime  # a wall time that happens twice on the fall-back day
    fold_first_utc: datetime  # ... its first occurrence
    fold_second_offset: str  # the UTC offset of its second occurrence
    fold_second_utc: datetime  # ... its second occurrence

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.name)

    @property
    def gap_time(self) -> datetime:
        """A wall time inside the gap, a little after its start."""
        return self.gap_start + timedelta(minutes=15)


ZONES = [
    DstZone(
        name="Europe/Riga",
        gap_start=datetime(2026, 3, 29, 3, 0),
        shift=timedelta(hours=1),
        fold_time=datetime(2026, 10, 25, 3, 30),
        fold_first_utc=datetime(2026, 10, 25, 0, 30, tzinfo=UTC),
        fold_second_offset="+02:00",
        fold_second_utc=datetime(2026, 10, 25, 1, 30, tzinfo=UTC),
    ),
    DstZone(
        name="America/New_York",
        gap_start=datetime(2026, 3, 8, 2, 0),
        shift=timedelta(hours=1),
        fold_time=datetime(2026, 11, 1, 1, 30),
        fold_first_utc=datetime(2026, 11, 1, 5, 30, tzinfo=UTC),
        fold_second_offset="-05:00",
        fold_second_utc=datetime(2026, 11, 1, 6, 30, tzinfo=UTC),
    ),
    DstZone(
        name="Australia/Lord_Howe",
        gap_start=datetime(2026, 10, 4, 2, 0),
        shift=timedelta(minutes=30),
        fold_time=datetime(2026, 4, 5, 1, 45),
        fold_first_utc=datetime(2026, 4, 4, 14, 45, tzinfo=UTC),
        fold_second_offset="+10:30",
        fold_second_utc=datetime(2026, 4, 4, 15, 15, tzinfo=UTC),
    ),
]

by_zone = pytest.mark.parametrize("z", ZONES, ids=[z.name for z in ZONES])


def local_wall(instant: datetime, tz: ZoneInfo) -> datetime:
    return instant.astimezone(tz).replace(tzinfo=None)


# --------------------------------------------------------------------------------- gaps and folds


@by_zone
def test_time_in_the_spring_forward_gap_is_a_gap(z: DstZone) -> None:
    assert is_gap(z.gap_time, z.tz)
    assert not is_fold(z.gap_time, z.tz)


@by_zone
def test_gap_starts_at_the_jump_and_ends_one_shift_later(z: DstZone) -> None:
    assert not is_gap(z.gap_start - timedelta(minutes=1), z.tz)
    assert is_gap(z.gap_start, z.tz)
    assert is_gap(z.gap_start + z.shift - timedelta(minutes=1), z.tz)
    assert not is_gap(z.gap_start + z.shift, z.tz)


@by_zone
def test_time_in_the_fall_back_fold_is_a_fold(z: DstZone) -> None:
    assert is_fold(z.fold_time, z.tz)
    assert not is_gap(z.fold_time, z.tz)


@by_zone
def test_ordinary_time_is_neither_gap_nor_fold(z: DstZone) -> None:
    noon = z.gap_start.replace(hour=12)

    assert not is_gap(noon, z.tz)
    assert not is_fold(noon, z.tz)


@by_zone
def test_localize_forward_shifts_a_gap_time_by_the_gap_length(z: DstZone) -> None:
    instant = localize(z.gap_time, z.tz, gap="forward")

    assert local_wall(instant, z.tz) == z.gap_time + z.shift


@by_zone
def test_localize_error_rejects_a_gap_time_with_a_hint(z: DstZone) -> None:
    with pytest.raises(LocalTimeError, match=f"does not exist in {z.name}") as err:
        localize(z.gap_time, z.tz, gap="error")

    assert "offset" in err.value.hint


def test_localize_rejects_gap_times_by_default() -> None:
    with pytest.raises(LocalTimeError):
        localize(datetime(2026, 3, 8, 2, 30), ZoneInfo("America/New_York"))


@by_zone
def test_localize_takes_the_first_occurrence_of_a_fold(z: DstZone) -> None:
    assert localize(z.fold_time, z.tz) == z.fold_first_utc


@by_zone
def test_localize_returns_utc(z: DstZone) -> None:
    assert localize(z.fold_time, z.tz).tzinfo is UTC


# --------------------------------------------------------------------------------- parse_wall_time


@by_zone
def test_plan_time_in_a_fold_takes_the_first_occurrence(z: DstZone) -> None:
    assert parse_wall_time(f"{z.fold_time:%Y-%m-%d %H:%M}", z.tz) == z.fold_first_utc


@by_zone
def test_plan_time_with_an_explicit_offset_selects_the_second_occurrence(z: DstZone) -> None:
    text = f"{z.fold_time:%Y-%m-%dT%H:%M}{z.fold_second_offset}"

    assert parse_wall_time(text, z.tz) == z.fold_second_utc


@by_zone
def test_plan_time_in_a_gap_is_an_error(z: DstZone) -> None:
    with pytest.raises(LocalTimeError, match="does not exist"):
        parse_wall_time(f"{z.gap_time:%Y-%m-%d %H:%M}", z.tz)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-01 09:00", datetime(2026, 12, 1, 7, 0, tzinfo=UTC)),
        ("2026-12-01T09:00", datetime(2026, 12, 1, 7, 0, tzinfo=UTC)),
        ("2026-12-01 09:00:30", datetime(2026, 12, 1, 7, 0, 30, tzinfo=UTC)),
        ("  2026-12-01 09:00  ", datetime(2026, 12, 1, 7, 0, tzinfo=UTC)),
        ("2026-12-01 09:00Z", datetime(2026, 12, 1, 9, 0, tzinfo=UTC)),
        ("2026-12-01T09:00+05:00", datetime(2026, 12, 1, 4, 0, tzinfo=UTC)),
    ],
)
def test_parse_wall_time_reads_iso_times_local_to_the_zone_unless_offset(
    text: str, expected: datetime
) -> None:
    assert parse_wall_time(text, ZoneInfo("Europe/Riga")) == expected


def test_parse_wall_time_converts_an_aware_datetime_to_utc() -> None:
    aware = datetime(2026, 12, 1, 9, 0, tzinfo=ZoneInfo("America/New_York"))

    assert parse_wall_time(aware, ZoneInfo("Europe/Riga")) == datetime(
        2026, 12, 1, 14, 0, tzinfo=UTC
    )


def test_parse_wall_time_localizes_a_naive_datetime() -> None:
    # YAML hands plan times over as datetimes already.
    naive = datetime(2026, 12, 1, 9, 0)

    assert parse_wall_time(naive, ZoneInfo("Europe/Riga")) == datetime(
        2026, 12, 1, 7, 0, tzinfo=UTC
    )


@pytest.mark.parametrize("text", ["tomorrow", "2026-13-01 09:00", "2026-12-01 25:00", "", "9:00"])
def test_parse_wall_time_rejects_unreadable_text_with_a_hint(text: str) -> None:
    with pytest.raises(LocalTimeError, match="cannot read") as err:
        parse_wall_time(text, ZoneInfo("Europe/Riga"))

    assert "YYYY-MM-DD HH:MM" in err.value.hint


def test_an_unreadable_time_is_quoted_in_a_bounded_excerpt() -> None:
    """A form field or argument of megabytes is not echoed back whole (the web app shows it)."""
    with pytest.raises(LocalTimeError) as err:
        parse_wall_time("2026-12-01 " + "9" * 100_000, ZoneInfo("Europe/Riga"))
    assert len(str(err.value)) < 100
    assert "'2026-12-01 9999" in str(err.value)


@pytest.mark.parametrize("value", ["2026-12-01", date(2026, 12, 1)], ids=["text", "date"])
def test_parse_wall_time_rejects_a_date_without_time_of_day(value: str | date) -> None:
    with pytest.raises(LocalTimeError, match="has no time of day") as err:
        parse_wall_time(value, ZoneInfo("Europe/Riga"))

    assert err.value.hint == "write it as YYYY-MM-DD HH:MM"


# --------------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("250ms", timedelta(milliseconds=250)),
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("2h", timedelta(hours=2)),
        ("3d", timedelta(days=3)),
        ("1w", timedelta(weeks=1)),
        ("1.5h", timedelta(minutes=90)),
    ],
)
def test_parse_duration_reads_each_unit(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1d12h", timedelta(days=1, hours=12)),
        ("1h 30m 15s", timedelta(hours=1, minutes=30, seconds=15)),
        ("2m500ms", timedelta(minutes=2, milliseconds=500)),
    ],
)
def test_parse_duration_adds_up_combined_units(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(("value", "expected"), [(90, 90.0), (1.5, 1.5), (0, 0.0)])
def test_parse_duration_reads_a_bare_number_as_seconds(value: float, expected: float) -> None:
    assert parse_duration(value) == timedelta(seconds=expected)


@pytest.mark.parametrize("text", ["", "abc", "10", "10x", "h1", "1h30", "-5m", "1h-30m", "m"])
def test_parse_duration_rejects_malformed_text(text: str) -> None:
    with pytest.raises(ValueError, match=r"not a duration: "):
        parse_duration(text)


@pytest.mark.parametrize("value", [-1, -0.5])
def test_parse_duration_rejects_negative_numbers(value: float) -> None:
    with pytest.raises(ValueError, match="cannot be negative"):
        parse_duration(value)


def test_parse_duration_rejects_booleans() -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(True)


# --------------------------------------------------------------------------------- properties


@cache
def transitions(name: str, first_year: int = 2020, last_year: int = 2030) -> tuple[datetime, ...]:
    """The wall times (old offset) at which ``name`` changes its UTC offset."""
    tz = ZoneInfo(name)
    found = []
    day = datetime(first_year, 1, 1, tzinfo=UTC)
    while day.year <= last_year:
        after = day + timedelta(days=1)
        if day.astimezone(tz).utcoffset() != after.astimezone(tz).utcoffset():
            offset = day.astimezone(tz).utcoffset()
            assert offset is not None
            low, high = 0, 24 * 60  # bisect to the minute of the change
            while high - low > 1:
                mid = (low + high) // 2
                if (day + timedelta(minutes=mid)).astimezone(tz).utcoffset() == offset:
                    low = mid
                else:
                    high = mid
            found.append((day + timedelta(minutes=high) + offset).replace(tzinfo=None))
        day = after
    return tuple(found)


def near_a_transition(z: DstZone) -> st.SearchStrategy[datetime]:
    return st.tuples(
        st.sampled_from(transitions(z.name)), st.integers(min_value=-120, max_value=120)
    ).map(lambda t: t[0] + timedelta(minutes=t[1]))


def wall_times(z: DstZone) -> st.SearchStrategy[datetime]:
    anywhere = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2037, 12, 31))
    return st.one_of(anywhere, near_a_transition(z))


zone_and_wall_time = st.sampled_from(ZONES).flatmap(lambda z: st.tuples(st.just(z), wall_times(z)))


@given(zone_and_wall_time)
def test_localize_forward_never_moves_a_time_back_nor_further_than_the_gap(
    case: tuple[DstZone, datetime],
) -> None:
    z, naive = case

    wall = local_wall(localize(naive, z.tz, gap="forward"), z.tz)

    assert naive <= wall <= naive + z.shift


@given(zone_and_wall_time)
def test_localize_keeps_every_existing_wall_time(case: tuple[DstZone, datetime]) -> None:
    z, naive = case

    if not is_gap(naive, z.tz):
        assert local_wall(localize(naive, z.tz), z.tz) == naive


def test_transition_finder_sees_both_2026_transitions_of_each_zone() -> None:
    # Guards the property tests above: they must really visit the DST edges.
    for z in ZONES:
        in_2026 = [t for t in transitions(z.name) if t.year == 2026]
        assert z.gap_start in in_2026
        assert len(in_2026) == 2
