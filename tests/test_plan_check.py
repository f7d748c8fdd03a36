"""``smm plan validate`` reads the plan as a stream: memory does not grow with the plan, the
report is validation's (every problem counted, the first ones kept), and a past time is
accepted for a post already out of the queue, looked up a chunk at a time."""

from __future__ import annotations

import json
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from scheduler.cli import cli
from scheduler.config import Config, parse_config
from scheduler.plan import pipeline, validating
from scheduler.plan.check import check_plan
from scheduler.plan.read import PlanFiles, read_plan_files
from scheduler.plan.validate import validate_items
from tests.plan_support import CONFIG

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def config() -> Config:
    return parse_config(CONFIG, "config.toml")


def csv_plan(path: Path, count: int, bad_every: int = 0) -> Path:
    lines = ["id,account,type,text,link,at"]
    for i in range(count):
        account = "nowhere" if bad_every and i % bad_every == 0 else "riga"
        at = "2031-04-01 09:00" if i % 2 else ""
        lines.append(f"p{i},{account},tip,Post {i} with some words,https://example.com/{i},{at}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _peak(config: Config, path: Path) -> tuple[int, int]:
    tracemalloc.start()
    try:
        found = check_plan(PlanFiles([path]), config, NOW)
        return tracemalloc.get_traced_memory()[1], found.posts
    finally:
        tracemalloc.stop()


def test_validating_holds_a_chunk_of_the_plan_not_the_plan(
    config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(validating, "CHUNK", 100)
    _peak(config, csv_plan(tmp_path / "first.csv", 10))  # what loads on first use
    small, posts = _peak(config, csv_plan(tmp_path / "small.csv", 1_000))
    assert posts == 1_000
    large, posts = _peak(config, csv_plan(tmp_path / "large.csv", 8_000))
    assert posts == 8_000
    # Read and validated whole, the plan's peak grows by about 1 KiB a post (7 MB here); as
    # a stream, by the few bytes kept of each id.
    assert large - small < 500_000, (small, large)


def test_the_report_is_validations_with_the_first_problems_kept_and_all_counted(
    config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = csv_plan(tmp_path / "plan.csv", 300, bad_every=7)
    raws, _ = read_plan_files([path])
    _, expected = validate_items(raws, config, NOW)
    found = check_plan(PlanFiles([path]), config, NOW)
    assert [(p.line, p.field, p.message) for p in found.problems] == [
        (p.line, p.field, p.message) for p in expected
    ]
    assert found.problem_count == len(expected) == 43

    monkeypatch.setattr(pipeline, "KEPT_PROBLEMS", 5)
    found = check_plan(PlanFiles([path]), config, NOW)
    assert [p.line for p in found.problems] == [p.line for p in expected[:5]]
    assert found.problem_count == 43


def test_a_past_time_is_accepted_for_a_settled_post_asked_chunk_by_chunk(
    config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(validating, "CHUNK", 2)
    rows = [f"p{i},riga,tip,text {i},2026-02-01 09:00" for i in range(5)]
    path = tmp_path / "plan.csv"
    path.write_text("id,account,type,text,at\n" + "\n".join(rows) + "\n", encoding="utf-8")
    asked: list[list[str]] = []

    def settled(keys: list[str]) -> set[str]:
        asked.append(list(keys))
        return {"p1", "p4"} & set(keys)

    found = check_plan(PlanFiles([path]), config, NOW, settled=settled)
    assert asked == [["p0", "p1"], ["p2", "p3"], ["p4"]]
    assert sorted(p.item or "" for p in found.problems) == ["p0", "p2", "p3"]
    assert found.posts == 2


def test_smm_plan_validate_lists_and_counts_as_before(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(CONFIG, encoding="utf-8")
    path = csv_plan(tmp_path / "plan.csv", 250, bad_every=2)
    base = ["--db", f"sqlite:///{tmp_path / 'none.db'}", "--config", str(tmp_path / "config.toml")]
    result = CliRunner().invoke(cli, [*base, "plan", "validate", "--json", str(path)])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["total"] == 125
    assert len(report["problems"]) == 100
    assert report["problems"][0]["message"] == "unknown account 'nowhere'"
    assert not (tmp_path / "none.db").exists()
    good = csv_plan(tmp_path / "good.csv", 40)
    result = CliRunner().invoke(cli, [*base, "plan", "validate", str(good)])
    assert result.exit_code == 0, result.output
    assert "OK: 40 post(s), 20 at fixed times, 20 queued" in result.output
