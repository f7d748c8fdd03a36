"""``smm web``: the web app (calendar, previews, approval, engagement) and its users.

The web libraries, SQLAlchemy and the models are imported inside the commands, so that
``smm web --help`` loads none of them."""

from __future__ import annotations

import getpass
import ipaddress
import sys
from typing import Any

import click

from scheduler.cli.app import App, pass_app
from scheduler.cli.output import echo_json, table
from scheduler.errors import SmmError
from scheduler.timeutil import format_utc

ROLES = ("viewer", "editor", "approver", "admin")


def _need_extra() -> None:
    try:
        import argon2  # noqa: F401
        import jinja2  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise SmmError(
            f"the web app needs the web extra ({exc.name} is missing): "
            "pip install 'smm-scheduler[web]'"
        ) from None


def split_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8080`` for IPv6) -> (host, port); SmmError when malformed."""
    host, sep, port = listen.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SmmError(f"bad listen address {listen!r}: write HOST:PORT, e.g. 127.0.0.1:8080")
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.group(invoke_without_command=True)
@click.option("--listen", metavar="HOST:PORT", help="Address to serve on (default: [web] listen).")
@click.option("--dev", is_flag=True, help="Development: loopback only, debug log, access log.")
@click.pass_context
def web(ctx: click.Context, listen: str | None, dev: bool) -> None:
    """Serve the web app: calendar, post previews, approval, engagement (docs/web.md).

    Binds to 127.0.0.1:8080 unless [web] listen or --listen says otherwise; run it behind a
    TLS reverse proxy for anyone else to reach it.
    """
    if ctx.invoked_subcommand is not None:
        return
    app: App = ctx.obj
    _need_extra()
    import uvicorn

    from scheduler.logging import configure_logging
    from scheduler.web.app import create_app

    config = app.config
    host, port = split_listen(listen or config.web.listen)
    if dev and not is_loopback(host):
        raise SmmError(f"--dev serves on loopback only, not {host}")
    level = "debug" if dev else (ctx.find_root().params.get("log_level") or config.log_level)
    configure_logging(level)
    engine = app.engine()
    asgi = create_app(engine, config, app.clock, dev=dev)
    if not is_loopback(host):
        click.echo(f"note: serving on {host}, reachable from other machines", err=True)
    click.echo(f"smm web on http://{host}:{port}/ (Ctrl-C stops it)", err=True)
    uvicorn.run(
        asgi,
        host=host,
        port=port,
        log_level="debug" if dev else "warning",
        access_log=dev,
        # No logging config of uvicorn's own: its loggers propagate to the root handler that
        # configure_logging set up, so its lines come out as JSON or console events, redacted,
        # like every other line, not in uvicorn's plain-text format between them.
        log_config=None,
        # The app decides itself which proxies it believes ([web] trusted_proxies).
        proxy_headers=False,
        server_header=False,
    )


@web.group()
def user() -> None:
    """People who may sign in, and their roles: viewer, editor, approver, admin."""


def _read_password(stdin: bool) -> str:
    if stdin:
        line = sys.stdin.readline()
        return line.rstrip("\r\n")
    first = click.prompt("Password", hide_input=True)
    again = click.prompt("Again", hide_input=True)
    if first != again:
        raise SmmError("the two passwords differ")
    return str(first)


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


@user.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), required=True, help="What they may do.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option(
    "--no-password", is_flag=True, help="No password: they come in through the trusted proxy."
)
@pass_app
def user_add(app: App, name: str, role: str, password_stdin: bool, no_password: bool) -> None:
    """Add a user (asks for the password twice unless told otherwise)."""
    _need_extra()
    from scheduler.db.engine import immediate
    from scheduler.web import auth

    # Refuse a bad or taken name before asking for a password nobody will use.
    auth.check_name(name)
    auth.check_role(role)
    with app.engine().connect() as conn:
        auth.check_free(conn, name)
    password = None if no_password else _read_password(password_stdin)
    now = app.now()
    with immediate(app.engine()) as conn:
        auth.add_user(conn, name, role, password, now)
        auth.audit(conn, now, _actor(), "user-add", f"user:{name}", f"role {role}")
    click.echo(f"added {name} ({role})")


@user.command("passwd")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@pass_app
def user_passwd(app: App, name: str, password_stdin: bool) -> None:
    """Set a user's password; their open sessions end."""
    _need_extra()
    from scheduler.db.engine import immediate
    from scheduler.web import auth

    # Name a missing user before asking for a password that would be thrown away.
    with app.engine().connect() as conn:
        auth.require_user(conn, name)
    password = _read_password(password_stdin)
    now = app.now()
    with immediate(app.engine()) as conn:
        auth.change_user(conn, name, now, password=password)
        auth.audit(conn, now, _actor(), "user-passwd", f"user:{name}")
    click.echo(f"password of {name} changed; their sessions ended")


@user.command("set")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), help="A new role.")
@click.option("--disable/--enable", default=None, help="Lock the user out, or let them in again.")
@pass_app
def user_set(app: App, name: str, role: str | None, disable: bool | None) -> None:
    """Change a user's role or lock them out; their open sessions end."""
    _need_extra()
    from scheduler.db.engine import immediate
    from scheduler.web import auth

    if role is None and disable is None:
        raise click.UsageError("give --role, --disable or --enable")
    now = app.now()
    with immediate(app.engine()) as conn:
        auth.change_user(conn, name, now, role=role, disabled=disable)
        what = ", ".join(
            x
            for x in (
                f"role {role}" if role else "",
                {True: "disabled", False: "enabled", None: ""}[disable],
            )
            if x
        )
        auth.audit(conn, now, _actor(), "user-set", f"user:{name}", what)
    click.echo(f"{name}: {what}")


@user.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@pass_app
def user_list(app: App, as_json: bool) -> None:
    """List users and their roles (never a password or its hash)."""
    _need_extra()
    from scheduler.web import auth

    with app.engine().connect() as conn:
        users = auth.list_users(conn)
    if as_json:
        echo_json(users)
        return
    rows: list[tuple[Any, ...]] = [
        (
            u["name"],
            u["role"],
            "yes" if u["password"] else "proxy only",
            "disabled" if u["disabled"] else "",
            format_utc(u["created_at"]),  # type: ignore[arg-type]
        )
        for u in users
    ]
    table(["name", "role", "password", "", "added"], rows, empty="no users")


def register(cli: click.Group) -> None:
    cli.add_command(web)
