"""The readings' sums kept between recomputes, so that a recompute reads only what changed.

A full pass (``readings.sum_readings``) reads every snapshot of the horizon. The sums it
returns are sums over posts, each post adding its own contribution, so they can be kept
(table ``er_sums``) and brought up to date: between the last recompute (time ``t0``, every
snapshot up to id ``W0``) and this one (``t1``, up to ``W1``) a post's contribution changes
only when

- it has a snapshot with an id in ``(W0, W1]`` taken in a configured age's window (a new
  reading; a reading taken earlier in the same age band, or one at a later age, replaces
  what the post contributed; a snapshot outside every window is never a reading),
- it was added since, or
- its publish time crossed one of the lines that move with the clock: the horizon, the
  recent/older split (a half-life), the fresh posts (``readings.FRESH`` of one), and ``now``.

Those posts are summed twice, as they stood (``t0``, ``W0``) and as they stand, and the
difference is applied. Every other post's contribution only decays: the decayed sums are
multiplied by ``exp(-rate × (t1 - t0))``, the plain ones (counts, recent/older totals) stay.
The result equals a full pass up to float rounding — it is the same sufficient statistics
(counts, decayed weights, sums and squares of ER and of log ER), not an approximation.

Both sums are made from each post's kept readings (``kept_readings.py``, table
``er_readings``): the rows as they stood are summed, the touched posts' rows are read again
from their snapshots, and the new rows are summed.

A *full pass* sums every post's kept readings instead (after reading again those of the
posts with new snapshots, new posts and posts published since): when the clock moved on by
more than ``MAX_STEP_HALF_LIVES``, more than ``MAX_TOUCHED`` posts changed, and at the first
recompute of each UTC day. A *rebuild* reads every snapshot and keeps every post's readings
anew: when there are no kept sums, the settings they were made with changed (ages,
half-life, which accounts are read by reach), the clock went back, snapshots disappeared,
when asked (``full``), and ``REBUILD_EVERY`` after the last one, so that anything the kept
rows cannot see (a snapshot committed late below the watermark on PostgreSQL, a row edited
by hand) lasts a week at most.

Assumed, as the daemon works: snapshots are only inserted (never edited), and a post's
account, content type and publish time do not change once it has snapshots.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Connection, and_, delete, func, or_, select, text

from scheduler.config import ERSettings
from scheduler.db.models import ERSums, PostState
from scheduler.er.kept_readings import refresh, sum_rows
from scheduler.er.readings import (
    FRESH,
    AgeSums,
    add_sums,
    posts_t,
    reading_windows,
    snapshots_t,
)
from scheduler.er.stats import HORIZON_HALF_LIVES
from scheduler.states import sql_in

log = structlog.get_logger(__name__)

sums_t = ERSums.__table__  # type: ignore[attr-defined]

#: Bumped when what the sums hold changes: kept sums of another version are not used.
VERSION = 1
#: A step of the clock beyond this many half-lives since the kept sums means a full pass.
MAX_STEP_HALF_LIVES = 1.0
#: More posts to re-read than this means a full pass.
MAX_TOUCHED = 50_000
#: Slack around the moving lines: a post within it of a line is re-read (harmless).
SLACK = timedelta(seconds=2)
#: Every snapshot is read again (the kept readings rebuilt) at least this often.
REBUILD_EVERY = timedelta(days=7)

Sums = dict[tuple[int, str], list[AgeSums]]
_FIELDS = [f.name for f in fields(AgeSums)]


@dataclass(frozen=True)
class Kept:
    """Sums as of ``computed_at`` over the snapshots up to id ``watermark``."""

    computed_at: datetime
    watermark: int
    post_watermark: int
    settings_key: str
    sums: Sums
    #: When every post's readings were last read from the snapshots.
    rebuilt_at: datetime | None = None


def settings_key(settings: ERSettings, reach_accounts: Collection[int]) -> str:
    """What the sums depend on besides the data: the ages, the half-life, and which accounts
    are read by reach."""
    ages = sorted({int(a.total_seconds()) for a in settings.ages})
    text = json.dumps([VERSION, ages, settings.half_life.total_seconds(), sorted(reach_accounts)])
    return hashlib.sha256(text.encode()).hexdigest()


def load(conn: Connection) -> Kept | None:
    """The kept sums, or None when there are none (or they cannot be read)."""
    row = conn.execute(select(sums_t).order_by(sums_t.c.id.desc()).limit(1)).first()
    if row is None:
        return None
    try:
        sums = {
            (int(account_id), str(content_type)): [
                AgeSums(**dict(zip(_FIELDS, values, strict=True))) for values in per_age
            ]
            for account_id, content_type, per_age in row.sums
        }
    except (TypeError, ValueError):
        return None
    return Kept(
        row.computed_at,
        int(row.watermark),
        int(row.post_watermark),
        row.settings_key,
        sums,
        row.rebuilt_at,
    )


def save(conn: Connection, kept: Kept) -> None:
    """Replace the kept sums."""
    conn.execute(delete(sums_t))
    conn.execute(
        sums_t.insert().values(
            computed_at=kept.computed_at,
            watermark=kept.watermark,
            post_watermark=kept.post_watermark,
            settings_key=kept.settings_key,
            rebuilt_at=kept.rebuilt_at,
            sums=[
                [account_id, content_type, [[getattr(a, f) for f in _FIELDS] for a in per_age]]
                for (account_id, content_type), per_age in sorted(kept.sums.items())
            ],
        )
    )


def latest_snapshot(conn: Connection) -> int:
    """The id of the newest snapshot (0 without any)."""
    return int(conn.execute(select(func.max(snapshots_t.c.id))).scalar() or 0)


def latest_post(conn: Connection) -> int:
    """The id of the newest post (0 without any)."""
    return int(conn.execute(select(func.max(posts_t.c.id))).scalar() or 0)


def readings_sums(
    conn: Connection,
    settings: ERSettings,
    now: datetime,
    *,
    reach_accounts: Collection[int],
    full: bool = False,
    whole: bool = False,
) -> tuple[Sums, str]:
    """The sums ``sum_readings`` would return for every account at ``now``, brought up to
    date from the kept ones when possible; the new sums and readings are kept. ``whole``
    asks for a full pass over the kept readings, ``full`` for a rebuild from every snapshot.
    Returns (sums, "incremental", "full" or "rebuild")."""
    key = settings_key(settings, reach_accounts)
    watermark, newest_post = latest_snapshot(conn), latest_post(conn)
    kept = None if full else load(conn)
    horizon = now - settings.half_life * HORIZON_HALF_LIVES
    common: dict[str, Any] = {"ages": settings.ages, "now": now, "horizon": horizon}
    why = "asked for" if full else _why_rebuild(kept, key, now, watermark)
    sums: Sums | None = None
    how = "rebuild"
    rebuilt_at = now
    if kept is not None and why is None:
        rebuilt_at = kept.rebuilt_at or now
        full_why = "asked for" if whole else _why_full(kept, now, settings.half_life)
        if full_why is None:
            sums = _update(conn, kept, settings, now, watermark, reach_accounts)
            how = "incremental"
            if sums is None:
                full_why = f"more than {MAX_TOUCHED:,} posts to re-read"
        if sums is None:
            changed = _changed_posts(conn, kept, now, watermark, settings.ages)
            if len(changed) > MAX_TOUCHED:
                why = f"more than {MAX_TOUCHED:,} posts to read again"
            else:
                log.info("er_sums_full", reason=full_why)
                refresh(
                    conn,
                    reach_accounts=reach_accounts,
                    max_snapshot=watermark,
                    post_ids=changed,
                    **common,
                )
                sums = sum_rows(conn, half_life=settings.half_life, **common)
                how = "full"
    if sums is None:
        log.info("er_sums_rebuild", reason=why)
        refresh(conn, reach_accounts=reach_accounts, max_snapshot=watermark, **common)
        sums = sum_rows(conn, half_life=settings.half_life, **common)
        rebuilt_at = now
    save(conn, Kept(now, watermark, newest_post, key, sums, rebuilt_at))
    return sums, how


def _why_rebuild(kept: Kept | None, key: str, now: datetime, watermark: int) -> str | None:
    if kept is None or kept.rebuilt_at is None:
        return "no kept sums"
    if kept.settings_key != key:
        return "the settings changed"
    if now < kept.computed_at:
        return "the clock is before the kept sums"
    if watermark < kept.watermark:
        return "snapshots were removed"
    if now - kept.rebuilt_at >= REBUILD_EVERY:
        return "a week since every snapshot was read"
    return None


def _why_full(kept: Kept, now: datetime, half_life: timedelta) -> str | None:
    if now - kept.computed_at > half_life * MAX_STEP_HALF_LIVES:
        return "the kept sums are too old"
    if now.astimezone(UTC).date() != kept.computed_at.astimezone(UTC).date():
        # Once a day every post's kept readings are summed again, so rounding cannot pile up.
        return "a new day"
    return None


def _changed_posts(
    conn: Connection, kept: Kept, now: datetime, watermark: int, ages: Sequence[timedelta]
) -> set[int]:
    """Posts whose kept readings may be out of date: those with snapshots after the kept
    watermark taken at a configured age (a snapshot outside every age's window is never a
    reading), those added since, and those published since the kept sums."""
    age = snapshots_t.c.age_seconds
    changed = set(
        conn.execute(
            select(snapshots_t.c.post_id)
            .where(
                snapshots_t.c.id > kept.watermark,
                snapshots_t.c.id <= watermark,
                or_(*(and_(age >= lo, age < hi) for lo, hi in reading_windows(ages))),
            )
            .distinct()
        ).scalars()
    )
    changed.update(
        conn.execute(select(posts_t.c.id).where(posts_t.c.id > kept.post_watermark)).scalars()
    )
    changed.update(_published_between(conn, kept.computed_at - SLACK, now + SLACK))
    return changed


def _published_between(conn: Connection, start: datetime, end: datetime) -> list[int]:
    return list(
        conn.execute(
            select(posts_t.c.id).where(
                # Spelled as the partial index ix_posts_published is, so it is used.
                text(sql_in([PostState.PUBLISHED])),
                posts_t.c.published_at >= start,
                posts_t.c.published_at <= end,
            )
        ).scalars()
    )


def _update(
    conn: Connection,
    kept: Kept,
    settings: ERSettings,
    now: datetime,
    watermark: int,
    reach_accounts: Collection[int],
) -> Sums | None:
    t0, hl = kept.computed_at, settings.half_life
    changed = _changed_posts(conn, kept, now, watermark, settings.ages)
    touched = set(changed)
    # Posts whose publish time crossed a line that moves with the clock: summed again, their
    # readings unchanged (those that left the horizon keep rows no pass reads, until the
    # next rebuild).
    for offset in (hl * FRESH, hl, hl * HORIZON_HALF_LIVES):
        touched.update(_published_between(conn, t0 - offset - SLACK, now - offset + SLACK))
        if len(touched) > MAX_TOUCHED:
            return None
    if len(touched) > MAX_TOUCHED:
        return None
    ages = settings.ages
    # The touched posts' readings as they stood, summed as they counted then; read again;
    # and summed as they count now.
    before = sum_rows(
        conn, ages=ages, now=t0, half_life=hl, horizon=t0 - hl * HORIZON_HALF_LIVES,
        post_ids=touched,
    )  # fmt: skip
    horizon = now - hl * HORIZON_HALF_LIVES
    refresh(
        conn, ages=ages, now=now, horizon=horizon, reach_accounts=reach_accounts,
        max_snapshot=watermark, post_ids=changed,
    )  # fmt: skip
    after = sum_rows(conn, ages=ages, now=now, half_life=hl, horizon=horizon, post_ids=touched)
    decay = math.exp(-math.log(2) / hl.total_seconds() * (now - t0).total_seconds())
    out: Sums = {}
    n = len(settings_ages(settings))
    for k in set(kept.sums) | set(before) | set(after):
        per_age = kept.sums.get(k) or [AgeSums() for _ in range(n)]
        gone = before.get(k) or [AgeSums() for _ in range(n)]
        came = after.get(k) or [AgeSums() for _ in range(n)]
        sums = [
            _settle(add_sums(add_sums(a, b, sign=-1), c, scale_a=decay))
            for a, b, c in zip(per_age, gone, came, strict=True)
        ]
        if not _empty(sums):
            out[k] = sums
    return out


def settings_ages(settings: ERSettings) -> list[int]:
    """The distinct ages, in seconds, ascending (the order of the sums)."""
    return sorted({int(a.total_seconds()) for a in settings.ages})


#: Each count, and the sums that hold nothing when it is 0 (a residue of rounding then).
_BY_COUNT: Mapping[str, tuple[str, ...]] = {
    "count": ("weight", "total", "squares", "log_total", "log_squares"),
    "fresh_count": ("fresh_weight", "fresh_log_total", "fresh_log_squares"),
    "any_count": ("any_weight", "any_total"),
    "pair_count": ("pair_this", "pair_last"),
    "recent_count": ("recent_total",),
    "older_count": ("older_total",),
}


def _settle(a: AgeSums) -> AgeSums:
    """Sums of no post made exactly 0 (a difference of equal sums may leave 1e-18)."""
    zero: dict[str, Any] = {
        f: 0.0 for count, sums in _BY_COUNT.items() if getattr(a, count) == 0 for f in sums
    }
    return replace(a, **zero) if zero else a


def _empty(per_age: list[AgeSums]) -> bool:
    return all(getattr(a, c) == 0 for a in per_age for c in (*_BY_COUNT, "post_count"))
