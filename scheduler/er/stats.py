"""Engagement rate: per post at fixed ages, then per (account, content type), decayed and shrunk.

Per post (docs/er.md#per-post): engagements (likes + comments + shares, plus saves and clicks
where the network reports them) over reach when the network gives reach (else impressions,
else views), otherwise over followers at publish time (else at the reading). ``None``, never
0, when either side is unknown: such a post is left out, not counted as a flop.

Per (account, content type) (docs/er.md#per-type): every post is read at the latest configured
age it has reached (24 h, 72 h...), readings at younger ages are put on the scale of the last
age by the account's own ratio between the two, each post weighs ``0.5 ** (age / half_life)``,
and the type's mean is shrunk toward the account's mean by empirical Bayes (a normal model
whose prior strength is estimated from how much the types really differ), so that three lucky
posts do not win.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Connection, and_, or_, select

from scheduler.config import ERSettings
from scheduler.db.models import Account, PostState
from scheduler.er.readings import AgeSums, posts_t, sum_readings

accounts_t = Account.__table__  # type: ignore[attr-defined]

#: Posts older than this many half-lives weigh under 0.1 % and are not read at all.
HORIZON_HALF_LIVES = 10
#: Bounds of the prior strength, in posts: at least half a post's worth of pull toward the
#: account mean (a handful of types says little about how much types differ), at most enough
#: that a type with a long record is judged on its own posts. A floor of 2 posts pulled the
#: worst and best types so far that their 90 % intervals missed the truth in most
#: recomputes of the reference simulation; at 0.5 they hold it in 93 % (benchmarks).
PRIOR_STRENGTH = (0.5, 10.0)
#: The post-to-post spread assumed, relative to the mean, until there are more posts than
#: types to measure it.
DEFAULT_RELATIVE_SPREAD = 0.5
#: The change test (``follow_change``): fresh posts needed, older evidence needed (decayed
#: posts), and how many standard errors apart the fresh and older means must be.
CHANGE_POSTS = 2
CHANGE_OLDER = 2.0
CHANGE_Z = 3.0
#: z of the two-sided 90 % interval.
INTERVAL_Z = 1.6448536269514722
#: States whose posts make a content type known to an account (it is planned or was posted).
KNOWN_STATES = (
    PostState.QUEUED,
    PostState.CLAIMED,
    PostState.RETRY_WAIT,
    PostState.PAUSED,
    PostState.UNCONFIRMED,
    PostState.PUBLISHED,
)


# ============================================================================ one post


class Counters(Protocol):
    """A snapshot's counters (``MetricSnapshot`` rows and adapter ``Metrics`` both fit)."""

    likes: int | None
    comments: int | None
    shares: int | None
    saves: int | None
    clicks: int | None
    reach: int | None
    impressions: int | None
    views: int | None
    followers: int | None
    reactions: int | None


def engagements(m: Counters) -> int | None:
    """likes + reactions + comments + shares (+ saves + clicks where known); None when the
    first four are all unknown."""
    if m.likes is None and m.reactions is None and m.comments is None and m.shares is None:
        return None
    return sum(v or 0 for v in (m.likes, m.reactions, m.comments, m.shares, m.saves, m.clicks))


def engagement_rate(
    m: Counters, *, by_reach: bool, followers_at_publish: int | None = None
) -> float | None:
    """ER of one reading. The SQL in ``readings.py`` computes exactly this, in the database."""
    eng = engagements(m)
    followers = followers_at_publish if followers_at_publish is not None else m.followers
    if by_reach:
        # A post whose network declares reach but reported none falls back to followers.
        seen = (m.reach, m.impressions, m.views, followers)
        denominator = next((v for v in seen if v is not None), None)
    else:
        denominator = followers
    if eng is None or not denominator:
        return None
    return eng / denominator


def decay_weight(age: timedelta, half_life: timedelta) -> float:
    """How much a post published ``age`` ago counts: 1 now, 0.5 one half-life ago."""
    return 0.5 ** (max(age.total_seconds(), 0.0) / half_life.total_seconds())


# ============================================================================ per type


