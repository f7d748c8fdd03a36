"""The ER policy: from per-type statistics to content-type weights, with its reasons.

The interface (docs/er.md#replacing-the-policy) is an object with a ``name`` and
``decide(stats, old_weights, settings, rng) -> Decision``. A plugin replaces the built-in one
by returning its own from the ``er_policy`` hook.

The built-in ``ThompsonPolicy`` is a bandit over content types: it draws each type's ER from
its shrunk posterior many times and aims each type's weight at the share of draws in which it
came out best. The operator's limits then shape that target (``weights.constrain``): a floor
so no type starves, a ceiling, a maximum change per recompute, no movement at all for types
with fewer than ``min_posts`` (decayed) posts, and a freeze switch.
"""

from __future__ import annotations

import math
import operator
import random
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any, Protocol, runtime_checkable

from scheduler.config import ERSettings
from scheduler.er.stats import AccountStats, TypeStats
from scheduler.er.weights import Limits, constrain, fit_limits
from scheduler.er.words import summarise

#: Thompson draws per recompute: shares to within about 1.5 points, at a couple of
#: milliseconds per account.
DRAWS = 1000
#: Recomputes in a row at the bottom (clearly behind the best) before a type is demoted.
DEMOTE_AFTER = 5
FROZEN_REASON = "frozen ([er] frozen = true): weights left as they were"
#: Weight changes smaller than this are not worth a sentence in the reason.
NOTEWORTHY = 0.005
#: p-values of "the types engage alike" between which the weights start and fully follow the
#: evidence (``evidence_weight``). Measured in simulation: with every type alike the weights
#: stay within 0.005 of equal shares, and types 15 % apart are followed (20 % and 2 % do
#: better there than the 5 % and 0.5 % tried first).
EVIDENCE_P = (0.2, 0.02)
#: The standard normal at 4,096 evenly spaced quantiles, each repeated 16 times so that any
#: 16-bit number picks one: what ``best_shares`` draws from.
_NORMAL_QUANTILES = tuple(
    z for z in (NormalDist().inv_cdf((k + 0.5) / 4096) for k in range(4096)) for _ in range(16)
)


@dataclass(frozen=True)
class Decision:
    """What a policy decided for one account.

    ``new_weights`` covers every known type and sums to 1. ``reason`` is for people;
    ``details`` for the decision record (anything JSON can hold). ``state`` is handed back
    to the policy at the next recompute as ``stats.state``; ``demoted`` types are flagged.
    """

    new_weights: dict[str, float]
    reason: str
    details: dict[str, Any] = field(default_factory=dict)
    demoted: frozenset[str] = frozenset()
    state: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Policy(Protocol):
    """Turns statistics into weights. Must be deterministic given ``rng``."""

    name: str

    def decide(
        self,
        stats: AccountStats,
        old_weights: Mapping[str, float],
        settings: ERSettings,
        rng: random.Random,
    ) -> Decision: ...


def carry_over(
    old: Mapping[str, float], types: Sequence[str]
) -> tuple[dict[str, float], list[str]]:
    """The previous weights for today's types: a new type enters with an equal share, weights
    of types that are gone are dropped, and the rest is renormalised. Returns the entrants."""
    if not types:
        return {}, []
    share = 1 / len(types)
    kept = {t: max(float(old[t]), 0.0) for t in types if t in old}
    entered = [t for t in types if t not in kept]
    if not kept or sum(kept.values()) <= 0:
        return dict.fromkeys(types, share), entered if old else []
    room = 1 - share * len(entered)
    total = sum(kept.values())
    base = {t: w / total * room for t, w in kept.items()}
    base.update(dict.fromkeys(entered, share))
    return base, entered


def best_shares(
    stats: Mapping[str, TypeStats], rng: random.Random, draws: int = DRAWS
) -> dict[str, float]:
    """The share of posterior draws in which each type has the highest ER."""
    types = sorted(stats)
    if not types:
        return {}
    # Drawn on the log scale when the statistics were made there: a lognormal posterior.
    on_log = all(stats[t].log_er is not None for t in types)
    params = [
        (s.log_er or 0.0, s.log_sd or 0.0) if on_log else (s.er or 0.0, s.sd or 0.0)
        for s in (stats[t] for t in types)
    ]
    # Standard normal draws picked from a table of its quantiles by random 16-bit numbers,
    # all in C (random.gauss takes microseconds a draw, and simulations recompute thousands
    # of times), one column per type in a fixed order so a seed gives the same shares; the
    # row maxima and the winners are counted in C too (map, operator.eq).
    picks = array("H", rng.randbytes(2 * draws * len(types)))
    z = operator.itemgetter(*picks)(_NORMAL_QUANTILES)
    columns = [
        [m + sd * v for v in z[i * draws : (i + 1) * draws]] for i, (m, sd) in enumerate(params)
    ]
    best = list(map(max, *columns)) if len(columns) > 1 else columns[0]
    wins = [sum(map(operator.eq, column, best)) for column in columns]
    total = sum(wins)  # a tie (equal posteriors, the same quantile) counts for both
    return {t: wins[i] / total for i, t in enumerate(types)}


