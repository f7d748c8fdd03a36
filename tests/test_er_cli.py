"""``smm er``: the per-type table, the decisions, the trajectory, recompute, the terminal chart."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from er_support import DAY, T0, Builder, cli_at_t0

from scheduler.cli import cli
from scheduler.cli.er import register
from scheduler.db.engine import make_engine
from scheduler.er.plot import bar, sparkline

if "er" not in cli.commands:
    register(cli)

TRUE_ER = {"instruction": 0.04, "laugh": 0.03, "medal": 0.02}


@pytest.fixture
def smm(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run ``smm`` on the test database with "now" fixed at T0 (no config file)."""
    return cli_at_t0(db_url, monkeypatch)


@pytest.fixture
def seeded(db_url: str) -> None:
    engine = make_engine(db_url)
    rng = random.Random(3)
    try:
        with engine.begin() as conn:
            b = Builder(conn)
            acc = b.account("riga", "sim")
            for t, er in TRUE_ER.items():
                for i in range(8):
                    b.measured(acc, t, er * rng.uniform(0.9, 1.1), published_at=T0 - (4 + i) * DAY)
    finally:
        engine.dispose()


def test_er_before_any_recompute_says_so(smm: Any) -> None:
    assert "no ER recompute yet" in smm("er").output
    assert json.loads(smm("er", "--json").output) == []


def test_recompute_prints_each_decision(smm: Any, seeded: None) -> None:
    out = smm("er", "recompute").output
    assert "riga" in out
    assert "instruction posts now get 48% of the slots, up from 33%" in out
    out = smm("er", "recompute", "--statistics").output
    assert "instruction up 0.48 -> 0.60 (ceiling): ER" in out


def test_recompute_json_shape(smm: Any, seeded: None) -> None:
    (decision,) = json.loads(smm("er", "recompute", "--json").output)
    assert set(decision) == {
        "id", "account", "at", "policy", "frozen", "changed", "old_weights", "new_weights",
        "demoted", "reason", "summary",
    }  # fmt: skip
    assert decision["account"] == "riga"
    assert decision["at"] == "2026-03-01T12:00:00Z"
    assert sum(decision["new_weights"].values()) == pytest.approx(1)


def test_er_json_shape(smm: Any, seeded: None) -> None:
    smm("er", "recompute")
    (account,) = json.loads(smm("er", "--json").output)
    assert set(account) == {
        "account", "basis", "account_er", "updated_at", "types", "decisions",
        "reach_fallback_posts", "learns_slots", "hours", "slot_proposal", "slot_proposals",
        "slot_decisions", "learned_slots_misfit",
    }  # fmt: skip
    assert account["basis"] == "reach"
    assert [t["type"] for t in account["types"]] == ["instruction", "laugh", "medal"]
    best = account["types"][0]
    assert set(best) == {
        "type", "er", "er_low", "er_high", "posts", "effective_posts", "weight", "trend",
        "demoted",
    }  # fmt: skip
    assert best["er_low"] < best["er"] < best["er_high"]
    assert best["posts"] == 8
    assert best["demoted"] is False
    (decision,) = account["decisions"]
    assert set(decision) == {
        "at", "policy", "frozen", "changed", "old_weights", "new_weights", "reason", "summary",
    }  # fmt: skip


def test_er_table_shows_types_and_reasons(smm: Any, seeded: None) -> None:
    smm("er", "recompute")
    out = smm("er", "--account", "riga").output
    assert "ER by reach" in out
    assert "90% INTERVAL" in out
    # In words by default; the statistics one flag away.
    assert "instruction posts now get 48% of the slots, up from 33%" in out
    assert "of the people who saw them" in out
    assert "instruction up 0.33 -> 0.48" not in out
    out = smm("er", "--account", "riga", "--statistics").output
    assert "instruction up 0.33 -> 0.48" in out


def test_history_json_is_the_trajectory_oldest_first(smm: Any, seeded: None) -> None:
    smm("er", "recompute")
    smm("er", "recompute")
    (account,) = json.loads(smm("er", "history", "--json").output)
    assert account["account"] == "riga"
    steps = account["history"]
    assert len(steps) == 2
    assert set(steps[0]) == {"at", "weights", "er", "frozen", "policy"}
    assert steps[0]["weights"]["instruction"] < steps[1]["weights"]["instruction"]
    assert json.loads(smm("er", "history", "--json", "--limit", "1").output)[0]["history"] == [
        steps[1]
    ]


def test_history_table(smm: Any, seeded: None) -> None:
    smm("er", "recompute")
    out = smm("er", "history").output
    assert "INSTRUCTION" in out
    assert "2026-03-01T12:00:00Z" in out


def test_plot_draws_with_block_characters(smm: Any, seeded: None) -> None:
    smm("er", "recompute")
    smm("er", "recompute")
    out = smm("er", "--plot").output
    assert "priority over 2 recomputes" in out
    assert any(c in out for c in "▁▂▃▄▅▆▇█")
    assert "ER per type (90% interval)" in out
    assert "instruction" in out


