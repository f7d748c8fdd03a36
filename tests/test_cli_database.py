"""Which commands may create a database, and what the others say when there is none."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from scheduler.cli import cli

CONFIG = '[accounts.riga]\nplatform = "sim"\ntimezone = "Europe/Riga"\n'
PLAN = '- {id: a1, account: riga, type: laugh, text: one, at: "2099-06-03 10:00"}\n'

READ_COMMANDS = [
    ("queue", "list"),
    ("queue", "show", "a1"),
    ("accounts", "list"),
    ("er",),
    ("report", "--html", "out.html"),
    ("status",),
    ("db", "current"),
    ("db", "upgrade"),
    ("queue", "cancel", "a1"),
]


@pytest.fixture(autouse=True)
def no_default_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.delenv("SMM_CONFIG", raising=False)
    monkeypatch.delenv("SMM_DATABASE_URL", raising=False)


@pytest.mark.parametrize("args", READ_COMMANDS, ids=" ".join)
def test_a_mistyped_database_path_is_an_error_and_nothing_is_created(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    missing = tmp_path / "nonexistent" / "dir" / "x.db"
    result = CliRunner().invoke(cli, ["--db", f"sqlite:///{missing}", *args])
    assert result.exit_code == 1, result.output
    assert f"no database at {missing}" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "nonexistent").exists()


@pytest.mark.parametrize("args", READ_COMMANDS[:6], ids=" ".join)
def test_with_no_config_and_no_database_commands_say_so(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 1, result.output
    assert "no config file and no database given" in result.output
    assert not (tmp_path / "xdg-data").exists(), "the default database was not opened"


def test_init_creates_the_database_and_says_where(tmp_path: Path) -> None:
    db = tmp_path / "new" / "smm.db"
    result = CliRunner().invoke(cli, ["--db", f"sqlite:///{db}", "init"])
    assert result.exit_code == 0, result.output
    assert db.is_file()
    assert f"database sqlite:///{db} ready" in result.output
    listed = CliRunner().invoke(cli, ["--db", f"sqlite:///{db}", "queue", "list"])
    assert listed.exit_code == 0, listed.output


def test_plan_import_creates_the_database_and_says_so_on_stderr(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(CONFIG, encoding="utf-8")
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN, encoding="utf-8")
    db = tmp_path / "fresh.db"
    base = ["--db", f"sqlite:///{db}", "--config", str(config)]
    dry = CliRunner().invoke(cli, [*base, "plan", "import", "--dry-run", str(plan)])
    assert dry.exit_code == 1, dry.output  # a dry run reads; it does not create
    assert not db.exists()
    result = CliRunner().invoke(cli, [*base, "plan", "import", "--json", str(plan)])
    assert result.exit_code == 0, result.output
    assert f"created the database sqlite:///{db}" in result.stderr
    assert result.stdout.lstrip().startswith("{")  # --json output stays clean
    again = CliRunner().invoke(cli, [*base, "plan", "import", str(plan)])
    assert "created the database" not in again.stderr


def test_a_config_without_a_database_url_uses_the_default_database(tmp_path: Path) -> None:
    """A config (not the lack of one) is what lets a command use the default database."""
    config = tmp_path / "c.toml"
    config.write_text(CONFIG, encoding="utf-8")
    result = CliRunner().invoke(cli, ["--config", str(config), "queue", "list"])
    assert result.exit_code == 1
    assert "no database at" in result.output
    assert str(tmp_path / "xdg-data") in result.output


def test_docs_show_the_current_schema() -> None:
    """Sample output in the docs names the schema this version creates."""
    import re

    from scheduler.db.migrate import SCHEMA_HEAD

    docs = Path(__file__).resolve().parent.parent / "docs"
    found = []
    for page in sorted(docs.rglob("*.md")):
        text = page.read_text(encoding="utf-8")
        for m in re.finditer(r"ready \(schema (\d{4})\)|latest (\d{4})|version's (\d{4})", text):
            found.append((page.name, next(g for g in m.groups() if g)))
    assert found
    assert [f for f in found if f[1] != SCHEMA_HEAD] == []


@pytest.mark.parametrize("command", [("init",), ("plan", "import", "PLAN")], ids=" ".join)
@pytest.mark.parametrize("where", ["under a file", "name too long"])
def test_a_database_that_cannot_be_created_is_an_error_naming_it(
    tmp_path: Path, command: tuple[str, ...], where: str
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(CONFIG, encoding="utf-8")
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN, encoding="utf-8")
    (tmp_path / "a-file").write_text("not a folder")
    # A read-only folder refuses root too only on a read-only mount; these two refuse anyone.
    db = tmp_path / "a-file" / "smm.db" if where == "under a file" else tmp_path / ("x" * 300)
    args = [a.replace("PLAN", str(plan)) for a in command]
    result = CliRunner().invoke(cli, ["--db", f"sqlite:///{db}", "--config", str(config), *args])
    assert result.exit_code == 1, result.output
    assert f"cannot create the database {db}" in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def _sqlite_refuses_the_folder(monkeypatch: pytest.MonkeyPatch, db: Path) -> None:
    """As a user who may not write the database's folder sees it (root may write anything):
    os.access says no, and SQLite fails to open the database as it then does."""
    import os
    import sqlite3

    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, m: str(p) != str(db.parent) and real_access(p, m))

    def refuse(*_a: object, **_k: object) -> None:
        raise sqlite3.OperationalError("unable to open database file")

    monkeypatch.setattr(sqlite3.dbapi2, "connect", refuse)


def test_a_database_in_a_read_only_folder_says_the_folder_is_the_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "data" / "smm.db"
    assert CliRunner().invoke(cli, ["--db", f"sqlite:///{db}", "init"]).exit_code == 0
    _sqlite_refuses_the_folder(monkeypatch, db)
    result = CliRunner().invoke(cli, ["--db", f"sqlite:///{db}", "queue", "list"])
    assert result.exit_code == 1, result.output
    assert "unable to open database file" in result.output
    assert f"not writable by this user: {db.parent}" in result.output
    assert "-wal" in result.output


def test_doctor_points_at_the_read_only_folder_not_at_a_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    db = tmp_path / "data" / "smm.db"
    assert CliRunner().invoke(cli, ["--db", f"sqlite:///{db}", "init"]).exit_code == 0
    _sqlite_refuses_the_folder(monkeypatch, db)
    result = CliRunner().invoke(cli, ["--db", f"sqlite:///{db}", "doctor", "--json"])
    assert result.exit_code == 1, result.output
    (check,) = [c for c in json.loads(result.output)["checks"] if c["name"] == "database"]
    assert check["level"] == "fail"
    assert str(db.parent) in check["fix"]
    assert "server" not in check["fix"]
