"""The ER loop judged by simulation: worlds, the one truth, independent strategies, seeds,
the cache, the CLI and its summaries.

The 20-seed figures come from benchmarks/bench_simulate.py; these tests run a few seeds.
"""

from __future__ import annotations

import json
import random
from datetime import time, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from er_support import Builder
from sqlalchemy import Engine

from scheduler.cli import cli
from scheduler.config import ERSettings
from scheduler.er import loopsim, trials
from scheduler.er.loopsim import draw_post, floored_oracle, run, stats_at, sums_at
from scheduler.er.readings import sum_readings
from scheduler.er.stats import HORIZON_HALF_LIVES, account_stats
from scheduler.er.world import Truth, WorldError, load_world, world_from_dict

REPO = Path(__file__).resolve().parent.parent
WORLDS = REPO / "benchmarks" / "worlds"
FIVE = {
    "provocation": 0.01,
    "announcement": 0.015,
    "medal": 0.02,
    "laugh": 0.03,
    "instruction": 0.04,
}


def world(days: int = 90, **account: object) -> object:
    raw = {"posts_per_day": 3, "true_er": FIVE, **account}
    return world_from_dict({"world": {"name": "t", "days": days}, "accounts": {"a": raw}})


# ============================================================================ the truth


def test_the_floored_oracle_gives_floors_and_the_rest_to_the_best() -> None:
    w = floored_oracle(FIVE, sorted(FIVE), floor=0.1, ceiling=0.6)
    assert w["instruction"] == pytest.approx(0.6)
    assert {t: round(v, 6) for t, v in w.items() if t != "instruction"} == dict.fromkeys(
        ["announcement", "laugh", "medal", "provocation"], 0.1
    )


def test_the_floored_oracle_respects_the_ceiling_by_filling_the_next_best() -> None:
    w = floored_oracle({"a": 0.05, "b": 0.04, "c": 0.01}, ["a", "b", "c"], floor=0.1, ceiling=0.5)
    assert w == pytest.approx({"a": 0.5, "b": 0.4, "c": 0.1})


def test_a_drift_changes_only_the_types_it_names() -> None:
    truth = Truth({"a": 0.01, "b": 0.02, "c": 0.03}, ((30.0, {"a": 0.06}),))
    assert truth.table(29.9) == {"a": 0.01, "b": 0.02, "c": 0.03}
    assert truth.table(30) == {"a": 0.06, "b": 0.02, "c": 0.03}


def test_a_type_without_a_truth_is_an_error_not_a_default() -> None:
    truth = Truth({"a": 0.01})
    with pytest.raises(WorldError, match="'b' has no true_er"):
        truth.er("b", 3)
    with pytest.raises(WorldError, match="names 'b'"):
        Truth({"a": 0.01}, ((5.0, {"b": 0.02}),))


def test_the_oracle_is_never_beaten_in_expectation_after_a_partial_drift() -> None:
    # Only medal changes on day 20; the others keep their rates for the network and the oracle.
    w = world(days=40, drift=[{"day": 20, "true_er": {"medal": 0.08}}])
    results = {s: run(w, 1, s) for s in ("er", "oracle", "round_robin")}  # type: ignore[arg-type]
    assert results["er"].value <= results["oracle"].value * 1.0001
    assert results["round_robin"].value < results["oracle"].value


def test_each_strategy_draws_its_own_audience_and_repeats_exactly() -> None:
    w = world(days=10)
    er_first = run(w, 3, "er")  # type: ignore[arg-type]
    rr = run(w, 3, "round_robin")  # type: ignore[arg-type]
    again = run(w, 3, "round_robin")  # type: ignore[arg-type]
    assert (rr.engagement, rr.by_type) == (again.engagement, again.by_type)
    # Same slots, same types on day 1 (no weights yet), but the luck is the strategy's own.
    assert rr.engagement != er_first.engagement


