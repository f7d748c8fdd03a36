"""``smm doctor``: check the installation, each problem with its fix.

Checks run in order and never stop at the first problem: config, database and schema, SQLite
settings, credentials (never printed: only present or missing), plugins, time zones, clock.
A check that cannot run here (no systemd, SQLite instead of PostgreSQL) says SKIP.
"""

from __future__ import annotations

import enum
import importlib.util
import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from scheduler import plugins
from scheduler.cli.app import App, pass_app
from scheduler.cli.output import echo_json, safe
from scheduler.config import Config, load_config
from scheduler.credential_checks import INSIDE_THE_SERVICE, Unreadable, unreadable_credentials
from scheduler.db.engine import (
    make_engine,
    redact_url,
    resolve_database_url,
    sqlite_access_problem,
)
from scheduler.db.migrate import alembic_config, current_revision, head_revision
from scheduler.errors import InvalidInput, SmmError
from scheduler.logging import redact
from scheduler.timeutil import utcnow


class Level(enum.StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


@dataclass(frozen=True)
class Check:
    """One finding: what was checked, how it went, and what to do about it."""

    name: str
    level: Level
    message: str
    fix: str = ""


#: Free space on the database's file system below which writes soon fail / it is worth a look.
FAIL_FREE_BYTES = 50 * 1024**2
WARN_FREE_BYTES = 500 * 1024**2
#: Clock difference to the PostgreSQL server that matters: leases and due times are compared
#: across hosts.
WARN_SKEW = timedelta(seconds=2)
FAIL_SKEW = timedelta(seconds=60)
#: No correct clock is earlier than this (the clock of a machine without a battery-backed RTC
#: starts in 1970).
EARLIEST_SANE = datetime.fromisoformat("2025-01-01T00:00:00+00:00")
TIME_SYNC_FIX = (
    "enable time synchronisation (systemd-timesyncd or chrony): timedatectl set-ntp true"
)


# ----------------------------------------------------------------------------- config


def check_config(path: Path | None) -> tuple[list[Check], Config | None]:
    """The config file exists and is valid; and what it asks for is installed."""
    if path is None:
        return [
            Check(
                "config",
                Level.FAIL,
                "no config file found (looked in $XDG_CONFIG_HOME/smm-scheduler/config.toml and "
                "/etc/smm-scheduler/config.toml)",
                "pass --config PATH or set SMM_CONFIG; start from config/example.toml",
            )
        ], None
    try:
        config = load_config(path)
    except InvalidInput as exc:
        return [Check("config", Level.FAIL, str(exc), f"edit {path}")], None
    found = [
        Check(
            "config",
            Level.OK,
            f"{safe(str(path))}: valid, {len(config.accounts)} account(s)",
        )
    ]
    if config.metrics_listen and importlib.util.find_spec("prometheus_client") is None:
        found.append(
            Check(
                "metrics",
                Level.WARN,
                f"[metrics] listen = {config.metrics_listen!r}, but prometheus-client is not "
                "installed: the daemon runs without metrics",
                "pip install 'smm-scheduler[metrics]'",
            )
        )
    return found, config


# ----------------------------------------------------------------------------- database


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL (None for other databases and in-memory SQLite)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database).expanduser()


def check_database(engine: Engine) -> Check:
    """The database answers."""
    where = redact_url(engine.url.render_as_string(hide_password=False))
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        reason = str(redact(str(getattr(exc, "orig", None) or exc))).splitlines()[0]
        return Check(
            "database",
            Level.FAIL,
            f"cannot connect to {where}: {reason}",
            "check [database] url (or --db / SMM_DATABASE_URL) and that the server runs",
        )
    return Check("database", Level.OK, f"{where} ({engine.dialect.name}) answers")


