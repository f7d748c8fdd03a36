"""``smm accounts``: configured accounts and what the database knows of them."""

from __future__ import annotations

from typing import Any

import click
from sqlalchemy import func, select

from scheduler.budgets import budgets_left
from scheduler.cli.app import App, pass_app
from scheduler.cli.output import echo_json, table
from scheduler.db.models import Account, PostState
from scheduler.logging import redact_stored
from scheduler.queue import posts_t
from scheduler.timeutil import format_utc

accounts_t = Account.__table__  # type: ignore[attr-defined]
WAITING = (PostState.QUEUED, PostState.RETRY_WAIT, PostState.PAUSED)


@click.group()
def accounts() -> None:
    """Accounts: list them with their state."""


@accounts.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@pass_app
def list_(app: App, as_json: bool) -> None:
    """List accounts: platform, zone, paused or not, credentials, queued posts, and what is
    left of each network quota the plugin declares (YouTube's daily units, TikTok's daily
    posts), as this host's daemons counted it."""
    config = app.config
    with app.engine().connect() as conn:
        rows = {r.name: r for r in conn.execute(select(accounts_t))}
        waiting: dict[int, int] = {
            account_id: int(n)
            for account_id, n in conn.execute(
                select(posts_t.c.account_id, func.count())
                .where(posts_t.c.state.in_(WAITING))
                .group_by(posts_t.c.account_id)
            )
        }
    left = budgets_left(config, app.now())
    out: list[dict[str, Any]] = []
    for name in sorted(set(config.accounts) | set(rows)):
        cfg = config.accounts.get(name)
        row = rows.get(name)
        creds = None
        if cfg is not None:
            creds = all(ref.available() for ref in cfg.credentials.values())
        out.append(
            {
                "name": name,
                "platform": cfg.platform if cfg else row.platform,  # type: ignore[union-attr]
                "timezone": cfg.timezone if cfg else row.timezone,  # type: ignore[union-attr]
                "in_config": cfg is not None,
                "paused": bool(row.paused) if row else False,
                "paused_reason": redact_stored(row.paused_reason) if row else None,
                "auth_state": row.auth_state if row else "ok",
                "token_expires_at": format_utc(row.token_expires_at) if row else None,
                "credentials_available": creds,
                "slots_per_week": sum(len(t) for t in cfg.slots.values()) if cfg else 0,
                "waiting": waiting.get(row.id, 0) if row else 0,
                "budgets": left.get(name, []),
            }
        )
    if as_json:
        echo_json(out)
        return
    table(
        ["name", "platform", "zone", "state", "creds", "slots/wk", "waiting", "quota left"],
        [
            (
                a["name"],
                a["platform"],
                a["timezone"],
                ("paused: " + (a["paused_reason"] or "") if a["paused"] else "active")
                + ("" if a["auth_state"] == "ok" else f" (auth {a['auth_state']})")
                + ("" if a["in_config"] else " (not in config)"),
                {True: "ok", False: "MISSING", None: "-"}[a["credentials_available"]],
                a["slots_per_week"],
                a["waiting"],
                ", ".join(
                    f"{'?' if b['left'] is None else format(b['left'], ',')}/{b['limit']:,}"
                    for b in a["budgets"]
                )
                or "-",
            )
            for a in out
        ],
        empty="no accounts",
    )


def register(cli: click.Group) -> None:
    cli.add_command(accounts)
