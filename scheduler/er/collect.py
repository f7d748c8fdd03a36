"""Metrics collection: read each published post's counters as it passes its age bands.

A post is read once per band (1 h, 6 h, 24 h, 72 h and 7 d after publication by default), at
the first collection after it enters the band; a post older than 72 h whose last two readings
were identical has settled and is not read again. ``due_band`` makes that decision and is
pure; ``collect_metrics`` is the job around it: one ``fetch_metrics`` call per account (the
adapter batches as its API allows), one ``MetricSnapshot`` per post read, NULL for every
counter the network does not report (never 0), and ``metrics_collected`` for plugins.

An adapter that raises, hangs past the timeout or answers garbage costs only its own account's
readings this round: it is logged and the job goes on.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import (
    Connection,
    Engine,
    Float,
    Integer,
    Select,
    bindparam,
    case,
    exists,
    null,
    select,
    update,
)

from scheduler import plugins
from scheduler.adapter import Adapter, Metrics
from scheduler.config import AccountConfig, Config
from scheduler.db.engine import immediate
from scheduler.db.models import Account, MetricSnapshot, Post, PostState
from scheduler.db.types import UTCDateTime
from scheduler.er.readings import epoch_seconds
from scheduler.outgoing import account_view, from_row
from scheduler.timeutil import Clock

log = structlog.get_logger(__name__)

posts_t = Post.__table__  # type: ignore[attr-defined]
snapshots_t = MetricSnapshot.__table__  # type: ignore[attr-defined]
accounts_t = Account.__table__  # type: ignore[attr-defined]

DEFAULT_BANDS: tuple[timedelta, ...] = (
    timedelta(hours=1),
    timedelta(hours=6),
    timedelta(hours=24),
    timedelta(hours=72),
    timedelta(days=7),
)
#: Past this age, two identical readings in a row mean the post has settled.
SETTLED_AFTER = timedelta(hours=72)
#: Posts older than this are not read at all (networks forget, and ER no longer needs them).
MAX_AGE = timedelta(days=30)
#: Due posts read, asked for and stored at a time. The job holds one page, never every due
#: post: an hour after a daemon drained a million posts, all million are due at once.
PAGE = 1000

#: The counters a snapshot keeps, in ``Metrics`` and ``MetricSnapshot`` alike.
COUNTERS = tuple(f.name for f in fields(Metrics) if f.name != "remote_id")
#: The counters that tell whether a post still moves (followers move on their own).
_MOVING = tuple(c for c in COUNTERS if c != "followers")


@dataclass(frozen=True)
class Reading:
    """A stored snapshot, as ``due_band`` sees it: its age and what it counted."""

    age_seconds: int
    counters: tuple[int | None, ...] = ()


def due_band(
    published_at: datetime,
    readings: Sequence[Reading],
    now: datetime,
    bands: Sequence[timedelta] = DEFAULT_BANDS,
    *,
    settled_after: timedelta = SETTLED_AFTER,
    max_age: timedelta = MAX_AGE,
) -> timedelta | None:
    """The band a reading of the post is due for at ``now``, or None when none is due.

    The due band is the latest band the post's age has passed; it is due unless a reading
    was already taken at or after it. A post younger than the first band or older than
    ``max_age`` is never due, nor one older than ``settled_after`` whose last two readings
    counted the same.
    """
    age = now - published_at
    passed = [b for b in sorted(bands) if b <= age]
    if not passed or age > max_age:
        return None
    band = passed[-1]
    if any(r.age_seconds >= band.total_seconds() for r in readings):
        return None
    if age > settled_after and len(readings) >= 2:
        before, last = sorted(readings, key=lambda r: r.age_seconds)[-2:]
        if before.counters == last.counters:
            return None
    return band


# ============================================================================ what is due


@dataclass(frozen=True)
class DuePost:
    """A published post whose reading is due, with what the adapter needs to look it up."""

    row: Any
    band: timedelta


def due_posts(
    conn: Connection,
    account_ids: Mapping[str, int],
    now: datetime,
    bands: Sequence[timedelta] = DEFAULT_BANDS,
    *,
    after: int = 0,
    limit: int | None = None,
) -> tuple[dict[str, list[DuePost]], int | None]:
    """Per account name, the posts to read now among the next ``limit`` (default ``PAGE``)
    candidates by id after ``after``; and the last id looked at (None: no candidate left).

    The database narrows the posts down to those with no reading since they entered their
    current band (most runs find none, and a simulation runs the job every virtual hour);
    ``due_band`` then decides on those few, the settled rule included.
    """
    if not account_ids or not bands:
        return {}, None
    names = {i: n for n, i in account_ids.items()}
    rows = conn.execute(
        _due_query(tuple(sorted(int(b.total_seconds()) for b in bands))),
        {
            "accounts": sorted(names),
            "now_epoch": now.timestamp(),
            "oldest": now - MAX_AGE,
            "youngest": now - min(bands),
            "after": after,
            "limit": PAGE if limit is None else limit,
        },
    ).all()
    if not rows:
        return {}, None
    readings: dict[int, list[Reading]] = {}
    ids = [r.id for r in rows]
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        for s in conn.execute(
            select(snapshots_t.c.post_id, snapshots_t.c.age_seconds, *_moving_columns()).where(
                snapshots_t.c.post_id.in_(chunk)
            )
        ):
            readings.setdefault(s.post_id, []).append(
                Reading(s.age_seconds, tuple(getattr(s, c) for c in _MOVING))
            )
    out: dict[str, list[DuePost]] = {}
    for r in rows:
        band = due_band(r.published_at, readings.get(r.id, ()), now, bands)
        if band is not None:
            out.setdefault(names[r.account_id], []).append(DuePost(r, band))
    return out, rows[-1].id


@functools.cache
def _due_query(bands: tuple[int, ...]) -> Select[Any]:
    """Published posts without a reading since they entered their current band.

    Built once per set of bands: the job runs often (every virtual hour in a simulation),
    and building the statement costs more than running it.
    """
    age = bindparam("now_epoch", type_=Float) - epoch_seconds(posts_t.c.published_at)
    band_start = case(*((age >= b, b) for b in reversed(bands)), else_=null())
    read = exists().where(
        snapshots_t.c.post_id == posts_t.c.id, snapshots_t.c.age_seconds >= band_start
    )
    return (
        select(posts_t)
        .where(
            posts_t.c.account_id.in_(bindparam("accounts", expanding=True)),
            posts_t.c.state == PostState.PUBLISHED,
            posts_t.c.remote_id.is_not(None),
            posts_t.c.published_at >= bindparam("oldest", type_=UTCDateTime),
            posts_t.c.published_at <= bindparam("youngest", type_=UTCDateTime),
            posts_t.c.id > bindparam("after", type_=Integer),
            ~read,
        )
        .order_by(posts_t.c.id)
        .limit(bindparam("limit", type_=Integer))
    )


def _moving_columns() -> list[Any]:
    return [snapshots_t.c[c] for c in _MOVING]


# ============================================================================ asking the networks


def _counter_ok(value: Any) -> bool:
    return value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0)


def checked_metrics(result: Any, wanted: set[str], account: str) -> dict[str, Metrics]:
    """The sound part of an adapter's answer; everything else is logged and dropped."""
    if not isinstance(result, Mapping):
        log.error("metrics_garbage", account=account, problem=f"returned {type(result).__name__}")
        return {}
    good: dict[str, Metrics] = {}
    for remote_id, m in result.items():
        if remote_id not in wanted:
            continue  # not asked for (or the adapter's own key): nothing to attach it to
        if not isinstance(m, Metrics) or not all(_counter_ok(getattr(m, c)) for c in COUNTERS):
            log.error(
                "metrics_garbage", account=account, remote_id=str(remote_id), value=repr(m)[:200]
            )
            continue
        good[remote_id] = m
    return good


