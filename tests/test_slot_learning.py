"""Slot learning: the joint model of type and hour, moves within the learning windows, the
decision log, the queue that follows it (never a claimed post) and the config's checks."""

from __future__ import annotations

import json
import math
import random
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from er_support import DAY, T0, Builder, cli_at_t0
from sqlalchemy import select, update

from scheduler.config import AccountConfig, Config, ERSettings, parse_config
from scheduler.db.engine import make_engine
from scheduler.db.models import PostState, Schedule
from scheduler.er.hours import Observation, fit
from scheduler.er.jobs import refill_queues
from scheduler.er.recompute import recompute
from scheduler.er.slotlearn import best_times, days_words, decide
from scheduler.errors import InvalidInput
from scheduler.learned_slots import slot_decisions_t
from scheduler.queue import assign_queue_slots, posts_t, write_slot_times
from scheduler.slots import MIN_GAP, fits_windows, parse_window, spaced, window_times

TYPES = {"instruction": 0.04, "laugh": 0.03, "medal": 0.02}
WINDOWS = {d: ((time(8), time(22)),) for d in range(7)}
START = {d: (time(8), time(14), time(20)) for d in range(7)}


def _world_observations(rng: random.Random, evening: float, days: int = 30) -> list[Observation]:
    """Posts of three types at every hour from 08:00 to 22:00, evenings ``evening`` times the
    rest, lognormal noise 0.3, two readings each (the first lower)."""
    out = []
    for day in range(days):
        for hour in range(8, 23, 2):
            for t, er in TYPES.items():
                factor = evening if 18 <= hour < 22 else 1.0
                x = rng.gauss(0, 0.3)
                for age, lower in ((0, 0.7), (1, 1.0)):
                    out.append(
                        Observation(t, day % 7, hour, age, math.log(er * factor * lower) + x)
                    )
    return out


def test_the_joint_model_recovers_known_hour_and_type_effects() -> None:
    model = fit(_world_observations(random.Random(1), 1.5))
    evening = sum(model.effect((0, h)).mean for h in (18, 20)) / 2
    day = sum(model.effect((0, h)).mean for h in (8, 10, 12, 14)) / 4
    assert 1.35 < math.exp(evening - day) < 1.65
    ratio = model.types["instruction"].factor / model.types["medal"].factor
    assert ratio == pytest.approx(2.0, rel=0.12)
    assert model.spread == pytest.approx(0.3, rel=0.2)


def test_with_no_hour_effect_the_hours_stay_close_to_even() -> None:
    model = fit(_world_observations(random.Random(2), 1.0))
    factors = [model.effect((0, h)).factor for h in range(8, 23, 2)]
    assert max(factors) / min(factors) < 1.15


def test_an_untried_hour_is_uncertain_and_learns_from_its_neighbours() -> None:
    model = fit(_world_observations(random.Random(3), 1.5))
    # 19:00 was never posted at; its neighbours 18:00 and 20:00 are evenings.
    assert model.posts_at((0, 19)) == 0
    assert model.effect((0, 19)).mean > model.effect((0, 12)).mean + 0.1
    assert model.effect((0, 19)).sd > model.effect((0, 18)).sd


def test_best_times_keeps_the_gap_and_finds_the_best_total() -> None:
    scores = {time(h, m): 0.0 for h in range(8, 12) for m in (0, 30)}
    scores[time(9, 0)] = 5.0
    scores[time(9, 30)] = 4.0
    scores[time(10, 0)] = 4.5
    got = best_times(scores, 2, 60)
    assert got == [time(9), time(10)]
    assert best_times({time(9): 1.0}, 2, 60) is None


def test_moves_stay_within_the_windows_an_hour_apart() -> None:
    model = fit(_world_observations(random.Random(4), 1.5))
    windows = {d: ((time(9), time(12)), (time(17), time(21, 30))) for d in range(5)}
    current = {d: (time(9), time(11), time(17)) for d in range(7)}
    for seed in range(20):
        decision = decide(model, current, windows, random.Random(seed))
        for day in range(5):
            times = decision.new[day]
            assert len(times) == 3
            assert fits_windows(times, windows[day])
            assert spaced(times, MIN_GAP)
            assert set(times) <= set(window_times(windows[day]))
        for day in (5, 6):  # no windows: the slots stay
            assert decision.new[day] == current[day]


