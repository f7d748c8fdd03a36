"""``smm demo``: the whole product in one command, with nothing configured."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import select

from scheduler.cli import cli
from scheduler.db.engine import make_engine
from scheduler.db.models import PostState
from scheduler.queue import posts_t


def test_demo_publishes_the_example_plan_and_prints_the_er_report(
    tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("SMM_CONFIG", raising=False)
    monkeypatch.delenv("SMM_DATABASE_URL", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "nothing-configured"))
    result = CliRunner().invoke(cli, ["demo", "--days", "10", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "example plan: 20 posts for 2 accounts" in result.output
    assert "acme_sim" in result.output
    assert "PRIORITY" in result.output
    report = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert report.count("<svg") >= 3  # ER over time, priorities, weekday x hour heatmap
    assert "No published posts" not in report
    engine = make_engine(f"sqlite:///{tmp_path / 'er.db'}")
    try:
        with engine.connect() as conn:
            states = conn.execute(select(posts_t.c.state)).scalars().all()
    finally:
        engine.dispose()
    assert states.count(PostState.PUBLISHED) >= 20