def test_an_unknown_account_is_an_error(smm: Any) -> None:
    assert "no account 'nope'" in smm("er", "--account", "nope", expect=1).output
    assert "no account 'nope'" in smm("er", "recompute", "--account", "nope", expect=1).output


def test_sparkline_and_bar_scale_to_the_top_value() -> None:
    assert sparkline([0.0, 0.5, 1.0], top=1.0) == "▁▅█"
    assert len(sparkline([0.1] * 500, top=1.0, width=60)) == 60
    assert bar(0.5, 1.0, width=4) == "██"
    assert bar(0.0, 1.0) == ""


def test_er_warns_when_posts_are_measured_by_followers_instead_of_reach(
    smm: Any, db_url: str
) -> None:
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            b = Builder(conn)
            acc = b.account("quiet", "sim")  # the sim declares reach
            post = b.post(acc, "laugh", followers=1000, published_at=T0 - 4 * DAY)
            b.snapshot(post, 3 * DAY, likes=30, comments=0, shares=0)  # no reach reported
    finally:
        engine.dispose()
    smm("er", "recompute")
    out = smm("er").output
    assert "warning: quiet: the network declares reach but reported none for 1 post" in out
    (account,) = json.loads(smm("er", "--json").output)
    assert account["reach_fallback_posts"] == 1


def _two_hours(db_url: str, evening: float) -> None:
    """Three weeks of posts at 08:00 and 20:00, every type at both, evenings ``evening``x."""
    engine = make_engine(db_url)
    rng = random.Random(9)
    try:
        with engine.begin() as conn:
            b = Builder(conn)
            acc = b.account("riga", "sim")
            for day in range(4, 24):
                for t, er in TRUE_ER.items():
                    morning = (T0 - day * DAY).replace(hour=8)
                    b.measured(acc, t, er * rng.uniform(0.9, 1.1), published_at=morning)
                    late = (T0 - day * DAY).replace(hour=20)
                    b.measured(acc, t, er * evening * rng.uniform(0.9, 1.1), published_at=late)
    finally:
        engine.dispose()


@pytest.mark.parametrize("evening", [1.0, 1.6], ids=["alike", "evenings-better"])
def test_er_proposes_a_better_hour_only_when_the_hours_clearly_differ(
    smm: Any, db_url: str, evening: float
) -> None:
    _two_hours(db_url, evening)
    smm("er", "recompute")
    (account,) = json.loads(smm("er", "--json").output)
    hours = {(h["days"], h["hour"]): h for h in account["hours"]}
    assert set(hours) == {(d, h) for d in ("weekdays", "weekend") for h in (8, 20)}
    weekday = hours[("weekdays", 20)]["factor"] / hours[("weekdays", 8)]["factor"]
    assert weekday == pytest.approx(evening, rel=0.15)
    assert account["learns_slots"] is False
    out = smm("er").output
    if evening == 1.0:
        assert account["slot_proposal"] is None
        assert account["slot_proposals"] == []
        assert "best time to post" not in out
    else:
        # No slots table at hand (no config): the best and the weakest hour are named.
        proposal = account["slot_proposals"][0]
        assert proposal["days"] == [0, 1, 2, 3, 4]
        assert (proposal["from"], proposal["to"]) == ("08:00", "20:00")
        assert hours[("weekdays", 20)]["low"] > hours[("weekdays", 8)]["high"]
        assert "Monday to Friday: posts at 20:00 engaged 1.6x those at 08:00" in out
        assert "consider posting at 20:00 rather than 08:00" in out
        assert "by hour of posting" not in out
        stats = smm("er", "--statistics").output
        assert "by hour of posting" in stats
        assert "weekdays 20:00" in stats


def test_er_proposes_moving_a_configured_slot_to_a_clearly_better_hour(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _two_hours(db_url, 1.6)
    config = tmp_path / "smm.toml"
    config.write_text(
        '[accounts.riga]\nplatform = "sim"\ntimezone = "UTC"\n'
        '[accounts.riga.slots]\nweekdays = ["08:00", "13:30"]\nweekend = ["20:00"]\n'
    )
    monkeypatch.setattr("scheduler.cli.app.App.now", lambda self: T0)

    def smm(*args: str) -> Any:
        result = CliRunner().invoke(cli, ["--db", db_url, "--config", str(config), *args])
        assert result.exit_code == 0, result.output
        return result

    smm("er", "recompute")
    (account,) = json.loads(smm("er", "--json").output)
    # The weekday 08:00 slot goes to 20:00 (13:30 keeps an hour away); the weekend is there.
    assert account["slot_proposals"] == [
        {
            "days": [0, 1, 2, 3, 4],
            "from": "08:00",
            "to": "20:00",
            "factor": pytest.approx(1.6, rel=0.15),
            "posts_from": account["slot_proposals"][0]["posts_from"],
            "posts_to": account["slot_proposals"][0]["posts_to"],
        }
    ]
    assert account["slot_proposals"][0]["posts_from"] >= 5
    out = smm("er").output
    assert "consider moving the 08:00 slot to 20:00." in out
    assert "13:30 slot" not in out
