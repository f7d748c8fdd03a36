"""``enabled = false`` in an account's table: the account is paused (the daemon claims none
of its posts) from the next time the config is recorded (``smm init``, a plan import, the
daemon's start or reload), and resumes when it is enabled again (docs/configuration.md)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from click.testing import CliRunner

from scheduler.cli import cli
from scheduler.daemon import store
from scheduler.db.engine import make_engine
from scheduler.timeutil import utcnow

ACCOUNTS = """
[accounts.on]
platform = "sim"
timezone = "UTC"
[accounts.off]
platform = "sim"
timezone = "UTC"
enabled = {enabled}
"""
PLAN = """
- {id: a1, account: on, type: laugh, text: one, at: "2099-06-03 10:00"}
- {id: b1, account: off, type: laugh, text: two, at: "2099-06-03 10:00"}
"""


def test_a_disabled_account_is_paused_and_resumes_when_enabled(tmp_path: Path) -> None:
    config, plan, db = tmp_path / "c.toml", tmp_path / "plan.yaml", tmp_path / "smm.db"
    plan.write_text(PLAN, encoding="utf-8")
    base = ["--config", str(config), "--db", f"sqlite:///{db}"]

    def record(enabled: str) -> dict[str, str | None]:
        """The accounts' pause reasons (None: active) once the config is recorded."""
        config.write_text(ACCOUNTS.format(enabled=enabled), encoding="utf-8")
        assert CliRunner().invoke(cli, [*base, "init"]).exit_code == 0
        listed = CliRunner().invoke(cli, [*base, "accounts", "list", "--json"]).output
        return {a["name"]: a["paused_reason"] if a["paused"] else None for a in json.loads(listed)}

    def claimable() -> set[str]:
        engine = make_engine(f"sqlite:///{db}")
        try:
            claimed, _ = store.claim(
                engine,
                "test-daemon",
                utcnow() + timedelta(days=36500),
                lease=timedelta(seconds=1),
                limit=10,
                grace={},
                default_grace=timedelta(days=100_000),
            )
        finally:
            engine.dispose()
        return {c.row.key for c in claimed}

    states = record("false")
    assert states == {"on": None, "off": "disabled in the config (enabled = false)"}
    result = CliRunner().invoke(cli, [*base, "plan", "import", str(plan)])
    assert result.exit_code == 0, result.output
    assert claimable() == {"a1"}
    assert record("true") == {"on": None, "off": None}
    assert claimable() == {"b1"}  # a1 is held by the first claim's lease
