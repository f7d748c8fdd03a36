"""Queue operations shared by the plan importer, the CLI and the daemon.

Each operation runs inside the caller's transaction and records a ``PostEvent`` for every
state it changes, so ``smm queue show`` can tell a post's whole story.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, and_, bindparam, or_, select, text, update

from scheduler.config import AccountConfig
from scheduler.db.models import Account, Attempt, Post, PostEvent, PostState, Schedule
from scheduler.errors import NotFound, SmmError, excerpt
from scheduler.learned_slots import slot_plan
from scheduler.post_ids import split_ref
from scheduler.slots import SlotPlan, free_plan_slots, minute
from scheduler.states import AWAITING_APPROVAL as AWAITING_APPROVAL
from scheduler.states import CALENDAR_STATES, DUE_STATES, RETRYABLE, allowed, sql_in
from scheduler.states import CANCELLABLE as CANCELLABLE
from scheduler.states import HOLDING_STATES as HOLDING_STATES
from scheduler.timeutil import UTC

posts_t = Post.__table__  # type: ignore[attr-defined]
attempts_t = Attempt.__table__  # type: ignore[attr-defined]
events_t = PostEvent.__table__  # type: ignore[attr-defined]
accounts_t = Account.__table__  # type: ignore[attr-defined]

#: The PostgreSQL notification channel on which writers tell daemons that posts may be due
#: sooner than they think (see ``scheduler.daemon.notices``).
CHANNEL = "smm_queue"


def announce(conn: Connection) -> None:
    """Tell running daemons to look at the queue now: on PostgreSQL a NOTIFY, delivered when
    the caller's transaction commits (and dropped with it); on SQLite nothing is needed, the
    daemons notice any commit."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"NOTIFY {CHANNEL}")


class InvalidTransition(SmmError):
    """The post is in a state the operation cannot start from."""


@dataclass(frozen=True)
class Change:
    """One post moved from one state to another by an operation."""

    post_id: int
    key: str
    from_state: str
    to_state: str

    def as_json(self) -> dict[str, str]:
        """The change as ``--json`` prints it."""
        return {"id": self.key, "from": self.from_state, "to": self.to_state}


def record_events(
    conn: Connection, changes: Iterable[Change], now: datetime, actor: str, reason: str | None
) -> None:
    rows = [
        {
            "post_id": c.post_id,
            "at": now,
            "from_state": c.from_state,
            "to_state": c.to_state,
            "actor": actor,
            "reason": reason,
        }
        for c in changes
    ]
    if rows:
        conn.execute(events_t.insert(), rows)


@dataclass
class QueueEntry:
    """A post that waits for a slot: already stored (``id``) or about to be (``row``)."""

    id: int | None
    plan_order: int
    content_type: str
    due_at: datetime | None
    row: dict[str, Any] | None = None


#: Orders an account's waiting queue posts; the ER loop supplies a priority-aware one.
QueueOrder = Callable[[Sequence[QueueEntry]], Sequence[QueueEntry]]


def plan_order(entries: Sequence[QueueEntry]) -> Sequence[QueueEntry]:
    """The default queue order: as the plan lists the posts."""
    return sorted(entries, key=lambda e: (e.plan_order, e.id or 0))


def assign_queue_slots(
    conn: Connection,
    account: AccountConfig,
    account_id: int,
    now: datetime,
    *,
    include_overdue: bool = False,
    order: QueueOrder = plan_order,
    new_rows: Sequence[dict[str, Any]] = (),
) -> int:
    """Give the account's waiting queue posts the next free slots, in ``order``.

    ``new_rows`` are queue posts about to be inserted: they take part in the ordering and get
    their ``due_at`` set in place, so a large import writes each row once. Posts whose slot is
    already due are left alone (the daemon and its misfire policy own them) unless
    ``include_overdue``. Returns how many stored posts got a new time.
    """
    updates = plan_queue_slots(
        account,
        holding_posts(conn, [account_id]).get(account_id, []),
        now,
        include_overdue=include_overdue,
        order=order,
        new_rows=new_rows,
        plan=slot_plan(conn, account, account_id) if account.learn else None,
    )
    write_slot_times(conn, updates, now)
    return len(updates)


