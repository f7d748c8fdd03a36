"""When the account's audience is there: engagement by hour of posting, jointly with the type.

Each published post's log ER (at its latest configured age) is compared with the mean of its
own content type, so an hour is not credited for the types that happened to go out then; the
residuals are averaged per local hour of posting. An hour whose whole 90 % interval lies
above another's is a finding, and ``smm er`` proposes moving a slot from the weaker hour to
the stronger one; anything less is not said.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Connection, select

from scheduler.config import ERSettings
from scheduler.db.models import Account, PostState
from scheduler.er.readings import post_readings, posts_t
from scheduler.er.stats import HORIZON_HALF_LIVES, INTERVAL_Z

accounts_t = Account.__table__  # type: ignore[attr-defined]

#: Posts an hour needs before it is compared.
MIN_POSTS_PER_HOUR = 5


@dataclass(frozen=True)
class HourEffect:
    """Posts published at local ``hour``: how they engaged against their types' means."""

    hour: int
    posts: int
    #: exp(mean residual): 1.5 means 50 % more than the same types at other hours.
    factor: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float | int]:
        return {
            "hour": self.hour,
            "posts": self.posts,
            "factor": round(self.factor, 4),
            "low": round(self.low, 4),
            "high": round(self.high, 4),
        }


def hour_effects(
    conn: Connection,
    account_id: int,
    settings: ERSettings,
    now: datetime,
    *,
    by_reach: bool,
) -> list[HourEffect]:
    """The account's engagement by local hour of posting, type effects taken out."""
    row = conn.execute(
        select(accounts_t.c.timezone).where(accounts_t.c.id == account_id)
    ).one_or_none()
    try:
        zone = ZoneInfo(row.timezone) if row is not None else ZoneInfo("UTC")
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    horizon = now - settings.half_life * HORIZON_HALF_LIVES
    posts = conn.execute(
        select(posts_t.c.id, posts_t.c.content_type, posts_t.c.published_at).where(
            posts_t.c.account_id == account_id,
            posts_t.c.state == PostState.PUBLISHED,
            posts_t.c.published_at >= horizon,
            posts_t.c.published_at <= now,
        )
    ).all()
    readings = post_readings(
        conn,
        [p.id for p in posts],
        ages=settings.ages,
        reach_accounts={account_id} if by_reach else set(),
    )
    logs = [
        (p.content_type, p.published_at.astimezone(zone).hour, math.log(readings[p.id]))
        for p in posts
        if readings.get(p.id, 0) > 0
    ]
    by_type: dict[str, list[float]] = defaultdict(list)
    for t, _, x in logs:
        by_type[t].append(x)
    means = {t: sum(v) / len(v) for t, v in by_type.items()}
    by_hour: dict[int, list[float]] = defaultdict(list)
    for t, hour, x in logs:
        by_hour[hour].append(x - means[t])
    residuals = [r for values in by_hour.values() for r in values]
    dof = len(residuals) - len(by_type)
    if dof < 2 or len(by_hour) < 2:
        return []
    spread = math.sqrt(sum(r * r for r in residuals) / dof)
    out = []
    for hour, values in sorted(by_hour.items()):
        mean = sum(values) / len(values)
        half = INTERVAL_Z * spread / math.sqrt(len(values))
        out.append(
            HourEffect(
                hour, len(values), math.exp(mean), math.exp(mean - half), math.exp(mean + half)
            )
        )
    return out


def slot_proposal(effects: list[HourEffect]) -> str | None:
    """A slot move the data supports, in words, or None: the best and the weakest hour with
    enough posts, when the best one's whole interval lies above the weakest one's."""
    counted = [e for e in effects if e.posts >= MIN_POSTS_PER_HOUR]
    if len(counted) < 2:
        return None
    best = max(counted, key=lambda e: e.factor)
    worst = min(counted, key=lambda e: e.factor)
    if best.low <= worst.high:
        return None
    ratio = best.factor / worst.factor
    return (
        f"posts at {best.hour:02d}:00 engaged {ratio:.1f}x those at {worst.hour:02d}:00 "
        f"({best.posts} and {worst.posts} posts, the same types compared): consider moving "
        f"the {worst.hour:02d}:00 slot toward {best.hour:02d}:00"
    )
