"""Evergreen recycling: when an account's queue runs short, best performers go out again.

An evergreen post and its repeats form a family: every repeat points at the original
(``recycled_from_id``), carries its repeat number (``repeat_count``) and the original's
group (``group_key``, when the original is one post of an item with several accounts). A
family is recycled when none of its posts is waiting, its last publication is at least
``cooldown`` old, and it has been repeated fewer than ``max_repeats`` times. Families are
taken best ER first; a family whose ER is unknown comes after every measured one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Connection, func, select

from scheduler.config import AccountConfig, ERSettings
from scheduler.db.models import Account, Post, PostEvent, PostState, Schedule
from scheduler.er.allocate import queue_order_for
from scheduler.er.readings import post_readings
from scheduler.er.recompute import has_reach
from scheduler.queue import assign_queue_slots

log = structlog.get_logger(__name__)

posts_t = Post.__table__  # type: ignore[attr-defined]
events_t = PostEvent.__table__  # type: ignore[attr-defined]
accounts_t = Account.__table__  # type: ignore[attr-defined]

DEFAULT_COOLDOWN = timedelta(days=30)
DEFAULT_MAX_REPEATS = 3
#: Recycle only when fewer queue posts than this wait (about a day of slots).
DEFAULT_MIN_QUEUE = 3

#: States in which a post still waits to go out (its family is not recycled meanwhile).
_WAITING = (
    PostState.QUEUED,
    PostState.CLAIMED,
    PostState.RETRY_WAIT,
    PostState.PAUSED,
    PostState.UNCONFIRMED,
)


@dataclass(frozen=True)
class Recycled:
    """A repeat created from an evergreen family."""

    post_id: int
    key: str
    original_key: str
    repeat: int
    er: float | None


def recycle_key(original_key: str, repeat: int) -> str:
    """``tip-12~r2``: the plan id of the ``repeat``-th repeat."""
    return f"{original_key}~r{repeat}"


def recycle_idempotency_key(original: str, repeat: int) -> str:
    """A fresh key for the repeat, derived from the original's so a re-run makes the same one."""
    return hashlib.sha256(f"{original}~r{repeat}".encode()).hexdigest()[:32]


@dataclass
class _Family:
    original: Any
    members: list[Any]

    def waiting(self) -> bool:
        return any(m.state in _WAITING for m in self.members)

    def last_published(self) -> datetime | None:
        times = [m.published_at for m in self.members if m.published_at is not None]
        return max(times) if times else None

    def repeats(self) -> int:
        return max(m.repeat_count for m in self.members)


def waiting_queue_posts(conn: Connection, account_id: int) -> int:
    """How many queue (not fixed-time) posts of the account wait for a slot."""
    return int(
        conn.execute(
            select(func.count()).where(
                posts_t.c.account_id == account_id,
                posts_t.c.schedule == Schedule.QUEUE,
                posts_t.c.state.in_((PostState.QUEUED, PostState.RETRY_WAIT, PostState.PAUSED)),
            )
        ).scalar_one()
    )


def _families(conn: Connection, account_id: int) -> list[_Family]:
    rows = conn.execute(
        select(posts_t).where(
            posts_t.c.account_id == account_id,
            posts_t.c.evergreen.is_(True),
            posts_t.c.state != PostState.CANCELLED,
        )
    ).all()
    originals = {r.id: r for r in rows if r.recycled_from_id is None}
    families = {i: _Family(r, [r]) for i, r in originals.items()}
    for r in rows:
        if r.recycled_from_id in families:
            families[r.recycled_from_id].members.append(r)
    return list(families.values())


def recycle_evergreen(
    conn: Connection,
    account_id: int,
    now: datetime,
    *,
    cooldown: timedelta = DEFAULT_COOLDOWN,
    max_repeats: int = DEFAULT_MAX_REPEATS,
    min_queue: int = DEFAULT_MIN_QUEUE,
    ages: Sequence[timedelta] = ERSettings().ages,
    account: AccountConfig | None = None,
) -> list[Recycled]:
    """Queue repeats of the best evergreen posts until ``min_queue`` queue posts wait.

    Runs in the caller's transaction. New posts wait unscheduled unless ``account`` (the
    account's config) is given, in which case the queue gets slots at once, by priority.
    """
    need = min_queue - waiting_queue_posts(conn, account_id)
    if need <= 0:
        return []
    ready = []
    for family in _families(conn, account_id):
        last = family.last_published()
        if family.waiting() or last is None or now - last < cooldown:
            continue
        if family.repeats() >= max_repeats:
            continue
        ready.append(family)
    if not ready:
        return []
    platform = conn.execute(
        select(accounts_t.c.platform).where(accounts_t.c.id == account_id)
    ).scalar_one()
    published = [m.id for f in ready for m in f.members if m.state == PostState.PUBLISHED]
    readings = post_readings(
        conn, published, ages=ages, reach_accounts={account_id} if has_reach(platform) else set()
    )

    def score(family: _Family) -> float | None:
        ers = [readings[m.id] for m in family.members if m.id in readings]
        return sum(ers) / len(ers) if ers else None

    scored = [(score(f), f) for f in ready]
    scored.sort(key=lambda sf: (sf[0] is None, -(sf[0] or 0.0), sf[1].original.key))
    next_order = (
        conn.execute(
            select(func.max(posts_t.c.plan_order)).where(posts_t.c.account_id == account_id)
        ).scalar()
        or 0
    ) + 1
    made: list[Recycled] = []
    for er, family in scored:
        if len(made) == need:
            break
        made_one = _repeat(conn, family, er, next_order + len(made), now)
        if made_one is not None:
            made.append(made_one)
    if made and account is not None:
        assign_queue_slots(conn, account, account_id, now, order=queue_order_for(conn, account_id))
    return made


def _repeat(
    conn: Connection, family: _Family, er: float | None, plan_order: int, now: datetime
) -> Recycled | None:
    o = family.original
    repeat = family.repeats() + 1
    key = recycle_key(o.key, repeat)
    if conn.execute(select(posts_t.c.id).where(posts_t.c.key == key)).first() is not None:
        log.warning("recycle_key_taken", key=key, original=o.key)
        return None
    result = conn.execute(
        posts_t.insert().values(
            key=key,
            account_id=o.account_id,
            content_type=o.content_type,
            text=o.text,
            media=list(o.media or ()),
            media_meta=o.media_meta,
            post_options=o.post_options,
            link=o.link,
            tags=list(o.tags or ()),
            evergreen=True,
            schedule=Schedule.QUEUE,
            plan_order=plan_order,
            # No plan file: a re-import with --prune must not cancel a repeat it never listed.
            plan_file=None,
            source=f"recycled from {o.key}",
            content_hash=o.content_hash,
            state=PostState.QUEUED,
            idempotency_key=recycle_idempotency_key(o.idempotency_key, repeat),
            attempt_count=0,
            repeat_count=repeat,
            recycled_from_id=o.id,
            # A repeat of one post of a several-account item is still that item's: it is
            # named, listed and acted on with the item's id, as its original is.
            group_key=o.group_key,
            created_at=now,
            updated_at=now,
        )
    )
    assert result.inserted_primary_key is not None
    post_id = int(result.inserted_primary_key[0])
    why = f"evergreen repeat {repeat} of {o.key}" + (
        f" (ER {er * 100:.1f}%)" if er is not None else " (ER unknown)"
    )
    conn.execute(
        events_t.insert().values(
            post_id=post_id,
            at=now,
            from_state=None,
            to_state=PostState.QUEUED,
            actor="er",
            reason=why,
        )
    )
    return Recycled(post_id, key, o.key, repeat, er)
