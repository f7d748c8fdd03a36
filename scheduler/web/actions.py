"""What the web app's buttons do: the CLI's queue operations, each with its audit entry.

Every action calls the function the ``smm queue`` command calls, with the same checks, and
answers with the same words; the audit entry is written in the same transaction as the
change, so there is never a change without its entry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select

from scheduler.cli.output import local_time
from scheduler.config import Config
from scheduler.daemon import store
from scheduler.db.engine import immediate
from scheduler.db.models import PostState
from scheduler.errors import NotFound, SmmError, excerpt
from scheduler.queue import (
    AWAITING_APPROVAL,
    CANCELLABLE,
    Change,
    accounts_t,
    approve,
    cancel,
    find_post,
    needs_approval,
    pause_accounts,
    reject,
    requeue_slots,
    reschedule,
    resume_accounts,
    retry,
)
from scheduler.settle import address_problem, remote_id_problem
from scheduler.text import safe
from scheduler.timeutil import LocalTimeError, format_utc, parse_wall_time, zone
from scheduler.web.auth import User, audit

APPROVAL_ACTIONS = frozenset({"approve", "reject"})
EDIT_ACTIONS = frozenset({"reschedule", "cancel", "retry", "resolve"})


def possible(state: str) -> set[str]:
    """The actions the post page offers for a post in ``state`` (the operations still check)."""
    out = set()
    if state in (*CANCELLABLE, PostState.CANCELLED):
        out.add("reschedule")
    if state in CANCELLABLE:
        out.add("cancel")
    if state in (PostState.FAILED, PostState.MISSED, PostState.CANCELLED):
        out.add("retry")
    if state == PostState.UNCONFIRMED:
        out.add("resolve")
    if state in AWAITING_APPROVAL:
        out.add("approve")
    if state == PostState.PENDING_APPROVAL:
        out.add("reject")
    return out


def _report(changes: Sequence[Change], verb: str) -> str:
    """The words ``smm queue`` prints for the same changes."""
    lines = [f"{safe(c.key)}: {c.from_state} -> {c.to_state}" for c in changes]
    return "\n".join([*lines, f"{len(changes)} post(s) {verb}"])


def run(
    engine: Engine,
    config: Config,
    now: datetime,
    user: User,
    action: str,
    key: str,
    fields: Mapping[str, str],
    remote_addr: str | None,
) -> str:
    """Do ``action`` to post ``key``; return the message for the person, or raise SmmError
    (NotFound, InvalidTransition...) with the CLI's message."""
    actor = f"web:{user.name}"
    if action == "resolve":
        return _resolve(engine, now, user, key, fields, remote_addr)
    if action not in EDIT_ACTIONS | APPROVAL_ACTIONS:
        raise NotFound(f"no action {action!r}")
    with immediate(engine) as conn:
        row = find_post(conn, key)
        detail: str | None = None
        if action == "reschedule":
            at = fields.get("at", "").strip()
            if not at:
                raise SmmError("give the new time, e.g. 2027-01-15 10:00")
            tz = conn.execute(
                select(accounts_t.c.timezone).where(accounts_t.c.id == row.account_id)
            ).scalar_one()
            try:
                when = parse_wall_time(at, zone(tz))
            except LocalTimeError as exc:
                raise SmmError(f"{exc} ({exc.hint})") from None
            reschedule(conn, row, when, now, actor, needs_approval(config.accounts, [row]))
            requeue_slots(conn, config.accounts, [row], now)
            message = f"{safe(row.key)}: now due {local_time(when, tz)} ({format_utc(when)})"
            detail = f"to {format_utc(when)}"
        elif action == "cancel":
            changes = cancel(conn, [row], now, actor)
            requeue_slots(conn, config.accounts, [row], now)
            message = _report(changes, "cancelled")
        elif action == "retry":
            changes = retry(conn, [row], now, actor, needs_approval(config.accounts, [row]))
            message = _report(changes, "queued again")
        elif action == "approve":
            comment = fields.get("comment", "").strip() or None
            message = _report(approve(conn, [row], now, actor, comment), "approved")
            detail = comment
        else:  # reject
            comment = fields.get("comment", "")
            message = _report(reject(conn, [row], now, actor, comment), "sent back")
            detail = comment
        audit(conn, now, user.name, action, row.key, detail, remote_addr)
    return message


def _resolve(
    engine: Engine,
    now: datetime,
    user: User,
    key: str,
    fields: Mapping[str, str],
    remote_addr: str | None,
) -> str:
    """``smm queue resolve``: settle an unconfirmed post (the daemon's store does it), as
    published under the network's own id for it (and its address, if it has one), or not."""
    remote_id = fields.get("remote_id", "").strip() or None
    url = fields.get("url", "").strip() or None
    absent = fields.get("outcome") == "not-published"
    if bool(remote_id) == absent:
        raise SmmError(
            "give exactly one of: the network's id for the post (and its address), "
            "or 'not published'"
        )
    if url and (problem := address_problem(url)):
        raise SmmError(problem)
    if remote_id and (problem := remote_id_problem(remote_id, url)):
        raise SmmError(problem)
    with engine.connect() as conn:
        row = find_post(conn, key)
    ok = store.settle(
        engine,
        row.id,
        now,
        f"web:{user.name}",
        published=bool(remote_id),
        remote_url=url if remote_id else None,
        remote_id=remote_id,
        reason="settled by hand: " + ("published" if remote_id else "not published"),
    )
    if not ok:
        raise SmmError(f"{row.key} is {row.state}, not unconfirmed: nothing to settle")
    detail = f"{remote_id} {url or ''}".strip() if remote_id else "not published"
    with immediate(engine) as conn:
        audit(conn, now, user.name, "resolve", row.key, detail, remote_addr)
    if not remote_id:
        return f"{row.key}: queued again"
    return f"{row.key}: published as {remote_id}" + (f" at {url}" if url else "")


def run_account(
    engine: Engine,
    config: Config,
    now: datetime,
    user: User,
    action: str,
    name: str,
    remote_addr: str | None,
) -> str:
    """Pause or resume one account, as ``smm queue pause/resume --account NAME``."""
    if action not in ("pause", "resume"):
        raise NotFound(f"no action {action!r}")
    with immediate(engine) as conn:
        row: Any = conn.execute(select(accounts_t.c.id).where(accounts_t.c.name == name)).first()
        if row is None:
            raise NotFound(f"no account {excerpt(name)} in the database")
        if action == "pause":
            n = pause_accounts(
                conn, [row.id], now, reason="paused from the web app", actor=f"web:{user.name}"
            )
            message = f"paused {name}; {n} post(s) held"
        else:
            n = resume_accounts(
                conn, [(row.id, config.accounts.get(name))], now, actor=f"web:{user.name}"
            )
            message = f"resumed {name}; {n} post(s) queued"
        audit(conn, now, user.name, action, f"account:{name}", None, remote_addr)
    return message
