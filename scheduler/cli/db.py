"""``smm init`` and ``smm db``: creating and upgrading the database."""

from __future__ import annotations

import click

from scheduler.accounts import sync_accounts
from scheduler.cli.app import App, pass_app
from scheduler.db.engine import immediate, redact_url
from scheduler.db.migrate import current_revision, head_revision, upgrade


@click.command()
@pass_app
def init(app: App) -> None:
    """Create the database (or bring it up to date) and record the configured accounts."""
    engine = app.raw_engine
    before, after = upgrade(engine)
    with immediate(engine) as conn:
        ids = sync_accounts(conn, app.config, app.now())
    where = redact_url(app.database_url)
    if before == after:
        click.echo(f"database {where} is up to date (schema {after})")
    else:
        click.echo(f"database {where} ready (schema {after})")
    click.echo(f"{len(ids)} account(s) recorded")


@click.group()
def db() -> None:
    """Database schema: show the version, upgrade it."""


@db.command("upgrade")
@pass_app
def db_upgrade(app: App) -> None:
    """Apply pending schema migrations (back up the database first)."""
    before, after = upgrade(app.database_engine())
    if before == after:
        click.echo(f"already at the latest schema ({after})")
    else:
        click.echo(f"upgraded schema {before or 'empty'} -> {after}")


@db.command("current")
@pass_app
def db_current(app: App) -> None:
    """Print the database's schema version and the latest one."""
    current = current_revision(app.database_engine())
    head = head_revision()
    state = "up to date" if current == head else "run `smm db upgrade`"
    click.echo(
        f"database {redact_url(app.database_url)}: schema {current or 'none'} "
        f"(latest {head}; {state})"
    )


def register(cli: click.Group) -> None:
    cli.add_command(init)
    cli.add_command(db)
