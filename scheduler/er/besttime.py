"""Best time to post, for every account, from the joint model of type and hour.

The model slot learning moves slots by (``scheduler.er.hours``: each post's log ER as a type
effect plus an hour-of-week effect, shrunk, neighbouring hours tied) is fitted to the
account's own readings for ``smm er`` too, whether the account learns or not:

- an account that learns its slots (``learn`` windows) moves them itself; ``smm er`` shows the
  moves from the decision log (``scheduler.er.slotjob.slot_history``);
- any other account gets proposals: a slot whose hour's whole 90 % interval lies below the
  whole interval of an hour the account has posted at (``slotlearn.clearly_above``), the same
  kind of day, is proposed to move there. Nothing is said of an hour with too few posts, and
  hours whose intervals overlap are not told apart.

An account without a slots table (fixed-time posts only, or no config at hand) is told about
its best and weakest hour of each kind of day, when they are told apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Connection, select

from scheduler.config import AccountConfig, ERSettings
from scheduler.db.models import Account
from scheduler.er.hours import HourModel, fit, kind_of
from scheduler.er.slotjob import observations
from scheduler.er.slotlearn import clearly_above, days_words
from scheduler.er.stats import INTERVAL_Z
from scheduler.learned_slots import current_slots, slot_decisions_t
from scheduler.slots import MIN_GAP, WeekTable

accounts_t = Account.__table__  # type: ignore[attr-defined]

#: Posts an hour needs before anything is said of it.
MIN_POSTS_PER_HOUR = 5
KINDS = ("weekdays", "weekend")


@dataclass(frozen=True)
class Proposal:
    """Move the ``old`` slot (None: posting at ``old_hour`` without a slot table) to ``new``
    on ``days``, because posts at ``new`` engaged ``factor`` times those at ``old``."""

    days: tuple[int, ...]
    old_hour: int
    old: time | None
    new: time
    factor: float
    posts_old: int
    posts_new: int

    def words(self) -> str:
        old = f"{self.old_hour:02d}:00"
        advice = (
            f"consider moving the {self.old:%H:%M} slot to {self.new:%H:%M}"
            if self.old is not None
            else f"consider posting at {self.new:%H:%M} rather than {old}"
        )
        return (
            f"{days_words(self.days)}: posts at {self.new:%H:%M} engaged {self.factor:.1f}x "
            f"those at {old}, their types taken into account ({self.posts_new} posts at "
            f"{self.new:%H:%M}, {self.posts_old} at {old}): {advice}."
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "days": list(self.days),
            "from": f"{self.old:%H:%M}" if self.old is not None else f"{self.old_hour:02d}:00",
            "to": f"{self.new:%H:%M}",
            "factor": round(self.factor, 4),
            "posts_from": self.posts_old,
            "posts_to": self.posts_new,
        }


def account_model(
    conn: Connection,
    account_id: int,
    account: AccountConfig | None,
    settings: ERSettings,
    now: datetime,
    *,
    by_reach: bool,
) -> HourModel:
    """The joint model of type and hour fitted to the account's readings (its local time:
    the config's timezone, or the one stored with the account)."""
    if account is not None:
        zone = account.tz
    else:
        name = conn.execute(
            select(accounts_t.c.timezone).where(accounts_t.c.id == account_id)
        ).scalar()
        try:
            zone = ZoneInfo(name or "UTC")
        except (ZoneInfoNotFoundError, ValueError):
            zone = ZoneInfo("UTC")
    return fit(observations(conn, zone, account_id, settings, now, reach=by_reach))


def hour_rows(model: HourModel) -> list[dict[str, Any]]:
    """The statistics behind the proposals: each kind of day and hour the account posted at,
    with its posts and factor (how its posts engaged against the same types at an average
    hour) and the factor's 90 % interval."""
    out = []
    for kind, hour in sorted(model.counts):
        e = model.effect((kind, hour))
        out.append(
            {
                "days": KINDS[kind],
                "hour": hour,
                "posts": model.posts_at((kind, hour)),
                "factor": round(e.factor, 4),
                "low": round(math.exp(e.mean - INTERVAL_Z * e.sd), 4),
                "high": round(math.exp(e.mean + INTERVAL_Z * e.sd), 4),
            }
        )
    return out


