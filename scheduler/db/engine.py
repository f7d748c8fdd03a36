"""Connecting to the database: SQLite embedded by default, PostgreSQL for several daemons."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import platformdirs
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from scheduler.errors import SmmError
from scheduler.files import create_private

APP_NAME = "smm-scheduler"
SQLITE_BUSY_TIMEOUT_MS = 30_000


def default_database_url() -> str:
    """SQLite in the service's StateDirectory under systemd, else the XDG per-user data dir."""
    state_dir = os.environ.get("STATE_DIRECTORY")
    base = (
        Path(state_dir.split(":")[0]) if state_dir else Path(platformdirs.user_data_dir(APP_NAME))
    )
    return f"sqlite:///{base / 'smm.db'}"


def resolve_database_url(cli_url: str | None, config_url: str | None) -> str:
    """``--db``, else ``SMM_DATABASE_URL``, else the config's ``[database] url``, else default."""
    return cli_url or os.environ.get("SMM_DATABASE_URL") or config_url or default_database_url()


def redact_url(url: str) -> str:
    """The URL with any password masked, fit for logs and messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "<unparseable database URL>"


def check_database_url(url: str) -> URL:
    """``url`` parsed, or an SmmError saying what is wrong with it (never quoting a password).

    Checked before any connection: the form, the backend and driver, a numeric port, and for
    PostgreSQL that the driver is installed (the ``postgres`` extra).
    """
    if not isinstance(url, str) or not url.strip():
        raise SmmError("the database URL is empty: use sqlite:///PATH or postgresql+psycopg://...")
    shown = _excerpt(url)
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise SmmError(
            f"cannot read database URL {shown}: use sqlite:///PATH or postgresql+psycopg://..."
        ) from None
    except ValueError:  # SQLAlchemy's int() of the port
        raise SmmError(f"database URL {shown}: the port must be a number") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.get_driver_name() not in ("pysqlite", "sqlite"):
            raise SmmError(f"database URL {shown}: use sqlite:///PATH (no driver name)")
        return parsed
    if backend != "postgresql":
        raise SmmError(f"unsupported database {backend!r}: use sqlite:/// or postgresql+psycopg://")
    if parsed.get_driver_name() != "psycopg":
        raise SmmError(
            f"unsupported PostgreSQL driver {parsed.get_driver_name()!r}: "
            "use a postgresql+psycopg:// URL"
        )
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise SmmError(f"database URL {shown}: port {parsed.port} is out of range [1, 65535]")
    if importlib.util.find_spec("psycopg") is None:
        raise SmmError(
            "PostgreSQL needs the psycopg driver, which is not installed: "
            "pip install 'smm-scheduler[postgres]'"
        )
    return parsed


def _excerpt(url: str, limit: int = 80) -> str:
    """The URL for a message: password masked, at most ``limit`` characters."""
    from scheduler.logging import redact

    text = str(redact(url))
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event, not the driver, decide when transactions start, so
        # a claim can use BEGIN IMMEDIATE (take the write lock up front, no upgrade deadlock).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys = ON")
        if engine.url.database not in (None, "", ":memory:"):
            cur.execute("PRAGMA journal_mode = WAL")
            cur.execute("PRAGMA synchronous = NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


def make_engine(url: str, *, echo: bool = False, create: bool = True) -> Engine:
    """An engine for ``url`` with the project's connection settings applied.

    ``create=False``: a SQLite file that does not exist is an error, not a new database."""
    parsed = check_database_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        db = parsed.database
        if db and db != ":memory:" and not parsed.query.get("uri"):
            path = Path(db).expanduser()
            if not create and not path.is_file():
                raise SmmError(
                    f"no database at {path}: check --db, SMM_DATABASE_URL or the config's "
                    "[database] url, or create it with `smm init`"
                )
            try:
                path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                # SQLite would create it with the umask's mode (0644), and its -wal and -shm
                # files take the database's mode: create it 0600 first.
                create_private(path)
            except OSError as exc:
                where = f"{exc.filename}: " if exc.filename and exc.filename != str(path) else ""
                raise SmmError(
                    f"cannot create the database {path}: {where}{exc.strerror or exc} "
                    "(hint: choose a folder this user can write with --db, SMM_DATABASE_URL "
                    "or the config's [database] url)"
                ) from None
        engine = create_engine(
            parsed,
            echo=echo,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
        )
        _sqlite_setup(engine)
        return engine
    if backend == "postgresql":
        if parsed.password:
            # Whatever logs an error of this server (the daemons' queue listener too) never
            # shows the password, even where a message quotes the connection string.
            from scheduler.logging import register_secret

            register_secret(str(parsed.password))
        return create_engine(parsed, echo=echo, pool_pre_ping=True, pool_size=5, max_overflow=5)
    raise SmmError(f"unsupported database {backend!r}: use sqlite:/// or postgresql+psycopg://")


def sqlite_access_problem(url: str) -> str:
    """Why SQLite may be unable to open the database file of ``url``: the file or its folder
    not writable by this user (SQLite writes its -wal and -shm files beside the database,
    even to read). "" when neither is the case, or for other databases."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return ""
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return ""
    path = Path(parsed.database).expanduser()
    if not path.exists():
        return ""
    unwritable = [str(p) for p in (path, path.parent) if not os.access(p, os.W_OK)]
    if not unwritable:
        return ""
    return (
        "not writable by this user: " + ", ".join(unwritable) + " (SQLite writes its -wal and "
        "-shm files beside the database, even to read: run as the daemon's user, or give this "
        "one write access to the file and its folder)"
    )


@contextmanager
def immediate(engine: Engine) -> Iterator[Connection]:
    """A write transaction that takes SQLite's write lock at BEGIN (a plain one elsewhere)."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn = conn.execution_options(sqlite_begin="IMMEDIATE")
        with conn.begin():
            yield conn