async def _fetch(
    adapter: Adapter, cfg: AccountConfig, due: list[DuePost], timeout: float
) -> dict[str, Metrics]:
    posts = [from_row(d.row, cfg.name) for d in due]
    try:
        result = await asyncio.wait_for(
            adapter.fetch_metrics(posts, account_view(cfg)), timeout=timeout
        )
    except TimeoutError:
        log.error("metrics_fetch_failed", account=cfg.name, error=f"no answer in {timeout:g} s")
        return {}
    except Exception as exc:  # a plugin must not take the job down
        log.error("metrics_fetch_failed", account=cfg.name, error=f"{type(exc).__name__}: {exc}")
        return {}
    return checked_metrics(result, {d.row.remote_id for d in due}, cfg.name)


async def collect_metrics(
    engine: Engine,
    adapters: Mapping[str, Adapter],
    config: Config,
    now: datetime,
    *,
    clock: Clock | None = None,
    bands: Sequence[timedelta] = DEFAULT_BANDS,
    timeout: timedelta | None = None,
) -> int:
    """Read every due post of every enabled account; return how many snapshots were stored.

    ``adapters`` maps platform names to adapter instances; accounts whose platform has none
    are skipped. ``now`` decides what is due; a snapshot's ``collected_at`` (and so its age)
    is ``clock.now()`` when the answer arrives if a clock is given, else ``now``.
    """
    # The database work runs in threads: in the daemon the event loop keeps publishing.
    usable = await asyncio.to_thread(_usable, engine, adapters, config)
    limit = (timeout or config.daemon.publish_timeout).total_seconds()
    stored, after = 0, 0
    while True:
        due, last = await asyncio.to_thread(_read_due, engine, usable, now, bands, after)
        if last is None:
            return stored
        stored += await _collect_page(engine, adapters, config, usable, due, limit, clock, now)
        after = last


