"""The SQL behind the ER statistics: the database picks each post's readings and sums them.

A recompute reads every metric snapshot of the last few months, so the work happens in one
statement: per post and per configured age, an index seek on ``(post_id, age_seconds)`` finds
the first snapshot taken at or after that age (within a tolerance) and the post's ER at that
reading is computed in SQL; the per-post rows, with their decay weights, are then summed per
(account, content type). Python receives a handful of rows per account.

The sums are per age band (``AgeSums``) so that ``stats.py`` can put readings taken at
different ages on one scale (see ``stats.combine_ages``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Float,
    Integer,
    Select,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal_column,
    null,
    or_,
    select,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

from scheduler.db.models import MetricSnapshot, Post
from scheduler.db.types import UTCDateTime

snapshots_t = MetricSnapshot.__table__  # type: ignore[attr-defined]
posts_t = Post.__table__  # type: ignore[attr-defined]

#: A reading counts for an age when taken at most this much later (relative to the age)...
READING_TOLERANCE = 0.25
#: ...and never less than this, so the 1 h band of a job that runs hourly still has readings.
MIN_TOLERANCE = timedelta(hours=1)
#: Engagements added before taking the log of an ER (a post with none must not be -inf).
LOG_OFFSET = 0.5
#: The "fresh" posts of a type, compared with its older ones to find a change of taste: those
#: published within this share of a half-life.
FRESH = 0.5


class epoch_seconds(FunctionElement[float]):
    """Seconds since 1970 of a timestamp column, in the dialect's own words."""

    type = Float()
    inherit_cache = True


@compiles(epoch_seconds, "sqlite")
def _epoch_sqlite(element: epoch_seconds, compiler: SQLCompiler, **kw: Any) -> str:
    # Timestamps are stored as naive UTC text; julianday() reads it to the millisecond.
    return f"((julianday({compiler.process(element.clauses, **kw)}) - 2440587.5) * 86400.0)"


@compiles(epoch_seconds)
def _epoch_default(element: epoch_seconds, compiler: SQLCompiler, **kw: Any) -> str:
    return f"EXTRACT(EPOCH FROM {compiler.process(element.clauses, **kw)})"


def reading_windows(ages: Sequence[timedelta]) -> list[tuple[int, int]]:
    """For each age, the ``[start, end)`` post ages (seconds) whose snapshots read as it.

    A window starts at the age and lasts ``READING_TOLERANCE`` of it (at least
    ``MIN_TOLERANCE``), never reaching into the next age's window.
    """
    secs = sorted({int(a.total_seconds()) for a in ages})
    out = []
    for i, start in enumerate(secs):
        end = start + max(int(start * READING_TOLERANCE), int(MIN_TOLERANCE.total_seconds()))
        if i + 1 < len(secs):
            end = min(end, secs[i + 1])
        out.append((start, end))
    return out


@dataclass
class AgeSums:
    """Sums over one (account, content type)'s posts for one age band.

    ``weight``/``total``/``squares``/``count`` cover posts whose *latest* reading is at this
    age (each post counts once, at its latest age); ``pair_*`` cover posts read both at this
    age and at the last one (to relate the two); ``any_*`` cover every post read at this age;
    ``recent_*``/``older_*`` split the latest readings by publish time (the trend).
    Totals are weighted by decay except the recent/older ones, which are plain sums.
    ``log_*`` sum the log of the ER (see ``log_er_sql``): the scale the statistics work on.
    """

    weight: float = 0.0
    total: float = 0.0
    squares: float = 0.0
    count: int = 0
    pair_this: float = 0.0
    pair_last: float = 0.0
    any_weight: float = 0.0
    any_total: float = 0.0
    recent_total: float = 0.0
    recent_count: int = 0
    older_total: float = 0.0
    older_count: int = 0
    #: Decayed sums of the log ER (``log_er``) of the posts whose latest reading is here.
    log_total: float = 0.0
    log_squares: float = 0.0
    #: Posts whose latest reading here is by followers although the network declares reach
    #: (it reported no reach, impressions or views for them).
    fallback_count: int = 0
    #: The same as ``weight``/``log_*``/``count``, for posts of the last ``FRESH`` of a
    #: half-life only: what the change test compares with the older posts.
    fresh_weight: float = 0.0
    fresh_log_total: float = 0.0
    fresh_log_squares: float = 0.0
    fresh_count: int = 0
    #: How many posts the ``any_*`` and ``pair_*`` sums hold (so that sums kept up to date by
    #: adding and subtracting posts can tell "no post" from a rounding residue).
    any_count: int = 0
    pair_count: int = 0
    #: Every post of the group published inside the horizon, read or not (the same at each
    #: age): a type with such posts is known to its account.
    post_count: int = 0