def check_schema(engine: Engine) -> Check:
    """The schema is the one this version needs."""
    head = head_revision()
    current = current_revision(engine)
    if current == head:
        return Check("schema", Level.OK, f"schema {current} (the latest)")
    if current is None:
        if inspect(engine).get_table_names():
            return Check(
                "schema",
                Level.FAIL,
                "the database has tables but no schema version",
                "point --db at the smm-scheduler database",
            )
        return Check("schema", Level.FAIL, "the database is empty", "run `smm init`")
    try:
        known = ScriptDirectory.from_config(alembic_config()).get_revision(current) is not None
    except Exception:
        known = False
    if not known:
        return Check(
            "schema",
            Level.FAIL,
            f"schema {current} was written by a newer smm-scheduler (this one knows up to {head})",
            "upgrade smm-scheduler, not the database",
        )
    return Check(
        "schema",
        Level.FAIL,
        f"schema {current} is older than this version's {head}",
        "back up the database, then run `smm db upgrade`",
    )


def check_sqlite(engine: Engine, path: Path) -> list[Check]:
    """WAL mode, write access to the file and its directory, free disk space."""
    found = []
    with engine.connect() as conn:
        mode = str(conn.exec_driver_sql("PRAGMA journal_mode").scalar()).lower()
    if mode == "wal":
        found.append(Check("sqlite wal", Level.OK, "journal mode WAL"))
    else:
        found.append(
            Check(
                "sqlite wal",
                Level.WARN,
                f"journal mode is {mode}, not WAL: the CLI and the daemon block each other",
                "keep the database on a local disk (WAL does not work on network file systems)",
            )
        )
    unwritable = [p for p in (path, path.parent) if not os.access(p, os.W_OK)]
    if unwritable:
        found.append(
            Check(
                "sqlite writable",
                Level.FAIL,
                "not writable by this user: " + ", ".join(map(str, unwritable)),
                "run as the daemon's user, or give it write access to the file and its "
                "directory (SQLite writes -wal and -shm files next to it)",
            )
        )
    else:
        found.append(Check("sqlite writable", Level.OK, f"{path} and its directory are writable"))
    free = shutil.disk_usage(path.parent).free
    level = (
        Level.FAIL if free < FAIL_FREE_BYTES else Level.WARN if free < WARN_FREE_BYTES else Level.OK
    )
    found.append(
        Check(
            "disk space",
            level,
            f"{free / 1024**2:,.0f} MB free on the database's file system",
            "" if level == Level.OK else f"free space on the file system of {path.parent}",
        )
    )
    return found


# ----------------------------------------------------------------------------- credentials


def check_credentials(config: Config) -> list[Check]:
    """Every credential each enabled account references can be read (the value never shown).

    Systemd credentials cannot be read from a shell: those are a warning, to be checked by
    running ``smm doctor`` inside the service's environment. ``smm config check`` names the
    same ones (``scheduler.credential_checks``).
    """
    unreadable: dict[str, list[Unreadable]] = {}
    for u in unreadable_credentials(config):
        unreadable.setdefault(u.account, []).append(u)
    found = []
    for name, account in sorted(config.accounts.items()):
        if not account.enabled or not account.credentials:
            continue
        missing = [u for u in unreadable.get(name, []) if not u.only_inside_the_service]
        unsure = [u for u in unreadable.get(name, []) if u.only_inside_the_service]
        present = sorted(set(account.credentials) - {u.key for u in missing + unsure})
        parts = [f"{u.key} missing: {u.why}" for u in missing]
        parts += [f"{u.key}: {u.ref.describe()}, readable only inside the service" for u in unsure]
        if present:
            parts.append("present: " + ", ".join(present))
        fixes = [u.fix() for u in missing]
        if unsure:
            fixes.append(INSIDE_THE_SERVICE)
        level = Level.FAIL if missing else Level.WARN if unsure else Level.OK
        found.append(Check(f"credentials {name}", level, "; ".join(parts), "; ".join(fixes)))
    return found


# ----------------------------------------------------------------------------- plugins