async def _collect_page(
    engine: Engine,
    adapters: Mapping[str, Adapter],
    config: Config,
    usable: Mapping[str, int],
    due: dict[str, list[DuePost]],
    limit: float,
    clock: Clock | None,
    now: datetime,
) -> int:
    """Ask the networks about one page of due posts, store and announce what they said."""
    names = sorted(due)
    answers = await asyncio.gather(
        *(
            _fetch(adapters[config.accounts[n].platform], config.accounts[n], due[n], limit)
            for n in names
        )
    )
    at = clock.now() if clock is not None else now
    rows: list[dict[str, Any]] = []
    collected: dict[str, list[Metrics]] = {}
    followers: dict[int, int] = {}
    for name, metrics in zip(names, answers, strict=True):
        for d in due[name]:
            m = metrics.get(d.row.remote_id)
            if m is None:
                continue
            rows.append(
                {
                    "post_id": d.row.id,
                    "collected_at": at,
                    "age_seconds": int((at - d.row.published_at).total_seconds()),
                    **{c: getattr(m, c) for c in COUNTERS},
                }
            )
            collected.setdefault(name, []).append(m)
            if m.followers is not None:
                followers[usable[name]] = m.followers
    if rows:
        await asyncio.to_thread(_store, engine, rows, followers, at)
    for name, fresh in collected.items():
        await _announce(config.accounts[name], fresh)
    return len(rows)


def _usable(engine: Engine, adapters: Mapping[str, Adapter], config: Config) -> dict[str, int]:
    """The accounts that can be read (enabled, with an adapter that reads metrics,
    credentials not known to be expired) by name -> id. A network whose adapter keeps the
    default ``fetch_metrics`` reports nothing: its posts are not even read from the database
    (they would stay due, all of them, at every run for 30 days)."""
    with engine.connect() as conn:
        known = {
            r.name: r.id
            for r in conn.execute(
                select(accounts_t.c.id, accounts_t.c.name).where(
                    accounts_t.c.auth_state != "expired"
                )
            )
        }
    return {
        name: known[name]
        for name, cfg in config.accounts.items()
        if cfg.enabled
        and name in known
        and cfg.platform in adapters
        and type(adapters[cfg.platform]).fetch_metrics is not Adapter.fetch_metrics
    }


def _read_due(
    engine: Engine,
    usable: Mapping[str, int],
    now: datetime,
    bands: Sequence[timedelta],
    after: int,
) -> tuple[dict[str, list[DuePost]], int | None]:
    """The next page of due posts (see ``due_posts``)."""
    with engine.connect() as conn:
        return due_posts(conn, usable, now, bands, after=after)


def _store(
    engine: Engine, rows: list[dict[str, Any]], followers: Mapping[int, int], at: datetime
) -> None:
    with immediate(engine) as conn:
        conn.execute(snapshots_t.insert(), rows)
        for account_id, count in followers.items():
            conn.execute(
                update(accounts_t)
                .where(accounts_t.c.id == account_id)
                .values(followers=count, updated_at=at)
            )


async def _announce(cfg: AccountConfig, metrics: list[Metrics]) -> None:
    results = plugins.call_all("metrics_collected", account=account_view(cfg), metrics=metrics)
    for result in results:
        if inspect.isawaitable(result):
            try:
                await result
            except Exception as exc:
                log.error(
                    "plugin_hook_failed", hook="metrics_collected", error=f"{type(exc).__name__}"
                )
