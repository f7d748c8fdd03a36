"""When an account's audience is there, learned jointly with what it likes.

Each published post's log ER is modelled as the sum of three effects plus the luck of the
post::

    x = base + type effect + hour effect + age offset + noise

- the **type effect**: how the post's content type engages (funny posts do better);
- the **hour effect**: how the local hour of the week it went out at engages, as an hour of
  the day (``hour``, 0-23) plus a smaller deviation for weekends (``(kind, hour)``, kind 0 on
  weekdays and 1 on Saturdays and Sundays): evenings can be good every day and Sunday
  mornings better than weekday ones;
- the **age offset**: a reading at 24 h is lower than one at 72 h (a post read only at 24 h so
  far counts from its first day).

On the log scale the effects multiply on the ER: an hour effect of ``ln 1.5`` means posts at
that hour engage 1.5 times as much as the same types at an average hour. The fit is
weighted least squares with the ER loop's decay (a post ``a`` old weighs ``0.5 ^ (a /
half_life)``), by backfitting (each effect in turn given the others, a few rounds), with
every type and hour effect shrunk toward 0 by empirical Bayes: an hour with three lucky posts
does not win, and an hour nobody posted at is judged average, with the spread of the hours
seen so far as its uncertainty. ``draw`` samples the hour effects from their posteriors
(Thompson sampling), which is how slot learning explores hours it knows little about.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: Posts of one kind of day and hour: weekdays are kind 0, Saturday and Sunday kind 1.
Bucket = tuple[int, int]

#: The prior strength (in posts) of an effect is kept within these bounds.
PRIOR_MIN, PRIOR_MAX = 1.0, 20.0
#: The weekend deviation of an hour is trusted less than the hour itself: its prior is this
#: many times the hour's.
WEEKEND_PRIOR = 2.0
#: The spread of log ER between posts before there are enough posts to measure it.
DEFAULT_SPREAD = 0.5
#: The spread of hour effects assumed before there are enough hours to measure it ...
DEFAULT_HOUR_SPREAD = 0.2
#: ... and the least assumed after: audiences differ by a fifth or so from hour to hour,
#: so a few posts at an hour already count (an estimate of "no difference" from a handful
#: of hours would make every hour wait for twenty posts).
MIN_HOUR_SPREAD = 0.25
#: How much the effects of neighbouring hours differ, typically: an audience that is there
#: at 19:00 is mostly there at 18:00 too, so each hour also learns from its neighbours (a
#: random walk over the hours of the day, on top of the shrinkage toward 0).
STEP_SPREAD = 0.3
HOURS = range(24)
ROUNDS = 8


def kind_of(weekday: int) -> int:
    """0 for Monday to Friday, 1 for Saturday and Sunday."""
    return 1 if weekday >= 5 else 0


@dataclass(frozen=True)
class Observation:
    """One post's reading: its type, local weekday (0 = Monday) and hour, the age index of
    the reading (0 = first configured age), its log ER and its decay weight."""

    content_type: str
    weekday: int
    hour: int
    age: int
    log_er: float
    weight: float = 1.0


@dataclass(frozen=True)
class Effect:
    """An estimated effect on the log scale: the posterior mean and sd, and the (decayed)
    posts behind it."""

    mean: float
    sd: float
    posts: float

    @property
    def factor(self) -> float:
        return math.exp(self.mean)


@dataclass(frozen=True)
class HourModel:
    """The fitted joint model of one account."""

    base: float
    spread: float
    types: Mapping[str, Effect]
    hours: Mapping[int, Effect]
    #: Weekend deviation of an hour (kind 1 only; weekdays are the hour itself).
    weekend: Mapping[int, Effect]
    #: Prior sd of an hour effect and of a weekend deviation (what an untried hour may be).
    hour_sd: float
    weekend_sd: float
    posts: int = 0
    counts: Mapping[Bucket, int] = field(default_factory=dict)

    def effect(self, bucket: Bucket) -> Effect:
        """The effect of posting at ``bucket`` (kind, hour): mean and sd on the log scale."""
        kind, hour = bucket
        h = self.hours.get(hour, Effect(0.0, self.hour_sd, 0.0))
        if kind == 0:
            return h
        d = self.weekend.get(hour, Effect(0.0, self.weekend_sd, 0.0))
        return Effect(h.mean + d.mean, math.hypot(h.sd, d.sd), d.posts)

    def posts_at(self, bucket: Bucket) -> int:
        """Posts published at ``bucket`` (kind, hour) that the fit read."""
        return self.counts.get(bucket, 0)

    def draw(
        self, buckets: Iterable[Bucket], rng: random.Random, scale: float = 1.0
    ) -> dict[Bucket, float]:
        """One draw of the effect of each bucket from its posterior (hours first, then the
        weekend deviations, so the weekday and weekend draws of an hour agree)."""
        wanted = sorted(set(buckets))
        by_hour = {
            h: rng.gauss(e.mean, e.sd * scale)
            for h in sorted({h for _, h in wanted})
            for e in [self.hours.get(h, Effect(0.0, self.hour_sd, 0.0))]
        }
        out: dict[Bucket, float] = {}
        for kind, hour in wanted:
            value = by_hour[hour]
            if kind == 1:
                d = self.weekend.get(hour, Effect(0.0, self.weekend_sd, 0.0))
                value += rng.gauss(d.mean, d.sd * scale)
            out[(kind, hour)] = value
        return out


def fit(observations: Iterable[Observation]) -> HourModel:
    """Fit the joint model to an account's readings (see the module docstring)."""
    # Readings of the same type, kind of day, hour and age differ only by luck: the fit
    # works on their sums (weight, weighted sum and sum of squares), a few hundred cells
    # however many posts there are.
    cells: dict[tuple[str, int, int, int], list[float]] = {}
    counts: dict[Bucket, int] = {}
    for o in observations:
        if o.weight <= 0 or not math.isfinite(o.log_er):
            continue
        kind = kind_of(o.weekday)
        c = cells.setdefault((o.content_type, kind, o.hour, o.age), [0.0, 0.0, 0.0])
        c[0] += o.weight
        c[1] += o.weight * o.log_er
        c[2] += o.weight * o.log_er * o.log_er
        counts[(kind, o.hour)] = counts.get((kind, o.hour), 0) + 1
    if not cells:
        return HourModel(0.0, DEFAULT_SPREAD, {}, {}, {}, DEFAULT_HOUR_SPREAD, DEFAULT_HOUR_SPREAD)
    keys = list(cells)
    sw = [cells[k][0] for k in keys]
    sx = [cells[k][1] for k in keys]
    sxx = [cells[k][2] for k in keys]
    total_w = sum(sw)
    base = sum(sx) / total_w
    t_of = [k[0] for k in keys]
    h_of = [k[2] for k in keys]
    a_of = [k[3] for k in keys]
    weekend = [k[1] == 1 for k in keys]
    age_fx: dict[Any, float] = dict.fromkeys(set(a_of), 0.0)
    type_fx: dict[Any, float] = dict.fromkeys(set(t_of), 0.0)
    hour_fx: dict[Any, float] = dict.fromkeys(HOURS, 0.0)
    wkd_fx: dict[Any, float] = dict.fromkeys(set(h_of), 0.0)
    n = len(keys)

    def fitted(i: int, skip: str = "") -> float:
        f = base
        if skip != "age":
            f += age_fx[a_of[i]]
        if skip != "type":
            f += type_fx[t_of[i]]
        if skip != "hour":
            f += hour_fx[h_of[i]]
        if skip != "weekend" and weekend[i]:
            f += wkd_fx[h_of[i]]
        return f

    def group(of: Sequence[Any], skip: str, only: Sequence[bool] | None = None) -> Sums:
        """Per group: the weight and the weighted sum of the residuals without ``skip``."""
        out: dict[Any, list[float]] = {}
        for i in range(n):
            if only is not None and not only[i]:
                continue
            g = out.setdefault(of[i], [0.0, 0.0])
            g[0] += sw[i]
            g[1] += sx[i] - sw[i] * fitted(i, skip)
        return out

    def squares() -> float:
        total = 0.0
        for i in range(n):
            f = fitted(i)
            total += sxx[i] - 2 * f * sx[i] + f * f * sw[i]
        return max(total, 0.0)

    spread = DEFAULT_SPREAD
    var = spread * spread
    k_type = k_hour = PRIOR_MIN
    k_step = (spread / STEP_SPREAD) ** 2
    # The spread of single posts: the weighted mean square of the residuals, corrected for
    # the effects fitted to them (those with posts: an hour nobody posted at costs nothing).
    # Counting decayed weights against all 24 hours overstated it by half and more, and so
    # shrank every hour toward 0 (evenings 1.5x looked like 1.1x after a month).
    posts = sum(counts.values())
    fitted_effects = (
        len(type_fx) + len(set(h_of)) + len({h_of[i] for i in range(len(keys)) if weekend[i]})
    ) + len(age_fx)
    dof = posts - fitted_effects
    type_sums = hour_sums = wkd_sums = {}
    for _ in range(ROUNDS):
        # Ages: a fixed offset, not shrunk (a 24 h reading is simply lower), centred on 0.
        for a, (w, r) in group(a_of, "age").items():
            age_fx[a] = r / w
        shift = sum(age_fx[a_of[i]] * sw[i] for i in range(n)) / total_w
        base += shift
        for a in age_fx:
            age_fx[a] -= shift
        type_sums = group(t_of, "type")
        for t, (w, r) in type_sums.items():
            type_fx[t] = r / (w + k_type)
        hour_sums = group(h_of, "hour")
        chain = _chain(hour_sums, k_hour, k_step)
        hour_fx.update(enumerate(_solve(chain, [hour_sums.get(h, [0.0, 0.0])[1] for h in HOURS])))
        wkd_sums = group(h_of, "weekend", weekend)
        for h, (w, r) in wkd_sums.items():
            wkd_fx[h] = r / (w + k_hour * WEEKEND_PRIOR)
        # The spread of single posts and how much types and hours really differ: the prior
        # strengths (empirical Bayes, as the type statistics of the ER loop).
        spread = math.sqrt(squares() / total_w * posts / dof) if dof > 1 else DEFAULT_SPREAD
        k_type = _prior(type_sums, spread)
        k_hour = min(_prior(hour_sums, spread), (spread / MIN_HOUR_SPREAD) ** 2)
        k_step = (spread / STEP_SPREAD) ** 2
    var = spread * spread
    chain = _chain(hour_sums, k_hour, k_step)
    hour_var = [var * v for v in _inverse_diagonal(chain)]
    return HourModel(
        base=base,
        spread=spread,
        types={
            str(t): Effect(type_fx[t], math.sqrt(var / (w + k_type)), w)
            for t, (w, _) in type_sums.items()
        },
        hours={
            h: Effect(hour_fx[h], math.sqrt(hour_var[h]), hour_sums.get(h, [0.0])[0]) for h in HOURS
        },
        weekend={
            int(h): Effect(wkd_fx[h], math.sqrt(var / (w + k_hour * WEEKEND_PRIOR)), w)
            for h, (w, _) in wkd_sums.items()
        },
        hour_sd=math.sqrt(var / k_hour),
        weekend_sd=math.sqrt(var / (k_hour * WEEKEND_PRIOR)),
        posts=sum(counts.values()),
        counts=counts,
    )