def check_plugins(config: Config | None) -> list[Check]:
    """Plugins load, and every account's platform has one."""
    failures = plugins.load_failures()
    try:
        known = plugins.platforms()
    except SmmError as exc:
        return [Check("plugins", Level.FAIL, str(exc), "uninstall one of the two plugins")]
    found = []
    if failures:
        found.append(
            Check(
                "plugins",
                Level.FAIL,
                "; ".join(f"{name}: {why}" for name, why in sorted(failures.items())),
                "reinstall or uninstall the broken plugin(s); `smm plugins list` shows details",
            )
        )
    else:
        found.append(
            Check("plugins", Level.OK, f"{len(known)} platform(s): {', '.join(sorted(known))}")
        )
    accounts = config.accounts.values() if config else ()
    for platform in sorted({a.platform for a in accounts if a.enabled}):
        if platform not in known:
            users = sorted(a.name for a in accounts if a.platform == platform)
            found.append(
                Check(
                    f"platform {platform}",
                    Level.FAIL,
                    f"no plugin provides platform {platform!r}, used by {', '.join(users)}",
                    f"install the plugin for {platform} (e.g. pip install smm-{platform}), "
                    "or check SMM_LOAD_PLUGINS",
                )
            )
    if config is not None:
        found += _account_settings(config)
    return found


def _account_settings(config: Config) -> list[Check]:
    """What each account's plugin finds wrong with its settings, as ``smm config check``
    reports it: a missing server or chat would otherwise show first as a paused account."""
    from scheduler.cli.config import plugin_account_problems

    by_account: dict[str, list[str]] = {}
    for p in plugin_account_problems(config):
        name, key = (p.field or "").removeprefix("accounts.").partition(".")[::2]
        if name in config.accounts and config.accounts[name].enabled:
            by_account.setdefault(name, []).append(f"{key}: {p.message}")
    return [
        Check(
            f"account {name}",
            Level.FAIL,
            "; ".join(problems),
            f"edit {config.source}; `smm config check` gives each line and a hint",
        )
        for name, problems in sorted(by_account.items())
    ]


# ----------------------------------------------------------------------------- time


def check_timezones(config: Config | None) -> Check:
    """IANA time zone data is installed, and knows every account's zone."""
    zones = {a.timezone for a in config.accounts.values()} if config else set()
    missing = []
    for name in sorted(zones | {"Europe/Riga", "America/New_York"}):  # any data at all?
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            missing.append(name)
    if missing:
        return Check(
            "time zones",
            Level.FAIL,
            "no time zone data for " + ", ".join(missing),
            "pip install --upgrade tzdata (or install the system's tzdata package)",
        )
    return Check("time zones", Level.OK, f"time zone data present ({len(zones)} zone(s) in use)")


Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


def _run(cmd: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=5, check=False)


def check_clock(
    engine: Engine | None, *, now: Callable[[], datetime] = utcnow, run: Runner | None = None
) -> list[Check]:
    """The clock is plausible, agrees with PostgreSQL's, and is kept in sync."""
    run = run or _run
    found = []
    local = now()
    if local < EARLIEST_SANE:
        found.append(
            Check(
                "clock",
                Level.FAIL,
                f"the system clock says {local:%Y-%m-%d %H:%M} UTC",
                TIME_SYNC_FIX,
            )
        )
    else:
        found.append(Check("clock", Level.OK, f"{local:%Y-%m-%d %H:%M:%S} UTC"))

    if engine is not None and engine.dialect.name == "postgresql":
        try:
            with engine.connect() as conn:
                before = now()
                server: datetime = conn.execute(text("SELECT clock_timestamp()")).scalar_one()
                after = now()
        except Exception as exc:
            found.append(Check("clock skew", Level.SKIP, f"cannot ask the database: {exc}"))
        else:
            skew = server - (before + (after - before) / 2)
            size = abs(skew)
            level = Level.FAIL if size > FAIL_SKEW else Level.WARN if size > WARN_SKEW else Level.OK
            found.append(
                Check(
                    "clock skew",
                    level,
                    f"the database server's clock is {skew.total_seconds():+.1f} s from this one",
                    "" if level == Level.OK else TIME_SYNC_FIX + " on both hosts",
                )
            )

    try:
        answer = run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"])
    except (OSError, subprocess.SubprocessError):
        answer = None
    value = answer.stdout.strip() if answer is not None and answer.returncode == 0 else ""
    if value == "yes":
        found.append(Check("time sync", Level.OK, "NTP synchronised"))
    elif value == "no":
        found.append(
            Check("time sync", Level.WARN, "the clock is not NTP synchronised", TIME_SYNC_FIX)
        )
    else:
        found.append(
            Check("time sync", Level.SKIP, "cannot tell (timedatectl is not available here)")
        )
    return found