def test_hour_effects_and_outliers_shape_what_posts_draw() -> None:
    w = world(days=1, hours=[{"from": 18, "to": 22, "factor": 2.0}], viral={"rate": 1.0, "low": 30})
    acc = w.accounts[0]  # type: ignore[attr-defined]
    start = w.start  # type: ignore[attr-defined]
    rng = random.Random(1)
    ages = ERSettings().ages
    evening = draw_post(acc, 0, "laugh", start.replace(hour=20), start, rng, ages)
    morning = draw_post(acc, 0, "laugh", start.replace(hour=8), start, rng, ages)
    assert evening.value == pytest.approx(2 * morning.value)
    # Every post is viral here: 30-50 times 3 %.
    assert evening.engagements / evening.reach > 0.5


# ============================================================================ the loop's own code


def test_the_in_memory_statistics_are_the_databases(engine: Engine) -> None:
    """The simulation's sums follow ``readings.sum_readings`` exactly: the same posts, stored
    with their readings, give the same per-type statistics through SQL."""
    w = world(days=1)
    acc = w.accounts[0]  # type: ignore[attr-defined]
    start = w.start  # type: ignore[attr-defined]
    settings = ERSettings()
    rng = random.Random(7)
    posts = []
    for i in range(60):
        when = start + timedelta(hours=7 * i)
        posts.append(draw_post(acc, 0, sorted(FIVE)[i % 5], when, start, rng, settings.ages))
    now = start + timedelta(hours=7 * 60 + 30)
    with engine.begin() as conn:
        b = Builder(conn)
        account_id = b.account("a")
        for p in posts:
            published = start + timedelta(seconds=p.at - start.timestamp())
            post_id = b.post(account_id, p.content_type, published_at=published)
            for taken, eng, seen, _, _ in p.readings:
                if taken <= now.timestamp() and seen is not None:
                    age = timedelta(seconds=taken - p.at)
                    b.snapshot(post_id, age, likes=eng, comments=0, shares=0, reach=seen)
        sql = account_stats(conn, settings, now, reach={account_id: True})[account_id]
        sums = sum_readings(
            conn,
            ages=settings.ages,
            now=now,
            half_life=settings.half_life,
            horizon=now - settings.half_life * HORIZON_HALF_LIVES,
            reach_accounts={account_id},
        )
    # Every sum of every age, as the database adds them up and as the simulation does.
    held = sums_at(posts, now.timestamp(), settings)
    assert {t for _, t in sums} == set(held)
    for (_, t), per_age in sums.items():
        for got, want in zip(per_age, held[t], strict=True):
            for field in ("weight", "total", "squares", "pair_this", "pair_last", "any_weight",
                          "any_total", "recent_total", "older_total", "log_total", "log_squares",
                          "fresh_weight", "fresh_log_total", "fresh_log_squares"):  # fmt: skip
                assert getattr(got, field) == pytest.approx(getattr(want, field), rel=1e-9)
            for field in ("count", "recent_count", "older_count", "fresh_count"):
                assert getattr(got, field) == getattr(want, field)
    mine = stats_at(account_id, "a", "reach", sorted(FIVE), posts, now.timestamp(), settings)
    assert sql.mean == pytest.approx(mine.mean, rel=1e-6)
    assert sql.prior_strength == pytest.approx(mine.prior_strength, rel=1e-6)
    for t in FIVE:
        assert sql.types[t].posts == mine.types[t].posts
        assert sql.types[t].er == pytest.approx(mine.types[t].er, rel=1e-6)
        assert sql.types[t].sd == pytest.approx(mine.types[t].sd, rel=1e-6)
        assert sql.types[t].effective_posts == pytest.approx(mine.types[t].effective_posts)


def test_the_er_loop_approaches_the_oracle_and_beats_round_robin() -> None:
    w = load_world(WORLDS / "reference.toml")
    for seed in (1, 2):
        r = {s: run(w, seed, s) for s in ("er", "oracle", "round_robin")}
        assert r["er"].posts == r["oracle"].posts == 270
        assert r["er"].value / r["oracle"].value >= 0.95
        assert r["er"].value / r["round_robin"].value >= 1.25


def test_without_evidence_no_type_is_ranked_on_noise() -> None:
    # In three days no type has min_posts (2) measured posts yet.
    r = run(world(days=3), 1, "er")  # type: ignore[arg-type]
    last = r.trajectory[-1]["weights"]
    assert max(last.values()) - min(last.values()) < 0.05, last