Sums = dict[Any, list[float]]


def _prior(sums: Sums, spread: float) -> float:
    """The prior strength (posts) of a set of effects: the post-to-post variance over the
    variance of the effects themselves (method of moments, as ``stats.shrink_log``)."""
    groups = [(s[0], s[1] / s[0]) for s in sums.values() if s[0] > 0]
    if len(groups) < 2:
        return spread * spread / (DEFAULT_HOUR_SPREAD**2)
    n = sum(g[0] for g in groups)
    mu = sum(g[0] * g[1] for g in groups) / n
    between = sum(g[0] * (g[1] - mu) ** 2 for g in groups)
    denom = n - sum(g[0] ** 2 for g in groups) / n
    tau2 = (between - (len(groups) - 1) * spread * spread) / denom if denom > 0 else 0.0
    if tau2 <= 0:
        return PRIOR_MAX
    return min(PRIOR_MAX, max(PRIOR_MIN, spread * spread / tau2))


# ---------------------------------------------------------------------------- linear algebra
# The hours of the day are 24 unknowns tied to their neighbours: a 24 x 24 system, solved by
# Cholesky in plain Python (a few thousand operations).


def _chain(sums: Sums, k_hour: float, k_step: float) -> list[list[float]]:
    """The posterior precision of the hour effects (in posts): each hour's weight, the
    shrinkage toward 0, and the random walk between neighbouring hours."""
    n = len(HOURS)
    a = [[0.0] * n for _ in range(n)]
    for h in HOURS:
        a[h][h] = sums.get(h, [0.0])[0] + k_hour
        if h > 0:
            a[h][h] += k_step
            a[h][h - 1] -= k_step
        if h < n - 1:
            a[h][h] += k_step
            a[h][h + 1] -= k_step
    return a


