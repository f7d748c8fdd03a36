"""Schema versions: Alembic, driven from code (no alembic.ini needed at run time)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import DBAPIError

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

from scheduler.errors import DatabaseNotReady

MIGRATIONS = Path(__file__).with_name("migrations")


#: The newest revision in migrations/versions. Checked against Alembic by a test, so a daemon
#: can tell an up-to-date database without importing Alembic (a third of its start-up).
SCHEMA_HEAD = "0015"


def alembic_config(url: str | None = None) -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The database's schema revision (None: not initialised), read with plain SQL."""
    with engine.connect() as conn:
        try:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except DBAPIError:
            return None  # no version table yet


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str]:
    """Bring the schema to ``revision``; return (before, after)."""
    from alembic import command

    before = current_revision(engine)
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    return before, current_revision(engine) or ""


def ensure_schema(engine: Engine, *, create: bool = True) -> None:
    """Create the schema in an empty database; refuse to run on an outdated one.

    An empty database is set up on first use so that ``smm plan import`` works right after
    install; an older schema is never upgraded behind the operator's back.
    """
    current = current_revision(engine)
    if current == SCHEMA_HEAD:
        return
    head = head_revision()
    if current == head:
        return
    if current is None:
        tables = inspect(engine).get_table_names()
        if tables:
            raise DatabaseNotReady(
                "the database has tables but no schema version; is it an smm-scheduler database?"
            )
        if create:
            upgrade(engine)
            return
        raise DatabaseNotReady("the database is not initialised: run `smm init`")
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    try:
        known = script.get_revision(current) is not None
    except Exception:
        known = False
    if not known:
        raise DatabaseNotReady(
            f"the database schema is at {current}, which this version does not know: it was "
            "written by a newer smm-scheduler; upgrade the software, not the database"
        )
    raise DatabaseNotReady(
        f"the database schema is at {current}, this version needs {head}: run `smm db upgrade`"
    )