_FIELDS = list(AgeSums.__dataclass_fields__)


def engagement_sql(s: Any) -> ColumnElement[Any]:
    """Engagements of a snapshot row: NULL when likes, reactions, comments and shares are all
    unknown."""
    known = [s.c.likes, s.c.reactions, s.c.comments, s.c.shares, s.c.saves, s.c.clicks]
    return case(
        (and_(*(c.is_(None) for c in known[:4])), null()),
        else_=sum((func.coalesce(c, 0) for c in known[1:]), func.coalesce(known[0], 0)),
    )


def denominator_sql(s: Any, p: Any) -> ColumnElement[Any]:
    """Reach (else impressions, else views) for the accounts in the expanding parameter
    ``reach`` (networks with reach); followers (at publish time, else at the reading) for the
    others, and for a post whose network declares reach but reported none (the fallback
    ``smm er`` and ``smm doctor`` warn about). Zero counts as unknown."""
    by_followers = func.coalesce(p.c.followers_at_publish, s.c.followers)
    by_reach = func.coalesce(s.c.reach, s.c.impressions, s.c.views, by_followers)
    chosen = case(
        (p.c.account_id.in_(bindparam("reach", expanding=True)), by_reach), else_=by_followers
    )
    return func.nullif(chosen, 0)


def er_sql(s: Any, p: Any) -> ColumnElement[Any]:
    """A snapshot's ER (``stats.engagement_rate``, in SQL)."""
    return cast(engagement_sql(s), Float) / cast(denominator_sql(s, p), Float)


def fallback_sql(s: Any, p: Any) -> ColumnElement[Any]:
    """1 when a snapshot of an account whose network declares reach gives none (no reach,
    impressions or views), so its ER is by followers; else 0."""
    declared = p.c.account_id.in_(bindparam("reach", expanding=True))
    silent = func.coalesce(s.c.reach, s.c.impressions, s.c.views).is_(None)
    return case((and_(declared, silent, s.c.id.is_not(None)), 1), else_=0)


def log_er_sql(s: Any, p: Any) -> ColumnElement[Any]:
    """A snapshot's log ER, ``ln((engagements + LOG_OFFSET) / denominator)``: half an
    engagement is added so that a post nobody engaged with still has a (very low) log. NULL
    when either side is unknown or not positive (PostgreSQL refuses the log of a negative
    count a broken network might report; SQLite would give NULL)."""
    eng = cast(engagement_sql(s), Float) + LOG_OFFSET
    denominator = cast(denominator_sql(s, p), Float)
    return case((and_(eng > 0, denominator > 0), func.ln(eng) - func.ln(denominator)), else_=null())


def ensure_math(conn: Connection) -> None:
    """Give SQLite ``exp()`` when it was built without its math functions."""
    if conn.dialect.name != "sqlite":
        return
    try:
        conn.exec_driver_sql("SELECT exp(0), ln(1)").scalar()
    except DBAPIError:
        raw = conn.connection.driver_connection
        assert raw is not None
        raw.create_function("exp", 1, math.exp, deterministic=True)
        raw.create_function("ln", 1, _ln, deterministic=True)