def test_with_the_evidence_the_slots_go_to_the_evening_and_say_why() -> None:
    model = fit(_world_observations(random.Random(5), 1.5, days=60))
    decision = decide(model, START, WINDOWS, random.Random(1), explore=False)
    for day in range(7):
        assert all(18 <= t.hour < 22 for t in decision.new[day])
    words = decision.summary()
    assert "Monday to Friday: the 08:00 slot moves to 18:00, posts at 18:00 engaged 1." in words
    assert "their types taken into account" in words
    # 19:00 was never posted at: a move there is a trial, and says so.
    assert "to try 19:00 (no post there yet; the hours around it did 1." in words


def test_days_in_words() -> None:
    assert days_words(range(5)) == "Monday to Friday"
    assert days_words([5, 6]) == "Saturday and Sunday"
    assert days_words([0, 2]) == "Monday and Wednesday"


# ---------------------------------------------------------------------------- config


def _config(slots: str) -> str:
    return f'[accounts.shop]\nplatform = "sim"\ntimezone = "UTC"\n[accounts.shop.slots]\n{slots}\n'


def test_the_config_reads_learning_windows() -> None:
    config = parse_config(
        _config('weekdays = ["09:00", "19:00"]\nlearn = { weekdays = "08:00-22:00" }'), "c.toml"
    )
    assert config.accounts["shop"].learn[0] == ((time(8), time(22)),)
    assert 5 not in config.accounts["shop"].learn
    assert config.accounts["shop"].slots[0] == (time(9), time(19))
    assert parse_window("08:30-10:00") == (time(8, 30), time(10))


@pytest.mark.parametrize(
    ("slots", "field", "message"),
    [
        (
            'daily = ["09:00"]\nlearn = { dayly = "08:00-22:00" }',
            "slots.learn.dayly",
            "unknown day",
        ),
        (
            'daily = ["09:00"]\nlearn = { daily = "22:00-08:00" }',
            "slots.learn.daily",
            "ends before",
        ),
        ('daily = ["09:00"]\nlearn = { daily = ["8-9"] }', "slots.learn.daily[0]", "not a time"),
        ('daily = ["09:00"]\nlearn = { daily = 5 }', "slots.learn.daily", "window"),
        ('daily = ["09:00"]\nlearn = 3', "slots.learn", "table of windows"),
        ('daily = ["07:00"]\nlearn = "08:00-22:00"', "slots.learn", "lies outside"),
        (
            'daily = ["08:00", "08:30", "09:00"]\nlearn = "08:00-09:30"',
            "slots.learn",
            "do not fit",
        ),
        ('weekdays = ["09:00"]\nlearn = { weekend = "08:00-22:00" }', "slots.learn", "no day"),
        ('daily = ["09:00"]\nlearn = {}', "slots.learn", "names no window"),
    ],
)
def test_bad_learning_windows_are_reported_with_file_line_and_field(
    slots: str, field: str, message: str
) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_config(_config(slots), "c.toml")
    text = str(info.value)
    assert f"accounts.shop.{field}" in text
    assert message in text
    assert "c.toml, line 6" in text


# ---------------------------------------------------------------------------- the daemon's job


def _account() -> AccountConfig:
    return AccountConfig(name="riga", platform="sim", timezone="UTC", slots=START, learn=WINDOWS)


def _seed(conn: Any) -> tuple[int, int]:
    """A month of readings (evenings 1.5x), six queue posts and one claimed post due at
    tomorrow's 08:00 slot."""
    rng = random.Random(7)
    b = Builder(conn)
    acc = b.account("riga", "sim")
    for day in range(4, 34):
        for hour in (8, 14, 20):
            for t, er in TYPES.items():
                at = (T0 - day * DAY).replace(hour=hour)
                factor = 1.5 if hour == 20 else 1.0
                b.measured(acc, t, er * factor * rng.uniform(0.85, 1.15), published_at=at)
    for i in range(6):
        b.post(acc, list(TYPES)[i % 3], state=PostState.QUEUED)
    tomorrow_8 = (T0 + DAY).replace(hour=8)
    claimed = b.post(
        acc, "laugh", state=PostState.CLAIMED, due_at=tomorrow_8, lease_owner="daemon-1"
    )
    return acc, claimed


