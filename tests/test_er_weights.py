"""The operator's limits on weights: floor, ceiling, maximum change, pinned and falling types."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scheduler.er.weights import EPS, Limits, constrain, fit_limits, project


def _simplex(values: list[float]) -> dict[str, float]:
    total = sum(values)
    return {f"t{i}": v / total for i, v in enumerate(values)}


weights_st = st.lists(st.floats(0.01, 1.0), min_size=1, max_size=12).map(_simplex)


def test_a_floor_too_high_for_the_number_of_types_is_scaled_and_said() -> None:
    limits = fit_limits(12, 0.10, 0.60)
    assert limits.floor == pytest.approx(1 / 24)
    assert "12 types" in limits.notes[0]
    assert "4.2%" in limits.notes[0]


def test_a_ceiling_too_low_for_the_number_of_types_is_raised_and_said() -> None:
    limits = fit_limits(2, 0.10, 0.40)
    assert limits.ceiling == 0.5
    assert "raised to 50.0%" in limits.notes[0]


def test_feasible_limits_are_left_alone() -> None:
    assert fit_limits(5, 0.10, 0.60) == Limits(0.10, 0.60)


def test_the_floors_together_stay_within_the_exploration_budget() -> None:
    limits = fit_limits(8, 0.10, 0.60, exploration=0.4)
    assert limits.floor == pytest.approx(0.05)
    assert "80%" in limits.notes[0]
    assert "40% budget" in limits.notes[0]
    assert fit_limits(10, 0.10, 0.60).floor == pytest.approx(0.05)  # the default budget: 50 %


def test_projection_keeps_a_target_that_already_fits() -> None:
    target = {"a": 0.5, "b": 0.3, "c": 0.2}
    got = project(target, dict.fromkeys(target, 0.1), dict.fromkeys(target, 0.6))
    assert got == pytest.approx(target)


def test_projection_clips_a_winner_at_the_ceiling_and_lifts_the_rest_to_the_floor() -> None:
    target = {"a": 1.0, "b": 0.0, "c": 0.0, "d": 0.0, "e": 0.0}
    got = project(target, dict.fromkeys(target, 0.1), dict.fromkeys(target, 0.6))
    assert got == pytest.approx({"a": 0.6, "b": 0.1, "c": 0.1, "d": 0.1, "e": 0.1})


def test_projection_refuses_boxes_that_cannot_sum_to_one() -> None:
    with pytest.raises(ValueError, match="no weights fit"):
        project({"a": 0.5, "b": 0.5}, {"a": 0.6, "b": 0.6}, {"a": 1.0, "b": 1.0})


def test_a_winner_climbs_by_at_most_the_maximum_change() -> None:
    base = dict.fromkeys("abcde", 0.2)
    target = {"a": 1.0, "b": 0.0, "c": 0.0, "d": 0.0, "e": 0.0}
    got, notes = constrain(target, base, Limits(0.1, 0.6), 0.1)
    assert got["a"] == pytest.approx(0.3)
    assert sum(got.values()) == pytest.approx(1)
    assert notes == []


def test_pinned_types_keep_their_weight() -> None:
    base = {"a": 0.3, "b": 0.3, "new": 0.4}
    got, _ = constrain(
        {"a": 1.0, "b": 0.0, "new": 0.4}, base, Limits(0.1, 0.6), 0.1, pinned=["new"]
    )
    assert got["new"] == pytest.approx(0.4)
    assert got["a"] == pytest.approx(0.4)
    assert got["b"] == pytest.approx(0.2)


def test_falling_types_step_down_toward_the_floor() -> None:
    base = {"a": 0.4, "b": 0.3, "c": 0.3}
    got, _ = constrain({"a": 0.0, "b": 0.5, "c": 0.5}, base, Limits(0.1, 0.6), 0.1, falling=["a"])
    assert got["a"] == pytest.approx(0.3)


def test_max_change_gives_way_when_old_weights_break_new_limits() -> None:
    # The floor was raised since the last recompute: c must jump from 0 to 0.2.
    base = {"a": 0.8, "b": 0.2, "c": 0.0}
    got, notes = constrain(dict(base), base, Limits(0.2, 0.6), 0.05)
    assert got["c"] >= 0.2 - EPS
    assert got["a"] <= 0.6 + EPS
    assert notes == [
        "a, c moved more than the maximum change of 0.05 to respect the floor and ceiling"
    ]


@given(
    base=weights_st,
    data=st.data(),
    floor=st.floats(0.0, 0.3),
    ceiling=st.floats(0.3, 1.0),
    max_change=st.floats(0.0, 0.5),
)
def test_limits_always_hold(
    base: dict[str, float], data: st.DataObject, floor: float, ceiling: float, max_change: float
) -> None:
    keys = sorted(base)
    raw = data.draw(st.lists(st.floats(0.0, 1.0), min_size=len(keys), max_size=len(keys)))
    target = dict(zip(keys, _simplex([x + 1e-6 for x in raw]).values(), strict=True))
    pinned = data.draw(st.lists(st.sampled_from(keys), unique=True, max_size=len(keys)))
    limits = fit_limits(len(keys), floor, ceiling)
    got, notes = constrain(target, base, limits, max_change, pinned=pinned)
    assert sum(got.values()) == pytest.approx(1, abs=1e-9)
    assert all(limits.floor - EPS <= w <= limits.ceiling + EPS for w in got.values())
    base_fits = all(limits.floor - EPS <= w <= limits.ceiling + EPS for w in base.values())
    if base_fits:
        # From weights inside the limits, no type ever moves more than the maximum change.
        assert all(abs(got[k] - base[k]) <= max_change + 1e-7 for k in keys)
    if not notes and base_fits:
        assert all(got[k] == pytest.approx(base[k], abs=1e-9) for k in pinned)