def holding_posts(conn: Connection, account_ids: Sequence[int]) -> dict[int, list[Any]]:
    """The posts that hold a time (or wait for one), by account: what slot planning reads."""
    found: dict[int, list[Any]] = {}
    if not account_ids:
        return found
    rows = conn.execute(
        select(
            posts_t.c.id,
            posts_t.c.account_id,
            posts_t.c.schedule,
            posts_t.c.state,
            posts_t.c.due_at,
            posts_t.c.plan_order,
            posts_t.c.content_type,
        ).where(posts_t.c.account_id.in_(account_ids), posts_t.c.state.in_(HOLDING_STATES))
    )
    for row in rows:
        found.setdefault(row.account_id, []).append(row)
    return found


def plan_queue_slots(
    account: AccountConfig,
    rows: Sequence[Any],
    now: datetime,
    *,
    include_overdue: bool = False,
    order: QueueOrder = plan_order,
    new_rows: Sequence[dict[str, Any]] = (),
    new_taken: Iterable[datetime] = (),
    plan: SlotPlan | None = None,
) -> list[tuple[int, datetime | None]]:
    """``assign_queue_slots`` without the database: ``rows`` are the account's
    ``holding_posts``; sets the new rows' times in place and returns (post id, new time) of
    the stored posts that move. ``new_taken``: times of new fixed-time posts not in
    ``new_rows`` (their slots are taken too). ``plan``: the weekly tables to follow instead
    of the config's slots (an account that learns its slots, ``scheduler.learned_slots``)."""
    plan = plan if plan is not None else [(None, account.slots)]
    entries = [
        QueueEntry(r.id, r.plan_order, r.content_type, r.due_at)
        for r in rows
        if r.schedule == Schedule.QUEUE
        and r.state == PostState.QUEUED
        and (include_overdue or r.due_at is None or r.due_at > now)
    ]
    moving = {e.id for e in entries}
    taken = {minute(r.due_at) for r in rows if r.id not in moving and r.due_at is not None}
    taken |= {minute(r["due_at"]) for r in new_rows if r["due_at"] is not None}
    taken.update(map(minute, new_taken))
    waiting = [r for r in new_rows if r["schedule"] == Schedule.QUEUE]
    times: list[datetime | None]
    if not entries and order is plan_order and _in_plan_order(waiting):
        # Nothing stored moves and the new rows come in plan order (a plan's first import):
        # they take the free slots as they are.
        times = list(free_plan_slots(plan, account.tz, now, taken, len(waiting)))
        times += [None] * (len(waiting) - len(times))  # no slots: they wait unscheduled
        for row, t in zip(waiting, times, strict=True):
            row["due_at"] = row["next_attempt_at"] = t
        return []
    entries += [QueueEntry(None, r["plan_order"], r["content_type"], None, r) for r in waiting]
    ordered = order(entries)
    times = list(free_plan_slots(plan, account.tz, now, taken, len(ordered)))
    # Queue posts that found no slot (an account without slots) wait unscheduled.
    times += [None] * (len(ordered) - len(times))
    updates: list[tuple[int, datetime | None]] = []
    for entry, t in zip(ordered, times, strict=True):
        if entry.row is not None:
            entry.row["due_at"] = entry.row["next_attempt_at"] = t
        elif entry.due_at != t:
            assert entry.id is not None
            updates.append((entry.id, t))
    return updates


def _in_plan_order(rows: Sequence[dict[str, Any]]) -> bool:
    return all(a["plan_order"] < b["plan_order"] for a, b in itertools.pairwise(rows))


def write_slot_times(
    conn: Connection, updates: Sequence[tuple[int, datetime | None]], now: datetime
) -> None:
    """Store what ``plan_queue_slots`` moved. Only posts still queued move: one a daemon
    claimed meanwhile keeps its time (the claim is the daemon's, never a slot's)."""
    if updates:
        conn.execute(
            update(posts_t)
            .where(posts_t.c.id == bindparam("b_id"), posts_t.c.state == PostState.QUEUED)
            .values(due_at=bindparam("b_due"), next_attempt_at=bindparam("b_due"), updated_at=now),
            [{"b_id": post_id, "b_due": due} for post_id, due in updates],
        )


# --------------------------------------------------------------------------- lookups


