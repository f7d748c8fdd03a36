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
from collections.abc import Collection, Sequence
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
        for row in conn.execute(query, params):
            m = row._mapping
            got = [
                AgeSums(**{f: _number(f, m[f"{f}_{i}"]) for f in _FIELDS})
                for i in range(len(windows))
            ]
            held = out.get((row.account_id, row.content_type))
            out[(row.account_id, row.content_type)] = (
                got if held is None else [add_sums(a, b) for a, b in zip(held, got, strict=True)]
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


@functools.cache
def _sums_query(
    windows: tuple[tuple[int, int], ...], filtered: bool, by_posts: bool, capped: bool
) -> Select[Any]:
    """The statement behind ``sum_readings``, built once per set of windows (building it
    costs more than running it on a small database, and simulations recompute often)."""
    s, p = snapshots_t, posts_t

    # The post's first snapshot in each age window: an index seek per post and window on
    # (post_id, age_seconds), far cheaper than sorting every snapshot. Only its id comes back;
    # the reading's ER and log ER are then computed from the row, found by its primary key.
    def first(lo: int, hi: int, label: str) -> Any:
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
            .label(label)
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
    # One row per post: its decay weight, whether it is recent, its reading at each age.
    posts = (
        select(
            p.c.account_id,
            p.c.content_type,
            p.c.followers_at_publish,
            func.exp((pub - now_epoch) * bindparam("rate", type_=Float)).label("w"),
            case((pub >= bindparam("recent_from", type_=Float), 1), else_=0).label("recent"),
            case((pub >= bindparam("fresh_from", type_=Float), 1), else_=0).label("fresh"),
            *(first(lo, hi, f"sid{i}") for i, (lo, hi) in enumerate(windows)),
        )
        .where(*where)
        .cte("posts_read")
        .prefix_with("MATERIALIZED")
    )
    joined: Any = posts
    values = []
    for i in range(len(windows)):
        snap = snapshots_t.alias(f"s{i}")
        joined = joined.outerjoin(snap, snap.c.id == posts.c[f"sid{i}"])
        log_er = log_er_sql(snap, posts)
        values += [
            # A reading counts only when its log does too (negative counts have none).
            case((log_er.is_(None), null()), else_=er_sql(snap, posts)).label(f"er{i}"),
            log_er.label(f"lx{i}"),
            fallback_sql(snap, posts).label(f"fb{i}"),
        ]
    per_post = (
        select(
            posts.c.account_id,
            posts.c.content_type,
            posts.c.w,
            posts.c.recent,
            posts.c.fresh,
            *values,
        )
        .select_from(joined)
        # Materialised, so the readings are computed once per post, not once per sum.
        .cte("per_post")
        .prefix_with("MATERIALIZED")
    )
    w, recent, fresh = per_post.c.w, per_post.c.recent == 1, per_post.c.fresh == 1
    last = len(windows) - 1
    ers = [per_post.c[f"er{i}"] for i in range(len(windows))]
    columns = []
    for i, er_i in enumerate(ers):
        lx_i = per_post.c[f"lx{i}"]
        latest = and_(er_i.is_not(None), *(e.is_(None) for e in ers[i + 1 :]))
        pair = and_(er_i.is_not(None), ers[last].is_not(None))
        has = er_i.is_not(None)
        parts = {
            "weight": case((latest, w), else_=0.0),
            "total": case((latest, w * er_i), else_=0.0),
            "squares": case((latest, w * er_i * er_i), else_=0.0),
            "count": case((latest, 1), else_=0),
            "pair_this": case((pair, w * er_i), else_=0.0),
            "pair_last": case((pair, w * ers[last]), else_=0.0),
            "any_weight": case((has, w), else_=0.0),
            "any_total": case((has, w * er_i), else_=0.0),
            "recent_total": case((and_(latest, recent), er_i), else_=0.0),
            "recent_count": case((and_(latest, recent), 1), else_=0),
            "older_total": case((and_(latest, ~recent), er_i), else_=0.0),
            "older_count": case((and_(latest, ~recent), 1), else_=0),
            "log_total": case((latest, w * lx_i), else_=0.0),
            "log_squares": case((latest, w * lx_i * lx_i), else_=0.0),
            "fallback_count": case((latest, per_post.c[f"fb{i}"]), else_=0),
            "fresh_weight": case((and_(latest, fresh), w), else_=0.0),
            "fresh_log_total": case((and_(latest, fresh), w * lx_i), else_=0.0),
            "fresh_log_squares": case((and_(latest, fresh), w * lx_i * lx_i), else_=0.0),
            "fresh_count": case((and_(latest, fresh), 1), else_=0),
            "any_count": case((has, 1), else_=0),
            "pair_count": case((pair, 1), else_=0),
            "post_count": literal_column("1"),
        }
        columns += [func.sum(parts[f]).label(f"{f}_{i}") for f in _FIELDS]
    return select(per_post.c.account_id, per_post.c.content_type, *columns).group_by(
        per_post.c.account_id, per_post.c.content_type
    )


def _ln(value: float | None) -> float | None:
    return math.log(value) if value is not None and value > 0 else None


def _number(name: str, value: Any) -> Any:
    # SUM over no rows is NULL; counts come back as integers, the rest as floats.
    return int(value or 0) if name.endswith("count") else float(value or 0.0)


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
