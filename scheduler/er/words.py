"""A decision in a manager's words: what changed, what the data shows, nothing more.

``summarise`` turns the built-in policy's decision into sentences such as "Funny posts now get
40% of the slots, up from 30%: over the last two weeks they engaged 3.6% of the people who
saw them, the best of your four types". A claim of "best" or "below" is made only when the
intervals say so (one type's whole interval above or below another's); otherwise the sentence
says the types are not yet told apart. The statistics stay in the decision's ``reason``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta

from scheduler.er.stats import AccountStats, TypeStats

NUMBERS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
#: Share changes smaller than this are not news.
NEWS = 0.005


def count(n: int) -> str:
    return NUMBERS[n] if 0 <= n < len(NUMBERS) else str(n)


def period(half_life: timedelta) -> str:
    """The span the estimates mostly rest on, in words: posts a half-life old count half."""
    days = half_life / timedelta(days=1)
    if abs(days - round(days / 7) * 7) < 0.5 and days >= 7:
        weeks = round(days / 7)
        return "week" if weeks == 1 else f"{count(weeks)} weeks"
    return f"{days:g} days"


def percent(value: float | None) -> str:
    if value is None:
        return "?"
    # No space, as the shares beside it and the tables print theirs (`smm er`, the report).
    return f"{value * 100:.1f}%" if value >= 0.001 else f"{value * 100:.2f}%"


def audience(basis: str) -> str:
    return "of the people who saw them" if basis == "reach" else "of their followers"


def clearly_above(a: TypeStats, b: TypeStats) -> bool:
    return a.er_low is not None and b.er_high is not None and a.er_low > b.er_high


def standing(t: str, stats: AccountStats, ranked: Sequence[str]) -> str:
    """Where ``t`` stands among the ranked types, claiming only what the intervals show."""
    mine = stats.types[t]
    others = [stats.types[o] for o in ranked if o != t]
    n = count(len(ranked))
    if others and all(clearly_above(mine, o) for o in others):
        return f"the best of your {n} types"
    best = max(ranked, key=lambda o: stats.types[o].er or 0.0)
    if best == t:
        return f"the highest of your {n} types, though not yet clearly ahead of all of them"
    if clearly_above(stats.types[best], mine):
        return f"clearly below {best} ({percent(stats.types[best].er)})"
    return f"not clearly different from {best}, the highest ({percent(stats.types[best].er)})"


def summarise(
    stats: AccountStats,
    old: Mapping[str, float],
    new: Mapping[str, float],
    *,
    ranked: Sequence[str],
    evidence: float,
    entered: Sequence[str],
    demoted: Sequence[str],
    waiting: Sequence[str],
    min_posts: int,
    half_life: timedelta,
) -> str:
    """The decision in sentences, biggest change first."""
    span = period(half_life)
    sentences = []
    for t in entered:
        sentences.append(f"{t} posts are new and start with {new[t]:.0%} of the slots.")
    moved = sorted(
        (t for t in new if t not in entered and abs(new[t] - old.get(t, 0.0)) >= NEWS),
        key=lambda t: -abs(new[t] - old.get(t, 0.0)),
    )
    for t in moved:
        s = stats.types[t]
        verb = "up" if new[t] > old.get(t, 0.0) else "down"
        head = f"{t} posts now get {new[t]:.0%} of the slots, {verb} from {old.get(t, 0.0):.0%}"
        if t not in ranked or s.er is None:
            sentences.append(f"{head}, to keep the limits.")
        elif evidence <= 0:
            sentences.append(
                f"{head}: your types have not shown a difference larger than chance, so they "
                "share the slots equally."
            )
        elif s.changed:
            sentences.append(
                f"{head}: their latest posts engaged {percent(s.er)} {audience(stats.basis)}, "
                f"unlike their earlier ones, so the earlier ones no longer count; "
                f"{standing(t, stats, ranked)}."
            )
        else:
            sentences.append(
                f"{head}: over the last {span} they engaged {percent(s.er)} "
                f"{audience(stats.basis)}, {standing(t, stats, ranked)}."
            )
    for t in demoted:
        sentences.append(
            f"{t} is flagged: it has engaged clearly less than the best type for a while."
        )
    if waiting:
        names = ", ".join(f"{t} ({stats.types[t].posts})" for t in waiting)
        sentences.append(f"Not lowered until they have {min_posts} measured posts: {names}.")
    if not moved and not entered:
        if len(ranked) < 2:
            lead = "No change: not enough measured posts yet to compare types."
        elif evidence <= 0:
            lead = (
                f"No change: your {count(len(ranked))} types have not shown a difference in "
                "engagement larger than chance."
            )
        else:
            best = max(ranked, key=lambda o: stats.types[o].er or 0.0)
            lead = (
                f"No change: the slots already follow what the posts show; {best} is "
                f"{standing(best, stats, ranked)} ({percent(stats.types[best].er)} "
                f"{audience(stats.basis)})."
            )
        sentences.insert(0, lead)
    return " ".join(sentences)
