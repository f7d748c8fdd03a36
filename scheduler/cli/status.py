"""``smm status``: is it working? Daemons, the queue, what is next, what needs a person."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import click
from sqlalchemy import Connection, func, select

from scheduler import plugins, tokens
from scheduler.cli.app import App, pass_app
from scheduler.cli.output import Cell, echo_json, local_time, preview, table
from scheduler.config import Config
from scheduler.daemon.service import RECONCILE_EVERY
from scheduler.daemon.store import ALIVE_WITHIN
from scheduler.db.models import DaemonHeartbeat, PostState
from scheduler.logging import redact_stored
from scheduler.observability import HEARTBEAT_HORIZON
from scheduler.queue import accounts_t, posts_t
from scheduler.states import DUE_STATES, HOLDING_STATES
from scheduler.timeutil import format_utc

daemons_t = DaemonHeartbeat.__table__  # type: ignore[attr-defined]

#: Exit code when something needs a person (monitoring scripts: 0 fine, 3 look, 1 error).
NEEDS_ATTENTION = 3
#: Due posts older than this, with a daemon alive, mean the daemon is not keeping up.
OVERDUE_AFTER = timedelta(minutes=5)
#: The daemon settles unconfirmed posts itself; one still unsettled after two of its tries
#: (``[daemon] reconcile``, 5 min by default) waits for a person.
UNSETTLED_AFTER = 2 * RECONCILE_EVERY
NEXT_DUE = 10
NEEDS_PERSON_SHOWN = 20


def daemon_state(last_seen: datetime, status: str, now: datetime) -> str:
    """``alive``, ``stale`` (its heartbeats stopped: crashed or hung) or ``stopped`` (cleanly)."""
    if status == "stopped":
        return "stopped"
    return "alive" if now - last_seen <= ALIVE_WITHIN else "stale"


def _fix(key: str, state: str) -> str:
    if state == PostState.UNCONFIRMED:
        return f"smm queue resolve {key} --published REMOTE_ID | --not-published"
    return f"smm queue retry {key}  (or: smm queue cancel {key})"


def gather(
    conn: Connection, now: datetime, *, unsettled_after: timedelta = UNSETTLED_AFTER
) -> dict[str, Any]:
    """Everything ``smm status`` shows, as the JSON it prints."""
    zones = {
        r.name: r.timezone for r in conn.execute(select(accounts_t.c.name, accounts_t.c.timezone))
    }
    active = select(accounts_t.c.id).where(accounts_t.c.paused.is_(False))

    daemons = [
        {
            "id": d.id,
            "hostname": d.hostname,
            "pid": d.pid,
            "version": d.version,
            "started_at": d.started_at,
            "last_seen": d.last_seen,
            "heartbeat_age_seconds": round(max(0.0, (now - d.last_seen).total_seconds()), 1),
            "state": daemon_state(d.last_seen, d.status, now),
            "status": d.status,
        }
        for d in conn.execute(
            select(daemons_t)
            .where(daemons_t.c.last_seen >= now - HEARTBEAT_HORIZON)
            .order_by(daemons_t.c.last_seen.desc())
        )
    ]

    counts = dict.fromkeys((s.value for s in PostState), 0)
    for state, n in conn.execute(
        select(posts_t.c.state, func.count()).group_by(posts_t.c.state)
    ).all():
        counts[state] = int(n)

    due_rows = conn.execute(
        select(posts_t, accounts_t.c.name.label("account"))
        .join(accounts_t, accounts_t.c.id == posts_t.c.account_id)
        .where(posts_t.c.state.in_(DUE_STATES), posts_t.c.next_attempt_at.is_not(None))
        .where(posts_t.c.account_id.in_(active))
        .order_by(posts_t.c.next_attempt_at, posts_t.c.id)
        .limit(NEXT_DUE)
    ).all()
    next_due = [
        {
            "id": r.key,
            "account": r.account,
            "type": r.content_type,
            "state": r.state,
            "due_at": r.next_attempt_at,
            "due_local": local_time(r.next_attempt_at, zones.get(r.account)),
            "text": preview(r.text),
        }
        for r in due_rows
    ]

    paused = [
        {
            "account": a.name,
            "platform": a.platform,
            "reason": redact_stored(a.paused_reason),
            "auth_expired": a.auth_state == "expired",
            "fix": (
                f"renew the credentials, then: smm queue resume --account {a.name}"
                if a.auth_state == "expired"
                else f"smm queue resume --account {a.name}"
            ),
        }
        for a in conn.execute(
            select(accounts_t).where(accounts_t.c.paused.is_(True)).order_by(accounts_t.c.name)
        )
    ]

    person = (posts_t.c.state == PostState.FAILED) | (
        (posts_t.c.state == PostState.UNCONFIRMED) & (posts_t.c.updated_at <= now - unsettled_after)
    )
    person_total = int(conn.execute(select(func.count()).where(person)).scalar_one())
    needs_person = [
        {
            "id": r.key,
            "account": r.account,
            "state": r.state,
            "since": r.updated_at,
            "error_class": r.error_class,
            "last_error": redact_stored(r.last_error),
            "fix": _fix(r.key, r.state),
        }
        for r in conn.execute(
            select(posts_t, accounts_t.c.name.label("account"))
            .join(accounts_t, accounts_t.c.id == posts_t.c.account_id)
            .where(person)
            .order_by(posts_t.c.updated_at.desc(), posts_t.c.id)
            .limit(NEEDS_PERSON_SHOWN)
        )
    ]

    due_now = posts_t.c.state.in_(DUE_STATES) & posts_t.c.account_id.in_(active)
    due_count = int(
        conn.execute(
            select(func.count()).where(due_now, posts_t.c.next_attempt_at <= now)
        ).scalar_one()
    )
    overdue = int(
        conn.execute(
            select(func.count()).where(due_now, posts_t.c.next_attempt_at <= now - OVERDUE_AFTER)
        ).scalar_one()
    )

    attention = []
    alive = [d for d in daemons if d["state"] == "alive"]
    if due_count and not alive:
        attention.append(f"{due_count} post(s) due and no daemon alive: start `smm run`")
    elif not alive:
        # Nothing is due yet, but nothing would publish it when it is.
        first = next_due[0]["due_at"] if next_due else None
        waiting = f"the next post is due at {format_utc(first)}" if first else "no post waiting"
        attention.append(f"no daemon alive ({waiting}): start `smm run`")
    elif overdue:
        attention.append(
            f"{overdue} post(s) overdue by more than {OVERDUE_AFTER.seconds // 60} min although "
            "a daemon is alive: see its logs"
        )
    expired = [p["account"] for p in paused if p["auth_expired"]]
    if expired:
        attention.append(f"credentials rejected, account(s) paused: {', '.join(expired)}")
    failed = counts[PostState.FAILED]
    if failed:
        attention.append(f"{failed} failed post(s): retry or cancel them")
    unsettled = person_total - failed
    if unsettled:
        attention.append(f"{unsettled} unconfirmed post(s) the network cannot settle: resolve them")

    return {
        "healthy": not attention,
        "attention": attention,
        "now": now,
        "daemons": daemons,
        "queue": counts,
        "due_now": due_count,
        "next_due": next_due,
        "paused_accounts": paused,
        "needs_person": needs_person,
        "needs_person_total": person_total,
    }


def add_tokens(report: dict[str, Any], config: Config, now: datetime) -> None:
    """Add the refreshable tokens (``tokens``) and their problems to ``report``."""
    classes = {p: info.adapter for p, info in plugins.platforms().items()}
    report["tokens"] = tokens.health(config, classes, now)
    problems = [t["problem"] for t in report["tokens"] if t["problem"]]
    report["attention"].extend(problems)
    report["healthy"] = not report["attention"]


def add_learned_slots(report: dict[str, Any], conn: Connection, config: Config) -> None:
    """Add the accounts whose learned slot table the config no longer fits on some days
    (``learned_slots``): they post at the config's times there, which is worth knowing but
    needs nobody, so the report's health is left as it is."""
    from scheduler.learned_slots import misfit

    learning = {n: a for n, a in config.accounts.items() if a.learn}
    found = []
    if learning:
        ids: dict[str, int] = dict(
            conn.execute(
                select(accounts_t.c.name, accounts_t.c.id).where(
                    accounts_t.c.name.in_(sorted(learning))
                )
            ).all()
        )
        for name in sorted(ids):
            unfit = misfit(conn, learning[name], ids[name])
            if unfit is not None:
                found.append({**unfit.as_dict(), "words": unfit.words()})
    report["learned_slots"] = found


