"""One published post's engagement, reading by reading: what `smm queue show` and the web
app's post page show beside its attempts.

Each reading is a metric snapshot at one age of the post (the metrics job reads a post at
the configured ages over its 2-3 day life); its engagements and ER are worked out as the ER
loop works them out (``scheduler.er.stats``): by reach where the network reports it, else by
the followers the account had when the post went out.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, select

from scheduler.db.models import MetricSnapshot
from scheduler.er.stats import engagement_rate, engagements

__all__ = ["PostReading", "post_readings"]

snapshots_t = MetricSnapshot.__table__  # type: ignore[attr-defined]

#: Readings shown at most (a post is read at a handful of ages; this bounds a bad table).
LIMIT = 50


@dataclass(frozen=True)
class PostReading:
    """The counters of one reading (None: the network does not tell), its engagements
    and its ER (a fraction; None when neither reach nor followers are known)."""

    hours: float
    likes: int | None
    comments: int | None
    shares: int | None
    #: Reach, else impressions, else views: the people the network says saw the post.
    seen: int | None
    engagements: int | None
    er: float | None

    @property
    def age(self) -> str:
        """The post's age at the reading: ``1 h``, ``72 h``, ``45 min``."""
        if self.hours < 1:
            return f"{round(self.hours * 60)} min"
        return f"{self.hours:.0f} h" if self.hours == round(self.hours) else f"{self.hours:.1f} h"


def post_readings(
    conn: Connection, post_id: int, *, by_reach: bool, followers_at_publish: int | None
) -> list[PostReading]:
    """The post's readings, youngest first. ``by_reach``: the network reports reach (its
    ``Capabilities.has_reach``), so ER is by reach, else by followers."""
    rows = conn.execute(
        select(snapshots_t)
        .where(snapshots_t.c.post_id == post_id)
        .order_by(snapshots_t.c.age_seconds, snapshots_t.c.id)
        .limit(LIMIT)
    ).all()
    return [
        PostReading(
            hours=r.age_seconds / 3600,
            likes=r.likes,
            comments=r.comments,
            shares=r.shares,
            seen=next((v for v in (r.reach, r.impressions, r.views) if v is not None), None),
            engagements=engagements(r),
            er=engagement_rate(r, by_reach=by_reach, followers_at_publish=followers_at_publish),
        )
        for r in rows
    ]
