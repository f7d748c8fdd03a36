"""Weights that respect the operator's limits: floor, ceiling, maximum change, pinned types.

A policy proposes target weights; ``constrain`` returns the weights closest to the target
(in the least-squares sense) that sum to 1 and stay inside every type's box. Boxes that cannot
all hold at once are relaxed in a fixed order, and every relaxation is reported in plain words
so the decision record can say what gave way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

#: Slack for float comparisons of weights.
EPS = 1e-9


@dataclass(frozen=True)
class Limits:
    """Floor and ceiling for one recompute, after fitting them to the number of types."""

    floor: float
    ceiling: float
    notes: tuple[str, ...] = ()


def fit_limits(n_types: int, floor: float, ceiling: float, exploration: float = 0.5) -> Limits:
    """Fit the floor to the exploration budget and the ceiling to the number of types, and
    say so.

    Every type keeps ``floor`` of the slots so the loop keeps measuring it, but all the floors
    together never reserve more than ``exploration`` (half the slots by default): eight types
    with a 10 % floor would reserve 80 %, so each floor becomes ``exploration / n``. A ceiling
    too low to reach 100 % (two types at 40 %) is raised to ``1 / n``.
    """
    notes = []
    if n_types <= 0:
        return Limits(floor, ceiling)
    budget = min(exploration, 1.0)
    if floor * n_types > budget + EPS:
        scaled = budget / n_types
        notes.append(
            f"a floor of {floor:.0%} for {n_types} types would reserve {floor * n_types:.0%} "
            f"of the slots for exploration, more than the {budget:.0%} budget, so each type's "
            f"floor is {scaled:.1%}"
        )
        floor = scaled
    if ceiling * n_types < 1 - EPS:
        raised = 1 / n_types
        notes.append(
            f"a ceiling of {ceiling:.0%} for {n_types} types cannot add up to 100%, so it is "
            f"raised to {raised:.1%}"
        )
        ceiling = raised
    return Limits(floor, max(ceiling, floor), tuple(notes))


def clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


def project(
    target: Mapping[str, float], low: Mapping[str, float], high: Mapping[str, float]
) -> dict[str, float]:
    """The weights nearest ``target`` with ``low <= w <= high`` and sum 1.

    The nearest point has the form ``clamp(target + shift, low, high)`` for one shift, found by
    bisection (the sum grows with the shift). The boxes must admit a sum of 1.
    """
    keys = sorted(target)
    lo_sum = sum(low[k] for k in keys)
    hi_sum = sum(high[k] for k in keys)
    if lo_sum > 1 + EPS or hi_sum < 1 - EPS:
        raise ValueError(f"no weights fit: the boxes sum to [{lo_sum}, {hi_sum}]")

    def total(shift: float) -> float:
        return sum(clamp(target[k] + shift, low[k], high[k]) for k in keys)

    a = min(low[k] - target[k] for k in keys) - 1.0
    b = max(high[k] - target[k] for k in keys) + 1.0
    for _ in range(200):
        mid = (a + b) / 2
        if total(mid) < 1:
            a = mid
        else:
            b = mid
        if b - a < 1e-15:
            break
    out = {k: clamp(target[k] + b, low[k], high[k]) for k in keys}
    # Hand the last rounding crumb to a type with room, so the sum is 1 to float precision.
    crumb = 1.0 - sum(out.values())
    for k in keys:
        if low[k] - EPS <= out[k] + crumb <= high[k] + EPS:
            out[k] = clamp(out[k] + crumb, low[k], high[k])
            break
    return out


@dataclass
class Boxes:
    """Per-type bounds being negotiated, with the story of what had to give."""

    low: dict[str, float] = field(default_factory=dict)
    high: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def feasible(self) -> bool:
        return sum(self.low.values()) <= 1 + EPS and sum(self.high.values()) >= 1 - EPS


def constrain(
    target: Mapping[str, float],
    base: Mapping[str, float],
    limits: Limits,
    max_change: float,
    *,
    pinned: Sequence[str] = (),
    falling: Sequence[str] = (),
    rising: Sequence[str] = (),
) -> tuple[dict[str, float], list[str]]:
    """Weights nearest ``target`` within the limits; returns them and the relaxations made.

    Each type may move at most ``max_change`` from ``base`` and must stay in
    [floor, ceiling]. ``pinned`` types keep their base weight (not enough evidence yet);
    ``falling`` types (demoted) step down by ``max_change`` toward the floor; ``rising``
    types (short of evidence, but drawn) may gain, never lose. When these
    cannot all hold, first the pinned types may move within the maximum change, then the
    maximum change gives way to the floor and ceiling, which always hold (weights stored
    under other limits may have to jump to get inside them).
    """
    f, c = limits.floor, limits.ceiling

    def step_box(k: str) -> tuple[float, float]:
        return clamp(base[k] - max_change, f, c), clamp(base[k] + max_change, f, c)

    boxes = Boxes()
    for k in target:
        lo, hi = step_box(k)
        if k in pinned:
            lo = hi = clamp(base[k], f, c)
        elif k in falling:
            hi = lo
        elif k in rising:
            lo = clamp(base[k], f, c)
        boxes.low[k], boxes.high[k] = lo, hi
    if not boxes.feasible():
        for k in target:
            boxes.low[k], boxes.high[k] = step_box(k)
        boxes.notes.append(
            "types without enough posts moved too, so that the weights still add up to 1"
        )
    if not boxes.feasible():
        for k in target:
            boxes.low[k], boxes.high[k] = f, c
    weights = project(target, boxes.low, boxes.high)
    jumped = sorted(k for k in weights if abs(weights[k] - base[k]) > max_change + EPS)
    if jumped:
        boxes.notes.append(
            f"{', '.join(jumped)} moved more than the maximum change of {max_change:.2f} "
            "to respect the floor and ceiling"
        )
    return weights, boxes.notes
