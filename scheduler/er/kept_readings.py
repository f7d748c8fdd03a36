"""Each post's ER readings, kept in ``er_readings`` so that a full pass reads rows per post.

A full pass over the snapshots (``readings.sum_readings``) seeks each post's reading at every
configured age and works out its engagements and denominator: most of its time. What it
finds changes only when the post gets a new snapshot, so it is kept, per post, beside the
running sums (``incremental.py``): one row with the post's latest reading (its ER, log ER and
whether it fell back to followers; band -1 for a post never read) and one per earlier age it
was read at. Every recompute that keeps the sums refreshes the rows of the posts it re-reads
from their snapshots (``refresh``), so the rows hold what the snapshots up to the kept
watermark give.

``sum_rows`` then gives the same ``AgeSums`` as ``sum_readings`` from these rows alone: plain
sums grouped by account, content type and band, read in the order of the covering index
``ix_er_readings_sums`` (no sort, no snapshot read). The decay weight, the recent and fresh
posts and the horizon depend on the time of the pass and are worked out then from the
publish time kept in the row.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Delete,
    Float,
    Insert,
    Select,
    and_,
    bindparam,
    case,
    delete,
    false,
    func,
    literal,
    null,
    or_,
    select,
    true,
    union_all,
)

from scheduler.db.models import ERReading
from scheduler.er.readings import (
    FRESH,
    LOG_OFFSET,
    AgeSums,
    ensure_math,
    per_post_readings,
    reading_windows,
)

readings_t = ERReading.__table__  # type: ignore[attr-defined]

Sums = dict[tuple[int, str], list[AgeSums]]

#: Posts per statement when a list of posts is given (SQLite bounds a statement's parameters).
CHUNK = 500


def refresh(
    conn: Connection,
    *,
    ages: Sequence[timedelta],
    now: datetime,
    horizon: datetime,
    reach_accounts: Collection[int],
    max_snapshot: int,
    post_ids: Collection[int] | None = None,
) -> None:
    """Replace the rows of ``post_ids`` (of every post when None) by what their snapshots up
    to ``max_snapshot`` give; posts published before ``horizon`` or after ``now`` get none."""
    windows = tuple(reading_windows(ages))
    if not windows:
        return
    ensure_math(conn)
    params: dict[str, Any] = {
        # The decay and the recent and fresh lines are worked out when the rows are summed.
        "now_epoch": now.timestamp(),
        "rate": 0.0,
        "recent_from": 0.0,
        "fresh_from": 0.0,
        "horizon": horizon,
        "now": now,
        "reach": sorted(reach_accounts),
        "max_snapshot": max_snapshot,
        "max_post": None,
    }
    if post_ids is None:
        # Every row anew: the covering index is built once after the rows, a sort, instead
        # of being kept up to date row by row.
        index = next(i for i in readings_t.indexes if i.name == "ix_er_readings_sums")
        index.drop(conn)
        conn.execute(delete(readings_t))
        conn.execute(_refresh_query(windows, False), params)
        index.create(conn)
        return
    ids = sorted(post_ids)
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        conn.execute(_delete_query(), {"post_ids": chunk})
        conn.execute(_refresh_query(windows, True), {**params, "post_ids": chunk})


@functools.cache
def _delete_query() -> Delete:
    return delete(readings_t).where(readings_t.c.post_id.in_(bindparam("post_ids", expanding=True)))


@functools.cache
def _refresh_query(windows: tuple[tuple[int, int], ...], by_posts: bool) -> Insert:
    """``INSERT ... SELECT``: each post's latest row and its earlier readings' rows, from
    ``readings.per_post_readings`` (the same readings a pass over the snapshots sums)."""
    c = per_post_readings(windows, False, by_posts, True).c
    n = len(windows)
    ok = [and_(c[f"e{i}"] + LOG_OFFSET > 0, c[f"d{i}"] > 0) for i in range(n)]
    er = [c[f"e{i}"] / c[f"d{i}"] for i in range(n)]
    lx = [func.ln(c[f"e{i}"] + LOG_OFFSET) - func.ln(c[f"d{i}"]) for i in range(n)]
    latest = list(reversed(range(n)))

    def at_latest(values: Sequence[Any], default: Any = None) -> Any:
        return case(*((ok[i], values[i]) for i in latest), else_=default)

    er_last = case((ok[n - 1], er[n - 1]), else_=null())
    common = (c.account_id, c.content_type, c.pub)
    rows = [
        select(
            c.post_id,
            at_latest(list(range(n)), -1),
            true(),
            *common,
            at_latest(er),
            at_latest(lx),
            at_latest([c[f"fb{i}"] for i in range(n)], 0),
            er_last,
        )
    ]
    for i in range(n - 1):
        rows.append(
            select(
                c.post_id, literal(i), false(), *common, er[i], null(), literal(0), er_last
            ).where(ok[i], or_(*ok[i + 1 :]))
        )
    columns = [
        "post_id", "band", "latest", "account_id", "content_type", "published", "er", "log_er",
        "fallback", "er_last",
    ]  # fmt: skip
    return readings_t.insert().from_select(columns, union_all(*rows))


def sum_rows(
    conn: Connection,
    *,
    ages: Sequence[timedelta],
    now: datetime,
    half_life: timedelta,
    horizon: datetime,
    post_ids: Collection[int] | None = None,
) -> Sums:
    """What ``readings.sum_readings`` returns for the kept rows (of ``post_ids``, or all) at
    ``now``: per (account id, content type), one ``AgeSums`` per age, ascending."""
    bands = len(reading_windows(ages))
    if not bands:
        return {}
    ensure_math(conn)
    params: dict[str, Any] = {
        "now_epoch": now.timestamp(),
        "horizon_epoch": horizon.timestamp(),
        "rate": math.log(2) / half_life.total_seconds(),
        "recent_from": now.timestamp() - half_life.total_seconds(),
        "fresh_from": now.timestamp() - FRESH * half_life.total_seconds(),
    }
    out: Sums = {}
    if post_ids is None:
        _assemble_latest(out, conn.execute(_latest_query(), params), bands)
        _assemble_earlier(out, conn.execute(_earlier_query(), params), bands)
        return out
    ids = sorted(post_ids)
    for start in range(0, len(ids), CHUNK):
        params["post_ids"] = ids[start : start + CHUNK]
        rows = conn.execute(_posts_query(), params).all()
        _assemble_latest(out, (r for r in rows if r.latest), bands)
        _assemble_earlier(out, (r for r in rows if not r.latest), bands)
    return out


def _published() -> list[Any]:
    r = readings_t.c
    return [
        r.published >= bindparam("horizon_epoch", type_=Float),
        r.published <= bindparam("now_epoch", type_=Float),
    ]


def _weight() -> Any:
    r = readings_t.c
    return func.exp(
        (r.published - bindparam("now_epoch", type_=Float)) * bindparam("rate", type_=Float)
    )


def _latest_sums() -> list[Any]:
    """The sums of the posts' latest readings."""
    r = readings_t.c
    w = _weight()
    recent = r.published >= bindparam("recent_from", type_=Float)
    fresh = r.published >= bindparam("fresh_from", type_=Float)
    return [
        func.count().label("n"),
        func.sum(w).label("w"),
        func.sum(w * r.er).label("we"),
        func.sum(w * r.er * r.er).label("we2"),
        func.sum(w * r.log_er).label("wl"),
        func.sum(w * r.log_er * r.log_er).label("wl2"),
        func.sum(r.fallback).label("fb"),
        func.sum(case((recent, r.er))).label("recent_e"),
        func.count(case((recent, 1))).label("recent_n"),
        func.sum(case((~recent, r.er))).label("older_e"),
        func.sum(case((fresh, w))).label("fresh_w"),
        func.sum(case((fresh, w * r.log_er))).label("fresh_wl"),
        func.sum(case((fresh, w * r.log_er * r.log_er))).label("fresh_wl2"),
        func.count(case((fresh, 1))).label("fresh_n"),
    ]


