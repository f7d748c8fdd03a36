"""``smm run`` (the daemon) and ``smm queue resolve`` (settling a post by hand)."""

from __future__ import annotations

import logging

import click

from scheduler.cli.app import App, pass_app
from scheduler.config import Config
from scheduler.daemon import store
from scheduler.daemon.service import Service, run_forever
from scheduler.errors import SmmError
from scheduler.logging import configure_logging
from scheduler.queue import find_posts


@click.command()
@click.option("--once", is_flag=True, help="Publish what is due now, then exit (cron, tests).")
@pass_app
def run(app: App, once: bool) -> None:
    """Run the daemon: publish due posts until stopped (SIGTERM), reload on SIGHUP.

    Several daemons may share one PostgreSQL database; with SQLite run one.
    """
    config = app.require_config()
    ctx = click.get_current_context()
    level = ctx.find_root().params.get("log_level") or config.log_level
    configure_logging(level)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    engine = app.engine(create=True)

    def reload_config() -> Config:
        fresh = App(config_path=app.config_path, db_url=app.db_url)
        return fresh.require_config()

    service = Service(engine, config, reload_config=reload_config, clock=app.clock, once=once)
    run_forever(service.run())


@click.command("resolve")
@click.argument("post_id")
@click.option("--published", "url", metavar="URL", help="It is on the network, at URL.")
@click.option("--not-published", "absent", is_flag=True, help="It is not: queue it again.")
@pass_app
def resolve(app: App, post_id: str, url: str | None, absent: bool) -> None:
    """Settle an ``unconfirmed`` post the network could not answer for."""
    if bool(url) == absent:
        raise click.UsageError("give exactly one of --published URL or --not-published")
    engine = app.engine()
    with engine.connect() as conn:
        (row,) = find_posts(conn, [post_id])
    ok = store.settle(
        engine,
        row.id,
        app.now(),
        "cli",
        published=bool(url),
        remote_url=url,
        remote_id=url,
        reason="settled by hand: " + ("published" if url else "not published"),
    )
    if not ok:
        raise SmmError(f"{row.key} is {row.state}, not unconfirmed: nothing to settle")
    click.echo(f"{row.key}: " + (f"published at {url}" if url else "queued again"))


def register(cli: click.Group) -> None:
    cli.add_command(run)
    queue = cli.commands.get("queue")
    if isinstance(queue, click.Group):
        queue.add_command(resolve)
