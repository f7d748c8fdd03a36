"""``smm run``: the daemon."""

from __future__ import annotations

import logging

import click

from scheduler.cli.app import App, pass_app
from scheduler.config import Config
from scheduler.daemon.service import Service, leave, run_forever
from scheduler.logging import configure_logging


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
    # The schema is checked (or created) by the service, which waits for the database.
    engine = app.raw_engine

    def reload_config() -> Config:
        fresh = App(config_path=app.config_path, db_url=app.db_url)
        return fresh.require_config()

    service = Service(
        engine,
        config,
        reload_config=reload_config,
        clock=app.clock,
        once=once,
        prepare=lambda: app.engine(create=True),
    )
    run_forever(service.run())
    if service.stop_requested:
        leave()  # within the shutdown deadline, whatever the teardown would take


def register(cli: click.Group) -> None:
    cli.add_command(run)
