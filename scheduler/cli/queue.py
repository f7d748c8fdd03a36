"""``smm queue``: look at the queue and move posts by hand."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click
from sqlalchemy import Connection, Row, select

from scheduler.cli.app import App, pass_app
from scheduler.cli.output import echo_json, local_time, preview, table
from scheduler.db.engine import immediate
from scheduler.db.models import Account, Attempt, PostEvent, PostState
from scheduler.errors import NotFound, SmmError
from scheduler.queue import (
    assign_queue_slots,
    cancel,
    find_posts,
    list_posts,
    pause_accounts,
    reschedule,
    resume_accounts,
    retry,
)
from scheduler.timeutil import LocalTimeError, format_utc, parse_wall_time, zone

STATES = [s.value for s in PostState]
accounts_t = Account.__table__  # type: ignore[attr-defined]


def post_json(row: Row[Any]) -> dict[str, Any]:
    """A post as ``--json`` prints it (times in ISO 8601 UTC)."""
    return {
        "id": row.key,
        "db_id": row.id,
        "account": row.account,
        "type": row.content_type,
        "state": row.state,
        "schedule": row.schedule,
        "due_at": format_utc(row.due_at),
        "next_attempt_at": format_utc(row.next_attempt_at),
        "text": row.text,
        "media": list(row.media or ()),
        "link": row.link,
        "tags": list(row.tags or ()),
        "evergreen": row.evergreen,
        "attempts": row.attempt_count,
        "remote_id": row.remote_id,
        "remote_url": row.remote_url,
        "published_at": format_utc(row.published_at),
        "error_class": row.error_class,
        "last_error": row.last_error,
        "source": row.source,
    }


def _zones(conn: Connection) -> dict[str, str]:
    return {
        r.name: r.timezone for r in conn.execute(select(accounts_t.c.name, accounts_t.c.timezone))
    }


@click.group()
def queue() -> None:
    """The queue: list, inspect, cancel, retry, reschedule, pause and resume."""


@queue.command("list")
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice(STATES),
    help="Only this state (repeatable).",
)
@click.option("--account", help="Only this account.")
@click.option("--type", "content_type", help="Only this content type.")
@click.option("--limit", type=click.IntRange(min=1), help="At most N posts.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@pass_app
def list_(
    app: App,
    states: tuple[str, ...],
    account: str | None,
    content_type: str | None,
    limit: int | None,
    as_json: bool,
) -> None:
    """List posts in due order."""
    with app.engine().connect() as conn:
        rows = list_posts(
            conn, states=states, account=account, content_type=content_type, limit=limit
        )
        zones = _zones(conn)
    if as_json:
        echo_json([post_json(r) for r in rows])
        return
    table(
        ["id", "account", "type", "state", "due (local)", "text"],
        [
            (
                r.key,
                r.account,
                r.content_type,
                r.state,
                local_time(r.due_at, zones.get(r.account)),
                preview(r.text),
            )
            for r in rows
        ],
        empty="no posts",
    )


@queue.command()
@click.argument("post_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def show(app: App, post_id: str, as_json: bool) -> None:
    """Show one post (by plan id), its attempts and its history."""
    attempts_t = Attempt.__table__  # type: ignore[attr-defined]
    events_t = PostEvent.__table__  # type: ignore[attr-defined]
    with app.engine().connect() as conn:
        (row,) = find_posts(conn, [post_id])
        # In the order they were made: after `smm queue retry` (or a changed plan) the stored
        # attempt numbers start again at 1 with the fresh budget of attempts.
        attempts = conn.execute(
            select(attempts_t)
            .where(attempts_t.c.post_id == row.id)
            .order_by(attempts_t.c.started_at, attempts_t.c.id)
        ).all()
        events = conn.execute(
            select(events_t)
            .where(events_t.c.post_id == row.id)
            .order_by(events_t.c.at, events_t.c.id)
        ).all()
        tz = _zones(conn).get(row.account)
    data = post_json(row)
    data["attempt_log"] = [
        {
            "number": position,
            "of_budget": a.number,
            "started_at": format_utc(a.started_at),
            "finished_at": format_utc(a.finished_at),
            "outcome": a.outcome,
            "message": a.message,
            "http_status": a.http_status,
            "latency_ms": a.latency_ms,
            "retry_at": format_utc(a.retry_at),
        }
        for position, a in enumerate(attempts, 1)
    ]
    data["history"] = [
        {
            "at": format_utc(e.at),
            "from": e.from_state,
            "to": e.to_state,
            "by": e.actor,
            "reason": e.reason,
        }
        for e in events
    ]
    if as_json:
        echo_json(data)
        return
    click.echo(f"{row.key}  [{row.state}]  {row.account} / {row.content_type}")
    click.echo(
        f"  due:       {local_time(row.due_at, tz)}  ({format_utc(row.due_at) or 'unscheduled'})"
    )
    click.echo(f"  schedule:  {row.schedule}" + ("  evergreen" if row.evergreen else ""))
    if row.remote_url or row.remote_id:
        click.echo(
            f"  published: {row.remote_url or row.remote_id} at {format_utc(row.published_at)}"
        )
    if row.last_error:
        click.echo(f"  error:     [{row.error_class}] {row.last_error}")
    click.echo(f"  source:    {row.source}")
    for label, values in (("media", row.media), ("tags", row.tags)):
        if values:
            click.echo(f"  {label}:     " + ", ".join(values))
    if row.link:
        click.echo(f"  link:      {row.link}")
    click.echo("  text:")
    for line in row.text.splitlines() or [""]:
        click.echo(f"    {line}")
    if attempts:
        click.echo("  attempts:")
        for a in data["attempt_log"]:
            click.echo(
                f"    #{a['number']} {a['started_at']} {a['outcome'] or 'in flight'} "
                f"{a['message'] or ''}".rstrip()
            )
    if events:
        click.echo("  history:")
        for e in data["history"]:
            click.echo(
                f"    {e['at']} {e['from'] or '-'} -> {e['to']} by {e['by']}"
                + (f": {e['reason']}" if e["reason"] else "")
            )


def _report(changes: Sequence[Any], verb: str) -> None:
    for c in changes:
        click.echo(f"{c.key}: {c.from_state} -> {c.to_state}")
    click.echo(f"{len(changes)} post(s) {verb}")


def _requeue_slots(app: App, conn: Connection, rows: Sequence[Row[Any]]) -> None:
    """Freed or taken slots change the account's queue: reassign it."""
    ids = {r.account: r.account_id for r in rows}
    for name, account_id in ids.items():
        cfg = app.config.accounts.get(name)
        if cfg is not None:
            assign_queue_slots(conn, cfg, account_id, app.now())


