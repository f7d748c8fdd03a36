"""``smm init`` and ``smm db``: creating and upgrading the database."""

from __future__ import annotations

import click

from scheduler.accounts import sync_accounts
from scheduler.cli.app import App, pass_app
from scheduler.cli.output import echo_json
from scheduler.db.engine import immediate, redact_url
from scheduler.db.migrate import current_revision, head_revision, upgrade

_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


@click.command()
@_JSON
@pass_app
def init(app: App, as_json: bool) -> None:
    """Create the database (or bring it up to date) and record the configured accounts."""
    engine = app.raw_engine
    before, after = upgrade(engine)
    with immediate(engine) as conn:
        ids = sync_accounts(conn, app.config, app.now())
    where = redact_url(app.database_url)
    if as_json:
        echo_json(
            {
                "database": where,
                "schema_before": before,
                "schema": after,
                "created": before is None,
                "accounts": len(ids),
            }
        )
        return
    if before == after:
        click.echo(f"database {where} is up to date (schema {after})")
    else:
        click.echo(f"database {where} ready (schema {after})")
    click.echo(f"{len(ids)} account(s) recorded")


@click.group()
def db() -> None:
    """Database schema: show the version, upgrade it."""


@db.command("upgrade")
@_JSON
@pass_app
def db_upgrade(app: App, as_json: bool) -> None:
    """Apply pending schema migrations (back up the database first)."""
    before, after = upgrade(app.database_engine())
    if as_json:
        echo_json({"schema_before": before, "schema": after, "upgraded": before != after})
        return
    if before == after:
        click.echo(f"already at the latest schema ({after})")
    else:
        click.echo(f"upgraded schema {before or 'empty'} -> {after}")


@db.command("current")
@_JSON
@pass_app
def db_current(app: App, as_json: bool) -> None:
    """Print the database's schema version and the latest one."""
    current = current_revision(app.database_engine())
    head = head_revision()
    if as_json:
        echo_json(
            {
                "database": redact_url(app.database_url),
                "schema": current,
                "latest": head,
                "up_to_date": current == head,
            }
        )
        return
    state = "up to date" if current == head else "run `smm db upgrade`"
    click.echo(
        f"database {redact_url(app.database_url)}: schema {current or 'none'} "
        f"(latest {head}; {state})"
    )


def register(cli: click.Group) -> None:
    cli.add_command(init)
    cli.add_command(db)
