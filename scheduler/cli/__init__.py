"""The ``smm`` command line: one group, a subgroup per noun (plan, queue, accounts...).

Exit codes: 0 success, 1 invalid input or a failed operation, 2 usage error.

Start-up is kept short (``smm --help``, ``--version`` and tab completion run in a fraction of a
second): each command's module, and with it SQLAlchemy, the models and the plugins, is
imported only when that command runs. ``COMMANDS`` names the module of every built-in command
with the one-line help ``smm --help`` shows for it (a test checks it against the commands);
commands that plugins add are looked for when a name is not built in, and those they declare
in their metadata (scheduler/cli/plugin_commands.py) are listed by ``smm --help``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import click

from scheduler import __version__
from scheduler.cli.app import App

if TYPE_CHECKING:
    from scheduler.cli.plugin_commands import Declared

#: Built-in command -> (its module under scheduler.cli, the first paragraph of its help, which
#: ``smm --help`` shortens as click does). tests/test_cli_startup.py checks them.
COMMANDS: dict[str, tuple[str, str]] = {
    "accounts": ("accounts", "Accounts: list them with their state."),
    "config": ("config", "The config file."),
    "db": ("db", "Database schema: show the version, upgrade it."),
    "demo": (
        "demo",
        "Run the example plan through the real daemon in virtual time, then show the ER report.",
    ),
    "doctor": (
        "doctor",
        "Check the installation: config, database and schema, credentials, plugins, clock.",
    ),
    "er": (
        "er",
        "ER per content type: rate with a 90% interval, posts counted, priority, trend, "
        "the best time to post, the last decisions in plain words (their statistics with "
        "--statistics).",
    ),
    "init": (
        "db",
        "Create the database (or bring it up to date) and record the configured accounts.",
    ),
    "plan": ("plan", "Content plans (YAML or CSV): validate and import."),
    "plugins": ("plugins", "Plugins: which are installed and what their networks can do."),
    "queue": (
        "queue",
        "The queue: list, inspect, approve, cancel, retry, reschedule, pause and resume.",
    ),
    "report": (
        "report",
        "A static HTML page of the ER loop: ER per content type over time, the priority "
        "trajectory, engagement by weekday and hour, per-type figures and the latest "
        "decisions.",
    ),
    "run": (
        "run",
        "Run the daemon: publish due posts until stopped (SIGTERM), reload on SIGHUP.",
    ),
    "simulate": (
        "simulate",
        "Run the ER loop in virtual time on a simulated world, beside the oracle and "
        "round-robin, over one or more seeds.",
    ),
    "status": (
        "status",
        "Is it working? Daemons, queue by state, next posts due, what needs a person.",
    ),
    "web": (
        "web",
        "Serve the web app: calendar, post previews, approval, engagement (docs/web.md).",
    ),
}


def short_help(text: str, limit: int) -> str:
    """``text`` shortened to ``limit`` as click shortens a command's help."""
    return click.Command(None, help=text).get_short_help_str(limit)


def _error(message: str) -> None:
    click.echo(click.style("error: ", fg="red", bold=True) + message, err=True)


#: Longest run of characters without a space that a usage error repeats from the input, and
#: the longest usage error shown.
_WORD_CHARS, _MESSAGE_CHARS = 80, 1000


def bounded_message(message: str) -> str:
    """``message`` with every over-long word cut to its first characters and "…", and the
    whole cut to a bounded length: usage errors quote what was typed."""
    words = [w if len(w) <= _WORD_CHARS else w[:_WORD_CHARS] + "…" for w in message.split(" ")]
    text = " ".join(words)
    return text if len(text) <= _MESSAGE_CHARS else text[:_MESSAGE_CHARS] + "…"


