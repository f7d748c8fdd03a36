"""Running ``smm plan ...`` against hostile plans, and telling whether a database changed."""

from __future__ import annotations

import hashlib
import sqlite3
from datetime import datetime
from pathlib import Path

from click.testing import CliRunner, Result
from sqlalchemy import MetaData, select

from scheduler import outgoing
from scheduler.cli import cli
from scheduler.config import Config
from scheduler.db.engine import make_engine
from scheduler.errors import Problem
from scheduler.plan.items import PlanItem
from scheduler.plan.read import read_plan_file
from scheduler.plan.validate import validate_items

#: Accounts every hostile-plan test uses: slots in two zones, and one without slots.
CONFIG = """
[accounts.riga]
platform = "sim"
timezone = "Europe/Riga"
slots = { daily = ["09:00", "18:00"] }

[accounts.ny]
platform = "sim"
timezone = "America/New_York"
slots = { weekdays = ["10:00"] }

[accounts.noslots]
platform = "sim"
timezone = "UTC"
"""


def validate_text(
    folder: Path, config: Config, text: str, now: datetime, name: str = "plan.yaml"
) -> tuple[list[PlanItem], list[Problem]]:
    """Write ``text`` as plan file ``name`` in ``folder``, read it (asserting it reads
    cleanly) and validate it at ``now`` with every network's own checks."""
    path = folder / name
    path.write_text(text, encoding="utf-8")
    raws, problems = read_plan_file(path)
    assert problems == []
    return validate_items(
        raws, config, now, network_check=lambda i, a: outgoing.network_check(i, a)
    )


def invoke(config: Path, db_url: str, *args: str) -> Result:
    """``smm --db DB --config CONFIG ARGS``, asserting that it ended without a traceback."""
    result = CliRunner().invoke(cli, ["--db", db_url, "--config", str(config), *args])
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert result.exit_code in (0, 1, 2), result.output
    return result


def database_hash(db_url: str) -> str:
    """A digest of every row of every table: equal digests, byte-identical contents."""
    engine = make_engine(db_url)
    try:
        meta = MetaData()
        meta.reflect(engine)
        digest = hashlib.sha256()
        with engine.connect() as conn:
            for table in meta.sorted_tables:
                digest.update(table.name.encode())
                rows = conn.execute(select(table)).all()
                for row in sorted(repr(tuple(r)) for r in rows):
                    digest.update(row.encode())
        return digest.hexdigest()
    finally:
        engine.dispose()


def sqlite_hash(path: Path) -> str:
    """``database_hash`` of a SQLite file, read with the driver alone (fast enough to run
    after every one of a thousand imports)."""
    conn = sqlite3.connect(path)
    try:
        digest = hashlib.sha256()
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in sorted(tables):
            digest.update(table.encode())
            rows = conn.execute(f'SELECT * FROM "{table}"').fetchall()
            for row in sorted(repr(r) for r in rows):
                digest.update(row.encode())
        return digest.hexdigest()
    finally:
        conn.close()