def sum_readings(
    conn: Connection,
    *,
    ages: Sequence[timedelta],
    now: datetime,
    half_life: timedelta,
    horizon: datetime,
    reach_accounts: Collection[int],
    accounts: Collection[int] | None = None,
    post_ids: Collection[int] | None = None,
    max_snapshot: int | None = None,
    max_post: int | None = None,
) -> dict[tuple[int, str], list[AgeSums]]:
    """Per (account id, content type): one ``AgeSums`` per age, in the order of ``ages``
    sorted ascending. Posts published before ``horizon`` are left out.

    ``post_ids`` limits the sums to those posts, ``max_snapshot`` and ``max_post`` to the
    snapshots and posts up to those ids, as they stood then (``incremental.py`` subtracts
    and adds posts this way)."""
    windows = tuple(reading_windows(ages))
    if not windows:
        return {}
    ensure_math(conn)
    params: dict[str, Any] = {
        "now_epoch": now.timestamp(),
        "rate": math.log(2) / half_life.total_seconds(),
        "recent_from": now.timestamp() - half_life.total_seconds(),
        "fresh_from": now.timestamp() - FRESH * half_life.total_seconds(),
        "horizon": horizon,
        "now": now,
        "reach": sorted(reach_accounts),
    }
    if accounts is not None:
        params["accounts"] = sorted(accounts)
    if max_snapshot is not None:
        params["max_snapshot"] = max_snapshot
    params["max_post"] = max_post
    query = _sums_query(
        windows, accounts is not None, post_ids is not None, max_snapshot is not None
    )
    ids = sorted(post_ids) if post_ids is not None else []
    out: dict[tuple[int, str], list[AgeSums]] = {}
    # A long list of posts goes in chunks (SQLite bounds the parameters of one statement);
    # the sums of the chunks add up.
    for start in range(0, len(ids), 500) if post_ids is not None else [0]:
        if post_ids is not None:
            params["post_ids"] = ids[start : start + 500]
        got = _assemble(conn.execute(query, params), len(windows))
        for key, per_age in got.items():
            held = out.get(key)
            out[key] = (
                per_age
                if held is None
                else [add_sums(a, b) for a, b in zip(held, per_age, strict=True)]
            )
    return out


def add_sums(a: AgeSums, b: AgeSums, scale_a: float = 1.0, sign: int = 1) -> AgeSums:
    """``a`` (its decayed sums times ``scale_a``) plus ``sign`` times ``b``."""
    return AgeSums(
        **{
            f: getattr(a, f) * (scale_a if f in DECAYED else 1) + sign * getattr(b, f)
            for f in _FIELDS
        }
    )


#: The sums weighted by decay (they shrink as time moves on); the others are plain.
DECAYED = frozenset(
    {
        "weight", "total", "squares", "pair_this", "pair_last", "any_weight", "any_total",
        "log_total", "log_squares", "fresh_weight", "fresh_log_total", "fresh_log_squares",
    }
)  # fmt: skip