class SmmGroup(click.Group):
    """The top-level group: loads command modules on demand and turns the project's errors
    into a message and exit code 1, never a traceback."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._loaded: set[str] = set()
        self._plugin_commands_loaded = False
        #: Commands plugins declare in their metadata, found on first need; and which plugin
        #: added each command through ``register_commands``.
        self._declared: dict[str, Declared] | None = None
        self._added_by: dict[str, str] = {}
        #: Set by ``main``: the modules commands import are frozen out of the collector.
        self.freeze_imports = False

    # -- lazy commands ----------------------------------------------------------------------

    def _load_module(self, module: str) -> None:
        if module in self._loaded:
            return
        self._loaded.add(module)
        import gc
        import importlib

        # A command's module pulls in most of a thousand modules (SQLAlchemy, the models, the
        # daemon), alive until the process ends: the cyclic collector would walk the growing
        # heap at every allocation burst, and all of it once more at the first allocation
        # after, to free nothing (a tenth of `smm run`'s CPU before its first claim). In the
        # `smm` process they are frozen out of its generations; reference counting works as
        # usual. (Tests that run commands in-process leave the collector's state alone.)
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            importlib.import_module(f"scheduler.cli.{module}").register(self)
        finally:
            if self.freeze_imports:
                gc.freeze()
            if was_enabled:
                gc.enable()

    def _load(self, name: str) -> None:
        entry = COMMANDS.get(name)
        if entry is None:
            return
        self._load_module(entry[0])

    def load_all(self) -> None:
        """Import every built-in command (the CLI reference, tests)."""
        for name in COMMANDS:
            self._load(name)

    def load_plugin_commands(self) -> None:
        """Let plugins add their commands (``register_commands``); a broken one is reported
        and skipped."""
        if self._plugin_commands_loaded:
            return
        self._plugin_commands_loaded = True
        from scheduler import plugins as plugin_manager
        from scheduler.logging import configure_logging

        # Plugins log while they load: make sure that goes to stderr, never into --json output.
        configure_logging("warning")
        for impl in plugin_manager.hook_impls("register_commands"):
            before = set(self.commands)
            try:
                impl.function(cli=self)
            except Exception as exc:  # a broken plugin must not take the CLI down
                click.echo(
                    f"warning: plugin {impl.plugin_name} failed to add commands: {exc}", err=True
                )
            for name in set(self.commands) - before:
                self._added_by[name] = impl.plugin_name

    def forget_plugin_commands(self) -> None:
        """Drop every command plugins added and what was found about them, so that the next
        need looks again. The group lives as long as the process: a process that reloads its
        plugins (``scheduler.plugins.reset``), as the test suite does, calls this with it."""
        for name in self._added_by:
            self.commands.pop(name, None)
            if name in COMMANDS:  # a plugin had replaced a built-in one: load ours again
                self._loaded.discard(COMMANDS[name][0])
        self._added_by.clear()
        self._declared = None
        self._plugin_commands_loaded = False

    def declared_commands(self) -> dict[str, Declared]:
        """The commands plugins declare (``smm_scheduler.commands`` entry points), by name,
        not loaded yet; what was left out is said once on stderr."""
        if self._declared is None:
            from scheduler.cli.plugin_commands import declared

            self._declared, left_out = declared(set(COMMANDS))
            for problem in left_out:
                click.echo(f"warning: {problem}", err=True)
        return self._declared

    def _load_declared(self, name: str) -> None:
        entry = self.declared_commands().get(name)
        if entry is None or name in self.commands:
            return
        command = entry.load()
        if command is None:
            # Asked for by name: an error, not "no such command".
            raise click.ClickException(entry.problem())
        self.add_command(command, name)
        self._added_by[name] = entry.plugin

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands:
            self._load(cmd_name)
        if cmd_name not in self.commands and cmd_name not in COMMANDS:
            self._load_declared(cmd_name)
        if cmd_name not in self.commands and cmd_name not in COMMANDS:
            self.load_plugin_commands()
        return self.commands.get(cmd_name)

    def builtin_commands(self) -> list[str]:
        """The built-in commands' names, in the order ``smm --help`` lists them."""
        return sorted(COMMANDS)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(COMMANDS) | set(self.commands) | set(self.declared_commands()))

    def _short_helps(self, ctx: click.Context, limit: int = 45) -> Iterable[tuple[str, str]]:
        """(name, one-line help) of every command, built-in ones first; a plugin's is marked
        with the plugin's name, and a declared command that does not load says why."""
        for name in self.builtin_commands():
            command = self.commands.get(name)
            if name in self._added_by and command is not None:
                continue  # replaced by a plugin's (register_commands): listed below
            if command is not None:
                if not command.hidden:
                    yield name, command.get_short_help_str(limit)
            else:
                yield name, short_help(COMMANDS[name][1], limit)
        yield from self._plugin_rows(limit)

    def _plugin_rows(self, limit: int) -> Iterable[tuple[str, str]]:
        declared = self.declared_commands()
        for name in sorted(set(declared) | set(self._added_by)):
            entry = declared.get(name)
            if name in self._added_by:
                command, plugin = self.commands.get(name), self._added_by[name]
            else:
                assert entry is not None
                command, plugin = entry.load(), entry.plugin
            mark = f"[plugin {plugin}]"
            if command is None:
                assert entry is not None
                yield name, f"{mark} failed to load: {entry.error}"
            elif not command.hidden:
                help_ = command.get_short_help_str(max(10, limit - len(mark) - 1))
                yield name, f"{mark} {help_}".rstrip()

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = self.list_commands(ctx)
        width = formatter.width or 80
        limit = width - 6 - max(map(len, names))
        rows = list(self._short_helps(ctx, limit))
        builtin = [r for r in rows if r[0] in COMMANDS and r[0] not in self._added_by]
        if builtin:
            with formatter.section("Commands"):
                formatter.write_dl(builtin)
        from_plugins = [r for r in rows if r not in builtin]
        if from_plugins:
            with formatter.section("Commands from plugins"):
                formatter.write_dl(from_plugins)
            for entry in self.declared_commands().values():
                if entry.error is not None:
                    click.echo(f"warning: {entry.problem()}", err=True)
        formatter.write_paragraph()
        formatter.write_text(
            "Commands a plugin adds through its register_commands hook are not listed: "
            "`smm NAME --help` for those."
        )

    def shell_complete(self, ctx: click.Context, incomplete: str) -> list[Any]:
        from click.shell_completion import CompletionItem

        items: list[Any] = [
            CompletionItem(name, help=text)
            for name, text in self._short_helps(ctx)
            if name.startswith(incomplete)
        ]
        items.extend(click.Command.shell_complete(self, ctx, incomplete))
        return items

    # -- errors -----------------------------------------------------------------------------

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # Bytes that are not UTF-8 reach Python as lone surrogates, which no database or
        # terminal takes: refuse them here, as a usage error, before any command runs.
        for i, arg in enumerate(args):
            try:
                arg.encode("utf-8")
            except UnicodeEncodeError:
                raise click.UsageError(
                    f"argument {i + 1} is not valid UTF-8 text", ctx=ctx
                ) from None
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            exc.message = bounded_message(exc.message)  # type: ignore[misc]  # Final in the stubs
            raise

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            # click quotes a refused value whole ("'xxxx...' is not one of ..."): an argument
            # of megabytes would be echoed back in full.
            exc.message = bounded_message(exc.message)  # type: ignore[misc]  # Final in the stubs
            raise
        except Exception as exc:
            # The project's errors and SQLAlchemy's are looked up only if loaded: an exception
            # cannot be one of them otherwise, and --help never pays for importing them.
            errors = sys.modules.get("scheduler.errors")
            if errors is not None and isinstance(exc, errors.SmmError):  # InvalidInput too
                _error(str(exc))
                ctx.exit(1)
            sqlalchemy_exc = sys.modules.get("sqlalchemy.exc")
            if sqlalchemy_exc is None or not isinstance(exc, sqlalchemy_exc.OperationalError):
                raise
            from scheduler.db.engine import redact_url, sqlite_access_problem
            from scheduler.logging import redact

            app = ctx.obj
            where = redact_url(app.database_url) if isinstance(app, App) else "the database"
            orig = getattr(exc, "orig", None)
            reason = str(orig).strip().splitlines()[0] if orig else str(exc)
            # SQLite says only "unable to open database file" when its folder is read-only.
            access = sqlite_access_problem(app.database_url) if isinstance(app, App) else ""
            _error(
                f"cannot use the database {where}: {redact(reason)}"
                + (f"; {access}" if access else "")
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
@click.option(
    "--color",
    type=click.Choice(["auto", "always", "never"]),
    default="auto",
    show_default=True,
    help="Colour: on a terminal (auto) unless NO_COLOR is set or TERM=dumb; always; never.",
)
@click.version_option(__version__, prog_name="smm-scheduler")
@click.pass_context
def cli(
    ctx: click.Context,
    config_path: str | None,
    db_url: str | None,
    log_level: str | None,
    color: str,
) -> None:
    """smm-scheduler: publish a content plan on schedule, learn which content works."""
    from scheduler.cli.output import colour_setting
    from scheduler.logging import configure_logging

    ctx.color = colour_setting(color)
    app = App(config_path=config_path, db_url=db_url)
    ctx.obj = app
    ctx.call_on_close(app.close)
    configure_logging(log_level or "warning")


def main(args: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    from scheduler.cli.streams import OutputError, quiet_when_closed

    quiet_when_closed()
    cli.freeze_imports = True
    try:
        cli.main(args=args, prog_name="smm")
    except OutputError as exc:
        _error(str(exc))
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
