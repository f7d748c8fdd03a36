"""Files the project writes are private (0600) under the usual umask 022, and a report is
never written through a symlink planted beside it."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from scheduler.cli import cli
from scheduler.db.engine import make_engine
from scheduler.db.migrate import ensure_schema
from scheduler.files import create_private, write_private


@pytest.fixture(autouse=True)
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_a_new_sqlite_database_and_its_wal_and_shm_are_0600(tmp_path: Path) -> None:
    db = tmp_path / "state" / "smm.db"
    engine = make_engine(f"sqlite:///{db}")
    try:
        ensure_schema(engine, create=True)
        with engine.connect() as conn:  # an open connection keeps -wal and -shm there
            conn.exec_driver_sql("SELECT count(*) FROM posts").scalar()
            files = {p.name: mode(p) for p in db.parent.iterdir()}
    finally:
        engine.dispose()

    assert files == {"smm.db": 0o600, "smm.db-wal": 0o600, "smm.db-shm": 0o600}
    assert mode(db.parent) == 0o700


def test_smm_init_creates_a_private_database(tmp_path: Path) -> None:
    db = tmp_path / "smm.db"

    result = CliRunner().invoke(cli, ["--db", f"sqlite:///{db}", "init"])

    assert result.exit_code == 0, result.output
    assert mode(db) == 0o600


def test_report_html_is_0600(tmp_path: Path) -> None:
    db, page = tmp_path / "smm.db", tmp_path / "report.html"
    CliRunner().invoke(cli, ["--db", f"sqlite:///{db}", "init"])

    result = CliRunner().invoke(cli, ["--db", f"sqlite:///{db}", "report", "--html", str(page)])

    assert result.exit_code == 0, result.output
    assert mode(page) == 0o600
    assert [p.name for p in tmp_path.iterdir() if ".tmp" in p.name] == []


def test_report_html_does_not_follow_a_symlink_planted_at_x_tmp(tmp_path: Path) -> None:
    db, page = tmp_path / "smm.db", tmp_path / "report.html"
    victim = tmp_path / "victim.txt"
    victim.write_text("precious", encoding="utf-8")
    (tmp_path / "report.html.tmp").symlink_to(victim)
    CliRunner().invoke(cli, ["--db", f"sqlite:///{db}", "init"])

    result = CliRunner().invoke(cli, ["--db", f"sqlite:///{db}", "report", "--html", str(page)])

    assert result.exit_code == 0, result.output
    assert victim.read_text(encoding="utf-8") == "precious"
    assert (tmp_path / "report.html.tmp").is_symlink()
    assert "<html" in page.read_text(encoding="utf-8").lower()


def test_write_private_replaces_a_symlink_at_the_target_instead_of_following_it(
    tmp_path: Path,
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious", encoding="utf-8")
    target = tmp_path / "out.html"
    target.symlink_to(victim)

    write_private(target, "new")

    assert victim.read_text(encoding="utf-8") == "precious"
    assert not target.is_symlink()
    assert (target.read_text(encoding="utf-8"), mode(target)) == ("new", 0o600)


def test_create_private_leaves_an_existing_file_and_a_symlink_alone(tmp_path: Path) -> None:
    existing = tmp_path / "db"
    existing.write_text("data", encoding="utf-8")
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere")

    assert create_private(existing) is False
    assert create_private(link) is False
    assert existing.read_text(encoding="utf-8") == "data"
    assert not (tmp_path / "elsewhere").exists()
