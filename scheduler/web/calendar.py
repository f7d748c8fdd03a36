"""The calendar's reading of the queue: the posts of a week or a month, filtered, a page at a time.

A page is two range reads, merged: the posts the daemon will take (``queued``, ``retry_wait``)
by their next attempt time through the daemon's own ``ix_posts_due``, every other post by its
due time through ``ix_posts_calendar``. A plan import writes only the first index (the second
leaves out the states new posts start in), so the calendar costs an import nothing. Pages
follow the key (the last row's time and id), never an offset, so the hundredth page of a busy
month costs what the first does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, and_, func, or_, select, text, union_all

from scheduler.db.models import PostState, Schedule
from scheduler.er.html import PALETTE, styles_for
from scheduler.queue import AWAITING_APPROVAL, HOLDING_STATES, accounts_t, posts_t
from scheduler.states import CALENDAR_STATES, DUE_STATES, sql_in
from scheduler.timeutil import UTC

#: Posts shown per page of a calendar view.
PAGE = 400
AWAITING_SQL = sql_in(AWAITING_APPROVAL, "posts.state")
DUE_SQL = sql_in(DUE_STATES, "posts.state")
CALENDAR_SQL = sql_in(CALENDAR_STATES, "posts.state")
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def type_colours(conn: Connection) -> dict[str, str]:
    """Each content type in the queue and its colour: the ER report's colours (Okabe-Ito, by
    sorted name), so that a type looks the same on the calendar and on the report."""
    types = conn.execute(select(posts_t.c.content_type).distinct()).scalars().all()
    return {t: style.colour for t, style in styles_for(types).items()}


def fallback_colour(content_type: str) -> str:
    """A colour for a type new since ``type_colours`` was read: stable, from its name."""
    digest = hashlib.blake2s(content_type.encode(), digest_size=2).digest()
    return PALETTE[int.from_bytes(digest) % len(PALETTE)]


@dataclass(frozen=True)
class Filters:
    """What the viewer narrowed the calendar to (all optional)."""

    account: str | None = None
    network: str | None = None
    content_type: str | None = None
    states: tuple[str, ...] = ()
    text: str | None = None


@dataclass(frozen=True)
class Cursor:
    """Where the next page starts: after this due time and post id."""

    due_at: datetime
    post_id: int

    def encode(self) -> str:
        return f"{self.due_at.astimezone(UTC).isoformat()}~{self.post_id}"

    @classmethod
    def decode(cls, text: str | None) -> Cursor | None:
        if not text or "~" not in text:
            return None
        when, _, ident = text.rpartition("~")
        try:
            due = datetime.fromisoformat(when)
            return cls(due if due.tzinfo else due.replace(tzinfo=UTC), int(ident))
        except ValueError:
            return None


@dataclass
class Entry:
    """One post on the calendar."""

    id: int
    key: str
    account: str
    platform: str
    account_zone: str
    content_type: str
    state: str
    due_at: datetime
    text: str
    local: datetime  # in the viewer's zone
    account_local: datetime

    @property
    def other_zone(self) -> bool:
        return self.local.utcoffset() != self.account_local.utcoffset()


@dataclass
class Day:
    day: date
    entries: list[Entry] = field(default_factory=list)


@dataclass
class Page:
    """A calendar page: its days (in the viewer's zone) and where the next page starts."""

    view: str
    start: date
    end: date  # exclusive
    days: list[Day]
    shown: int
    next_cursor: Cursor | None


def week_start(d: date) -> date:
    return d - timedelta(days=d.weekday())


def span(view: str, anchor: date) -> tuple[date, date]:
    """``[first day, day after the last)`` of the week (from Monday) or month of ``anchor``;
    a month view shows whole weeks."""
    if view == "month":
        first = anchor.replace(day=1)
        nxt = (first + timedelta(days=32)).replace(day=1)
        return week_start(first), week_start(nxt - timedelta(days=1)) + timedelta(days=7)
    start = week_start(anchor)
    return start, start + timedelta(days=7)


def _instant(d: date, tz: ZoneInfo) -> datetime:
    # Midnight exists in every zone the calendar is read in except a few with DST at 00:00;
    # ``fold=0`` and normalising through UTC take the first valid instant.
    return datetime.combine(d, time(0), tzinfo=tz).astimezone(UTC)


def read_page(
    conn: Connection,
    view: str,
    anchor: date,
    tz: ZoneInfo,
    filters: Filters,
    after: Cursor | None = None,
    limit: int = PAGE,
) -> Page:
    """The posts due in the view's span (in ``tz``), in due order, ``limit`` at a time."""
    first, end = span(view, anchor)
    lo, hi = _instant(first, tz), _instant(end, tz)
    parts = [
        _part(posts_t.c.next_attempt_at, DUE_SQL, lo, hi, filters, after, limit),
        _part(posts_t.c.due_at, CALENDAR_SQL, lo, hi, filters, after, limit),
    ]
    # Each part in its own subquery: a compound select may not order or limit its members.
    merged = union_all(*(select(part.subquery()) for part in parts)).subquery()
    rows = conn.execute(
        select(merged).order_by(merged.c.due_at, merged.c.id).limit(limit + 1)
    ).all()
    more = len(rows) > limit
    rows = rows[:limit]
    days = [Day(first + timedelta(days=i)) for i in range((end - first).days)]
    by_day = {d.day: d for d in days}
    zones: dict[str, ZoneInfo] = {}
    for r in rows:
        local = r.due_at.astimezone(tz)
        azone = zones.get(r.timezone)
        if azone is None:
            azone = zones[r.timezone] = _zone_or_utc(r.timezone)
        entry = Entry(
            r.id,
            r.key,
            r.account,
            r.platform,
            r.timezone,
            r.content_type,
            r.state,
            r.due_at,
            " ".join(r.text.split()),
            local,
            r.due_at.astimezone(azone),
        )
        day = by_day.get(local.date())
        if day is not None:
            day.entries.append(entry)
    last = rows[-1] if rows else None
    return Page(
        view,
        first,
        end,
        days,
        len(rows),
        Cursor(last.due_at, last.id) if more and last is not None else None,
    )


def _part(
    at: Any,
    states_sql: str,
    lo: datetime,
    hi: datetime,
    filters: Filters,
    after: Cursor | None,
    limit: int,
) -> Any:
    """One of the page's two range reads: the posts in ``states_sql`` by the time ``at``.

    The states are written out, not bound: only then may the database read the partial
    index whose condition they spell."""
    q = (
        select(
            posts_t.c.id,
            posts_t.c.key,
            posts_t.c.content_type,
            posts_t.c.state,
            at.label("due_at"),
            func.substr(posts_t.c.text, 1, 160).label("text"),
            accounts_t.c.name.label("account"),
            accounts_t.c.platform,
            accounts_t.c.timezone,
        )
        .join(accounts_t, accounts_t.c.id == posts_t.c.account_id)
        .where(text(states_sql), at >= lo, at < hi)
    )
    if after is not None:
        q = q.where(or_(at > after.due_at, and_(at == after.due_at, posts_t.c.id > after.post_id)))
    if filters.account:
        q = q.where(accounts_t.c.name == filters.account)
    if filters.network:
        q = q.where(accounts_t.c.platform == filters.network)
    if filters.content_type:
        q = q.where(posts_t.c.content_type == filters.content_type.lower())
    if filters.states:
        q = q.where(posts_t.c.state.in_(filters.states))
    if filters.text:
        needle = filters.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        q = q.where(posts_t.c.text.ilike(f"%{needle}%", escape="\\"))
    return q.order_by(at, posts_t.c.id).limit(limit + 1)


def _zone_or_utc(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except Exception:  # an account row from an older config: show UTC rather than fail
        return ZoneInfo("UTC")


@dataclass(frozen=True)
class AheadWarning:
    """An account whose queue runs further ahead than the horizon."""

    account: str
    last_due: datetime
    beyond: int


def beyond_horizon(conn: Connection, now: datetime, horizon: timedelta) -> list[AheadWarning]:
    """Accounts with posts waiting for a slot that is after ``now + horizon``: how many, and
    the last one.

    Only posts that took a slot count: a time the plan (or a reschedule) gave is meant, and
    says nothing of whether the slots can carry the plan. Reads only the posts past the
    horizon (a range of ``ix_posts_due_at``)."""
    limit = now + horizon
    rows = conn.execute(
        select(
            accounts_t.c.name.label("account"),
            func.max(posts_t.c.due_at).label("last_due"),
            func.count().label("beyond"),
        )
        .join(accounts_t, accounts_t.c.id == posts_t.c.account_id)
        .where(
            posts_t.c.due_at > limit,
            posts_t.c.state.in_(HOLDING_STATES),
            posts_t.c.schedule == Schedule.QUEUE.value,
        )
        .group_by(accounts_t.c.name)
        .order_by(accounts_t.c.name)
    ).all()
    return [AheadWarning(r.account, r.last_due, r.beyond) for r in rows]


def awaiting_approval(conn: Connection, limit: int = 50) -> list[Any]:
    """Posts waiting for sign-off, soonest first (the approver's to-do list)."""
    return list(
        conn.execute(
            select(
                posts_t.c.key,
                posts_t.c.state,
                posts_t.c.due_at,
                posts_t.c.content_type,
                accounts_t.c.name.label("account"),
                # What the approver signs off, at a glance (the post's page has the rest).
                func.substr(posts_t.c.text, 1, 160).label("text"),
            )
            .join(accounts_t, accounts_t.c.id == posts_t.c.account_id)
            # Written out, not bound: only then may the database read the partial index
            # ``ix_posts_awaiting`` (its condition must match the query's literally).
            .where(text(AWAITING_SQL))
            .order_by(posts_t.c.due_at, posts_t.c.id)
            .limit(limit)
        ).all()
    )


def choices(conn: Connection) -> dict[str, Sequence[str]]:
    """What the filters offer: accounts and networks from the accounts table, the states."""
    accounts = conn.execute(
        select(accounts_t.c.name, accounts_t.c.platform).order_by(accounts_t.c.name)
    ).all()
    return {
        "accounts": [a.name for a in accounts],
        "networks": sorted({a.platform for a in accounts}),
        "states": [s.value for s in PostState],
    }
