"""Slot learning in the daemon: read an account's outcomes, decide, write the decision.

The ER job calls ``learn_slots`` for every account with learning windows, in the same
transaction that then gives the queue posts their slots (``scheduler.er.jobs``): the new
table and the moved posts are written together or not at all, and only posts still queued
move (a post a daemon has claimed keeps its time: ``scheduler.queue.write_slot_times``).
A decision is made at most once per local day: the new table holds from the account's next
local midnight, and until then the day keeps the slots it started with.
"""

from __future__ import annotations

import math
import random
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy import Connection, and_, or_, select

from scheduler.config import AccountConfig, ERSettings
from scheduler.db.models import Account, PostState, PriorityDecision
from scheduler.er.hours import HourModel, Observation, fit
from scheduler.er.readings import _band_of, er_sql, posts_t, reading_windows, snapshots_t
from scheduler.er.slotlearn import SlotDecision, decide
from scheduler.er.stats import HORIZON_HALF_LIVES
from scheduler.learned_slots import current_slots, slot_decisions_t, table_as_json
from scheduler.timeutil import localize

log = structlog.get_logger(__name__)

decisions_t = PriorityDecision.__table__  # type: ignore[attr-defined]
accounts_t = Account.__table__  # type: ignore[attr-defined]


def by_reach(conn: Connection, account_id: int) -> bool:
    """Whether the account's ER is by reach, as its latest recompute found."""
    inputs = conn.execute(
        select(decisions_t.c.inputs)
        .where(decisions_t.c.account_id == account_id)
        .order_by(decisions_t.c.id.desc())
        .limit(1)
    ).scalar()
    return isinstance(inputs, dict) and inputs.get("basis") == "reach"


def observations(
    conn: Connection,
    tz: ZoneInfo,
    account_id: int,
    settings: ERSettings,
    now: datetime,
    *,
    reach: bool,
) -> list[Observation]:
    """Each post's latest reading (by ``settings.ages``) on the log scale, with its decay
    weight and its local weekday and hour of posting (in ``tz``)."""
    windows = reading_windows(settings.ages)
    if not windows:
        return []
    hl = settings.half_life.total_seconds()
    horizon = now - settings.half_life * HORIZON_HALF_LIVES
    s, p = snapshots_t, posts_t
    mine = (
        p.c.account_id == account_id,
        p.c.state == PostState.PUBLISHED,
        p.c.published_at >= horizon,
        p.c.published_at <= now,
    )
    # Only the readings inside a configured age band are read, and each post's time once:
    # a post has a reading every few hours, and a timestamp per reading cost more than the fit.
    in_band = or_(*(and_(s.c.age_seconds >= lo, s.c.age_seconds < hi) for lo, hi in windows))
    rows = conn.execute(
        select(s.c.post_id, s.c.age_seconds, er_sql(s, p).label("er"))
        .select_from(s.join(p, p.c.id == s.c.post_id))
        .where(*mine, in_band)
        .order_by(s.c.post_id, s.c.age_seconds),
        {"reach": [account_id] if reach else []},
    )
    best: dict[int, tuple[int, float]] = {}
    for row in rows:
        band = _band_of(row.age_seconds, windows)
        if band is None or row.er is None or row.er <= 0:
            continue
        held = best.get(row.post_id)
        if held is None or band > held[0]:  # the latest band, its first reading
            best[row.post_id] = (band, float(row.er))
    if not best:
        return []
    out = []
    for post_id, ctype, published in conn.execute(
        select(p.c.id, p.c.content_type, p.c.published_at).where(*mine)
    ):
        found = best.get(post_id)
        if found is None:
            continue
        band, er = found
        local = published.astimezone(tz)
        age = (now - published).total_seconds()
        out.append(
            Observation(ctype, local.weekday(), local.hour, band, math.log(er), 0.5 ** (age / hl))
        )
    return out


def next_midnight(account: AccountConfig, now: datetime) -> datetime:
    """The account's next local midnight (``now`` itself when it is one)."""
    local = now.astimezone(account.tz)
    day = local.date() if local.time() == time(0) else local.date() + timedelta(days=1)
    return localize(datetime.combine(day, time(0)), account.tz, gap="forward")


def learn_slots(
    conn: Connection,
    account: AccountConfig,
    account_id: int,
    now: datetime,
    settings: ERSettings,
    rng: random.Random | None = None,
) -> SlotDecision | None:
    """Decide the account's slots from its next local midnight on, and record the decision
    (None: the account does not learn, or today's decision is made)."""
    if not account.learn:
        return None
    # Several daemons on one PostgreSQL database: the account's row lock makes the second
    # wait for the first's decision and then find it (SQLite's write lock does this already).
    conn.execute(select(accounts_t.c.id).where(accounts_t.c.id == account_id).with_for_update())
    pending = conn.execute(
        select(slot_decisions_t.c.id).where(
            slot_decisions_t.c.account_id == account_id,
            slot_decisions_t.c.effective_from > now,
        )
    ).first()
    if pending is not None:
        return None
    table, _ = current_slots(conn, account, account_id)
    model: HourModel = fit(
        observations(conn, account.tz, account_id, settings, now, reach=by_reach(conn, account_id))
    )
    rng = rng or random.Random(f"{account_id}|{now.isoformat()}")
    decision = decide(model, table, account.learn, rng)
    effective = next_midnight(account, now)
    moves: list[dict[str, Any]] = [m.as_dict() for m in decision.moves]
    conn.execute(
        slot_decisions_t.insert().values(
            account_id=account_id,
            created_at=now,
            effective_from=effective,
            old_slots=table_as_json(decision.old),
            new_slots=table_as_json(decision.new),
            moves=moves,
            summary=decision.summary(),
            details=dict(decision.details),
        )
    )
    if decision.changed:
        log.info(
            "slots_learned",
            account=account.name,
            effective_from=effective.isoformat(),
            moves=len(moves),
            summary=decision.summary(),
        )
    return decision


def slot_history(conn: Connection, account_id: int, limit: int = 5) -> list[dict[str, Any]]:
    """The account's latest slot decisions, newest first, as ``smm er --json`` gives them."""
    rows = conn.execute(
        select(slot_decisions_t)
        .where(slot_decisions_t.c.account_id == account_id)
        .order_by(slot_decisions_t.c.id.desc())
        .limit(limit)
    ).all()
    return [
        {
            "at": r.created_at,
            "effective_from": r.effective_from,
            "slots": r.new_slots,
            "moves": r.moves,
            "summary": r.summary,
            "details": r.details,
        }
        for r in rows
    ]