def _pair_sums() -> list[Any]:
    """Beside the sums of ``n``, ``w`` and ``we``: those of the readings with one at the last
    age of the same post."""
    r = readings_t.c
    w = _weight()
    return [
        func.count(r.er_last).label("pair_n"),
        func.sum(case((r.er_last.is_not(None), w * r.er))).label("pair_this"),
        func.sum(w * r.er_last).label("pair_last"),
    ]


@functools.cache
def _latest_query() -> Select[Any]:
    """Per account, content type and latest band: the sums of the posts' latest readings,
    read in the order of the covering index (no sort)."""
    r = readings_t.c
    return (
        select(r.account_id, r.content_type, r.band, *_latest_sums())
        .where(r.latest == true(), *_published())
        .group_by(r.account_id, r.content_type, r.band)
    )


@functools.cache
def _earlier_query() -> Select[Any]:
    """Per account, content type and band: the sums of the readings before a post's latest."""
    r = readings_t.c
    w = _weight()
    return (
        select(
            r.account_id,
            r.content_type,
            r.band,
            func.count().label("n"),
            func.sum(w).label("w"),
            func.sum(w * r.er).label("we"),
            *_pair_sums(),
        )
        .where(r.latest == false(), *_published())
        .group_by(r.account_id, r.content_type, r.band)
    )