def _post_query() -> Any:
    cols = [posts_t, accounts_t.c.name.label("account")]
    return select(*cols).join(accounts_t, accounts_t.c.id == posts_t.c.account_id)


def find_posts(conn: Connection, refs: Sequence[str]) -> list[Row[Any]]:
    """Posts named by plan id (or by numeric database id); NotFound lists what is missing.

    The id of an item that names several accounts names each of its posts (its group, in
    the order they were made); ``ITEM@ACCOUNT`` names one of them, and also the post of an item with
    one account, on that account."""
    found = _lookup(conn, refs)
    return [row for ref in refs for row in found[ref]]


#: Unknown ids a "no post" message quotes before it counts the others.
_MISSING_SHOWN = 10
#: Ids looked up by one statement: a command line may name thousands (``xargs``), and
#: SQLite and drivers bound the parameters of one statement.
_LOOKUP_CHUNK = 500


def _lookup(conn: Connection, refs: Sequence[str]) -> dict[str, list[Row[Any]]]:
    """The posts each of ``refs`` names, found for the whole batch at once: one statement
    per kind of id (plan id, database id, item id of a group, ``ITEM@ACCOUNT``) for the ids
    still unresolved, tried in that order. NotFound names every unknown id at once."""
    base = _post_query()
    wanted = list(dict.fromkeys(refs))
    found: dict[str, list[Row[Any]]] = {}

    def each(values: Sequence[Any], where: Any) -> Iterator[Row[Any]]:
        for start in range(0, len(values), _LOOKUP_CHUNK):
            yield from conn.execute(base.where(where(values[start : start + _LOOKUP_CHUNK])))

    by_key = {r.key: r for r in each(wanted, posts_t.c.key.in_)}
    found.update((ref, [by_key[ref]]) for ref in wanted if ref in by_key)
    # A database id is ASCII digits and fits a 64-bit integer: "０１" (fullwidth) and
    # "١" (Arabic-Indic), which int() would read, are plan ids like any other text.
    numeric = {
        int(ref): ref
        for ref in wanted
        if ref not in found and ref.isascii() and ref.isdigit() and len(ref) <= 18
    }
    by_id = {r.id: r for r in each(list(numeric), posts_t.c.id.in_)}
    found.update((ref, [by_id[i]]) for i, ref in numeric.items() if i in by_id)
    rest = [ref for ref in wanted if ref not in found]
    groups: dict[str, list[Row[Any]]] = {}
    for row in sorted(each(rest, posts_t.c.group_key.in_), key=lambda r: r.id):
        groups.setdefault(row.group_key, []).append(row)
    found.update((ref, groups[ref]) for ref in rest if ref in groups)
    pairs = {ref: parts for ref in wanted if ref not in found and (parts := split_ref(ref))}
    items = list({item for item, _ in pairs.values()})

    def ungrouped(keys: Sequence[str]) -> Any:
        return and_(posts_t.c.key.in_(keys), posts_t.c.group_key.is_(None))

    alone = {(r.key, r.account): r for r in each(items, ungrouped)}
    found.update((ref, [alone[parts]]) for ref, parts in pairs.items() if parts in alone)
    missing = [ref for ref in refs if ref not in found]
    if missing:
        # Ids come from a command line or a URL: quote a few, each cut short, and count the rest.
        shown = ", ".join(excerpt(m) for m in missing[:_MISSING_SHOWN])
        left = len(missing) - _MISSING_SHOWN
        raise NotFound(f"no post with id {shown}" + (f" and {left} more" if left > 0 else ""))
    return found


def find_for_action(
    conn: Connection, refs: Sequence[str], applies: Collection[str]
) -> tuple[list[Row[Any]], list[Row[Any]]]:
    """``find_posts`` for an action that applies to posts in the states ``applies``: the
    posts to act on, and the posts set aside.

    Naming an item's id asks for the action on its group, so the members it does not apply to
    (already published, say, when the rest are cancelled) are set aside and reported, not an
    error that stops the others. A post named on its own, or a group none of whose members
    the action applies to, is kept, so that the action's own error says why."""
    posts = _lookup(conn, refs)  # NotFound names every unknown id at once
    rows: list[Row[Any]] = []
    aside: list[Row[Any]] = []
    for ref in refs:
        found = posts[ref]
        named_group = len(found) > 1 or (found[0].key != ref and found[0].group_key == ref)
        fits = [r for r in found if r.state in applies]
        if named_group and fits:
            rows += fits
            aside += [r for r in found if r.state not in applies]
        else:
            rows += found
    return rows, aside


