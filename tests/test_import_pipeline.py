"""The import pipeline: validation in a forked process while this one writes.

tests/test_import.py runs every import test through each way of importing; here: what only
the two-process pipeline can get wrong (chunks validated on both sides, problems found in
either, a validating process that fails or dies) and a larger plan compared row by row
with validate-then-``apply_plan``.
"""

from __future__ import annotations

import csv
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, select

from scheduler.cli import cli
from scheduler.config import AccountConfig, Config, parse_config
from scheduler.db.engine import make_engine
from scheduler.db.migrate import upgrade
from scheduler.errors import Problem
from scheduler.plan import pipeline, validating
from scheduler.plan.importer import apply_plan
from scheduler.plan.items import PlanItem
from scheduler.plan.read import read_plan_files
from scheduler.plan.validate import validate_items
from scheduler.queue import posts_t

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)

CONFIG = """
[accounts.riga]
platform = "sim"
timezone = "Europe/Riga"
slots = { daily = ["09:00", "13:00", "18:00"] }

[accounts.ny]
platform = "sim"
timezone = "America/New_York"
slots = { weekdays = ["10:00", "15:30"] }

[accounts.howe]
platform = "sim"
timezone = "Australia/Lord_Howe"
slots = { daily = ["02:00", "02:30", "21:00"] }

[accounts.quiet]
platform = "sim"
timezone = "UTC"
"""

ACCOUNTS = ["riga", "ny", "howe", "quiet"]
TYPES = ["laugh", "medal", "instruction", "provocation"]
COLUMNS = ["id", "account", "type", "text", "link", "tags", "evergreen", "at"]


@pytest.fixture
def config() -> Config:
    return parse_config(CONFIG, "config.toml")


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Many chunks from small plans, and this process validates one whenever nothing is
    waiting from the other, so both processes validate some."""
    monkeypatch.setattr(validating, "CHUNK", 7)
    assert validating.can_fork(), "these tests need a process that may fork"


def write_plan(path: Path, rows: Sequence[dict[str, str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def random_rows(count: int, seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        account = ACCOUNTS[i % len(ACCOUNTS)]
        at = ""
        # The account without slots only takes fixed times; the others take both.
        if account == "quiet" or rng.random() < 0.4:
            when = NOW + timedelta(days=rng.randrange(1, 300), minutes=rng.randrange(1440))
            at = when.strftime("%Y-%m-%d %H:%M")
        rows.append(
            {
                "id": f"p{i:05d}",
                "account": account,
                "type": rng.choice(TYPES),
                "text": f"post {i} " + "words " * rng.randrange(1, 20),
                "link": f"https://example.com/{i}" if rng.random() < 0.3 else "",
                "tags": "smm;tips" if rng.random() < 0.2 else "",
                "evergreen": "yes" if rng.random() < 0.1 else "",
                "at": at,
            }
        )
    return rows


def stored(engine: Engine) -> list[tuple[Any, ...]]:
    """Every post column but the idempotency key (random per import), in id order."""
    columns = [c for c in posts_t.c if c.name != "idempotency_key"]
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(*columns).order_by(posts_t.c.id))]


def import_forked(
    engine: Engine, config: Config, paths: Sequence[Path], **kw: Any
) -> tuple[Any, list[Problem]]:
    raws, problems = read_plan_files(paths)
    assert problems == []
    with engine.connect() as conn, conn.begin() as tx:
        diff, bad = pipeline.import_plan(conn, raws, config, NOW, parallel=True, **kw)
        if bad:
            tx.rollback()
    return diff, bad


def test_a_plan_imports_row_for_row_as_validate_then_apply_plan_does(
    config: Config, tmp_path: Path
) -> None:
    forked_engine, batch_engine = (sqlite_engine(tmp_path / n) for n in ("f.db", "b.db"))

    def batch(paths: Sequence[Path], prune: bool = False) -> None:
        raws, problems = read_plan_files(paths)
        items, bad = validate_items(raws, config, NOW)
        assert problems + bad == []
        with batch_engine.begin() as conn:
            apply_plan(conn, items, config, NOW, prune=prune)

    first = [write_plan(tmp_path / "plan.csv", random_rows(600, seed=1))]
    assert import_forked(forked_engine, config, first)[1] == []
    batch(first)
    assert stored(forked_engine) == stored(batch_engine)

    # A re-import that changes, adds and drops items, and moves some to another file.
    rows = random_rows(700, seed=2)
    second = [
        write_plan(tmp_path / "plan.csv", rows[50:400]),
        write_plan(tmp_path / "more.csv", rows[400:]),
    ]
    diff, bad = import_forked(forked_engine, config, second, prune=True)
    assert bad == []
    summary = diff.summary()
    assert summary["added"] > 0
    assert summary["updated"] > 0
    assert summary["cancelled"] > 0
    batch(second, prune=True)
    assert stored(forked_engine) == stored(batch_engine)
    forked_engine.dispose()
    batch_engine.dispose()


def sqlite_engine(path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    return engine


def test_every_problem_is_reported_in_plan_order_and_nothing_is_written(
    engine: Engine, config: Config, tmp_path: Path
) -> None:
    rows = random_rows(120, seed=3)
    rows[3]["account"] = "rigaa"
    rows[50]["at"] = "2026-03-29 03:30"  # Riga: the clocks jump from 03:00 to 04:00
    rows[50]["account"] = "riga"
    rows[77]["text"] = ""
    rows[118]["id"] = rows[5]["id"]
    path = write_plan(tmp_path / "plan.csv", rows)
    before = stored(engine)

    _, problems = import_forked(engine, config, [path])

    raws, _ = read_plan_files([path])
    _, expected = validate_items(raws, config, NOW)
    assert [(p.line, p.field) for p in problems] == [(p.line, p.field) for p in expected]
    assert [p.line for p in problems] == [5, 52, 79, 120]
    assert stored(engine) == before


def _child_only(action: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A network check that runs ``action`` in the forked process, which (this process
    never helping) validates every chunk."""
    monkeypatch.setattr(validating.Shared, "HELPS", 0)
    parent = os.getpid()
    chunks = validating.Shared.chunks

    def after_the_child_took_one(self: validating.Shared, count: int) -> Any:
        # A chunk nobody took yet is this process's: on a busy machine the forked one may
        # not have started by the time this one needs the first chunk.
        deadline = time.monotonic() + 30
        while self._next.value == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        return chunks(self, count)

    monkeypatch.setattr(validating.Shared, "chunks", after_the_child_took_one)

    def check(item: PlanItem, account: AccountConfig) -> list[tuple[str, str, str]]:
        if os.getpid() != parent:
            action()
        return []

    return check