def differ_p_value(stats: AccountStats, types: Sequence[str]) -> float:
    """How likely types this far apart would be if they all engaged alike: the p-value of the
    between-type chi-square ``Σ n·(m - μ)² / σ²`` (decayed posts ``n``, raw decayed means
    ``m``, the account's post-to-post spread ``σ``), by the Wilson-Hilferty approximation."""
    chosen = [stats.types[t] for t in types if stats.types[t].effective_posts > 0]
    # On the log scale when the statistics were made there (the spread is then a log spread).
    on_log = bool(chosen) and all(s.raw_log_er is not None for s in chosen)
    rows = [
        (s.effective_posts, s.raw_log_er if on_log else s.raw_er)
        for s in chosen
        if (s.raw_log_er if on_log else s.raw_er) is not None
    ]
    spread = stats.spread
    if len(rows) < 2 or not spread:
        return 1.0
    total = sum(n for n, _ in rows)
    mu = sum(n * (m or 0.0) for n, m in rows) / total
    q = sum(n * ((m or 0.0) - mu) ** 2 for n, m in rows) / spread**2
    df = len(rows) - 1
    if q <= 0:
        return 1.0
    c = 2 / (9 * df)
    z = ((q / df) ** (1 / 3) - (1 - c)) / math.sqrt(c)
    return 0.5 * math.erfc(z / math.sqrt(2))


def evidence_weight(p_value: float) -> float:
    """How far the weights may follow the posterior draws: 0 while the types could all be
    alike (p >= EVIDENCE_P[0]), 1 once they clearly are not (p <= EVIDENCE_P[1]), between on a
    log scale. Without evidence the ranked types share their slots equally."""
    weak, strong = EVIDENCE_P
    if p_value >= weak:
        return 0.0
    if p_value <= strong:
        return 1.0
    return math.log(weak / p_value) / math.log(weak / strong)


def pct(value: float | None) -> str:
    """An ER as people write it: 4.1%."""
    if value is None:
        return "?"
    digits = 1 if value >= 0.001 else 2
    return f"{value * 100:.{digits}f}%"


def describe_er(s: TypeStats) -> str:
    """``ER 4.1% (3.6-4.6%) over 18 posts``."""
    posts = f"{s.posts} post" + ("" if s.posts == 1 else "s")
    if s.er is None:
        return f"no ER yet ({posts})"
    interval = f"{pct(s.er_low)[:-1]}-{pct(s.er_high)}"
    return f"ER {pct(s.er)} ({interval}) over {posts}"