def group_posts(conn: Connection, item_id: str) -> list[Row[Any]]:
    """The posts of the plan item ``item_id`` when it names several accounts, in the order
    they were made (the item's order, accounts added later last), as ``find_posts`` rows;
    [] for any other id."""
    query = _post_query().where(posts_t.c.group_key == item_id).order_by(posts_t.c.id)
    return list(conn.execute(query).all())


def find_post(conn: Connection, ref: str) -> Row[Any]:
    """The one post ``ref`` names; an item's id that names several posts (a group) is an
    error that lists them, each named as ``ITEM@ACCOUNT``."""
    rows = find_posts(conn, [ref])
    if len(rows) > 1:
        names = ", ".join(r.key for r in rows)
        raise SmmError(f"{ref} names {len(rows)} posts, one per account: name one of {names}")
    return rows[0]


@dataclass(frozen=True)
class PageCursor:
    """Where the next page of ``page_posts`` starts: after this time (None: in the posts
    without one, which come last) and post id. Written ``2027-03-08T10:00:00+00:00~42``
    (``-~42`` past the timed posts)."""

    at: datetime | None
    post_id: int

    def encode(self) -> str:
        when = "-" if self.at is None else self.at.astimezone(UTC).isoformat()
        return f"{when}~{self.post_id}"

    @classmethod
    def decode(cls, text: str) -> PageCursor:
        """The cursor ``encode`` wrote; ValueError for anything else."""
        when, sep, ident = text.strip().rpartition("~")
        if not sep or not (ident.isascii() and ident.isdigit()) or len(ident) > 18:
            raise ValueError(f"{text!r} is not a page cursor (TIME~ID, as a page ends with)")
        if when == "-":
            return cls(None, int(ident))
        at = datetime.fromisoformat(when)
        return cls(at if at.tzinfo else at.replace(tzinfo=UTC), int(ident))


#: The two halves of the queue in due order, each read through its own partial index: the
#: posts the daemon will take by their next attempt time (``ix_posts_due``), every other one
#: by its due time (``ix_posts_calendar``). The conditions are written out, not bound: only
#: then may the database use the partial index whose condition they spell.
_HALVES = (
    (DUE_STATES, sql_in(DUE_STATES, "posts.state"), "next_attempt_at"),
    (CALENDAR_STATES, sql_in(CALENDAR_STATES, "posts.state"), "due_at"),
)


def page_posts(
    conn: Connection,
    *,
    states: Sequence[str] = (),
    account: str | None = None,
    content_type: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    after: PageCursor | None = None,
    limit: int = 100,
) -> tuple[list[Row[Any]], PageCursor | None]:
    """One page of posts in due order, and the cursor of the next page (None: the last).

    A post's place is the time it is due as the queue sees it: its next attempt for a post
    the daemon will take (queued, waiting for a retry), its due time for any other; posts
    without a time come last, by id. Each row has that time as ``listed_at``. Pages follow
    the key (the last row's time and id), never an offset, and read each half through its
    index: a page at a million posts costs what it costs at a hundred. ``start``/``end``
    keep the posts listed from ``start`` to before ``end`` (and leave out those without a
    time)."""
    wanted = set(states)
    rows: list[Row[Any]] = []
    if after is None or after.at is not None:
        for half_states, half_sql, column in _HALVES:
            if wanted and not wanted & set(half_states):
                continue
            at = posts_t.c[column]
            q = _page_query(at, half_sql, states, account, content_type).where(at.is_not(None))
            if start is not None:
                q = q.where(at >= start)
            if end is not None:
                q = q.where(at < end)
            if after is not None:
                q = q.where(or_(at > after.at, and_(at == after.at, posts_t.c.id > after.post_id)))
            rows += conn.execute(q.order_by(at, posts_t.c.id).limit(limit + 1)).all()
        rows.sort(key=lambda r: (r.listed_at, r.id))
    if len(rows) <= limit and start is None and end is None:
        # The posts without a time, after every timed one: by id, through the same indexes.
        untimed: list[Row[Any]] = []
        for half_states, half_sql, column in _HALVES:
            if wanted and not wanted & set(half_states):
                continue
            at = posts_t.c[column]
            q = _page_query(at, half_sql, states, account, content_type).where(at.is_(None))
            if after is not None and after.at is None:
                q = q.where(posts_t.c.id > after.post_id)
            untimed += conn.execute(q.order_by(posts_t.c.id).limit(limit + 1 - len(rows))).all()
        rows += sorted(untimed, key=lambda r: r.id)
    more = len(rows) > limit
    rows = rows[:limit]
    last = rows[-1] if rows else None
    return rows, PageCursor(last.listed_at, last.id) if more and last is not None else None