def propose(model: HourModel, table: WeekTable | None) -> list[Proposal]:
    """The slot moves the data supports (see the module docstring), the days that make the
    same move together."""
    counted = {
        b: model.effect(b).mean for b in model.counts if model.posts_at(b) >= MIN_POSTS_PER_HOUR
    }
    grouped: dict[tuple[int, time | None, time, int], list[int]] = {}
    if not table or not any(table.values()):
        for kind in (0, 1):
            hours = {h: m for (k, h), m in counted.items() if k == kind}
            if len(hours) < 2:
                continue
            best, worst = max(hours, key=hours.__getitem__), min(hours, key=hours.__getitem__)
            if clearly_above(model, (kind, best), (kind, worst)):
                days = [0, 1, 2, 3, 4] if kind == 0 else [5, 6]
                grouped[(worst, None, time(best), kind)] = days
    else:
        for day in sorted(table):
            kind = kind_of(day)
            for slot, to in _day_moves(model, counted, kind, table[day]):
                grouped.setdefault((slot.hour, slot, to, kind), []).append(day)
    out = []
    for (old_hour, old, new, kind), days in sorted(grouped.items(), key=lambda g: g[1][0]):
        gap = model.effect((kind, new.hour)).mean - model.effect((kind, old_hour)).mean
        out.append(
            Proposal(
                tuple(days),
                old_hour,
                old,
                new,
                math.exp(gap),
                model.posts_at((kind, old_hour)),
                model.posts_at((kind, new.hour)),
            )
        )
    return out


def _day_moves(
    model: HourModel, counted: dict[tuple[int, int], float], kind: int, slots: tuple[time, ...]
) -> list[tuple[time, time]]:
    """One day's moves: its weakest slots first, each to the best counted hour clearly above
    it that keeps an hour from the day's other slots."""
    gap = int(MIN_GAP.total_seconds() // 60)
    day = list(slots)
    moves = []
    for old in sorted(slots, key=lambda t: model.effect((kind, t.hour)).mean):
        others = [t for t in day if t != old]
        options = [
            (mean, h)
            for (k, h), mean in counted.items()
            if k == kind
            and h != old.hour
            and all(abs(h * 60 - (t.hour * 60 + t.minute)) >= gap for t in others)
            and clearly_above(model, (kind, h), (kind, old.hour))
        ]
        if not options:
            continue
        new = time(max(options)[1])
        day = [*others, new]
        moves.append((old, new))
    return moves


def best_time(
    conn: Connection,
    account_id: int,
    account: AccountConfig | None,
    settings: ERSettings,
    now: datetime,
    *,
    by_reach: bool,
) -> dict[str, Any]:
    """``smm er``'s best time to post: whether the account learns its slots, the proposals
    (none for an account that learns: it moves its slots itself) in words and as data, and
    the hours behind them."""
    model = account_model(conn, account_id, account, settings, now, by_reach=by_reach)
    learns = bool(account.learn) if account is not None else _has_learned(conn, account_id)
    table = current_slots(conn, account, account_id)[0] if account is not None else None
    proposals = [] if learns else propose(model, table)
    return {
        "learns_slots": learns,
        "hours": hour_rows(model),
        "slot_proposal": " ".join(p.words() for p in proposals) or None,
        "slot_proposals": [p.as_dict() for p in proposals],
    }


def _has_learned(conn: Connection, account_id: int) -> bool:
    """Without the account's config at hand: whether it has slot decisions (it learns)."""
    found = conn.execute(
        select(slot_decisions_t.c.id).where(slot_decisions_t.c.account_id == account_id).limit(1)
    ).first()
    return found is not None