def per_post_readings(
    windows: tuple[tuple[int, int], ...], filtered: bool, by_posts: bool, capped: bool
) -> Any:
    """One row per post published between the parameters ``horizon`` and ``now``
    (materialised, so each reading's engagements and denominator are worked out once): its
    id, account, content type, publish time (``pub``, epoch seconds), decay weight (``w``),
    whether it is recent or fresh, and at each age ``i`` the engagements (``e{i}``), the
    denominator (``d{i}``) and whether it fell back to followers (``fb{i}``).

    ``filtered`` keeps the accounts of the parameter ``accounts``, ``by_posts`` the posts of
    ``post_ids`` (up to ``max_post``), ``capped`` the snapshots up to ``max_snapshot``."""
    s, p = snapshots_t, posts_t

    # The post's first snapshot in each age window: an index seek per post and window on
    # (post_id, age_seconds), far cheaper than sorting every snapshot. Only its id comes back;
    # the reading is then read from the row, found by its primary key.
    def first(lo: int, hi: int) -> Any:
        return (
            select(s.c.id)
            .where(
                s.c.post_id == p.c.id,
                s.c.age_seconds >= lo,
                s.c.age_seconds < hi,
                *([s.c.id <= bindparam("max_snapshot")] if capped else []),
            )
            .order_by(s.c.age_seconds, s.c.id)
            .limit(1)
            .correlate(p)
            .scalar_subquery()
        )

    now_epoch = bindparam("now_epoch", type_=Float)
    pub = epoch_seconds(p.c.published_at)
    where = [
        p.c.published_at >= bindparam("horizon", type_=UTCDateTime),
        p.c.published_at <= bindparam("now", type_=UTCDateTime),
    ]
    if filtered:
        where.append(p.c.account_id.in_(bindparam("accounts", expanding=True)))
    if by_posts:
        where.append(p.c.id.in_(bindparam("post_ids", expanding=True)))
        # Posts added after ``max_post`` did not exist then (NULL: no limit).
        max_post = bindparam("max_post", type_=Integer)
        where.append(or_(max_post.is_(None), p.c.id <= max_post))
    joined: Any = p
    readings = []
    for i, (lo, hi) in enumerate(windows):
        snap = snapshots_t.alias(f"s{i}")
        joined = joined.outerjoin(snap, snap.c.id == first(lo, hi))
        readings += [
            cast(engagement_sql(snap), Float).label(f"e{i}"),
            cast(denominator_sql(snap, p), Float).label(f"d{i}"),
            fallback_sql(snap, p).label(f"fb{i}"),
        ]
    return (
        select(
            p.c.id.label("post_id"),
            p.c.account_id,
            p.c.content_type,
            pub.label("pub"),
            func.exp((pub - now_epoch) * bindparam("rate", type_=Float)).label("w"),
            case((pub >= bindparam("recent_from", type_=Float), 1), else_=0).label("recent"),
            case((pub >= bindparam("fresh_from", type_=Float), 1), else_=0).label("fresh"),
            *readings,
        )
        .select_from(joined)
        .where(*where)
        .cte("per_post")
        .prefix_with("MATERIALIZED")
    )


@functools.cache
def _sums_query(
    windows: tuple[tuple[int, int], ...], filtered: bool, by_posts: bool, capped: bool
) -> Select[Any]:
    """The statement behind ``sum_readings``, built once per set of windows (building it
    costs more than running it on a small database, and simulations recompute often).

    Two steps. First one row per post (``per_post_readings``). Then plain sums of those rows,
    grouped by account, content type and *pattern* (recent, fresh, and which ages have a
    reading): a few rows per (account, content type), from which ``_assemble`` builds each
    age's ``AgeSums``. Sums of a handful of expressions over a grouped scan cost a fraction of
    one conditional sum per field and age."""
    per_post = per_post_readings(windows, filtered, by_posts, capped)
    c = per_post.c
    # A reading counts when its log does too (engagements known, denominator positive):
    # PostgreSQL refuses the log of a negative count a broken network might report.
    ok = [and_(c[f"e{i}"] + LOG_OFFSET > 0, c[f"d{i}"] > 0) for i in range(len(windows))]
    er = [c[f"e{i}"] / c[f"d{i}"] for i in range(len(windows))]
    lx = [func.ln(c[f"e{i}"] + LOG_OFFSET) - func.ln(c[f"d{i}"]) for i in range(len(windows))]
    latest = list(reversed(range(len(windows))))  # the latest age with a reading counts

    def at_latest(values: Sequence[Any], default: Any = None) -> Any:
        return case(*((ok[i], values[i]) for i in latest), else_=default)

    er_last, lx_last = at_latest(er), at_latest(lx)
    fallback = at_latest([c[f"fb{i}"] for i in range(len(windows))], 0)
    pattern = sum(
        (case((ok[i], 4 << i), else_=0) for i in range(len(windows))),
        c.recent + 2 * c.fresh,
    ).label("pattern")
    w = c.w
    return select(
        c.account_id,
        c.content_type,
        pattern,
        func.count().label("n"),
        func.sum(w).label("w"),
        func.sum(w * er_last).label("we"),
        func.sum(w * er_last * er_last).label("we2"),
        func.sum(er_last).label("e"),
        func.sum(w * lx_last).label("wl"),
        func.sum(w * lx_last * lx_last).label("wl2"),
        func.sum(fallback).label("fb"),
        *(func.sum(w * case((ok[i], er[i]))).label(f"we_{i}") for i in range(len(windows))),
    ).group_by(c.account_id, c.content_type, literal_column("pattern"))