@functools.cache
def _posts_query() -> Select[Any]:
    """Both sums for a list of posts, in one statement found by the primary key (a condition
    on ``latest`` would send SQLite through the covering index, over every post)."""
    r = readings_t.c
    return (
        select(r.account_id, r.content_type, r.latest, r.band, *_latest_sums(), *_pair_sums())
        .where(r.post_id.in_(bindparam("post_ids", expanding=True)), *_published())
        .group_by(r.account_id, r.content_type, r.latest, r.band)
    )


def _sums_of(out: Sums, row: Any, bands: int) -> list[AgeSums]:
    key = (row.account_id, row.content_type)
    sums = out.get(key)
    if sums is None:
        sums = out[key] = [AgeSums() for _ in range(bands)]
    return sums


def _f(value: Any) -> float:
    return float(value or 0.0)


def _assemble_latest(out: Sums, rows: Iterable[Any], bands: int) -> None:
    """Add the latest readings' sums: a post counts at its latest age (weight, sums, counts,
    recent or older, fresh), among the posts read at that age (``any_*``), and, at the last
    age, as its own pair (``pair_*``); every post counts in ``post_count``."""
    for row in rows:
        sums = _sums_of(out, row, bands)
        n = int(row.n)
        for a in sums:
            a.post_count += n
        band = int(row.band)
        if band < 0:
            continue
        a = sums[band]
        w, we = _f(row.w), _f(row.we)
        a.weight += w
        a.total += we
        a.squares += _f(row.we2)
        a.count += n
        a.log_total += _f(row.wl)
        a.log_squares += _f(row.wl2)
        a.fallback_count += int(row.fb or 0)
        a.recent_total += _f(row.recent_e)
        a.recent_count += int(row.recent_n)
        a.older_total += _f(row.older_e)
        a.older_count += n - int(row.recent_n)
        a.fresh_weight += _f(row.fresh_w)
        a.fresh_log_total += _f(row.fresh_wl)
        a.fresh_log_squares += _f(row.fresh_wl2)
        a.fresh_count += int(row.fresh_n)
        a.any_weight += w
        a.any_total += we
        a.any_count += n
        if band == bands - 1:
            a.pair_this += we
            a.pair_last += we
            a.pair_count += n


def _assemble_earlier(out: Sums, rows: Iterable[Any], bands: int) -> None:
    """Add the earlier readings' sums: among the posts read at that age, and beside the last
    age's reading of the same post."""
    for row in rows:
        a = _sums_of(out, row, bands)[int(row.band)]
        a.any_weight += _f(row.w)
        a.any_total += _f(row.we)
        a.any_count += int(row.n)
        a.pair_this += _f(row.pair_this)
        a.pair_last += _f(row.pair_last)
        a.pair_count += int(row.pair_n)