class ThompsonPolicy:
    """The built-in policy (docs/er.md#the-policy)."""

    name = "thompson"

    def __init__(self, *, draws: int = DRAWS, demote_after: int = DEMOTE_AFTER) -> None:
        self.draws = draws
        self.demote_after = demote_after

    def decide(
        self,
        stats: AccountStats,
        old_weights: Mapping[str, float],
        settings: ERSettings,
        rng: random.Random,
    ) -> Decision:
        types = sorted(stats.types)
        streaks = {
            str(t): int(n)
            for t, n in dict(stats.state.get("bottom_streak", {})).items()
            if t in stats.types
        }
        if settings.frozen:
            return self._frozen(old_weights, streaks)
        if not types:
            return Decision({}, "no content types yet: nothing to weigh")
        base, entered = carry_over(old_weights, types)
        limits = fit_limits(len(types), settings.floor, settings.ceiling, settings.exploration)
        # Measured posts, not decayed weight, open the gate: with a floor and a short
        # half-life a type's decayed weight can stay under min_posts for ever, and how old
        # the evidence is already shows in the width of its posterior.
        eligible = [
            t
            for t in types
            if stats.types[t].er is not None and stats.types[t].posts >= settings.min_posts
        ]
        ranking = len(eligible) >= 2
        # Types short of min_posts are drawn too, on their (wide) posteriors, but may only
        # gain: when the ranked types are clearly behind them they get posts sooner (with
        # ten types, the best one reached min_posts two days earlier and the loop 96 % of
        # the oracle instead of 95 %), and they are never lowered on the noise of one post.
        rising = (
            [t for t in types if t not in eligible and stats.types[t].er is not None]
            if ranking
            else []
        )
        drawn = eligible + rising
        shares = {}
        if ranking:
            shares = best_shares({t: stats.types[t] for t in drawn}, rng, self.draws)
        mass = sum(base[t] for t in drawn)
        p_value = differ_p_value(stats, eligible) if ranking else 1.0
        follow = evidence_weight(p_value)
        equal = mass / len(drawn) if drawn else 0.0
        target = {
            t: follow * mass * shares[t] + (1 - follow) * equal if t in shares else base[t]
            for t in types
        }
        streaks = self._streaks(stats, eligible, streaks, follow) if ranking else streaks
        demoted = frozenset(t for t, n in streaks.items() if n >= self.demote_after)
        for t in demoted:
            target[t] = 0.0
        pinned = [t for t in types if t not in shares]
        new, relaxed = constrain(
            target,
            base,
            limits,
            settings.max_change,
            pinned=pinned,
            falling=sorted(demoted),
            rising=rising,
        )
        reason = self._reason(
            stats, base, new, shares, entered, demoted, limits, relaxed, settings, eligible
        )
        details = {
            "summary": summarise(
                stats,
                base,
                new,
                ranked=eligible if ranking else [],
                evidence=follow,
                entered=entered,
                demoted=sorted(demoted),
                waiting=[t for t in types if t not in eligible],
                min_posts=settings.min_posts,
                half_life=settings.half_life,
            ),
            "best_share": {t: round(v, 4) for t, v in shares.items()},
            "p_alike": round(p_value, 6),
            "evidence": round(follow, 4),
            "eligible": eligible,
            "target": {t: round(v, 6) for t, v in target.items()},
            "floor": limits.floor,
            "ceiling": limits.ceiling,
            "max_change": settings.max_change,
            "min_posts": settings.min_posts,
            "entered": entered,
            "demoted": sorted(demoted),
            "notes": [*limits.notes, *relaxed],
        }
        state = {"bottom_streak": {t: n for t, n in sorted(streaks.items()) if n}}
        return Decision(new, reason, details, demoted, state)

    # -- pieces ------------------------------------------------------------------------------

    def _frozen(self, old: Mapping[str, float], streaks: Mapping[str, int]) -> Decision:
        demoted = frozenset(t for t, n in streaks.items() if n >= self.demote_after)
        return Decision(
            {t: float(w) for t, w in old.items()},
            FROZEN_REASON,
            {"frozen": True},
            demoted,
            {"bottom_streak": dict(streaks)},
        )

    @staticmethod
    def _streaks(
        stats: AccountStats, eligible: Sequence[str], streaks: Mapping[str, int], follow: float
    ) -> dict[str, int]:
        """Count recomputes in a row that each type spent clearly at the bottom: the lowest
        posterior mean, with its whole interval below the whole interval of the best type,
        while the types are shown to differ at all."""
        by_er = sorted(eligible, key=lambda t: (stats.types[t].er or 0.0, t))
        bottom, best = stats.types[by_er[0]], stats.types[by_er[-1]]
        clearly = (
            follow > 0
            and bottom.er_high is not None
            and best.er_low is not None
            and bottom.er_high < best.er_low
        )
        out = dict.fromkeys(streaks, 0)
        if clearly:
            out[bottom.content_type] = streaks.get(bottom.content_type, 0) + 1
        return out

    @staticmethod
    def _reason(
        stats: AccountStats,
        base: Mapping[str, float],
        new: Mapping[str, float],
        shares: Mapping[str, float],
        entered: Sequence[str],
        demoted: frozenset[str],
        limits: Limits,
        relaxed: Sequence[str],
        settings: ERSettings,
        eligible: Sequence[str],
    ) -> str:
        parts = [f"new type {t} enters at {base[t]:.2f}" for t in entered]
        for t in sorted(new, key=lambda t: -abs(new[t] - base[t])):
            s = stats.types[t]
            if t not in shares:
                if abs(new[t] - base[t]) >= NOTEWORTHY:
                    parts.append(
                        f"{t} {base[t]:.2f} -> {new[t]:.2f} to keep the limits: {describe_er(s)}"
                    )
                continue
            delta = new[t] - base[t]
            if abs(delta) < NOTEWORTHY:
                continue
            why = []
            if abs(abs(delta) - settings.max_change) < 1e-6:
                why.append("max change")
            if new[t] <= limits.floor + 1e-6:
                why.append("floor")
            if new[t] >= limits.ceiling - 1e-6:
                why.append("ceiling")
            bound = f" ({', '.join(why)})" if why else ""
            verb = "up" if delta > 0 else "down"
            parts.append(
                f"{t} {verb} {base[t]:.2f} -> {new[t]:.2f}{bound}: {describe_er(s)}, "
                f"best in {shares[t]:.0%} of draws" + (" (demoted)" if t in demoted else "")
            )
        waiting = [t for t in sorted(new) if t not in eligible]
        if waiting:
            parts.append(
                "not lowered until they have "
                f"{settings.min_posts} posts: "
                + ", ".join(f"{t} ({stats.types[t].posts})" for t in waiting)
            )
        moved = any(abs(new[t] - base[t]) >= NOTEWORTHY for t in new)
        if len(eligible) < 2 and len(new) >= 2:
            few = "fewer than two types have enough posts to compare"
            parts.insert(0, few if moved else f"no change: {few}")
        elif not moved and not entered:
            leader = max(shares, key=lambda t: shares[t]) if shares else None
            lead = f" ({leader} best in {shares[leader]:.0%} of draws)" if leader else ""
            parts.insert(0, f"no change: the weights already follow the evidence{lead}")
        parts += [*limits.notes, *relaxed]
        return "; ".join(parts)