def _assemble(rows: Iterable[Any], ages: int) -> dict[tuple[int, str], list[AgeSums]]:
    """Each (account, content type)'s ``AgeSums`` per age from the grouped rows of
    ``_sums_query``: a post counts at the latest age it has a reading for (weight, sums,
    counts, recent or older, fresh), at every age it has a reading for (``any_*``), and beside
    the last age's reading (``pair_*``)."""
    out: dict[tuple[int, str], list[AgeSums]] = {}
    last = ages - 1
    for row in rows:
        key = (row.account_id, row.content_type)
        sums = out.get(key)
        if sums is None:
            sums = out[key] = [AgeSums() for _ in range(ages)]
        m = row._mapping
        n, w = int(row.n), float(row.w or 0.0)
        has = [bool(row.pattern & (4 << i)) for i in range(ages)]
        for a in sums:
            a.post_count += n
        read = [i for i in range(ages) if has[i]]
        if not read:
            continue
        a = sums[read[-1]]
        we, wl, wl2 = float(row.we or 0.0), float(row.wl or 0.0), float(row.wl2 or 0.0)
        a.weight += w
        a.total += we
        a.squares += float(row.we2 or 0.0)
        a.count += n
        a.log_total += wl
        a.log_squares += wl2
        a.fallback_count += int(row.fb or 0)
        if row.pattern & 1:
            a.recent_total += float(row.e or 0.0)
            a.recent_count += n
        else:
            a.older_total += float(row.e or 0.0)
            a.older_count += n
        if row.pattern & 2:
            a.fresh_weight += w
            a.fresh_log_total += wl
            a.fresh_log_squares += wl2
            a.fresh_count += n
        we_last = float(m[f"we_{last}"] or 0.0)
        for i in read:
            b = sums[i]
            we_i = float(m[f"we_{i}"] or 0.0)
            b.any_weight += w
            b.any_total += we_i
            b.any_count += n
            if has[last]:
                b.pair_this += we_i
                b.pair_last += we_last
                b.pair_count += n
    return out


def _ln(value: float | None) -> float | None:
    return math.log(value) if value is not None and value > 0 else None


def post_readings(
    conn: Connection,
    post_ids: Collection[int],
    *,
    ages: Sequence[timedelta],
    reach_accounts: Collection[int],
) -> dict[int, float]:
    """ER of each given post at its latest configured age (for ranking single posts)."""
    windows = reading_windows(ages)
    if not windows or not post_ids:
        return {}
    s, p = snapshots_t, posts_t
    query = (
        select(s.c.post_id, s.c.age_seconds, er_sql(s, p).label("er"))
        .select_from(s.join(p, p.c.id == s.c.post_id))
        .where(s.c.post_id.in_(bindparam("ids", expanding=True)))
        .order_by(s.c.post_id, s.c.age_seconds)
    )
    best: dict[int, tuple[int, float]] = {}  # post id -> (band, ER)
    ids = sorted(post_ids)
    for start in range(0, len(ids), 500):
        rows = conn.execute(
            query, {"ids": ids[start : start + 500], "reach": sorted(reach_accounts)}
        )
        for row in rows:
            band = _band_of(row.age_seconds, windows)
            if band is None or row.er is None:
                continue
            # The latest band wins; within a band, the first reading (ages ascend).
            held = best.get(row.post_id)
            if held is None or band > held[0]:
                best[row.post_id] = (band, float(row.er))
    return {post_id: value for post_id, (_, value) in best.items()}


def _band_of(age_seconds: int, windows: Sequence[tuple[int, int]]) -> int | None:
    for i, (lo, hi) in enumerate(windows):
        if lo <= age_seconds < hi:
            return i
    return None