@dataclass(frozen=True)
class Evidence:
    """A type's posts on one scale: decayed weight, weighted sum and sum of squares of ER."""

    weight: float = 0.0
    total: float = 0.0
    squares: float = 0.0
    posts: int = 0
    recent_total: float = 0.0
    recent_posts: int = 0
    older_total: float = 0.0
    older_posts: int = 0
    #: Decayed mean of the raw readings at each age (seconds -> ER), for display.
    by_age: Mapping[int, float] = field(default_factory=dict)
    #: Weighted sum and sum of squares of the log ER: the scale the estimates work on.
    log_total: float = 0.0
    log_squares: float = 0.0
    #: The same for the fresh posts only (``readings.FRESH``), for the change test.
    fresh_weight: float = 0.0
    fresh_log_total: float = 0.0
    fresh_log_squares: float = 0.0
    fresh_posts: int = 0
    #: True when the fresh posts differ from the older ones beyond chance (``follow_change``):
    #: the evidence then holds the fresh posts only.
    changed: bool = False

    @property
    def mean(self) -> float | None:
        return self.total / self.weight if self.weight > 0 else None

    def on_log_scale(self) -> Evidence:
        """The same posts with the log ER as the value (for ``shrink``)."""
        return replace(self, total=self.log_total, squares=self.log_squares)

    @property
    def trend(self) -> float | None:
        """Relative change of recent posts (last half-life) over older ones; None if unknown."""
        if not self.recent_posts or not self.older_posts or self.older_total <= 0:
            return None
        recent = self.recent_total / self.recent_posts
        older = self.older_total / self.older_posts
        return recent / older - 1.0


def age_ratios(sums: Iterable[Sequence[AgeSums]]) -> list[float]:
    """For each age, the factor that puts its readings on the last age's scale.

    Estimated over the account's posts read at both ages (decay-weighted); 1 when no post
    has both readings yet.
    """
    this: list[float] = []
    last: list[float] = []
    for per_age in sums:
        if not this:
            this, last = [0.0] * len(per_age), [0.0] * len(per_age)
        for i, a in enumerate(per_age):
            this[i] += a.pair_this
            last[i] += a.pair_last
    return [(lt / th) if th > 0 and lt > 0 else 1.0 for th, lt in zip(this, last, strict=True)]


def combine_ages(
    per_age: Sequence[AgeSums], ratios: Sequence[float], ages_seconds: Sequence[int]
) -> Evidence:
    """One type's sums over ages, every reading scaled to the last age (multiplied by the
    ratio; on the log scale, the log of the ratio added)."""
    r = ratios
    o = [math.log(x) if x > 0 else 0.0 for x in ratios]
    return Evidence(
        weight=sum(a.weight for a in per_age),
        total=sum(r[i] * a.total for i, a in enumerate(per_age)),
        squares=sum(r[i] ** 2 * a.squares for i, a in enumerate(per_age)),
        posts=sum(a.count for a in per_age),
        recent_total=sum(r[i] * a.recent_total for i, a in enumerate(per_age)),
        recent_posts=sum(a.recent_count for a in per_age),
        older_total=sum(r[i] * a.older_total for i, a in enumerate(per_age)),
        older_posts=sum(a.older_count for a in per_age),
        by_age={
            ages_seconds[i]: a.any_total / a.any_weight
            for i, a in enumerate(per_age)
            if a.any_weight > 0
        },
        log_total=sum(a.log_total + o[i] * a.weight for i, a in enumerate(per_age)),
        log_squares=sum(
            a.log_squares + 2 * o[i] * a.log_total + o[i] ** 2 * a.weight
            for i, a in enumerate(per_age)
        ),
        fresh_weight=sum(a.fresh_weight for a in per_age),
        fresh_log_total=sum(
            a.fresh_log_total + o[i] * a.fresh_weight for i, a in enumerate(per_age)
        ),
        fresh_log_squares=sum(
            a.fresh_log_squares + 2 * o[i] * a.fresh_log_total + o[i] ** 2 * a.fresh_weight
            for i, a in enumerate(per_age)
        ),
        fresh_posts=sum(a.fresh_count for a in per_age),
    )


@dataclass(frozen=True)
class TypeStats:
    """What the loop believes about one content type of one account."""

    content_type: str
    #: Posts with an ER reading inside the horizon, and their decayed weight.
    posts: int
    effective_posts: float
    #: Decayed mean ER before shrinkage (None without posts).
    raw_er: float | None
    #: Posterior mean, its standard deviation and 90 % interval (None without any data).
    er: float | None
    sd: float | None
    er_low: float | None
    er_high: float | None
    #: Recent (last half-life) over older posts, minus 1: +0.2 means 20 % better lately.
    trend: float | None
    by_age: Mapping[int, float] = field(default_factory=dict)
    #: On the log scale: the decayed mean log ER, and the posterior mean and sd of the log ER
    #: (None when the statistics were not made on the log scale).
    raw_log_er: float | None = None
    log_er: float | None = None
    log_sd: float | None = None
    #: Its fresh posts differ from its older ones beyond chance: the estimate rests on them.
    changed: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "posts": self.posts,
            "effective_posts": _round(self.effective_posts),
            "raw_er": _round(self.raw_er),
            "er": _round(self.er),
            "sd": _round(self.sd),
            "er_low": _round(self.er_low),
            "er_high": _round(self.er_high),
            "trend": _round(self.trend),
            "by_age": {str(k): _round(v) for k, v in self.by_age.items()},
            "changed": self.changed,
        }


