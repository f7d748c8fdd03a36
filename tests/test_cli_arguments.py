"""Command-line arguments as hostile input: database URLs, ids, counts and bytes that are not
UTF-8 end in exit 1 (2 for a usage error) and one clear line, never a traceback, and never act
on a post they do not name."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from scheduler.cli import cli
from scheduler.db.engine import make_engine
from scheduler.queue import posts_t

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "config" / "example.toml"
PLAN = REPO / "config" / "example-plan.yaml"


def smm(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def no_traceback(result: Result) -> None:
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception


@pytest.fixture
def db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'smm.db'}"
    imported = smm("--config", str(CONFIG), "--db", url, "plan", "import", str(PLAN))
    assert imported.exit_code == 0, imported.output
    return url


def states(url: str) -> dict[int, Any]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return dict(conn.execute(select(posts_t.c.id, posts_t.c.state)).all())
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql+psycopg://smm@db.example:abc/smm", "the port must be a number"),
        ("postgresql+psycopg://smm@db.example:99999/smm", "out of range"),
        ("garbage", "cannot read database URL 'garbage'"),
        ("mysql://smm@db/smm", "unsupported database 'mysql'"),
        ("sqlite+pysqlcipher:///x.db", "use sqlite:///PATH"),
    ],
    ids=["non-numeric-port", "port-out-of-range", "garbage", "mysql", "sqlite-driver"],
)
def test_a_bad_database_url_exits_1_with_one_line(url: str, message: str) -> None:
    result = smm("--db", url, "queue", "list")

    no_traceback(result)
    assert result.exit_code == 1
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_database_url_password_is_not_echoed_when_the_url_is_bad() -> None:
    result = smm("--db", "postgresql+psycopg://smm:hunter2pw@db:abc/smm", "queue", "list")

    assert result.exit_code == 1
    assert "hunter2pw" not in result.output


def test_postgresql_without_the_driver_installed_says_which_extra_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "psycopg" else real(name, *a)
    )

    result = smm("--db", "postgresql+psycopg://smm@db.example/smm", "queue", "list")

    no_traceback(result)
    assert result.exit_code == 1
    assert "pip install 'smm-scheduler[postgres]'" in result.output


def test_queue_show_with_a_23_digit_id_is_not_found(db: str) -> None:
    result = smm("--db", db, "queue", "show", "99999999999999999999999")

    no_traceback(result)
    assert result.exit_code == 1
    assert "no post with id '99999999999999999999999'" in result.output


@pytest.mark.parametrize("args", [["queue", "list"], ["er", "history"]])
def test_a_huge_limit_is_a_usage_error(db: str, args: list[str]) -> None:
    result = smm("--db", db, *args, "--limit", "99999999999999999999999")

    no_traceback(result)
    assert result.exit_code == 2
    assert "is not a whole number from 1 to" in result.output


@pytest.mark.parametrize(
    "digits",
    ["０１", "١", "۱", "１"],
    ids=["fullwidth-01", "arabic-indic-1", "persian-1", "fullwidth-1"],
)
def test_non_ascii_digits_never_name_a_post_by_its_database_id(db: str, digits: str) -> None:
    before = states(db)
    assert 1 in before

    result = smm("--config", str(CONFIG), "--db", db, "queue", "cancel", digits)

    no_traceback(result)
    assert result.exit_code == 1
    assert f"no post with id {digits!r}" in result.output
    assert states(db) == before


def test_ascii_digits_still_name_a_post_by_its_database_id(db: str) -> None:
    result = smm("--config", str(CONFIG), "--db", db, "queue", "show", "1", "--json")

    assert result.exit_code == 0, result.output
    assert '"db_id": 1' in result.output


def test_a_fullwidth_limit_is_a_usage_error(db: str) -> None:
    result = smm("--db", db, "queue", "list", "--limit", "５")

    assert result.exit_code == 2
    assert "'５' is not a whole number" in result.output


def test_an_argument_that_is_not_utf8_is_a_usage_error(db: str) -> None:
    raw = b"\xff\xfe".decode("utf-8", "surrogateescape")  # what Python makes of such argv

    result = smm("--db", db, "queue", "show", raw)

    no_traceback(result)
    assert result.exit_code == 2
    assert "argument 5 is not valid UTF-8 text" in result.output


@pytest.mark.parametrize("command", ["pause", "resume"])
def test_an_empty_account_name_names_no_account_instead_of_all(db: str, command: str) -> None:
    before = states(db)

    result = smm("--db", db, "queue", command, "--account", "")

    assert result.exit_code == 1
    assert "no account ''" in result.output
    assert states(db) == before


def test_the_usage_error_docs_cli_md_shows_is_the_one_printed(tmp_path: Path) -> None:
    page = (Path(__file__).resolve().parent.parent / "docs" / "cli.md").read_text("utf-8")
    (shown,) = (line for line in page.splitlines() if "'bogus' is not one of" in line)
    result = smm("--db", f"sqlite:///{tmp_path / 'x.db'}", "queue", "list", "--state", "bogus")
    assert result.exit_code == 2
    assert shown in result.output.splitlines()


def test_a_huge_or_many_unknown_ids_give_a_bounded_message(db: str) -> None:
    huge = "x" * 100_000
    result = smm("--db", db, "queue", "show", huge)

    no_traceback(result)
    assert result.exit_code == 1
    assert "no post with id 'xxxxxxxx" in result.output
    assert len(result.output) < 300

    many = [f"nope-{i}" for i in range(500)]
    result = smm("--config", str(CONFIG), "--db", db, "queue", "cancel", *many)

    no_traceback(result)
    assert result.exit_code == 1
    assert "'nope-0'" in result.output
    assert "and 490 more" in result.output
    assert len(result.output) < 500


@pytest.mark.parametrize(
    "args",
    [
        ["queue", "list", "--account"],
        ["queue", "pause", "--account"],
        ["er", "--account"],
        ["er", "history", "--account"],
        ["report", "--html", "r.html", "--account"],
    ],
)
def test_a_huge_unknown_account_gives_a_bounded_message(db: str, args: list[str]) -> None:
    result = smm("--config", str(CONFIG), "--db", db, *args, "x" * 100_000)

    no_traceback(result)
    assert result.exit_code == 1
    assert "no account 'xxxx" in result.output
    assert len(result.output) < 300


def test_a_signer_name_is_bounded_printable_text(db: str) -> None:
    for name in ("x" * 5000, "eve\x1b]0;pwned\x07"):
        result = smm("--config", str(CONFIG), "--db", db, "queue", "approve", "1", "--by", name)
        no_traceback(result)
        assert result.exit_code == 2
        assert "--by" in result.output
        assert "\x1b" not in result.output
        assert len(result.output) < 600
