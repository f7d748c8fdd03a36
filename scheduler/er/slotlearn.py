"""Slot learning: an account's queue slots move toward the hours its audience engages at.

For an account with ``learn`` windows (``[accounts.NAME.slots] learn = {...}``), once a day the
ER job fits the joint model of type and hour (``scheduler.er.hours``) to the account's own
readings, draws each hour's effect from its posterior, and gives every day that has windows
the same number of slots as the config gives it, at the best drawn hours of its windows, at
least ``MIN_GAP`` apart (``decide``). Drawing rather than taking the best estimate is how the
hours little is known about get tried (Thompson sampling): a well-known good hour keeps its
slots, an untried one is tried now and then, and less as the evidence grows.

Every move is explained in words a manager reads, either with the evidence ("posts at 19:00
engaged 1.4x those at 08:00, their types taken into account") or as a trial ("to try 11:00:
2 posts there so far, too few to tell"). Days without windows keep their slots.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import time
from typing import Any

from scheduler.er.hours import Bucket, HourModel, kind_of
from scheduler.er.stats import INTERVAL_Z
from scheduler.slots import MIN_GAP, WeekTable, Window, window_times

#: A slot moves only for an hour that looks this much better (on the log scale): hours that
#: engage alike do not trade places day after day.
STAY = 0.1
#: The draws are taken at this share of the posterior spread: a full draw tries a weak hour
#: again long after it is known to be weak. Measured on seeds 101-116 of the hours benchmark
#: world (the type-and-time oracle's share: 0.92 at 0.7, 0.93 at 0.5, 0.95 at 0.25, 0.96 at
#: 0.15) and seeds 101-108 of one whose good hours lie away from every starting slot (0.90,
#: 0.91, 0.89 at 0.5, 0.25, 0.15: too narrow a draw stops looking).
DRAW_SCALE = 0.25

DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclass(frozen=True)
class Move:
    """One slot moved on some days: from ``old`` to ``new`` local time, and why."""

    days: tuple[int, ...]
    old: time
    new: time
    why: str
    #: The move rests on evidence (True) or tries an hour (False).
    evidence: bool

    def words(self) -> str:
        return (
            f"{days_words(self.days)}: the {self.old:%H:%M} slot moves to {self.new:%H:%M}, "
            f"{self.why}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "days": list(self.days),
            "from": f"{self.old:%H:%M}",
            "to": f"{self.new:%H:%M}",
            "why": self.why,
            "evidence": self.evidence,
        }


@dataclass(frozen=True)
class SlotDecision:
    """The new weekly table, the moves that lead there, and the statistics behind them."""

    old: WeekTable
    new: WeekTable
    moves: tuple[Move, ...]
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return bool(self.moves)

    def summary(self) -> str:
        """The decision in plain words."""
        if not self.moves:
            return "Slots kept where they are: the hours they are at still look best."
        by_days: dict[tuple[int, ...], list[Move]] = {}
        for m in self.moves:
            by_days.setdefault(m.days, []).append(m)
        return " ".join(
            f"{days_words(days)}: "
            + "; ".join(f"the {m.old:%H:%M} slot moves to {m.new:%H:%M}, {m.why}" for m in moves)
            + "."
            for days, moves in by_days.items()
        )


def days_words(days: Sequence[int]) -> str:
    """(0, 1, 2, 3, 4) -> "Monday to Friday"; (5, 6) -> "Saturday and Sunday"."""
    days = sorted(days)
    if days == list(range(7)):
        return "Every day"
    if len(days) > 2 and days == list(range(days[0], days[-1] + 1)):
        return f"{DAY_NAMES[days[0]]} to {DAY_NAMES[days[-1]]}"
    names = [DAY_NAMES[d] for d in days]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def best_times(scores: Mapping[time, float], n: int, gap_minutes: int) -> list[time] | None:
    """The ``n`` times of ``scores`` with the highest total score, consecutive ones at least
    ``gap_minutes`` apart (dynamic programming over the times in order); None if ``n`` do
    not fit."""
    times = sorted(scores)
    m = len(times)
    if n == 0:
        return []
    minutes = [t.hour * 60 + t.minute for t in times]
    # prev[i]: how many times lie at least a gap before times[i].
    prev = [sum(1 for b in minutes[:i] if minutes[i] - b >= gap_minutes) for i in range(m)]
    neg = -math.inf
    best = [[0.0] + [neg] * n for _ in range(m + 1)]
    for i in range(1, m + 1):
        for j in range(1, n + 1):
            skip = best[i - 1][j]
            take = best[prev[i - 1]][j - 1] + scores[times[i - 1]]
            best[i][j] = max(skip, take)
    if best[m][n] == neg:
        return None
    out: list[time] = []
    i, j = m, n
    while j > 0:
        if best[i][j] == best[i - 1][j]:
            i -= 1
            continue
        out.append(times[i - 1])
        i, j = prev[i - 1], j - 1
    return sorted(out)


def decide(
    model: HourModel,
    current: WeekTable,
    windows: Mapping[int, Sequence[Window]],
    rng: random.Random,
    *,
    explore: bool = True,
) -> SlotDecision:
    """Where the slots of each day with windows go next: the best hours of its windows by one
    draw from the model's posterior (``explore``) or by its estimates."""
    candidates = {d: window_times(windows[d]) for d in windows if current.get(d)}
    buckets = {(kind_of(d), t.hour) for d, ts in candidates.items() for t in ts}
    scores = (
        model.draw(buckets, rng, DRAW_SCALE)
        if explore
        else {b: model.effect(b).mean for b in buckets}
    )
    new: dict[int, tuple[time, ...]] = dict(current)
    for day, times in candidates.items():
        kind = kind_of(day)
        keep = set(current[day])
        chosen = best_times(
            {t: scores[(kind, t.hour)] + (STAY if t in keep else 0.0) for t in times},
            len(current[day]),
            int(MIN_GAP.total_seconds() // 60),
        )
        if chosen is not None:
            new[day] = tuple(chosen)
    moves = _moves(model, current, new)
    details = {
        "posts": model.posts,
        "spread": round(model.spread, 4),
        "hours": {
            f"{'weekend' if k else 'weekday'} {h:02d}": {
                "factor": round(model.effect((k, h)).factor, 4),
                "sd": round(model.effect((k, h)).sd, 4),
                "posts": model.posts_at((k, h)),
                "drawn": round(scores[(k, h)], 4),
            }
            for k, h in sorted(buckets)
        },
        "explore": explore,
    }
    return SlotDecision(dict(current), new, tuple(moves), details)


def _moves(model: HourModel, old: WeekTable, new: WeekTable) -> list[Move]:
    """The moves from ``old`` to ``new``, the days that make the same move together."""
    grouped: dict[tuple[time, time, int], list[int]] = {}
    for day in sorted(new):
        before, after = sorted(old.get(day, ())), sorted(new[day])
        gone = [t for t in before if t not in after]
        came = [t for t in after if t not in before]
        for a, b in zip(gone, came, strict=False):
            grouped.setdefault((a, b, kind_of(day)), []).append(day)
    moves = []
    for (a, b, kind), days in sorted(grouped.items(), key=lambda g: (g[1][0], g[0][0])):
        why, evidence = _why(model, kind, a, b)
        moves.append(Move(tuple(days), a, b, why, evidence))
    return moves


def _why(model: HourModel, kind: int, old: time, new: time) -> tuple[str, bool]:
    """Why a slot moves from ``old`` to ``new``, and whether the data shows it."""
    e_old, e_new = model.effect((kind, old.hour)), model.effect((kind, new.hour))
    n_old, n_new = model.posts_at((kind, old.hour)), model.posts_at((kind, new.hour))
    gap = e_new.mean - e_old.mean
    if n_old and n_new and clearly_above(model, (kind, new.hour), (kind, old.hour)):
        return (
            f"posts at {new.hour:02d}:00 engaged {math.exp(gap):.1f}x those at {old.hour:02d}:00, "
            f"their types taken into account ({n_new} posts at {new.hour:02d}:00, {n_old} at "
            f"{old.hour:02d}:00)",
            True,
        )
    if n_new < 3:
        hint = ""
        if gap > 0 and n_old:
            # Tied to its neighbours, an untried hour's estimate is what the hours around it did.
            hint = f"; the hours around it did {math.exp(gap):.1f}x {old.hour:02d}:00"
        return (f"to try {new:%H:%M} ({_posts(n_new)} there yet{hint})", False)
    return (
        f"to try {new:%H:%M} again: its {_posts(n_new)} may have done "
        f"{math.exp(gap):.1f}x those at {old.hour:02d}:00, not yet told apart",
        False,
    )


def clearly_above(model: HourModel, better: Bucket, worse: Bucket) -> bool:
    """Whether the whole 90 % interval of ``better``'s effect lies above ``worse``'s: the
    test every "engaged more" of the loop passes, types and hours alike."""
    b, w = model.effect(better), model.effect(worse)
    return b.mean - INTERVAL_Z * b.sd > w.mean + INTERVAL_Z * w.sd


def _posts(n: int) -> str:
    return "no post" if n == 0 else ("1 post" if n == 1 else f"only {n} posts")
