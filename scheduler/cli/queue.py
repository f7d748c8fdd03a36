"""``smm queue``: look at the queue and move posts by hand."""

from __future__ import annotations

import getpass
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from scheduler.cli.app import App, pass_app
from scheduler.cli.complete import account_names, post_ids
from scheduler.cli.output import echo_json, local_time, preview, safe, table
from scheduler.cli.params import Count
from scheduler.errors import NotFound, SmmError, excerpt
from scheduler.states import PostState
from scheduler.timeutil import LocalTimeError, format_utc, parse_wall_time, zone

if TYPE_CHECKING:
    from sqlalchemy import Connection, Row

# SQLAlchemy, the models and the queue operations are imported inside the commands, so that
# `smm queue --help` and completing a post id do not load them.

STATES = [s.value for s in PostState]


def post_json(row: Row[Any]) -> dict[str, Any]:
    """A post as ``--json`` prints it (times in ISO 8601 UTC)."""
    from scheduler.logging import redact_stored

    return {
        "id": row.key,
        "db_id": row.id,
        # The plan item's id when the item names several accounts (this post is one of them).
        "group": row.group_key,
        "account": row.account,
        "type": row.content_type,
        "state": row.state,
        "schedule": row.schedule,
        "due_at": format_utc(row.due_at),
        "next_attempt_at": format_utc(row.next_attempt_at),
        "text": row.text,
        "media": list(row.media or ()),
        # Alt text and focus per media file, as stored ({} for a file without); null: none.
        "media_meta": row.media_meta,
        # Content warning, visibility, language, reply, poll, as stored; null: none.
        "options": row.post_options,
        "link": row.link,
        "tags": list(row.tags or ()),
        "evergreen": row.evergreen,
        "attempts": row.attempt_count,
        "remote_id": row.remote_id,
        "remote_url": row.remote_url,
        "published_at": format_utc(row.published_at),
        "error_class": row.error_class,
        "last_error": redact_stored(row.last_error),
        "source": row.source,
    }


def _zones(conn: Connection) -> dict[str, str]:
    from sqlalchemy import select

    from scheduler.queue import accounts_t

    return {
        r.name: r.timezone for r in conn.execute(select(accounts_t.c.name, accounts_t.c.timezone))
    }


@click.group()
def queue() -> None:
    """The queue: list, inspect, approve, cancel, retry, reschedule, pause and resume."""


@queue.command("list")
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice(STATES),
    help="Only this state (repeatable).",
)
@click.option("--account", help="Only this account.", shell_complete=account_names)
@click.option("--type", "content_type", help="Only this content type.")
@click.option(
    "--from",
    "start",
    metavar="TIME",
    help="Only posts due at or after TIME (a date, or a date and time; see below).",
)
@click.option(
    "--to", "end", metavar="TIME", help="Only posts due before TIME (a date: to its end)."
)
@click.option("--limit", type=Count(1), default=100, show_default=True, help="Posts on one page.")
@click.option(
    "--after",
    metavar="CURSOR",
    help="Start after this cursor: the one printed when a page is not the last.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@pass_app
def list_(
    app: App,
    states: tuple[str, ...],
    account: str | None,
    content_type: str | None,
    start: str | None,
    end: str | None,
    limit: int,
    after: str | None,
    as_json: bool,
) -> None:
    """List posts in due order, a page at a time.

    A post's due time is its next attempt while it waits in the queue (or for a retry), its
    planned time otherwise; posts without a time come last. When more posts follow, the
    cursor of the next page is printed on stderr: pass it to --after. --from and --to take
    a date (2027-03-08) or a date and time (2027-03-08 10:00, or with an offset), in the
    zone of --account, or UTC without one.
    """
    from scheduler.queue import PageCursor, page_posts

    cursor = None
    if after is not None:
        try:
            cursor = PageCursor.decode(after)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--after") from None
    with app.engine().connect() as conn:
        tz = "UTC"
        if account:
            _account_ids(conn, account)  # an unknown account is an error, not "(no posts)"
            tz = _zones(conn).get(account) or "UTC"
        rows, more = page_posts(
            conn,
            states=states,
            account=account,
            content_type=content_type,
            start=_bound(start, tz, "--from", end_of_day=False),
            end=_bound(end, tz, "--to", end_of_day=True),
            after=cursor,
            limit=limit,
        )
        zones = _zones(conn)
    if as_json:
        echo_json([post_json(r) for r in rows])
    else:
        table(
            ["id", "account", "type", "state", "due (local)", "text"],
            [
                (
                    r.key,
                    r.account,
                    r.content_type,
                    r.state,
                    local_time(r.listed_at, zones.get(r.account)),
                    preview(r.text),
                )
                for r in rows
            ],
            empty="no posts",
        )
    if more is not None:
        click.echo(f"more posts: --after {more.encode()}", err=True)


def _bound(value: str | None, tz: str, option: str, *, end_of_day: bool) -> datetime | None:
    """A --from/--to value as an instant: a date is its midnight (``end_of_day``: the next
    one), a date and time is local to ``tz`` unless it has an offset."""
    if value is None:
        return None
    from datetime import date, timedelta

    text = value.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text) + timedelta(days=1 if end_of_day else 0)
            return parse_wall_time(f"{day.isoformat()} 00:00", zone(tz))
        return parse_wall_time(text, zone(tz))
    except (ValueError, OverflowError, LocalTimeError) as exc:
        raise click.BadParameter(
            f"cannot read {text[:40]!r} as a date or date and time ({exc})",
            param_hint=option,
        ) from None