def _page_query(
    at: Any, half_sql: str, states: Sequence[str], account: str | None, content_type: str | None
) -> Any:
    q = (
        select(posts_t, accounts_t.c.name.label("account"), at.label("listed_at"))
        .join(accounts_t, accounts_t.c.id == posts_t.c.account_id)
        .where(text(half_sql))
    )
    if states:
        q = q.where(posts_t.c.state.in_(states))
    if account:
        q = q.where(accounts_t.c.name == account)
    if content_type:
        q = q.where(posts_t.c.content_type == content_type.lower())
    return q


def list_posts(
    conn: Connection,
    *,
    states: Sequence[str] = (),
    account: str | None = None,
    content_type: str | None = None,
    limit: int = 100,
) -> list[Row[Any]]:
    """The first ``limit`` posts in due order (``page_posts``), filtered as asked."""
    rows, _ = page_posts(
        conn, states=states, account=account, content_type=content_type, limit=limit
    )
    return rows


def post_story(conn: Connection, post_id: int) -> tuple[list[Row[Any]], list[Row[Any]]]:
    """A post's attempts and its state-change events, each in the order they were made.

    After ``retry`` (or a changed plan) the stored attempt numbers start again at 1 with the
    fresh budget of attempts: the order is the time they started, not their number."""
    attempts = conn.execute(
        select(attempts_t)
        .where(attempts_t.c.post_id == post_id)
        .order_by(attempts_t.c.started_at, attempts_t.c.id)
    ).all()
    events = conn.execute(
        select(events_t).where(events_t.c.post_id == post_id).order_by(events_t.c.at, events_t.c.id)
    ).all()
    return list(attempts), list(events)


def requeue_slots(
    conn: Connection,
    accounts: Mapping[str, AccountConfig],
    rows: Sequence[Row[Any]],
    now: datetime,
) -> None:
    """Freed or taken slots change the accounts' queues: reassign the queues of ``rows``."""
    ids = {r.account: r.account_id for r in rows}
    for name, account_id in ids.items():
        cfg = accounts.get(name)
        if cfg is not None:
            assign_queue_slots(conn, cfg, account_id, now)


# --------------------------------------------------------------------------- operations


def _transition(
    conn: Connection,
    rows: Sequence[Row[Any]],
    allowed_from: Iterable[str],
    to_state: str,
    now: datetime,
    *,
    actor: str,
    reason: str | None,
    values: dict[str, Any] | None = None,
    verb: str,
    hints: Mapping[str, str] | None = None,
) -> list[Change]:
    allowed_from = set(allowed_from)
    bad = [r for r in rows if r.state not in allowed_from]
    if bad:
        hints = hints or {}
        lines = []
        for r in bad:
            hint = hints.get(r.state, "")
            lines.append(
                f"{r.key}: cannot {verb} a post that is {r.state}" + (f" ({hint})" if hint else "")
            )
        raise InvalidTransition("\n".join(lines))
    changes = [Change(r.id, r.key, r.state, to_state) for r in rows if r.state != to_state]
    for c in changes:  # an operation may only ask for what scheduler.states allows
        if not allowed(c.from_state, c.to_state):
            raise InvalidTransition(f"{c.key}: {c.from_state} -> {c.to_state} is not a transition")
    for c in changes:
        # Guard on the state we read, so a daemon claim in between is not overwritten.
        result = conn.execute(
            update(posts_t)
            .where(posts_t.c.id == c.post_id, posts_t.c.state == c.from_state)
            .values(state=to_state, updated_at=now, **(values or {}))
        )
        if result.rowcount != 1:
            raise InvalidTransition(f"{c.key}: changed while this command ran; try again")
    record_events(conn, changes, now, actor, reason)
    if changes and to_state in (PostState.QUEUED, PostState.RETRY_WAIT):
        announce(conn)
    return changes