@dataclass(frozen=True)
class AccountStats:
    """Every known content type of one account, and the account-wide figures behind them."""

    account_id: int
    account: str
    #: "reach" or "followers": what ER is a share of on this account's network.
    basis: str
    #: Pooled decayed ER of the account (the prior mean), post-to-post spread, prior strength.
    mean: float | None
    spread: float | None
    prior_strength: float | None
    types: Mapping[str, TypeStats]
    #: What the policy asked to keep from its previous decision (``Decision.state``).
    state: Mapping[str, Any] = field(default_factory=dict)
    #: Posts measured by followers although the network declares reach (it gave none).
    reach_fallback_posts: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "basis": self.basis,
            "account_er": _round(self.mean),
            "spread": _round(self.spread),
            "prior_strength": _round(self.prior_strength),
            "reach_fallback_posts": self.reach_fallback_posts,
            "types": {t: s.as_dict() for t, s in sorted(self.types.items())},
        }


def _round(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(value, digits)


def shrink(
    evidence: Mapping[str, Evidence],
    *,
    prior_strength: tuple[float, float] | None = None,
    default_spread: float | None = None,
) -> tuple[float | None, float | None, float | None, dict[str, TypeStats]]:
    """Empirical-Bayes shrinkage of each type's mean toward the account's pooled mean.

    Model: a post's ER ~ Normal(type mean, spread²), type means ~ Normal(account mean, tau²).
    The spread is the pooled within-type deviation; tau² comes from how far the type means
    lie apart beyond what the spread explains (method of moments for unequal group sizes).
    A type then weighs its own posts against ``k = spread² / tau²`` posts at the account mean.

    Returns (account mean, spread, k, stats per type). Types without posts get the prior.
    Until there are more posts than types the spread is ``default_spread`` (on the log scale)
    or half the mean.
    """
    seen = {t: e for t, e in evidence.items() if e.weight > 0}
    if not seen:
        empty = {t: _stats(t, e, None, None, None) for t, e in evidence.items()}
        return None, None, None, empty
    n_total = sum(e.weight for e in seen.values())
    mean = sum(e.total for e in seen.values()) / n_total
    within = sum(max(e.squares - e.total**2 / e.weight, 0.0) for e in seen.values())
    dof = n_total - len(seen)
    if dof >= 1:
        spread2 = within / dof
    elif default_spread is not None:
        spread2 = default_spread**2
    else:
        spread2 = (DEFAULT_RELATIVE_SPREAD * mean) ** 2
    # A spread of exactly 0 (identical readings) would make every interval a point.
    spread2 = max(spread2, (1e-3 * mean) ** 2, 1e-12)
    lo, hi = prior_strength or PRIOR_STRENGTH
    k = hi
    if len(seen) >= 2:
        between = sum(e.weight * (e.total / e.weight - mean) ** 2 for e in seen.values())
        scale = n_total - sum(e.weight**2 for e in seen.values()) / n_total
        tau2 = (between - (len(seen) - 1) * spread2) / scale if scale > 0 else 0.0
        k = min(max(spread2 / tau2, lo), hi) if tau2 > 0 else hi
    spread = math.sqrt(spread2)
    return mean, spread, k, {t: _stats(t, e, mean, spread2, k) for t, e in evidence.items()}


def follow_change(evidence: Mapping[str, Evidence]) -> dict[str, Evidence]:
    """A change of taste, followed in days: a type whose fresh posts (``readings.FRESH`` of a
    half-life) differ from its older ones by more than ``CHANGE_Z`` standard errors (on the
    log scale, with the account's post-to-post spread) is judged on its fresh posts alone.
    At least ``CHANGE_POSTS`` fresh posts are needed, so one outlier is not a change."""
    seen = [e for e in evidence.values() if e.weight > 0]
    # The post-to-post spread, measured within each type's fresh and older posts apart: a
    # type whose taste changed has two means, and its posts around one mean would swell the
    # spread and hide the next change (measured: the second change of the drift world was
    # followed days later).
    within = 0.0
    dof = 0.0
    for e in seen:
        for w, total, squares in _fresh_and_older(e):
            if w > 1:  # one post (or less, decayed) says nothing about the spread
                within += max(squares - total**2 / w, 0.0)
                dof += w - 1
    if dof < 1:
        return dict(evidence)
    spread2 = max(within / dof, 1e-12)
    out = {}
    for t, e in evidence.items():
        older = e.weight - e.fresh_weight
        if e.fresh_posts < CHANGE_POSTS or older < CHANGE_OLDER or e.fresh_weight <= 0:
            out[t] = e
            continue
        fresh_mean = e.fresh_log_total / e.fresh_weight
        older_mean = (e.log_total - e.fresh_log_total) / older
        se = math.sqrt(spread2 * (1 / e.fresh_weight + 1 / older))
        if abs(fresh_mean - older_mean) > CHANGE_Z * se:
            out[t] = replace(
                e,
                weight=e.fresh_weight,
                log_total=e.fresh_log_total,
                log_squares=e.fresh_log_squares,
                changed=True,
            )
        else:
            out[t] = e
    return out


def _fresh_and_older(e: Evidence) -> list[tuple[float, float, float]]:
    """(decayed weight, sum, sum of squares) of the log ER of a type's fresh and of its older
    posts."""
    fresh = (e.fresh_weight, e.fresh_log_total, e.fresh_log_squares)
    older = (
        e.weight - e.fresh_weight,
        e.log_total - e.fresh_log_total,
        e.log_squares - e.fresh_log_squares,
    )
    return [fresh, older]


def shrink_log(
    evidence: Mapping[str, Evidence],
) -> tuple[float | None, float | None, float | None, dict[str, TypeStats]]:
    """``shrink`` on the log of each post's ER, reported back in ER.

    A post's log ER ~ Normal(type mean, spread²): engagement is multiplicative (a post that
    reaches the right people does several times better, not a fixed amount better), and on
    the log scale one viral post moves a mean by a few spreads instead of capturing it. A
    type's ER is that of its typical post, ``exp(mean)`` (the lognormal's median: half its
    posts do better), and its interval the posterior interval of the log mean, carried
    through ``exp`` (``sd`` is the delta-method ``ER × sd of the log``).

    Returns (account mean ER, spread of the log ER, k, stats per type); the account mean is
    the plain decayed mean of the readings.
    """
    seen = [e for e in evidence.values() if e.weight > 0]
    linear_mean = sum(e.total for e in seen) / sum(e.weight for e in seen) if seen else None
    evidence = follow_change(evidence)
    logs = {t: e.on_log_scale() for t, e in evidence.items()}
    _, spread, k, per_type = shrink(logs, default_spread=DEFAULT_RELATIVE_SPREAD)
    if spread is None:
        return (
            linear_mean,
            None,
            k,
            {t: replace(per_type[t], raw_er=e.mean) for t, e in evidence.items()},
        )
    out = {}
    for t, e in evidence.items():
        ls = per_type[t]
        if ls.er is None or ls.sd is None:
            out[t] = replace(ls, raw_er=e.mean)
            continue
        er = math.exp(ls.er)
        out[t] = replace(
            ls,
            raw_er=e.mean,
            er=er,
            sd=er * ls.sd,
            er_low=math.exp(ls.er - INTERVAL_Z * ls.sd),
            er_high=math.exp(ls.er + INTERVAL_Z * ls.sd),
            raw_log_er=ls.raw_er,
            log_er=ls.er,
            log_sd=ls.sd,
            changed=e.changed,
        )
    return linear_mean, spread, k, out


def _stats(
    content_type: str,
    e: Evidence,
    mean: float | None,
    spread2: float | None,
    k: float | None,
) -> TypeStats:
    if mean is None or spread2 is None or k is None:
        return TypeStats(content_type, e.posts, e.weight, e.mean, None, None, None, None, None)
    posterior = (e.total + k * mean) / (e.weight + k)
    sd = math.sqrt(spread2 / (e.weight + k))
    return TypeStats(
        content_type=content_type,
        posts=e.posts,
        effective_posts=e.weight,
        raw_er=e.mean,
        er=posterior,
        sd=sd,
        er_low=max(posterior - INTERVAL_Z * sd, 0.0),
        er_high=posterior + INTERVAL_Z * sd,
        trend=e.trend,
        by_age=dict(e.by_age),
    )


# ============================================================================ from the database


def known_types(
    conn: Connection, since: datetime, accounts: Collection[int] | None = None
) -> dict[int, set[str]]:
    """Content types each account has posts of: waiting or in flight, or published since
    ``since`` (a type last posted long ago and no longer planned is forgotten)."""
    pending = posts_t.c.state.in_([s for s in KNOWN_STATES if s != PostState.PUBLISHED])
    published = and_(posts_t.c.state == PostState.PUBLISHED, posts_t.c.published_at >= since)
    q = (
        select(posts_t.c.account_id, posts_t.c.content_type)
        .where(or_(pending, published))
        .distinct()
    )
    if accounts is not None:
        q = q.where(posts_t.c.account_id.in_(sorted(accounts)))
    out: dict[int, set[str]] = {}
    for account_id, content_type in conn.execute(q):
        out.setdefault(account_id, set()).add(content_type)
    return out


def pending_types(conn: Connection, accounts: Collection[int]) -> dict[int, set[str]]:
    """Content types each of ``accounts`` has posts of waiting or in flight (an index seek
    per account and state: it reads only those posts)."""
    pending = [s for s in KNOWN_STATES if s != PostState.PUBLISHED]
    q = (
        select(posts_t.c.account_id, posts_t.c.content_type)
        .where(posts_t.c.account_id.in_(sorted(accounts)), posts_t.c.state.in_(pending))
        .distinct()
    )
    out: dict[int, set[str]] = {}
    for account_id, content_type in conn.execute(q):
        out.setdefault(account_id, set()).add(content_type)
    return out


def account_stats(
    conn: Connection,
    settings: ERSettings,
    now: datetime,
    *,
    reach: Mapping[int, bool],
    accounts: Collection[int] | None = None,
    names: Mapping[int, str] | None = None,
    sums: Mapping[tuple[int, str], list[AgeSums]] | None = None,
) -> dict[int, AccountStats]:
    """The statistics of every account (or of ``accounts``), all in one pass over the data.

    ``reach`` says, per account id, whether its network reports reach (``Capabilities
    .has_reach``); accounts missing from it are measured by followers. ``sums`` are the
    readings' sums when the caller already has them (``incremental.py`` keeps them up to
    date); otherwise they are read here.
    """
    if names is None:
        names = {r.id: r.name for r in conn.execute(select(accounts_t.c.id, accounts_t.c.name))}
    horizon = now - settings.half_life * HORIZON_HALF_LIVES
    if sums is not None:
        # The published types are those with posts in the sums (every post published inside
        # the horizon is in them, read or not): no pass over the posts.
        types = pending_types(conn, set(names) | set(reach))
        for (account_id, content_type), per_age in sums.items():
            if per_age and per_age[0].post_count:
                types.setdefault(account_id, set()).add(content_type)
    else:
        types = known_types(conn, horizon, accounts)
    if sums is None:
        sums = sum_readings(
            conn,
            ages=settings.ages,
            now=now,
            half_life=settings.half_life,
            horizon=horizon,
            reach_accounts={a for a, has in reach.items() if has},
            accounts=accounts,
        )
    ages_seconds = sorted({int(a.total_seconds()) for a in settings.ages})
    by_account: dict[int, dict[str, list[AgeSums]]] = {}
    for (account_id, content_type), per_age in sums.items():
        by_account.setdefault(account_id, {})[content_type] = per_age
    out: dict[int, AccountStats] = {}
    for account_id in sorted(set(types) | set(by_account)):
        mine = by_account.get(account_id, {})
        ratios = age_ratios(mine.values())
        evidence = {t: combine_ages(per_age, ratios, ages_seconds) for t, per_age in mine.items()}
        for t in types.get(account_id, ()):
            evidence.setdefault(t, Evidence())
        mean, spread, k, per_type = shrink_log(evidence)
        out[account_id] = AccountStats(
            account_id=account_id,
            account=names.get(account_id, str(account_id)),
            basis="reach" if reach.get(account_id) else "followers",
            mean=mean,
            spread=spread,
            prior_strength=k,
            types=per_type,
            reach_fallback_posts=sum(a.fallback_count for s in mine.values() for a in s),
        )
    return out


def with_state(stats: AccountStats, state: Mapping[str, Any]) -> AccountStats:
    """``stats`` carrying the policy's state from its previous decision."""
    return replace(stats, state=dict(state))
