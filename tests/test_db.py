"""The database layer: schema, column types, schema versions and connection settings.

Most tests run on SQLite and PostgreSQL alike (the ``db_url`` / ``engine`` fixtures).
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, StatementError
from sqlmodel import Session, col

from scheduler.db.engine import (
    SQLITE_BUSY_TIMEOUT_MS,
    immediate,
    make_engine,
    redact_url,
    resolve_database_url,
)
from scheduler.db.migrate import current_revision, ensure_schema, head_revision
from scheduler.db.models import Account, Post, metadata
from scheduler.errors import DatabaseNotReady

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def add_account(engine: Engine, name: str = "riga", **fields: Any) -> int:
    values: dict[str, Any] = {
        "name": name,
        "platform": "mastodon",
        "timezone": "Europe/Riga",
        "created_at": NOW,
        "updated_at": NOW,
    }
    with Session(engine) as session:
        account = Account(**(values | fields))
        session.add(account)
        session.commit()
        assert account.id is not None
        return account.id


def add_post(engine: Engine, account_id: int, key: str, idempotency_key: str) -> None:
    with Session(engine) as session:
        session.add(
            Post(
                key=key,
                account_id=account_id,
                content_type="tip",
                text="hello",
                content_hash="0" * 64,
                idempotency_key=idempotency_key,
                created_at=NOW,
                updated_at=NOW,
            )
        )
        session.commit()


def schema_differences(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))


# --------------------------------------------------------------------------------- migrations


def test_migrations_produce_exactly_the_models_schema(engine: Engine) -> None:
    assert schema_differences(engine) == []


def test_schema_comparison_detects_a_missing_index(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_posts_lease"))

    diffs = schema_differences(engine)

    assert [(d[0], d[1].name) for d in diffs] == [("add_index", "ix_posts_lease")]


# --------------------------------------------------------------------------------- UTCDateTime


@pytest.mark.parametrize(
    "moment",
    [
        pytest.param(datetime(2026, 11, 26, 12, 0, tzinfo=UTC), id="utc"),
        pytest.param(
            datetime(
                2026, 7, 1, 9, 30, 15, 123456, tzinfo=timezone(timedelta(hours=5, minutes=30))
            ),
            id="positive-offset-microseconds",
        ),
        pytest.param(
            datetime(2026, 11, 1, 1, 30, fold=1, tzinfo=ZoneInfo("America/New_York")),
            id="second-occurrence-of-a-fold",
        ),
        pytest.param(datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), id="last-microsecond"),
    ],
)
def test_utc_datetime_round_trips_aware_datetimes_exactly(engine: Engine, moment: datetime) -> None:
    account_id = add_account(engine, token_expires_at=moment)

    with engine.connect() as conn:
        stored = conn.execute(
            select(col(Account.token_expires_at)).where(col(Account.id) == account_id)
        ).scalar_one()

    # Compared in UTC: Python never calls an ambiguous (fold=1) time equal across zones.
    assert stored == moment.astimezone(UTC)
    assert stored.tzinfo is UTC


def test_utc_datetime_rejects_naive_datetimes(engine: Engine) -> None:
    with pytest.raises(StatementError, match="naive datetime"):
        add_account(engine, created_at=datetime(2026, 11, 26, 12, 0))


# --------------------------------------------------------------------------------- constraints


def test_post_key_is_unique(engine: Engine) -> None:
    account_id = add_account(engine)
    add_post(engine, account_id, key="spring-sale", idempotency_key="a" * 32)

    with pytest.raises(IntegrityError):
        add_post(engine, account_id, key="spring-sale", idempotency_key="b" * 32)


def test_post_idempotency_key_is_unique(engine: Engine) -> None:
    account_id = add_account(engine)
    add_post(engine, account_id, key="first", idempotency_key="a" * 32)

    with pytest.raises(IntegrityError):
        add_post(engine, account_id, key="second", idempotency_key="a" * 32)


# --------------------------------------------------------------------------------- ensure_schema


def test_ensure_schema_creates_the_schema_in_an_empty_database(empty_db_url: str) -> None:
    engine = make_engine(empty_db_url)
    try:
        ensure_schema(engine)

        assert current_revision(engine) == head_revision()
        assert "posts" in inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_ensure_schema_without_create_refuses_an_empty_database(empty_db_url: str) -> None:
    engine = make_engine(empty_db_url)
    try:
        with pytest.raises(DatabaseNotReady, match="smm init"):
            ensure_schema(engine, create=False)
        assert inspect(engine).get_table_names() == []
    finally:
        engine.dispose()


def test_ensure_schema_accepts_a_current_database_and_keeps_its_data(engine: Engine) -> None:
    add_account(engine, name="kept")

    ensure_schema(engine)

    with engine.connect() as conn:
        assert conn.execute(select(col(Account.name))).scalars().all() == ["kept"]


def test_ensure_schema_refuses_a_schema_it_does_not_know_and_says_why(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_newer'"))

    with pytest.raises(DatabaseNotReady, match=r"9999_newer.*newer smm-scheduler"):
        ensure_schema(engine)


def test_ensure_schema_refuses_tables_without_a_schema_version(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE alembic_version"))

    with pytest.raises(DatabaseNotReady, match="no schema version"):
        ensure_schema(engine)


# --------------------------------------------------------------------------------- SQLite


@pytest.fixture
def sqlite_engine(sqlite_url: str) -> Any:
    engine = make_engine(sqlite_url)
    yield engine
    engine.dispose()


def test_sqlite_settings_apply_to_every_new_connection(sqlite_engine: Engine) -> None:
    # Two connections open at once are two distinct DB-API connections.
    with sqlite_engine.connect() as first, sqlite_engine.connect() as second:
        for conn in (first, second):
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == SQLITE_BUSY_TIMEOUT_MS


def test_sqlite_enforces_foreign_keys(sqlite_engine: Engine) -> None:
    with pytest.raises(IntegrityError, match="FOREIGN KEY"):
        add_post(sqlite_engine, account_id=999, key="orphan", idempotency_key="a" * 32)


def try_to_take_write_lock(sqlite_url: str) -> None:
    """Start a write transaction from a separate connection, giving up after 50 ms."""
    path = make_url(sqlite_url).database
    assert path
    other = sqlite3.connect(path, timeout=0.05, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
    finally:
        other.close()


def test_immediate_transaction_blocks_a_second_writer(
    sqlite_engine: Engine, sqlite_url: str
) -> None:
    with immediate(sqlite_engine), pytest.raises(sqlite3.OperationalError, match="locked"):
        try_to_take_write_lock(sqlite_url)


def test_deferred_transaction_does_not_block_a_second_writer_before_writing(
    sqlite_engine: Engine, sqlite_url: str
) -> None:
    with sqlite_engine.begin() as conn:
        conn.execute(select(col(Account.id)))
        try_to_take_write_lock(sqlite_url)


# --------------------------------------------------------------------------------- URLs


def test_redact_url_hides_the_password() -> None:
    redacted = redact_url("postgresql+psycopg://smm:s3cr3t-pw@db.example/smm")

    assert "s3cr3t-pw" not in redacted
    assert redacted == "postgresql+psycopg://smm:***@db.example/smm"


def test_redact_url_does_not_echo_an_unparseable_url() -> None:
    assert redact_url("not a url with s3cr3t") == "<unparseable database URL>"


@pytest.fixture
def no_url_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("SMM_DATABASE_URL", "STATE_DIRECTORY", "XDG_DATA_HOME"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_database_url_from_the_command_line_wins(no_url_env: pytest.MonkeyPatch) -> None:
    no_url_env.setenv("SMM_DATABASE_URL", "sqlite:///env.db")

    assert resolve_database_url("sqlite:///cli.db", "sqlite:///config.db") == "sqlite:///cli.db"


def test_database_url_from_the_environment_beats_the_config(
    no_url_env: pytest.MonkeyPatch,
) -> None:
    no_url_env.setenv("SMM_DATABASE_URL", "sqlite:///env.db")

    assert resolve_database_url(None, "sqlite:///config.db") == "sqlite:///env.db"


def test_database_url_from_the_config_beats_the_default(no_url_env: pytest.MonkeyPatch) -> None:
    assert resolve_database_url(None, "sqlite:///config.db") == "sqlite:///config.db"


def test_default_database_is_in_the_systemd_state_directory(
    no_url_env: pytest.MonkeyPatch,
) -> None:
    no_url_env.setenv("STATE_DIRECTORY", "/var/lib/smm-scheduler:/var/lib/other")

    assert resolve_database_url(None, None) == "sqlite:////var/lib/smm-scheduler/smm.db"


def test_default_database_is_in_the_xdg_data_home_outside_systemd(
    no_url_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    no_url_env.setenv("XDG_DATA_HOME", str(tmp_path))

    assert resolve_database_url(None, None) == f"sqlite:///{tmp_path}/smm-scheduler/smm.db"


def test_the_schema_head_constant_is_alembics_head() -> None:
    from scheduler.db.migrate import SCHEMA_HEAD, head_revision

    assert head_revision() == SCHEMA_HEAD


def test_daemons_starting_together_on_postgres_both_sync_the_accounts(postgres_url: str) -> None:
    """Two transactions that both saw no account rows insert the same accounts: the second
    waits for the first, then keeps its rows instead of failing on the unique name."""
    import threading

    from scheduler.accounts import sync_accounts
    from scheduler.config import parse_config

    config = parse_config(
        '[accounts.a]\nplatform = "sim"\ntimezone = "UTC"\n'
        '[accounts.b]\nplatform = "sim"\ntimezone = "UTC"\n',
        "race.toml",
    )
    now = datetime(2026, 11, 26, tzinfo=UTC)
    engine = make_engine(postgres_url)
    first_wrote, second_read = threading.Event(), threading.Event()
    first_ids: dict[str, int] = {}

    def first() -> None:
        with engine.begin() as conn:
            first_ids.update(sync_accounts(conn, config, now))
            first_wrote.set()
            second_read.wait(10)  # commit only once the second has read the empty table

    try:
        with engine.begin() as conn:
            thread = threading.Thread(target=first)
            conn.execute(text("SELECT 1"))  # start the second transaction's snapshot first
            thread.start()
            assert first_wrote.wait(10)
            # The second's read cannot see the first's uncommitted rows: it inserts too, and
            # its insert waits for the first transaction to commit.
            timer = threading.Timer(0.3, second_read.set)
            timer.start()
            second_ids = sync_accounts(conn, config, now)
            thread.join(10)
        assert second_ids == first_ids
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM accounts")).scalar_one() == 2
    finally:
        engine.dispose()