def add_orphans(report: dict[str, Any], conn: Connection, config: Config) -> None:
    """Add the posts that wait for an account the config no longer has: no daemon takes
    them (a daemon publishes only its config's accounts), so they would wait for ever."""
    waiting = [s for s in HOLDING_STATES if s != PostState.CLAIMED]
    rows = conn.execute(
        select(accounts_t.c.name, func.count())
        .join(posts_t, posts_t.c.account_id == accounts_t.c.id)
        .where(posts_t.c.state.in_(waiting))
        .where(accounts_t.c.name.not_in(sorted(config.accounts)))
        .group_by(accounts_t.c.name)
        .order_by(accounts_t.c.name)
    ).all()
    report["orphaned"] = [{"account": name, "posts": int(n)} for name, n in rows]
    if rows:
        total = sum(int(n) for _, n in rows)
        names = ", ".join(name for name, _ in rows)
        report["attention"].append(
            f"{total} post(s) wait for account(s) no longer in the config ({names}): no daemon "
            "takes them; put the account back in the config, or cancel them "
            "(smm queue list --account NAME)"
        )
        report["healthy"] = False


def _print(report: dict[str, Any]) -> None:
    if report["healthy"]:
        click.echo(click.style("healthy", fg="green", bold=True))
    else:
        click.echo(click.style("needs attention:", fg="yellow", bold=True))
        for line in report["attention"]:
            click.echo(f"  - {line}")

    click.echo("\ndaemons")
    # Daemons that are gone fold into one line: a restart loop must not bury the live ones.
    alive = [d for d in report["daemons"] if d["state"] == "alive"]
    gone = [d for d in report["daemons"] if d["state"] != "alive"]
    table(
        ["daemon", "state", "last seen", "version", "status"],
        [
            (
                d["id"],
                Cell(d["state"], fg="green"),
                f"{d['heartbeat_age_seconds']:.0f}s ago",
                d["version"],
                d["status"],
            )
            for d in alive
        ],
        empty="no daemon alive: start `smm run`"
        if gone
        else "no daemon has run in the last day: start `smm run`",
    )
    if gone:
        stale = sum(1 for d in gone if d["state"] == "stale")
        crashed = f" ({stale} without a clean stop)" if stale else ""
        click.echo(
            f"  {len(gone)} stopped daemon{'s' if len(gone) != 1 else ''}{crashed}, last seen "
            f"{min(d['heartbeat_age_seconds'] for d in gone):.0f}s ago"
        )

    click.echo("\nqueue")
    counts = {s: n for s, n in report["queue"].items() if n}
    click.echo("  " + ("  ".join(f"{s} {n}" for s, n in counts.items()) or "empty"))

    click.echo("\nnext due")
    table(
        ["id", "account", "type", "state", "due (local)", "text"],
        [
            (p["id"], p["account"], p["type"], p["state"], p["due_local"], p["text"])
            for p in report["next_due"]
        ],
        empty="nothing scheduled",
    )

    if report["paused_accounts"]:
        click.echo("\npaused accounts")
        table(
            ["account", "platform", "reason", "fix"],
            [
                (
                    p["account"],
                    p["platform"],
                    ("AUTH EXPIRED: " if p["auth_expired"] else "") + (p["reason"] or "-"),
                    p["fix"],
                )
                for p in report["paused_accounts"]
            ],
        )

    if report.get("tokens"):
        click.echo("\ntokens")
        table(
            ["account", "platform", "expires", "refreshed", "last failure"],
            [
                (
                    t["account"],
                    t["platform"],
                    format_utc(t["expires_at"]) if t["expires_at"] else "unknown",
                    format_utc(t["refreshed_at"]) if t["refreshed_at"] else "-",
                    t["error"] or "-",
                )
                for t in report["tokens"]
            ],
        )

    if report.get("learned_slots"):
        click.echo("\nlearned slots")
        for m in report["learned_slots"]:
            click.echo(f"  note: {m['words']}")

    if report["needs_person"]:
        click.echo("\nneeds a person")
        for p in report["needs_person"]:
            click.echo(
                f"  {p['id']} [{p['state']}] {p['account']}, since {format_utc(p['since'])}: "
                f"{p['error_class'] or '-'}: {p['last_error'] or 'no message'}"
            )
            click.echo(f"      fix: {p['fix']}")
        hidden = report["needs_person_total"] - len(report["needs_person"])
        if hidden > 0:
            click.echo(
                f"  ... and {hidden} more: smm queue list --state failed --state unconfirmed"
            )


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@pass_app
def status(app: App, as_json: bool) -> None:
    """Is it working? Daemons, queue by state, next posts due, what needs a person.

    A daemon is alive while its heartbeat is under 30 s old. Needs attention: no daemon
    alive, posts overdue by 5 min although one is, accounts whose credentials were rejected,
    failed posts, unconfirmed posts the network cannot settle, access tokens whose refresh
    fails with less than 6 hours left or that cannot be refreshed, posts waiting for an
    account the config no longer has. Also noted: learned slot
    tables the config no longer fits (those days post at the config's times).

    Exit code: 0 healthy, 3 needs attention (for monitoring scripts), 1 error.
    """
    with app.engine(create=False).connect() as conn:
        report = gather(conn, app.now(), unsettled_after=2 * app.config.daemon.reconcile)
        add_learned_slots(report, conn, app.config)
        if app.config_file is not None:  # without a config, which accounts it has is unknown
            add_orphans(report, conn, app.config)
    add_tokens(report, app.config, app.now())
    if as_json:
        echo_json(report)
    else:
        _print(report)
    if not report["healthy"]:
        click.get_current_context().exit(NEEDS_ATTENTION)


def register(cli: click.Group) -> None:
    """Add ``smm status`` to ``cli``."""
    cli.add_command(status)