@queue.command()
@click.argument("post_id", shell_complete=post_ids)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def show(app: App, post_id: str, as_json: bool) -> None:
    """Show one post (by plan id), its attempts and its history.

    The id of a plan item that names several accounts shows its posts, one per account
    (ITEM@ACCOUNT shows one of them)."""
    from scheduler.logging import redact_stored
    from scheduler.queue import find_posts, group_posts, post_story

    with app.engine().connect() as conn:
        rows = find_posts(conn, [post_id])
        if len(rows) > 1 or (rows[0].key != post_id and rows[0].group_key == post_id):
            _show_group(post_id, rows, _zones(conn), as_json)
            return
        (row,) = rows
        attempts, events = post_story(conn, row.id)
        tz = _zones(conn).get(row.account)
        members = group_posts(conn, row.group_key) if row.group_key else []
        readings = _readings(conn, row)
    data = post_json(row)
    data["attempt_log"] = [
        {
            "number": position,
            "of_budget": a.number,
            "started_at": format_utc(a.started_at),
            "finished_at": format_utc(a.finished_at),
            "outcome": a.outcome,
            "message": redact_stored(a.message),
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
    data["readings"] = [
        {
            "age_hours": round(m.hours, 2),
            "likes": m.likes,
            "comments": m.comments,
            "shares": m.shares,
            "seen": m.seen,
            "engagements": m.engagements,
            "er": m.er,
        }
        for m in readings
    ]
    if as_json:
        echo_json(data)
        return
    _print_post(row, tz, data, attempts=bool(attempts), events=bool(events))
    if readings:
        click.echo("  engagement:")
        for m in readings:
            click.echo(f"    {_reading_line(m)}")
    if members:
        click.echo(f"  group {safe(row.group_key)}, {len(members)} posts:")
        for m in members:
            mark = "*" if m.id == row.id else " "
            click.echo(f"   {mark}{_member_line(m)}")


def _readings(conn: Any, row: Row[Any]) -> list[Any]:
    """A published post's engagement readings, youngest first (none for other states)."""
    if row.state != "published":
        return []
    from sqlalchemy import select

    from scheduler.er.post_readings import post_readings
    from scheduler.er.recompute import has_reach
    from scheduler.queue import accounts_t

    platform = conn.execute(
        select(accounts_t.c.platform).where(accounts_t.c.id == row.account_id)
    ).scalar_one()
    by_reach = has_reach(platform)
    return post_readings(
        conn, row.id, by_reach=by_reach, followers_at_publish=row.followers_at_publish
    )


def _reading_line(m: Any) -> str:
    """``at 24 h: 120 likes, 4 comments, 9 shares, reach 5,210: 133 engagements, ER 2.6%``."""
    counts = ", ".join(
        f"{v:,} {name}"
        for name, v in (("likes", m.likes), ("comments", m.comments), ("shares", m.shares))
        if v is not None
    )
    seen = f", reach {m.seen:,}" if m.seen is not None else ""
    total = f"{m.engagements:,} engagements" if m.engagements is not None else "engagement unknown"
    er = f", ER {m.er * 100:.1f}%" if m.er is not None else ""
    return f"at {m.age}: {counts or 'no counters'}{seen}: {total}{er}"


def _member_line(m: Row[Any]) -> str:
    where = " ".join(v for v in (m.remote_id, m.remote_url) if v)
    return safe(f"{m.key}  {m.account}  [{m.state}]" + (f"  {where}" if where else ""))


def _show_group(
    item_id: str, rows: Sequence[Row[Any]], zones: dict[str, str], as_json: bool
) -> None:
    """``queue show ITEM`` for an item that names several accounts: each of its posts."""
    if as_json:
        echo_json({"id": item_id, "group": True, "posts": [post_json(r) for r in rows]})
        return
    first = rows[0]
    click.echo(f"{safe(item_id)}  group of {len(rows)} posts  / {safe(first.content_type)}")
    table(
        ["ID", "ACCOUNT", "STATE", "DUE (LOCAL)", "PUBLISHED", "TEXT"],
        [
            [
                r.key,
                r.account,
                r.state,
                local_time(r.due_at, zones.get(r.account)),
                " ".join(v for v in (r.remote_id, r.remote_url) if v) or "-",
                preview(r.text),
            ]
            for r in rows
        ],
    )
    click.echo(f"one post: smm queue show {safe(rows[0].key)}")


def _field(label: str, value: str) -> None:
    """One ``label: value`` line of ``queue show``, values in one column."""
    click.echo(f"  {label + ':':<11}{safe(value)}")


def _print_options(row: Row[Any]) -> None:
    """The per-post options, a thread one line per part (its first line)."""
    for name, value in (row.post_options or {}).items():
        label = name.replace("_", " ") + ":"
        lines = (
            [f"{n}. {_part_line(p)}" for n, p in enumerate(value, 2)]
            if name == "thread" and isinstance(value, list)
            else [_option_text(value)]
        )
        for index, line in enumerate(lines):
            shown = label if index == 0 else ""
            gap = "" if len(shown) < 11 else " "
            click.echo(f"  {shown:<11}{gap}{safe(line)}")


def _part_line(part: Any) -> str:
    """A thread part's first line, and how many media files it has."""
    text = part.get("text", "") if isinstance(part, dict) else part
    line = (str(text).splitlines() or [""])[0]
    media = part.get("media") if isinstance(part, dict) else None
    if isinstance(media, list) and media:
        line += f"  [+{len(media)} media]"
    return line


def _option_text(value: Any) -> str:
    if isinstance(value, dict):  # a poll
        options = " / ".join(str(o) for o in value.get("options", ()))
        hours = int(value.get("duration", 0)) / 3600
        many = ", several answers" if value.get("multiple") else ""
        return f"{options}  ({hours:g} h{many})"
    return "yes" if value is True else str(value)


def _print_media(row: Row[Any]) -> None:
    """The media line, or one line per file with its alt text and focus when it has any."""
    if not row.media:
        return
    from scheduler.plan.items import stored_meta

    meta = stored_meta(row.media, row.media_meta)
    if not meta:
        _field("media", ", ".join(row.media))
        return
    for index, (path, m) in enumerate(zip(row.media, meta, strict=True)):
        extra = "".join(
            (
                f'  alt: "{m.alt}"' if m.alt else "  (no alt text)",
                f"  focus: {m.focus[0]:g},{m.focus[1]:g}" if m.focus else "",
            )
        )
        _field("media" if index == 0 else "", path + extra)


def _print_post(row: Row[Any], tz: str | None, data: dict[str, Any], **has: bool) -> None:
    click.echo(f"{safe(row.key)}  [{row.state}]  {safe(row.account)} / {safe(row.content_type)}")
    _field("due", f"{local_time(row.due_at, tz)}  ({format_utc(row.due_at) or 'unscheduled'})")
    if row.state == "retry_wait" and row.next_attempt_at is not None:
        # The due time stays the planned one; when the daemon tries again is this.
        when = row.next_attempt_at
        _field("next try", f"{local_time(when, tz)}  ({format_utc(when)})")
    _field("schedule", row.schedule + ("  evergreen" if row.evergreen else ""))
    if row.remote_url or row.remote_id:
        where = " ".join(v for v in (row.remote_id, row.remote_url) if v)
        _field("published", f"{where} at {format_utc(row.published_at)}")
    if row.last_error:
        _field("error", f"[{row.error_class}] {data['last_error']}")
    _field("source", str(row.source))
    _print_media(row)
    _print_options(row)
    if row.tags:
        _field("tags", ", ".join(row.tags))
    if row.link:
        _field("link", row.link)
    click.echo("  text:")
    for line in row.text.split("\n"):  # a CR stays in its line, printed escaped
        click.echo(f"    {safe(line)}")
    if has["attempts"]:
        click.echo("  attempts:")
        for a in data["attempt_log"]:
            click.echo(
                safe(
                    f"    #{a['number']} {a['started_at']} {a['outcome'] or 'in flight'} "
                    f"{a['message'] or ''}".rstrip()
                )
            )
    if has["events"]:
        click.echo("  history:")
        for e in data["history"]:
            click.echo(
                safe(
                    f"    {e['at']} {e['from'] or '-'} -> {e['to']} by {e['by']}"
                    + (f": {e['reason']}" if e["reason"] else "")
                )
            )


def _report(changes: Sequence[Any], verb: str, as_json: bool, aside: Sequence[Any] = ()) -> None:
    """What an action changed, and the posts of a named group it left as they were."""
    if as_json:
        echo_json(
            {
                "changed": [c.as_json() for c in changes],
                "count": len(changes),
                "left": [{"id": r.key, "state": str(r.state)} for r in aside],
            }
        )
        return
    for c in changes:
        click.echo(f"{safe(c.key)}: {c.from_state} -> {c.to_state}")
    for r in aside:
        click.echo(f"{safe(r.key)}: {r.state}, left as it is")
    click.echo(f"{len(changes)} post(s) {verb}")


_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def _requeue_slots(app: App, conn: Connection, rows: Sequence[Row[Any]]) -> None:
    """Freed or taken slots change the account's queue: reassign it."""
    from scheduler.queue import requeue_slots

    requeue_slots(conn, app.config.accounts, rows, app.now())


@queue.command("cancel")
@click.argument("keys", metavar="POST_IDS...", nargs=-1, required=True, shell_complete=post_ids)
@_JSON
@pass_app
def cancel_(app: App, keys: tuple[str, ...], as_json: bool) -> None:
    """Cancel posts so they are never published (by plan id)."""
    from scheduler.db.engine import immediate
    from scheduler.queue import CANCELLABLE, cancel, find_for_action

    with immediate(app.engine()) as conn:
        rows, aside = find_for_action(conn, keys, CANCELLABLE)
        changes = cancel(conn, rows, app.now())
        _requeue_slots(app, conn, rows)
    _report(changes, "cancelled", as_json, aside)


@queue.command("retry")
@click.argument("keys", metavar="POST_IDS...", nargs=-1, required=True, shell_complete=post_ids)
@_JSON
@pass_app
def retry_(app: App, keys: tuple[str, ...], as_json: bool) -> None:
    """Queue failed, missed or cancelled posts again, to go out now."""
    from scheduler.db.engine import immediate
    from scheduler.queue import find_for_action, needs_approval, retry
    from scheduler.states import RETRYABLE

    with immediate(app.engine()) as conn:
        rows, aside = find_for_action(conn, keys, RETRYABLE)
        changes = retry(conn, rows, app.now(), approval=needs_approval(app.config.accounts, rows))
    _report(changes, "queued again", as_json, aside)


def _who(by: str | None) -> str:
    """Who acts, as the post's history records it: ``--by``, else the login name."""
    if by:
        if len(by) > 100 or not by.isprintable():
            raise click.BadParameter(
                f"{excerpt(by)}: a name of at most 100 characters, without control characters",
                param_hint="--by",
            )
        return by
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no name for this uid (a container)
        return "cli"


_BY = click.option("--by", metavar="NAME", help="Who signs (default: cli:LOGIN).")


@queue.command("approve")
@click.argument("keys", metavar="POST_IDS...", nargs=-1, required=True, shell_complete=post_ids)
@click.option("--comment", default=None, help="A note kept with the approval.")
@_BY
@_JSON
@pass_app
def approve_(
    app: App, keys: tuple[str, ...], comment: str | None, by: str | None, as_json: bool
) -> None:
    """Sign off posts that wait for approval; they go out at their time (now if it passed)."""
    from scheduler.db.engine import immediate
    from scheduler.queue import approve, find_for_action
    from scheduler.states import AWAITING_APPROVAL

    with immediate(app.engine()) as conn:
        rows, aside = find_for_action(conn, keys, AWAITING_APPROVAL)
        changes = approve(conn, rows, app.now(), _who(by), comment)
    _report(changes, "approved", as_json, aside)


@queue.command("reject")
@click.argument("keys", metavar="POST_IDS...", nargs=-1, required=True, shell_complete=post_ids)
@click.option("--comment", required=True, help="What to change (kept in the history).")
@_BY
@_JSON
@pass_app
def reject_(app: App, keys: tuple[str, ...], comment: str, by: str | None, as_json: bool) -> None:
    """Send posts that wait for approval back with a comment; they are not published."""
    from scheduler.db.engine import immediate
    from scheduler.db.models import PostState
    from scheduler.queue import find_for_action, reject

    with immediate(app.engine()) as conn:
        rows, aside = find_for_action(conn, keys, (PostState.PENDING_APPROVAL,))
        changes = reject(conn, rows, app.now(), _who(by), comment)
    _report(changes, "sent back", as_json, aside)


@queue.command("reschedule")
@click.argument("post_id", shell_complete=post_ids)
@click.option(
    "--at",
    "at",
    required=True,
    metavar="TIME",
    help="New time: YYYY-MM-DD HH:MM in the account's zone, or with an offset (Z, +02:00).",
)
@_JSON
@pass_app
def reschedule_(app: App, post_id: str, at: str, as_json: bool) -> None:
    """Move a post to a fixed new time (it leaves the slot queue).

    A time with an offset is converted: the answer shows it in the account's zone."""
    from scheduler.db.engine import immediate
    from scheduler.queue import find_post, needs_approval, reschedule

    with immediate(app.engine()) as conn:
        row = find_post(conn, post_id)
        tz = _zones(conn).get(row.account, "UTC")
        try:
            when = parse_wall_time(at, zone(tz))
        except LocalTimeError as exc:
            raise click.BadParameter(f"{exc} ({exc.hint})", param_hint="--at") from None
        reschedule(conn, row, when, app.now(), approval=needs_approval(app.config.accounts, [row]))
        _requeue_slots(app, conn, [row])
    if as_json:
        echo_json({"id": row.key, "due_at": when, "due_local": local_time(when, tz)})
        return
    click.echo(f"{safe(row.key)}: now due {local_time(when, tz)} ({format_utc(when)})")


def _account_ids(conn: Connection, account: str | None) -> list[tuple[int, str]]:
    from sqlalchemy import select

    from scheduler.queue import accounts_t

    q = select(accounts_t.c.id, accounts_t.c.name)
    # Only a missing --account means every account: `--account ""` (an unset variable in a
    # script) names no account, and must not pause them all.
    if account is not None:
        q = q.where(accounts_t.c.name == account)
    rows = [(r.id, r.name) for r in conn.execute(q)]
    if account is not None and not rows:
        raise NotFound(
            f"no account {excerpt(account)} in the database (import a plan or run `smm init`)"
        )
    return rows


@queue.command("pause")
@click.option("--account", help="Only this account (default: all).", shell_complete=account_names)
@_JSON
@pass_app
def pause(app: App, account: str | None, as_json: bool) -> None:
    """Pause publishing; waiting posts stay queued as ``paused``."""
    from scheduler.db.engine import immediate
    from scheduler.queue import pause_accounts

    with immediate(app.engine()) as conn:
        ids = _account_ids(conn, account)
        if not ids:
            raise SmmError("no accounts to pause")
        n = pause_accounts(conn, [i for i, _ in ids], app.now(), reason="paused from the CLI")
    if as_json:
        echo_json({"paused": [name for _, name in ids], "posts_held": n})
        return
    click.echo(f"paused {safe(', '.join(name for _, name in ids))}; {n} post(s) held")


@queue.command("resume")
@click.option("--account", help="Only this account (default: all).", shell_complete=account_names)
@_JSON
@pass_app
def resume(app: App, account: str | None, as_json: bool) -> None:
    """Resume publishing; held queue posts take the next free slots."""
    from scheduler.db.engine import immediate
    from scheduler.queue import resume_accounts

    with immediate(app.engine()) as conn:
        ids = _account_ids(conn, account)
        n = resume_accounts(
            conn, [(i, app.config.accounts.get(name)) for i, name in ids], app.now()
        )
    if as_json:
        echo_json({"resumed": [name for _, name in ids], "posts_queued": n})
        return
    names = safe(", ".join(name for _, name in ids)) or "nothing"
    click.echo(f"resumed {names}; {n} post(s) queued")


def register(cli: click.Group) -> None:
    cli.add_command(queue)


@queue.command("resolve")
@click.argument("post_id", shell_complete=post_ids)
@click.option(
    "--published",
    "remote_id",
    metavar="REMOTE_ID",
    help="It is on the network under this id: what the adapter's publish returns as "
    "remote_id (and what fetch_metrics and lookup later get back).",
)
@click.option("--url", metavar="URL", help="With --published: the post's address, if it has one.")
@click.option(
    "--at",
    metavar="TIME",
    help="With --published: when it went out (YYYY-MM-DD HH:MM in the account's zone, or with "
    "an offset); default: now, which the ER loop then takes as its publish time.",
)
@click.option("--not-published", "absent", is_flag=True, help="It is not: queue it again.")
@_JSON
@pass_app
def resolve(
    app: App,
    post_id: str,
    remote_id: str | None,
    url: str | None,
    at: str | None,
    absent: bool,
    as_json: bool,
) -> None:
    """Settle an ``unconfirmed`` post the network could not answer for.

    ``--published REMOTE_ID`` records it as published under the network's own id for it;
    networks whose posts have no address need no ``--url``."""
    from scheduler.daemon import store
    from scheduler.queue import find_post
    from scheduler.settle import address_problem, remote_id_problem

    if bool(remote_id) == absent:
        raise click.UsageError("give exactly one of --published REMOTE_ID or --not-published")
    if absent and (url or at):
        raise click.UsageError("--url and --at go with --published")
    if url and (problem := address_problem(url)):
        raise click.BadParameter(problem, param_hint="--url")
    if remote_id and (problem := remote_id_problem(remote_id, url)):
        raise click.BadParameter(problem, param_hint="--published")
    engine = app.engine()
    with engine.connect() as conn:
        row = find_post(conn, post_id)
        tz = _zones(conn).get(row.account, "UTC")
    now = app.now()
    when = now
    if at:
        try:
            when = parse_wall_time(at, zone(tz))
        except LocalTimeError as exc:
            raise click.BadParameter(f"{exc} ({exc.hint})", param_hint="--at") from None
        if when > now:
            raise click.BadParameter("the publish time is in the future", param_hint="--at")
    ok = store.settle(
        engine,
        row.id,
        now,
        "cli",
        published=bool(remote_id),
        remote_id=remote_id,
        remote_url=url,
        published_at=when if remote_id else None,
        reason="settled by hand: " + ("published" if remote_id else "not published"),
    )
    if not ok:
        raise SmmError(f"{safe(row.key)} is {row.state}, not unconfirmed: nothing to settle")
    if as_json:
        echo_json(
            {
                "id": row.key,
                "state": "published" if remote_id else "retry_wait",
                "remote_id": remote_id,
                "remote_url": url,
                "published_at": when if remote_id else None,
            }
        )
        return
    if not remote_id:
        click.echo(f"{safe(row.key)}: queued again")
        return
    where = f" at {safe(url)}" if url else ""
    click.echo(f"{safe(row.key)}: published as {safe(remote_id)}{where}, {local_time(when, tz)}")
    if not at:
        click.echo("  published time set to now; pass --at TIME if it went out earlier")