def _cholesky(a: Sequence[Sequence[float]]) -> list[list[float]]:
    n = len(a)
    low = [[0.0] * n for _ in range(n)]
    for i in range(n):
        for j in range(i + 1):
            s = a[i][j] - sum(low[i][k] * low[j][k] for k in range(j))
            low[i][j] = math.sqrt(max(s, 1e-12)) if i == j else s / low[j][j]
    return low


def _solve(a: Sequence[Sequence[float]], b: Sequence[float]) -> list[float]:
    """x with a x = b (a symmetric positive definite)."""
    return _solve_factored(_cholesky(a), b)


def _solve_factored(low: Sequence[Sequence[float]], b: Sequence[float]) -> list[float]:
    n = len(b)
    y = [0.0] * n
    for i in range(n):
        y[i] = (b[i] - sum(low[i][k] * y[k] for k in range(i))) / low[i][i]
    x = [0.0] * n
    for i in reversed(range(n)):
        x[i] = (y[i] - sum(low[k][i] * x[k] for k in range(i + 1, n))) / low[i][i]
    return x


def _inverse_diagonal(a: Sequence[Sequence[float]]) -> list[float]:
    """The diagonal of a's inverse: each hour's posterior variance (in units of the spread)."""
    low = _cholesky(a)
    n = len(a)
    return [_solve_factored(low, [1.0 if j == i else 0.0 for j in range(n)])[i] for i in range(n)]