# ============================================================================ seeds and cache


def test_the_oracle_and_round_robin_come_from_the_cache_the_second_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = world(days=8)
    first = trials.run_seeds(w, [1, 2], cache=tmp_path, workers=1)  # type: ignore[arg-type]
    ran: list[str] = []
    real = loopsim.run

    def counting(world: object, seed: int, strategy: str, **kw: object) -> object:
        ran.append(strategy)
        return real(world, seed, strategy)  # type: ignore[arg-type]

    monkeypatch.setattr(trials, "run", counting)
    again = trials.run_seeds(w, [1, 2], cache=tmp_path, workers=1)  # type: ignore[arg-type]
    assert ran == ["er", "er"]
    for seed in (1, 2):
        for s in ("oracle", "round_robin"):
            assert again[seed][s].value == pytest.approx(first[seed][s].value)


def test_a_summary_gives_mean_worst_and_spread_and_follows_drift() -> None:
    w = world(days=60, drift=[{"day": 30, "true_er": {"provocation": 0.08}}])
    results = trials.run_seeds(w, [1, 2], workers=1)  # type: ignore[arg-type]
    s = trials.summary(w, results)  # type: ignore[arg-type]
    shares = [row["of_oracle"] for row in s["per_seed"]]
    assert s["of_oracle"]["mean"] == pytest.approx(sum(shares) / 2)
    assert s["of_oracle"]["worst"] == min(shares)
    assert s["drift"][0]["new_best"] == "provocation"
    assert len(s["drift"][0]["days_to_lead"]) == 2


# ============================================================================ world files


@pytest.mark.parametrize("path", sorted(WORLDS.glob("*.toml")), ids=lambda p: p.stem)
def test_the_benchmark_worlds_load(path: Path) -> None:
    assert load_world(path).accounts


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[accounts.a]\ntrue_er = { x = 0.01 }\nspeed = 3\n", "accounts.a.speed: unknown key"),
        ("[accounts.a]\nposts_per_day = 3\n", "accounts.a.true_er"),
        ("[accounts.a]\ntrue_er = { x = 2 }\n", "accounts.a.true_er.x"),
        ('[accounts.a]\ntrue_er = { x = 0.1 }\nbasis = "likes"\n', "accounts.a.basis"),
        (
            "[accounts.a]\ntrue_er = { x = 0.1 }\n[[accounts.a.drift]]\nday = 3\n"
            "true_er = { y = 0.2 }\n",
            "accounts.a.drift",
        ),
        ("[accounts.a]\ntrue_er = { x = 0.1 }\nhours = [{ from = 25 }]\n", "hours[0].from"),
        ("[world]\ndays = 0\n[accounts.a]\ntrue_er = { x = 0.1 }\n", "world.days"),
        ("[accounts.a\n", "not a TOML file"),
    ],
)
def test_a_bad_world_file_is_named_with_its_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "w.toml"
    path.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(cli, ["simulate", "--world", str(path)])
    assert result.exit_code == 1, result.output
    assert message in result.output
    assert result.output.count("w.toml") == 1, "the file is named once"
    assert "Traceback" not in result.output


# ============================================================================ the CLI