def test_the_er_job_never_moves_a_fixed_time_post(db_url: str) -> None:
    engine = make_engine(db_url)
    config = Config(path=None, accounts={"riga": _account()}, er=ERSettings())
    at = (T0 + 2 * DAY).replace(hour=8)  # on a slot the evidence moves away from
    try:
        with engine.begin() as conn:
            acc, _ = _seed(conn)
            fixed = Builder(conn).post(
                acc, "medal", state=PostState.QUEUED, schedule=Schedule.FIXED, due_at=at
            )
            assign_queue_slots(conn, config.accounts["riga"], acc, T0)
        recompute(engine, config, T0)
        refill_queues(engine, config, T0)
        with engine.connect() as conn:
            (row,) = conn.execute(select(slot_decisions_t)).all()
            due = conn.execute(select(posts_t.c.due_at).where(posts_t.c.id == fixed)).scalar()
        assert row.moves  # slots moved ...
        assert any(m["from"] == "08:00" for m in row.moves)
        assert due == at  # ... and the post given an exact time kept it
    finally:
        engine.dispose()


def test_the_er_job_moves_queued_posts_and_never_a_claimed_one(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(db_url)
    config = Config(path=None, accounts={"riga": _account()}, er=ERSettings())
    try:
        with engine.begin() as conn:
            acc, claimed = _seed(conn)
            assign_queue_slots(conn, config.accounts["riga"], acc, T0)
        recompute(engine, config, T0)
        refill_queues(engine, config, T0)
        with engine.connect() as conn:
            (row,) = conn.execute(select(slot_decisions_t)).all()
            posts = conn.execute(
                select(posts_t.c.id, posts_t.c.state, posts_t.c.due_at).where(
                    posts_t.c.account_id == acc, posts_t.c.state != PostState.PUBLISHED
                )
            ).all()
        midnight = datetime(2026, 3, 2, tzinfo=UTC)
        assert row.effective_from == midnight
        assert row.summary  # plain words, even when nothing moves
        new = {int(d): [time.fromisoformat(t) for t in ts] for d, ts in row.new_slots.items()}
        for day, times in new.items():
            assert len(times) == 3
            assert spaced(times)
            assert fits_windows(times, WINDOWS[day])
        (held,) = [p for p in posts if p.id == claimed]
        assert held.state == PostState.CLAIMED
        assert held.due_at == (T0 + DAY).replace(hour=8)
        for p in posts:
            if p.state != PostState.QUEUED:
                continue
            if p.due_at >= midnight:  # from the next midnight the queue follows the new table
                assert p.due_at.time() in new[p.due_at.weekday()]
            else:  # today keeps the slots it started with
                assert p.due_at.time() in START[p.due_at.weekday()]
        # One decision a day: the next run today changes nothing.
        refill_queues(engine, config, T0 + timedelta(hours=1))
        with engine.connect() as conn:
            assert len(conn.execute(select(slot_decisions_t)).all()) == 1
    finally:
        engine.dispose()
    # smm er prints the decision in words, and --json gives it whole.
    smm = cli_at_t0(db_url, monkeypatch)
    out = smm("er").output
    assert f"slots from 2026-03-02T00:00:00Z: {row.summary}" in out
    # The account moves its slots itself: the moves, never a proposal.
    assert "best time to post: the slots move themselves within their windows" in out
    assert "consider" not in out
    (account,) = json.loads(smm("er", "--json").output)
    (learned,) = account["slot_decisions"]
    assert learned["summary"] == row.summary
    assert learned["moves"] == row.moves
    assert set(learned["details"]["hours"]["weekday 20"]) == {"factor", "sd", "posts", "drawn"}


def test_a_slot_move_never_touches_a_post_claimed_meanwhile(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            b = Builder(conn)
            acc = b.account("riga", "sim")
            post = b.post(acc, "laugh", state=PostState.QUEUED, due_at=T0 + DAY)
            # A daemon claims it between the slot planning and the write.
            conn.execute(
                update(posts_t).where(posts_t.c.id == post).values(state=PostState.CLAIMED)
            )
            write_slot_times(conn, [(post, T0 + 2 * DAY)], T0)
            due = conn.execute(select(posts_t.c.due_at).where(posts_t.c.id == post)).scalar()
        assert due == T0 + DAY
    finally:
        engine.dispose()


@pytest.mark.parametrize("parallel", [False, True])
def test_a_plan_import_gives_queue_posts_the_learned_slots(
    db_url: str, tmp_path: Any, parallel: bool
) -> None:
    from scheduler.plan import pipeline, validating
    from scheduler.plan.read import read_plan_files

    if parallel and not validating.can_fork():
        pytest.skip("needs a process that may fork")
    account = _account()
    config = Config(path=None, accounts={"riga": account}, er=ERSettings())
    learned = {str(d): ["10:00", "18:00", "21:00"] for d in range(7)}
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            acc = Builder(conn).account("riga", "sim")
            conn.execute(
                slot_decisions_t.insert().values(
                    account_id=acc,
                    created_at=T0 - DAY,
                    effective_from=T0 - DAY / 2,
                    old_slots={},
                    new_slots=learned,
                    moves=[],
                    summary="test",
                    details={},
                )
            )
        plan = tmp_path / "plan.yaml"
        plan.write_text(
            "posts:\n"
            + "".join(
                f"  - {{id: q{i}, account: riga, type: laugh, text: post {i}}}\n" for i in range(5)
            ),
            encoding="utf-8",
        )
        raws, problems = read_plan_files([plan])
        assert problems == []
        with engine.begin() as conn:
            _, bad = pipeline.import_plan(conn, raws, config, T0, parallel=parallel)
            assert bad == []
        with engine.connect() as conn:
            times = sorted(
                conn.execute(select(posts_t.c.due_at).where(posts_t.c.account_id == acc)).scalars()
            )
    finally:
        engine.dispose()
    assert [t.strftime("%d %H:%M") for t in times] == [
        "01 18:00", "01 21:00", "02 10:00", "02 18:00", "02 21:00",
    ]  # fmt: skip


def test_config_check_says_which_accounts_move_their_slots(tmp_path: Any) -> None:
    from click.testing import CliRunner

    from scheduler.cli import cli

    cfg = tmp_path / "c.toml"
    cfg.write_text(
        _config('weekdays = ["09:00", "19:00"]\nweekend = ["11:00"]\nlearn = "08:00-22:00"'),
        encoding="utf-8",
    )
    result = CliRunner().invoke(cli, ["--config", str(cfg), "config", "check"])
    assert result.exit_code == 0, result.output
    assert (
        "shop: sim, UTC, 12 weekly slot(s) (moving within learning windows on 7 day(s) a week)"
        in result.output
    )


# ---------------------------------------------------------------------------- the simulator


def _hours_world(days: int = 45) -> Any:
    from scheduler.er.world import world_from_dict

    return world_from_dict(
        {
            "world": {"name": "hours-test", "days": days},
            "accounts": {
                "acct": {
                    "posts_per_day": 3,
                    "true_er": TYPES,
                    "hours": [{"from": 18, "to": 22, "factor": 1.5}],
                    "learn": {"daily": "08:00-22:00"},
                }
            },
        }
    )


def test_the_type_and_time_oracle_posts_in_the_best_hours() -> None:
    from scheduler.er.loopsim import oracle_table

    (acc,) = _hours_world().accounts
    table = oracle_table(acc)
    assert all(len(table[d]) == 3 and all(18 <= t.hour < 22 for t in table[d]) for d in range(7))


@pytest.mark.slow
def test_slot_learning_beats_the_same_loop_with_fixed_slots() -> None:
    from scheduler.er.loopsim import run

    world = _hours_world()
    learned = run(world, 1, "er")
    fixed = run(world, 1, "fixed_slots")
    oracle = run(world, 1, "oracle")
    assert learned.slot_moves > 0
    assert fixed.slot_moves == 0
    assert learned.value > 1.08 * fixed.value
    assert oracle.value > learned.value


@pytest.mark.parametrize(
    ("learn", "message"),
    [
        ({"daily": "22:00-08:00"}, "accounts.acct.learn.daily: the window"),
        ({"daily": "10:00-22:00"}, "accounts.acct.learn: the 08:00 slot on Monday"),
        ({"someday": "08:00-22:00"}, "accounts.acct.learn.someday: unknown day"),
    ],
)
def test_a_world_file_checks_its_learning_windows(learn: Any, message: str) -> None:
    from scheduler.er.world import WorldError, world_from_dict

    raw = {"accounts": {"acct": {"posts_per_day": 3, "true_er": TYPES, "learn": learn}}}
    with pytest.raises(WorldError, match=message):
        world_from_dict(raw)


def test_two_daemons_make_one_decision_a_day(db_url: str) -> None:
    import threading

    from scheduler.db.engine import immediate
    from scheduler.er.slotjob import learn_slots

    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite's write lock already keeps a second writer out")
    engine = make_engine(db_url)
    account = _account()
    try:
        with engine.begin() as conn:
            acc = Builder(conn).account("riga", "sim")
        got: list[Any] = []
        with immediate(engine) as first:
            assert learn_slots(first, account, acc, T0, ERSettings()) is not None

            def second() -> None:
                with immediate(engine) as conn:
                    got.append(learn_slots(conn, account, acc, T0, ERSettings()))

            other = threading.Thread(target=second)
            other.start()
            other.join(0.5)
            assert other.is_alive()  # waiting for the first daemon's transaction
        other.join(10)
        assert got == [None]
        with engine.connect() as conn:
            assert len(conn.execute(select(slot_decisions_t)).all()) == 1
    finally:
        engine.dispose()


def test_a_learned_table_the_config_no_longer_fits_is_said_not_silently_dropped(
    db_url: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The config changed under a learned table (a window narrowed, a day lost a slot): those
    days post at the config's times, as before, and now the log, `smm status` and `smm er`
    say which days and why."""
    from structlog.testing import capture_logs

    from scheduler import learned_slots
    from scheduler.learned_slots import current_slots, misfit

    monkeypatch.setattr(learned_slots, "_logged", set())
    learned = {str(d): ["10:00", "18:00", "21:00"] for d in range(7)}
    cfg = tmp_path / "config.toml"
    # Since the table was learned: the evenings end at 20:00 on weekdays, and the weekend
    # has two slots instead of three.
    cfg.write_text(
        _config(
            'weekdays = ["08:00", "14:00", "19:00"]\nweekend = ["10:00", "18:00"]\n'
            'learn = { weekdays = "08:00-20:00", weekend = "08:00-22:00" }'
        ),
        encoding="utf-8",
    )
    config = parse_config(cfg.read_text(encoding="utf-8"), str(cfg))
    account = config.accounts["shop"]
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            b = Builder(conn)
            acc = b.account("shop", "sim")
            for t, er in TYPES.items():
                for i in range(4):
                    b.measured(acc, t, er, published_at=T0 - (4 + i) * DAY)
            conn.execute(
                slot_decisions_t.insert().values(
                    account_id=acc,
                    created_at=T0 - DAY,
                    effective_from=T0 - DAY / 2,
                    old_slots={},
                    new_slots=learned,
                    moves=[],
                    summary="test",
                    details={},
                )
            )
        with engine.connect() as conn, capture_logs() as logs:
            table, _ = current_slots(conn, account, acc)
            current_slots(conn, account, acc)  # said once
            unfit = misfit(conn, account, acc)
    finally:
        engine.dispose()
    assert table == account.slots  # every day back at the config's times, as before
    assert unfit is not None
    assert unfit.days == {
        "Monday": "21:00 lies outside the learning windows now",
        "Tuesday": "21:00 lies outside the learning windows now",
        "Wednesday": "21:00 lies outside the learning windows now",
        "Thursday": "21:00 lies outside the learning windows now",
        "Friday": "21:00 lies outside the learning windows now",
        "Saturday": "3 learned slot(s), the config now gives 2",
        "Sunday": "3 learned slot(s), the config now gives 2",
    }
    (event,) = [e for e in logs if e["event"] == "learned_slots_misfit"]
    assert (event["account"], event["log_level"]) == ("shop", "warning")
    assert event["days"] == unfit.days

    smm = cli_at_t0(db_url, monkeypatch)
    status = json.loads(smm("--config", str(cfg), "status", "--json", expect=3).output)
    (noted,) = status["learned_slots"]
    assert (noted["account"], noted["days"]) == ("shop", unfit.days)
    text = smm("--config", str(cfg), "status", expect=3).output
    assert "note: the slots shop learned on 2026-02-28T12:00:00Z no longer fit its config" in text
    assert "Saturday: 3 learned slot(s), the config now gives 2" in text
    smm("--config", str(cfg), "er", "recompute")
    (er,) = json.loads(smm("--config", str(cfg), "er", "--json").output)
    assert er["learned_slots_misfit"]["days"] == unfit.days
    assert "until slot learning decides again" in smm("--config", str(cfg), "er").output