def test_a_validating_process_that_dies_fails_the_import_and_writes_nothing(
    engine: Engine, config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_plan(tmp_path / "plan.csv", random_rows(60, seed=4))
    with pytest.raises(pipeline.ValidationProcessError, match="ended early"):
        import_forked(
            engine, config, [path], network_check=_child_only(lambda: os._exit(3), monkeypatch)
        )
    assert stored(engine) == []


def test_an_error_in_the_validating_process_is_reported_with_its_traceback(
    engine: Engine, config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom() -> None:
        raise RuntimeError("the network rules could not be loaded")

    path = write_plan(tmp_path / "plan.csv", random_rows(60, seed=5))
    with pytest.raises(pipeline.ValidationProcessError, match="could not be loaded"):
        import_forked(engine, config, [path], network_check=_child_only(boom, monkeypatch))
    assert stored(engine) == []


def test_smm_plan_import_of_a_large_plan_validates_in_two_processes(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    forks = []
    shared = validating.Shared

    def counting(*args: Any) -> Any:
        forks.append(args)
        return shared(*args)

    monkeypatch.setattr(validating, "Shared", counting)
    monkeypatch.setattr(validating, "CHUNK", 500)
    config = tmp_path / "config.toml"
    config.write_text(CONFIG, encoding="utf-8")
    far = [dict(r, at="") if r["account"] != "quiet" else r for r in random_rows(6000, seed=6)]
    for r in far:
        if r["at"]:
            r["at"] = "2031-01-01 10:00"  # in the future whenever the test runs
    plan = write_plan(tmp_path / "plan.csv", far)
    base = ["--db", db_url, "--config", str(config)]
    runner = CliRunner()
    result = runner.invoke(cli, [*base, "plan", "import", "--json", str(plan)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["added"] == 6000
    assert len(forks) == 1
    listed = json.loads(
        runner.invoke(cli, [*base, "queue", "list", "--json", "--limit", "6000"]).stdout
    )
    assert sorted(p["id"] for p in listed) == sorted(r["id"] for r in far)


_SLOW_VALIDATION = """
import sys, time
from scheduler.plan import validating

class Slow:
    def chunk(self, number, raws):
        time.sleep(120)

shared = validating.Shared(Slow(), [object()] * 10)
print(shared.pid, flush=True)
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status  # a zombie has ended


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
def test_the_validating_process_has_a_session_of_its_own_and_ends_with_the_importing_one(
    tmp_path: Path,
) -> None:
    # In a session of its own, so that the scheduler gives it a share of its own on a busy
    # machine; killed by the kernel when the importing process is (here with SIGKILL).
    importing = subprocess.Popen(
        [sys.executable, "-c", _SLOW_VALIDATION], stdout=subprocess.PIPE, text=True
    )
    try:
        assert importing.stdout is not None
        validating_pid = int(importing.stdout.readline())
        deadline = time.monotonic() + 20  # the forked process may not have run yet
        while os.getsid(validating_pid) != validating_pid and time.monotonic() < deadline:
            time.sleep(0.01)
        assert os.getsid(validating_pid) == validating_pid
        assert os.getsid(validating_pid) != os.getsid(importing.pid)
        assert _alive(validating_pid)
    finally:
        importing.kill()
        importing.wait()
        if importing.stdout is not None:
            importing.stdout.close()
    deadline = time.monotonic() + 20
    while _alive(validating_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(validating_pid)