_HINTS: dict[str, str] = {
    PostState.CLAIMED: "it is being published right now; look again in a moment",
    PostState.PUBLISHED: "it is already on the network",
    PostState.UNCONFIRMED: "it may be on the network: settle it with `smm queue resolve`",
}


def cancel(
    conn: Connection, rows: Sequence[Row[Any]], now: datetime, actor: str = "cli"
) -> list[Change]:
    """Cancel waiting, failed or missed posts; a cancelled post is never published."""
    return _transition(
        conn,
        rows,
        (*CANCELLABLE, PostState.CANCELLED),
        PostState.CANCELLED,
        now,
        actor=actor,
        reason="cancelled",
        values={"lease_owner": None, "lease_expires_at": None},
        verb="cancel",
        hints=_HINTS,
    )


def needs_approval(accounts: Mapping[str, AccountConfig], rows: Sequence[Row[Any]]) -> set[int]:
    """The account ids of ``rows`` whose accounts need approval (``approval = "required"``):
    a post queued again by hand there waits for sign-off, so that cancelling and retrying a
    post is not a way around it."""
    return {
        r.account_id for r in rows if (cfg := accounts.get(r.account)) is not None and cfg.approval
    }


def retry(
    conn: Connection,
    rows: Sequence[Row[Any]],
    now: datetime,
    actor: str = "cli",
    approval: Collection[int] = (),
) -> list[Change]:
    """Queue failed, missed or cancelled posts again, to go out now (or at their future time);
    in the ``approval`` accounts they wait for sign-off first (``needs_approval``)."""
    changes = []
    for r in rows:
        when = r.due_at if r.due_at is not None and r.due_at > now else now
        to = PostState.PENDING_APPROVAL if r.account_id in approval else PostState.QUEUED
        changes += _transition(
            conn,
            [r],
            RETRYABLE,
            to,
            now,
            actor=actor,
            reason="retry requested",
            values={
                "due_at": when,
                "next_attempt_at": when,
                "attempt_count": 0,
                "last_error": None,
                "error_class": None,
                "schedule": Schedule.FIXED,
            },
            verb="retry",
            hints={**_HINTS, PostState.QUEUED: "it is already waiting"},
        )
    return changes


def reschedule(
    conn: Connection,
    row: Row[Any],
    at: datetime,
    now: datetime,
    actor: str = "cli",
    approval: Collection[int] = (),
) -> list[Change]:
    """Give a post a fixed new time (it leaves the slot queue) and queue it; in the
    ``approval`` accounts a failed, missed or cancelled post waits for sign-off again."""
    if at <= now:
        raise SmmError(f"{row.key}: the new time is in the past")
    allowed_from = (*CANCELLABLE, PostState.CANCELLED)
    values = {
        "due_at": at,
        "next_attempt_at": at,
        "schedule": Schedule.FIXED,
        "attempt_count": 0,
    }
    # A paused post stays paused, one awaiting sign-off still awaits it, with the new time.
    held = (PostState.PAUSED, *AWAITING_APPROVAL)
    to_state = row.state if row.state in held else PostState.QUEUED
    if row.state in RETRYABLE and row.account_id in approval:
        to_state = PostState.PENDING_APPROVAL  # queued again by hand: signed off again
    changes = _transition(
        conn,
        [row],
        allowed_from,
        to_state,
        now,
        actor=actor,
        reason="rescheduled",
        values=values,
        verb="reschedule",
        hints=_HINTS,
    )
    if not changes:  # same state: still record the new time
        conn.execute(update(posts_t).where(posts_t.c.id == row.id).values(updated_at=now, **values))
        announce(conn)
        record_events(
            conn,
            [Change(row.id, row.key, row.state, row.state)],
            now,
            actor,
            f"rescheduled to {at.isoformat()}",
        )
    return changes