def test_simulate_cli_runs_seeds_and_strategies_as_json_and_html(tmp_path: Path) -> None:
    page = tmp_path / "sim.html"
    world_file = tmp_path / "w.toml"
    world_file.write_text(
        '[world]\nname = "<w>"\ndays = 12\n[accounts.a]\nposts_per_day = 2\n'
        "true_er = { x = 0.01, y = 0.03 }\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(
        cli,
        ["simulate", "--world", str(world_file), "--seeds", "2", "--strategies", "er,oracle",
         "--json", "--html", str(page), "--no-cache"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["seeds"] == [1, 2]
    assert {"er", "oracle"} <= set(data["per_seed"][0])
    assert "round_robin" not in data["per_seed"][0]
    assert 0 < data["of_oracle"]["mean"] <= 1.0001
    text = page.read_text(encoding="utf-8")
    assert "&lt;w&gt;" in text
    assert "<w>" not in text
    assert "<svg" in text


def test_simulate_cli_from_a_plan_and_the_accounts_options() -> None:
    result = CliRunner().invoke(
        cli,
        ["--config", str(REPO / "config" / "example.toml"), "simulate", "--plan",
         str(REPO / "config" / "example-plan.yaml"), "--days", "10", "--json", "--no-cache"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["per_seed"][0]["er"]["engagement"] > 0
    assert data["trajectory"]


def test_simulate_without_true_rates_says_how_to_give_them(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        '[accounts.acme_sim]\nplatform = "sim"\ntimezone = "UTC"\nslots = { daily = ["09:00"] }\n',
        encoding="utf-8",
    )
    plan = tmp_path / "plan.yaml"
    plan.write_text("- {id: a, account: acme_sim, type: laugh, text: hi}\n", encoding="utf-8")
    result = CliRunner().invoke(
        cli, ["--config", str(config), "simulate", "--plan", str(plan), "--days", "2"]
    )
    assert result.exit_code == 1
    assert "--truth" in result.output
    truth = tmp_path / "truth.toml"
    truth.write_text("true_er = { medal = 0.02 }\n", encoding="utf-8")
    result = CliRunner().invoke(
        cli,
        ["--config", str(config), "simulate", "--plan", str(plan), "--truth", str(truth)],
    )
    assert result.exit_code == 1
    assert "'laugh' of the plan has no true_er" in result.output


def test_an_accounts_own_seed_is_mixed_in_not_overwritten() -> None:
    plain = run(world(days=6), 2, "round_robin")  # type: ignore[arg-type]
    salted = run(world(days=6, seed=7), 2, "round_robin")  # type: ignore[arg-type]
    again = run(world(days=6, seed=7), 2, "round_robin")  # type: ignore[arg-type]
    assert salted.engagement != plain.engagement
    assert salted.engagement == again.engagement


def test_demoted_seeds_are_named_in_words() -> None:
    from scheduler.cli.simulate import seeds_phrase

    assert seeds_phrase([1], 1) == "seed 1"
    assert seeds_phrase([1], 20) == "seed 1"
    assert seeds_phrase([1, 4], 20) == "seeds 1 and 4"
    assert seeds_phrase([2, 5, 9], 20) == "3 of 20 seeds"
    assert seeds_phrase([1, 2], 2) == "all 2 seeds"


def test_simulate_from_a_plan_learns_the_slots_the_config_lets_learn(tmp_path: Path) -> None:
    from scheduler.cli.app import App
    from scheduler.cli.simulate import world_from_plan

    config = tmp_path / "c.toml"
    config.write_text(
        '[accounts.acme_sim]\nplatform = "sim"\ntimezone = "UTC"\n'
        '[accounts.acme_sim.slots]\nweekdays = ["08:00", "14:00"]\nweekend = ["11:00"]\n'
        'learn = { weekdays = "08:00-22:00" }\n',
        encoding="utf-8",
    )
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "- {id: a, account: acme_sim, type: laugh, text: hi}\n"
        "- {id: b, account: acme_sim, type: medal, text: ho}\n",
        encoding="utf-8",
    )
    truth = tmp_path / "truth.toml"
    truth.write_text(
        "true_er = { laugh = 0.03, medal = 0.02 }\n"
        "hours = [{ from = 18, to = 22, factor = 1.6 }]\n",
        encoding="utf-8",
    )
    world = world_from_plan(App(config_path=str(config)), (str(plan),), truth, 40)
    (acc,) = world.accounts
    week = acc.week()
    assert week[0] == (time(8), time(14))
    assert week[5] == (time(11),)
    assert set(acc.learn) == {0, 1, 2, 3, 4}
    assert acc.truth.hour_factor(0, 19) == pytest.approx(1.6)
    learned, fixed = run(world, 1, "er"), run(world, 1, "fixed_slots")
    assert learned.slot_moves > 0  # the weekdays' slots moved, as the daemon would move them
    assert fixed.slot_moves == 0
    assert learned.value > fixed.value
    oracle = loopsim.oracle_table(acc)
    assert all(t.hour >= 18 for t in oracle[0])
    assert oracle[5] == (time(11),)
