"""Fixtures shared by the whole test suite.

Sections:

* Databases: every database test runs against SQLite and PostgreSQL (``db_url``, ``engine``),
  each test on its own freshly migrated database, made by copying a template built once per
  session (a file copy for SQLite, ``CREATE DATABASE ... TEMPLATE`` for PostgreSQL).
* Config files: writing TOML configs for CLI tests, and the shipped example config.
* Hypothesis: settings profiles.
* Timeouts: where a stuck test's stacks go under xdist.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest
from hypothesis import settings
from sqlalchemy import Engine

from scheduler.config import Config, load_config
from scheduler.db.engine import make_engine
from scheduler.db.migrate import ensure_schema

if TYPE_CHECKING:
    import psycopg

REPO_ROOT = Path(__file__).resolve().parent.parent


# =============================================================================================
# Databases
# =============================================================================================

#: The local cluster the suite starts when it is not running (Debian's postgresql-common).
PG_VERSION, PG_CLUSTER = "15", "main"
PG_SOCKET_DIR = "/var/run/postgresql"
PG_START_TIMEOUT_S = 30.0
#: Test databases are named ``smm_test_<pid>_...`` so that runs in parallel (xdist workers,
#: or several people on one machine) never collide, and leftovers of a killed run are found.
PG_NAME_PREFIX = "smm_test_"

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


def pg_url(database: str) -> str:
    """The SQLAlchemy URL of ``database`` on the local server, over its Unix socket."""
    return f"postgresql+psycopg:///{database}?host={PG_SOCKET_DIR}"


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=60)


def _pg_ready() -> bool:
    return _run("pg_isready", "-q", "-h", PG_SOCKET_DIR).returncode == 0


def _start_postgres() -> str | None:
    """Start the local server if needed; return why PostgreSQL is unusable, or None."""
    if shutil.which("pg_isready") is None or shutil.which("pg_ctlcluster") is None:
        return "PostgreSQL is not installed (pg_isready / pg_ctlcluster not found)"
    if _pg_ready():
        return None
    if os.geteuid() != 0:
        return "the local PostgreSQL server is not running, and only root can start it"
    # xdist workers (and parallel runs) race to start the server: one does, the others wait.
    lock_path = Path(tempfile.gettempdir()) / "smm-scheduler-tests-postgres.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        started = None
        if not _pg_ready():
            started = _run("pg_ctlcluster", PG_VERSION, PG_CLUSTER, "start")
        deadline = time.monotonic() + PG_START_TIMEOUT_S
        while not _pg_ready():
            if time.monotonic() > deadline:
                output = (started.stderr or started.stdout).strip() if started else ""
                return (
                    f"`pg_ctlcluster {PG_VERSION} {PG_CLUSTER} start` did not bring the server "
                    f"up within {PG_START_TIMEOUT_S:.0f} s: {output or 'no output'}"
                )
            time.sleep(0.1)
    return None


def _admin_connection() -> psycopg.Connection[Any]:
    """An autocommit connection to the ``postgres`` database, creating our role if missing."""
    import psycopg  # here, so that the SQLite tests run without the PostgreSQL driver

    def connect() -> psycopg.Connection[Any]:
        return psycopg.connect(host=PG_SOCKET_DIR, dbname="postgres", autocommit=True)

    try:
        return connect()
    except psycopg.OperationalError as exc:
        if "does not exist" not in str(exc) or os.geteuid() != 0:
            raise
    # Fails with "already exists" when another worker won the race: that is fine.
    _run("su", "postgres", "-c", "createuser -s root")
    return connect()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class PostgresServer:
    """The local server as the tests use it: an admin connection and a migrated template."""

    admin: psycopg.Connection[Any]
    template: str
    _names: Iterator[int] = field(default_factory=itertools.count)

    def create_database(self, template: str | None = None, name: str | None = None) -> str:
        """A new database copied from ``template`` (our migrated one by default); its name."""
        name = name or f"{PG_NAME_PREFIX}{os.getpid()}_{next(self._names)}"
        self.admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template or self.template}"')
        return name

    def drop_database(self, name: str) -> None:
        """Drop ``name``, closing any connection a test left open."""
        self.admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def drop_leftovers(self) -> None:
        """Drop the test databases of runs that were killed before their teardown.

        Called before this process creates any, so databases named with its own pid are
        leftovers too (of a dead process that had the same pid).
        """
        rows = self.admin.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s", [f"{PG_NAME_PREFIX}%"]
        ).fetchall()
        for (name,) in rows:
            m = re.match(rf"{PG_NAME_PREFIX}(\d+)_", name)
            if m and (int(m.group(1)) == os.getpid() or not _pid_alive(int(m.group(1)))):
                self.drop_database(name)


def _postgres_unavailable(reason: str) -> NoReturn:
    # A CI run must never pass by silently skipping half of the database tests.
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL is required on CI: {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL tests skipped: {reason} (with CI set, this is an error)")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The running local PostgreSQL server, with a template database migrated to head."""
    reason = _start_postgres()
    if reason:
        _postgres_unavailable(reason)
    try:
        admin = _admin_connection()
    except Exception as exc:
        _postgres_unavailable(f"cannot connect to the local server: {exc}")
    server = PostgresServer(admin, template=f"{PG_NAME_PREFIX}{os.getpid()}_template")
    try:
        server.drop_leftovers()
        server.create_database(template="template0", name=server.template)
        engine = make_engine(pg_url(server.template))
        try:
            ensure_schema(engine)
        finally:
            engine.dispose()
        yield server
    finally:
        server.drop_database(server.template)
        admin.close()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh PostgreSQL database migrated to head, dropped after the test."""
    name = postgres_server.create_database()
    yield pg_url(name)
    postgres_server.drop_database(name)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head, built once per session and copied by each test."""
    path = tmp_path_factory.mktemp("sqlite-template") / "smm.db"
    engine = make_engine(f"sqlite:///{path}")
    try:
        ensure_schema(engine)
        with engine.connect() as conn:
            # Fold the WAL into the main file so that copying that one file is enough.
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        engine.dispose()
    return path


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    """A fresh SQLite database migrated to head, for tests that are about SQLite only."""
    path = tmp_path / "smm.db"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest) -> str:
    """A fresh database migrated to head, once per backend."""
    return str(request.getfixturevalue(f"{request.param}_url"))


