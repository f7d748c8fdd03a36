"""The ``smm`` command line: one group, a subgroup per noun (plan, queue, accounts...).

Exit codes: 0 success, 1 invalid input or a failed operation, 2 usage error.
"""

from __future__ import annotations

from typing import Any

import click
from sqlalchemy.exc import OperationalError

from scheduler import __version__
from scheduler import plugins as plugin_manager
from scheduler.cli.app import App
from scheduler.db.engine import redact_url
from scheduler.errors import InvalidInput, SmmError
from scheduler.logging import configure_logging, redact


class SmmGroup(click.Group):
    """Turns the project's errors into a message and exit code 1, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except InvalidInput as exc:
            click.echo(click.style("error: ", fg="red", bold=True) + str(exc), err=True)
            ctx.exit(1)
        except SmmError as exc:
            click.echo(click.style("error: ", fg="red", bold=True) + str(exc), err=True)
            ctx.exit(1)
        except OperationalError as exc:
            app = ctx.obj
            where = redact_url(app.database_url) if isinstance(app, App) else "the database"
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            click.echo(
                click.style("error: ", fg="red", bold=True)
                + f"cannot use the database {where}: {redact(reason)}",
                err=True,
            )
            ctx.exit(1)


@click.group(cls=SmmGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    envvar="SMM_CONFIG",
    type=click.Path(dir_okay=False),
    help="Config file (TOML). Env: SMM_CONFIG.",
)
@click.option(
    "--db",
    "db_url",
    envvar="SMM_DATABASE_URL",
    metavar="URL",
    help="Database URL (sqlite:///PATH or postgresql+psycopg://...). Env: SMM_DATABASE_URL.",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default=None,
    help="Log level (default: warning; `smm run` uses the config's [logging] level).",
)
@click.version_option(__version__, prog_name="smm-scheduler")
@click.pass_context
def cli(
    ctx: click.Context, config_path: str | None, db_url: str | None, log_level: str | None
) -> None:
    """smm-scheduler: publish a content plan on schedule, learn which content works."""
    app = App(config_path=config_path, db_url=db_url)
    ctx.obj = app
    ctx.call_on_close(app.close)
    configure_logging(log_level or "warning")


def _register() -> None:
    from scheduler.cli import (
        accounts,
        db,
        demo,
        doctor,
        er,
        plan,
        queue,
        report,
        run,
        simulate,
        status,
    )
    from scheduler.cli import config as config_cmd
    from scheduler.cli import plugins as plugins_cli

    modules = (
        db,
        config_cmd,
        plan,
        queue,
        accounts,
        run,
        status,
        doctor,
        er,
        report,
        simulate,
        demo,
    )
    for module in (*modules, plugins_cli):
        module.register(cli)


_register()


def main() -> None:
    """Console-script entry point."""
    # Plugins log while they load: make sure that goes to stderr, never into --json output.
    configure_logging("warning")
    for impl in plugin_manager.hook_impls("register_commands"):
        try:
            impl.function(cli=cli)
        except Exception as exc:  # a broken plugin must not take the CLI down
            click.echo(
                f"warning: plugin {impl.plugin_name} failed to add commands: {exc}", err=True
            )
    cli.main(prog_name="smm")


if __name__ == "__main__":  # pragma: no cover
    main()