#: Longest approval or send-back comment (kept in the post's history, shown wherever it is).
MAX_COMMENT = 2000


def _checked_comment(comment: str | None) -> str | None:
    """A person's comment on an approval: bounded, and free of the control and format
    characters a terminal or a page would act on (line breaks and tabs are kept)."""
    if comment is None:
        return None
    if len(comment) > MAX_COMMENT:
        raise SmmError(
            f"the comment has {len(comment):,} characters, more than {MAX_COMMENT:,}: "
            "say it in fewer words"
        )
    bad = next((c for c in comment if not c.isprintable() and c not in "\n\t"), None)
    if bad is not None:
        raise SmmError(f"the comment contains the control character U+{ord(bad):04X}")
    return comment


def approve(
    conn: Connection,
    rows: Sequence[Row[Any]],
    now: datetime,
    actor: str,
    comment: str | None = None,
) -> list[Change]:
    """Sign posts off: they join the queue, to go out at their time (now if it has passed).

    The event records who approved and when (``smm queue show`` and the web app print it)."""
    comment = _checked_comment(comment)
    changes = []
    for r in rows:
        when = r.due_at if r.due_at is None or r.due_at > now else now
        changes += _transition(
            conn,
            [r],
            AWAITING_APPROVAL,
            PostState.QUEUED,
            now,
            actor=actor,
            reason="approved" + (f": {comment}" if comment else ""),
            values={"due_at": when, "next_attempt_at": when},
            verb="approve",
            hints={**_HINTS, PostState.QUEUED: "it is already approved and waiting"},
        )
    return changes


def reject(
    conn: Connection, rows: Sequence[Row[Any]], now: datetime, actor: str, comment: str
) -> list[Change]:
    """Send posts back with a comment: they stay unpublished until the plan changes them (they
    wait for approval again) or an approver approves them after all."""
    if not (_checked_comment(comment) or "").strip():
        raise SmmError("say what to change: a post is sent back with a comment")
    return _transition(
        conn,
        rows,
        (PostState.PENDING_APPROVAL,),
        PostState.CHANGES_REQUESTED,
        now,
        actor=actor,
        reason=f"changes requested: {comment.strip()}",
        verb="send back",
        hints={**_HINTS, PostState.CHANGES_REQUESTED: "it was already sent back"},
    )


def pause_accounts(
    conn: Connection, account_ids: Sequence[int], now: datetime, reason: str, actor: str = "cli"
) -> int:
    """Pause accounts: their waiting posts become ``paused`` and the daemon skips them."""
    conn.execute(
        update(accounts_t)
        .where(accounts_t.c.id.in_(account_ids))
        .values(paused=True, paused_reason=reason, updated_at=now)
    )
    rows = conn.execute(
        select(posts_t.c.id, posts_t.c.key, posts_t.c.state).where(
            posts_t.c.account_id.in_(account_ids),
            posts_t.c.state.in_((PostState.QUEUED, PostState.RETRY_WAIT)),
        )
    ).all()
    changes = _transition(
        conn,
        rows,
        (PostState.QUEUED, PostState.RETRY_WAIT),
        PostState.PAUSED,
        now,
        actor=actor,
        reason=reason,
        verb="pause",
    )
    return len(changes)


def resume_accounts(
    conn: Connection,
    accounts: Sequence[tuple[int, AccountConfig | None]],
    now: datetime,
    actor: str = "cli",
) -> int:
    """Resume paused accounts; their queue posts take the next free slots again."""
    ids = [i for i, _ in accounts]
    conn.execute(
        update(accounts_t)
        .where(accounts_t.c.id.in_(ids))
        .values(paused=False, paused_reason=None, auth_state="ok", updated_at=now)
    )
    rows = conn.execute(
        select(posts_t.c.id, posts_t.c.key, posts_t.c.state).where(
            posts_t.c.account_id.in_(ids), posts_t.c.state == PostState.PAUSED
        )
    ).all()
    changes = _transition(
        conn,
        rows,
        (PostState.PAUSED,),
        PostState.QUEUED,
        now,
        actor=actor,
        reason="resumed",
        verb="resume",
    )
    for account_id, cfg in accounts:
        if cfg is not None:
            assign_queue_slots(conn, cfg, account_id, now, include_overdue=True)
    return len(changes)