@queue.command("cancel")
@click.argument("post_ids", nargs=-1, required=True)
@pass_app
def cancel_(app: App, post_ids: tuple[str, ...]) -> None:
    """Cancel posts so they are never published (by plan id)."""
    with immediate(app.engine()) as conn:
        rows = find_posts(conn, post_ids)
        changes = cancel(conn, rows, app.now())
        _requeue_slots(app, conn, rows)
    _report(changes, "cancelled")


@queue.command("retry")
@click.argument("post_ids", nargs=-1, required=True)
@pass_app
def retry_(app: App, post_ids: tuple[str, ...]) -> None:
    """Queue failed, missed or cancelled posts again, to go out now."""
    with immediate(app.engine()) as conn:
        rows = find_posts(conn, post_ids)
        changes = retry(conn, rows, app.now())
    _report(changes, "queued again")


@queue.command("reschedule")
@click.argument("post_id")
@click.option(
    "--at",
    "at",
    required=True,
    metavar="TIME",
    help="New time: YYYY-MM-DD HH:MM in the account's zone, or with an offset.",
)
@pass_app
def reschedule_(app: App, post_id: str, at: str) -> None:
    """Move a post to a fixed new time (it leaves the slot queue)."""
    with immediate(app.engine()) as conn:
        (row,) = find_posts(conn, [post_id])
        tz = _zones(conn).get(row.account, "UTC")
        try:
            when = parse_wall_time(at, zone(tz))
        except LocalTimeError as exc:
            raise click.BadParameter(f"{exc} ({exc.hint})", param_hint="--at") from None
        reschedule(conn, row, when, app.now())
        _requeue_slots(app, conn, [row])
    click.echo(f"{row.key}: now due {format_utc(when)} ({at} {tz})")


def _account_ids(conn: Connection, account: str | None) -> list[tuple[int, str]]:
    q = select(accounts_t.c.id, accounts_t.c.name)
    if account:
        q = q.where(accounts_t.c.name == account)
    rows = [(r.id, r.name) for r in conn.execute(q)]
    if account and not rows:
        raise NotFound(f"no account {account!r} in the database (import a plan or run `smm init`)")
    return rows


@queue.command("pause")
@click.option("--account", help="Only this account (default: all).")
@pass_app
def pause(app: App, account: str | None) -> None:
    """Pause publishing; waiting posts stay queued as ``paused``."""
    with immediate(app.engine()) as conn:
        ids = _account_ids(conn, account)
        if not ids:
            raise SmmError("no accounts to pause")
        n = pause_accounts(conn, [i for i, _ in ids], app.now(), reason="paused from the CLI")
    click.echo(f"paused {', '.join(name for _, name in ids)}; {n} post(s) held")


@queue.command("resume")
@click.option("--account", help="Only this account (default: all).")
@pass_app
def resume(app: App, account: str | None) -> None:
    """Resume publishing; held queue posts take the next free slots."""
    with immediate(app.engine()) as conn:
        ids = _account_ids(conn, account)
        n = resume_accounts(
            conn, [(i, app.config.accounts.get(name)) for i, name in ids], app.now()
        )
    click.echo(f"resumed {', '.join(name for _, name in ids) or 'nothing'}; {n} post(s) queued")


def register(cli: click.Group) -> None:
    cli.add_command(queue)