@pytest.fixture(params=BACKENDS)
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database with no tables at all, once per backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = server.create_database(template="template0")
    yield pg_url(name)
    server.drop_database(name)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on ``db_url`` (both backends), disposed after the test."""
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests that ask for PostgreSQL directly, as the ``postgres`` params already are."""
    for item in items:
        if {"postgres_url", "postgres_server"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.postgres)


# =============================================================================================
# Config files
# =============================================================================================

EXAMPLE_CONFIG = REPO_ROOT / "config" / "example.toml"


@pytest.fixture
def config_file(tmp_path: Path) -> Callable[..., Path]:
    """A factory: ``config_file(toml_text, name="config.toml")`` writes it and returns its path.

    The text is dedented, so it can be written as an indented triple-quoted string.
    """

    def write(text: str, name: str = "config.toml") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return write


@pytest.fixture
def example_config() -> Config:
    """The parsed ``config/example.toml`` shipped with the project."""
    if not EXAMPLE_CONFIG.is_file():
        pytest.skip(f"{EXAMPLE_CONFIG.relative_to(REPO_ROOT)} does not exist yet")
    return load_config(EXAMPLE_CONFIG)


# =============================================================================================
# Hypothesis
# =============================================================================================

# On CI, examples are derandomised (a failure reproduces on the next run) and no deadline
# applies (shared runners are slow in bursts).
settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


#: What ``media_roots``' resolver answers for every host name: a public address.
PUBLIC_TEST_ADDRESS = "93.184.216.34"


@pytest.fixture
def media_roots(tmp_path: Path) -> Iterator[Any]:
    """Adapter tests read media from ``tmp_path`` and fetch media URLs: make ``tmp_path`` the
    media root, and resolve every host name to a public address (no DNS in tests), as the
    daemon's policy would for a post whose plan lies there."""
    from scheduler import media
    from scheduler.config import MediaSettings

    async def resolve(host: str, port: int) -> list[str]:
        return [PUBLIC_TEST_ADDRESS]

    policy = media.MediaPolicy((tmp_path.resolve(),), MediaSettings(), resolve)
    with media.using(policy):
        yield policy


@pytest.fixture(autouse=True)
def _checkpoints_in_tmp(tmp_path_factory: pytest.TempPathFactory, monkeypatch: Any) -> None:
    """Adapters built with their default ``Checkpoints()`` (a container, an upload session, a
    thread's parts) note into a fresh directory per test, never the user's data directory,
    so no note outlives its test or leaks into another; the database a daemon of the test
    keeps its notes in is forgotten with the test."""
    import scheduler.checkpoints

    notes = tmp_path_factory.mktemp("checkpoints")
    monkeypatch.setattr(scheduler.checkpoints, "default_directory", lambda: notes)
    monkeypatch.setattr(scheduler.checkpoints, "_database", None)


@pytest.fixture(autouse=True)
def _cli_without_plugin_commands() -> None:
    """Every test starts with the ``smm`` group holding no command from a plugin: the group
    is the process's one, and a test that asks it for a name it does not know (the fuzz tests
    do) makes it load the plugins' commands once and remember that, or what plugins
    declared, for the tests after it. Nothing to forget while no test has imported it."""
    module = sys.modules.get("scheduler.cli")
    if module is not None:
        module.cli.forget_plugin_commands()


# =============================================================================================
# Timeouts
# =============================================================================================

#: Whether ``pytest_timeout_set_timer`` armed SIGALRM for a test (pyproject.toml sets the limit
#: and the signal method).
_ARMED = pytest.StashKey[bool]()


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> bool | None:
    """Under xdist, a test past its timeout writes every thread's stack to stderr and fails.

    The signal method (SIGALRM) raises in the test where it is stuck, so the test fails and the
    run goes on. pytest-timeout's own handler writes the other threads' stacks to the worker's
    terminal, which xdist sends nowhere; the worker's stderr is the run's. The thread method is
    not used: its timer is a second thread in the process, and a process running other threads
    must not fork (the plan import's validating process is forked when it may be).
    """
    if not hasattr(item.config, "workerinput") or settings.method != "signal":
        return None

    def expire(signum: int, frame: Any) -> None:
        __tracebackhide__ = True
        lines = [f"\n{'+' * 20} Timeout: {item.nodeid} ran over {settings.timeout} s\n"]
        names = {thread.ident: thread.name for thread in threading.enumerate()}
        for ident, stack in sys._current_frames().items():
            if ident != threading.get_ident():
                lines.append(f"--- stack of thread {names.get(ident, ident)}\n")
                lines += traceback.format_stack(stack)
        sys.stderr.write("".join(lines) + f"{'+' * 20}\n")
        sys.stderr.flush()
        pytest.fail(f"Timeout: the test ran over {settings.timeout} s")

    signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, settings.timeout)
    item.stash[_ARMED] = True
    return True


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_timeout_cancel_timer(item: pytest.Item) -> bool | None:
    """Stop the timer ``pytest_timeout_set_timer`` started for ``item``, if it did."""
    if not item.stash.get(_ARMED, False):
        return None
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    del item.stash[_ARMED]
    return True