# ----------------------------------------------------------------------------- the command


def check_er(engine: Engine | None) -> list[Check]:
    """Accounts whose latest ER recompute measured posts by followers although their network
    declares reach (it reported none)."""
    from scheduler.er.report import fallback_warning, reach_fallbacks

    if engine is None:
        return []
    try:
        with engine.connect() as conn:
            found = reach_fallbacks(conn)
    except SQLAlchemyError:
        return []  # the schema check above already says what is wrong with the database
    return [
        Check(
            f"er {name}",
            Level.WARN,
            fallback_warning(name, posts),
            "check that the plugin asks its network for reach (or impressions)",
        )
        for name, posts in sorted(found.items())
    ]


def check_database_all(url: str) -> tuple[list[Check], Engine | None]:
    """Reachability, schema and SQLite settings; the engine when the database answers.

    A missing SQLite file is reported, not created.
    """
    try:
        path = sqlite_file(url)
        if path is not None and not path.exists():
            return [
                Check(
                    "database",
                    Level.FAIL,
                    f"no database at {path}",
                    "run `smm init` (or point --db / [database] url at the database)",
                )
            ], None
        engine = make_engine(url)
    except SmmError as exc:
        return [Check("database", Level.FAIL, str(exc), "fix [database] url or --db")], None
    reachable = check_database(engine)
    if reachable.level != Level.OK:
        engine.dispose()
        if path is not None:  # no server to run: the file and its folder are what can be wrong
            access = sqlite_access_problem(url)
            fix = access or "check [database] url (or --db / SMM_DATABASE_URL) and the file"
            reachable = replace(reachable, fix=fix)
        return [reachable], None
    found = [reachable, check_schema(engine)]
    if path is not None:
        found += check_sqlite(engine, path)
    return found, engine


def diagnose(app: App) -> list[Check]:
    """Run every check; none stops the others."""
    found, config = check_config(app.config_file)
    url = resolve_database_url(app.db_url, config.database_url if config else None)
    db_checks, engine = check_database_all(url)
    found += db_checks
    try:
        if config is not None:
            found += check_credentials(config)
        found += check_plugins(config)
        found.append(check_timezones(config))
        found += check_clock(engine)
        found += check_er(engine)
    finally:
        if engine is not None:
            engine.dispose()
    return found


_STYLE: dict[Level, dict[str, Any]] = {
    Level.OK: {"fg": "green"},
    Level.WARN: {"fg": "yellow", "bold": True},
    Level.FAIL: {"fg": "red", "bold": True},
    Level.SKIP: {"dim": True},
}


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
@pass_app
def doctor(app: App, as_json: bool) -> None:
    """Check the installation: config, database and schema, credentials, plugins, clock.

    Each check prints OK, WARN, FAIL or SKIP (cannot be checked here), with the fix for
    anything not OK. Secrets are never printed: only whether they are present.

    Exit code: 0 when nothing failed (warnings allowed), 1 when any check failed.
    """
    checks = diagnose(app)
    failed = sum(c.level == Level.FAIL for c in checks)
    warned = sum(c.level == Level.WARN for c in checks)
    if as_json:
        echo_json({"ok": not failed, "checks": [asdict(c) for c in checks]})
    else:
        width = max(len(c.name) for c in checks)
        for c in checks:
            label = click.style(c.level.upper().ljust(4), **_STYLE[c.level])
            click.echo(f"{label}  {c.name.ljust(width)}  {c.message}")
            if c.fix:
                click.echo(f"      {' ' * width}  fix: {c.fix}")
        summary = f"{failed} failed, {warned} warning(s)" if failed or warned else "all good"
        click.echo(f"\n{summary}")
    if failed:
        click.get_current_context().exit(1)


def register(cli: click.Group) -> None:
    """Add ``smm doctor`` to ``cli``."""
    cli.add_command(doctor)
