"""A recompute end to end: stored weights, decision records that explain, events, plugins."""

from __future__ import annotations

import random
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any

import pytest
from er_support import DAY, HOUR, T0, Builder
from sqlalchemy import Engine, select

from scheduler import plugins
from scheduler.config import Config, ERSettings, empty_config
from scheduler.db.models import ContentTypePriority, PriorityDecision
from scheduler.er.policy import Decision
from scheduler.er.recompute import recompute
from scheduler.er.stats import AccountStats
from scheduler.hookspecs import hookimpl

priorities_t = ContentTypePriority.__table__  # type: ignore[attr-defined]
decisions_t = PriorityDecision.__table__  # type: ignore[attr-defined]

TRUE_ER = {"instruction": 0.040, "laugh": 0.030, "medal": 0.020, "provocation": 0.015}


def config(**er: Any) -> Config:
    return replace(empty_config(), er=ERSettings(**er))


def seed(engine: Engine, name: str = "acc", platform: str = "sim", posts: int = 8) -> int:
    """An account with ``posts`` measured posts of every type, ER near ``TRUE_ER``."""
    rng = random.Random(name)
    with engine.begin() as conn:
        b = Builder(conn)
        acc = b.account(name, platform)
        for t, er in TRUE_ER.items():
            for i in range(posts):
                b.measured(acc, t, er * rng.uniform(0.9, 1.1), published_at=T0 - (4 + i) * DAY)
    return acc


def stored(engine: Engine, account_id: int) -> dict[str, Any]:
    with engine.connect() as conn:
        return {
            r.content_type: r
            for r in conn.execute(
                select(priorities_t).where(priorities_t.c.account_id == account_id)
            )
        }


class Recorder:
    """A plugin that keeps every ``priorities_changed`` it sees."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    @hookimpl
    def priorities_changed(self, account: Any, decision: dict[str, Any]) -> None:
        self.calls.append((account.name, decision))


@pytest.fixture
def plugin() -> Iterator[Any]:
    """Register plugin objects for one test: ``plugin(obj)``."""
    names: list[str] = []

    def register(obj: object) -> object:
        name = f"test-er-{len(names)}"
        plugins.register_plugin(obj, name=name)
        names.append(name)
        return obj

    yield register
    for name in names:
        plugins.unregister_plugin(name)


def test_recompute_stores_weights_and_one_decision_per_account(engine: Engine) -> None:
    a, z = seed(engine, "a"), seed(engine, "z")
    records = recompute(engine, config(), T0)
    assert [r.account for r in records] == ["a", "z"]
    for account_id in (a, z):
        rows = stored(engine, account_id)
        assert set(rows) == set(TRUE_ER)
        assert sum(r.weight for r in rows.values()) == pytest.approx(1)
        best = rows["instruction"]
        assert best.weight == pytest.approx(0.40)  # from 0.25, by the maximum change
        assert best.er_low < best.er < best.er_high
        assert best.posts_counted == 8
    with engine.connect() as conn:
        assert conn.execute(select(decisions_t.c.account_id)).scalars().all() == [a, z]


def test_the_decision_record_explains_the_change(engine: Engine) -> None:
    seed(engine)
    (record,) = recompute(engine, config(), T0)
    assert record.old_weights == {}
    assert record.new_weights["instruction"] == pytest.approx(0.40)
    assert re.match(
        r"instruction up 0\.25 -> 0\.40 \(max change\): ER \d\.\d% \(\d\.\d-\d\.\d%\) "
        r"over 8 posts, best in 100% of draws; laugh down 0\.25 -> ",
        record.reason,
    )
    inputs = record.inputs
    assert inputs["basis"] == "reach"
    assert set(inputs["types"]["laugh"]) >= {"er", "er_low", "er_high", "posts", "trend"}
    assert inputs["details"]["best_share"]["instruction"] > 0.99
    with engine.connect() as conn:
        row = conn.execute(select(decisions_t)).one()
    assert row.reason == record.reason
    assert row.policy == "thompson"
    assert row.inputs == inputs


def test_the_next_recompute_starts_from_the_stored_weights(engine: Engine) -> None:
    seed(engine)
    first = recompute(engine, config(), T0)[0]
    second = recompute(engine, config(), T0 + DAY)[0]
    assert second.old_weights == pytest.approx(first.new_weights)
    assert second.new_weights["instruction"] == pytest.approx(0.55)


def test_networks_without_reach_fall_back_to_followers(engine: Engine) -> None:
    with engine.begin() as conn:
        b = Builder(conn)
        for name, platform in (("m", "mastodon"), ("bs", "bluesky"), ("tg", "telegram")):
            acc = b.account(name, platform)
            post = b.post(acc, "laugh", followers=1000)
            b.snapshot(post, 73 * HOUR, likes=30, reach=100)
    records = {r.account: r for r in recompute(engine, config(), T0)}
    for name in ("m", "bs", "tg"):
        assert records[name].inputs["basis"] == "followers"
        # 30 of 1,000 followers (on the log scale, half an engagement is added).
        assert records[name].inputs["types"]["laugh"]["er"] == pytest.approx(0.03, rel=0.02)


def test_accounts_without_content_types_get_no_decision(engine: Engine) -> None:
    with engine.begin() as conn:
        Builder(conn).account("empty")
    assert recompute(engine, config(), T0) == []


def test_a_frozen_recompute_is_recorded_and_changes_nothing(engine: Engine, plugin: Any) -> None:
    acc = seed(engine)
    recompute(engine, config(), T0)
    before = {t: r.weight for t, r in stored(engine, acc).items()}
    recorder = plugin(Recorder())
    (record,) = recompute(engine, config(frozen=True), T0 + DAY)
    assert record.frozen
    assert not record.changed
    assert record.reason == "frozen ([er] frozen = true): weights left as they were"
    assert {t: r.weight for t, r in stored(engine, acc).items()} == before
    assert recorder.calls == []
    with engine.connect() as conn:
        frozen = select(decisions_t.c.frozen).order_by(decisions_t.c.id)
        assert conn.execute(frozen).scalars().all() == [False, True]


def test_priorities_changed_fires_with_the_decision(engine: Engine, plugin: Any) -> None:
    seed(engine)
    recorder = plugin(Recorder())
    (record,) = recompute(engine, config(), T0)
    assert len(recorder.calls) == 1
    name, decision = recorder.calls[0]
    assert name == "acc"
    assert decision["reason"] == record.reason
    assert decision["new_weights"] == record.new_weights


class Even:
    """A plugin policy: every type the same share."""

    name = "even"

    def decide(
        self, stats: AccountStats, old: Mapping[str, float], settings: Any, rng: Any
    ) -> Decision:
        share = 1 / len(stats.types)
        return Decision(dict.fromkeys(stats.types, share), "all the same")


def test_a_plugin_policy_replaces_the_built_in_one(engine: Engine, plugin: Any) -> None:
    class Provider:
        @hookimpl
        def er_policy(self, settings: Any) -> Any:
            return Even()

    seed(engine)
    plugin(Provider())
    (record,) = recompute(engine, config(), T0)
    assert record.policy == "even"
    assert record.reason == "all the same"
    assert set(record.new_weights.values()) == {0.25}


def test_the_freeze_holds_whatever_a_plugin_policy_proposes(engine: Engine, plugin: Any) -> None:
    class Provider:
        @hookimpl
        def er_policy(self, settings: Any) -> Any:
            return Even()

    acc = seed(engine)
    first = recompute(engine, config(), T0)[0]
    plugin(Provider())
    (record,) = recompute(engine, config(frozen=True), T0 + DAY)
    assert record.policy == "even"
    assert record.new_weights == first.new_weights
    assert record.reason == (
        "frozen ([er] frozen = true): weights left as they were; the policy proposed: all the same"
    )
    assert {t: r.weight for t, r in stored(engine, acc).items()} == first.new_weights


@pytest.mark.parametrize(
    ("weights", "problem"),
    [
        ({"instruction": 2.0}, "weights sum to 2.000000, not 1"),
        ({"nonsense": 1.0}, "weights for unknown content types ['nonsense']"),
        (None, "raised RuntimeError: boom"),
    ],
)
def test_a_broken_plugin_policy_yields_to_the_built_in_one(
    engine: Engine, plugin: Any, weights: dict[str, float] | None, problem: str
) -> None:
    class Broken:
        name = "broken"

        def decide(self, stats: Any, old: Any, settings: Any, rng: Any) -> Decision:
            if weights is None:
                raise RuntimeError("boom")
            return Decision(weights, "trust me")

    class Provider:
        @hookimpl
        def er_policy(self, settings: Any) -> Any:
            return Broken()

    seed(engine)
    plugin(Provider())
    (record,) = recompute(engine, config(), T0)
    assert record.policy == "thompson"
    assert record.reason.startswith(f"policy 'broken' {problem}; the built-in policy decided: ")
    assert sum(record.new_weights.values()) == pytest.approx(1)


def test_demotion_is_remembered_across_recomputes_and_flagged(engine: Engine) -> None:
    acc = seed(engine, posts=12)
    flags = []
    for day in range(6):
        recompute(engine, config(), T0 + day * DAY)
        flags.append(stored(engine, acc)["provocation"].demoted)
    assert flags == [False, False, False, False, True, True]
    assert stored(engine, acc)["instruction"].demoted is False


def test_a_recompute_inside_a_transaction_rolls_back_with_it(engine: Engine) -> None:
    seed(engine)
    with engine.connect() as conn:
        trans = conn.begin()
        assert len(recompute(conn, config(), T0)) == 1
        trans.rollback()
    with engine.connect() as conn:
        assert conn.execute(select(decisions_t)).all() == []


def test_without_an_rng_the_draws_are_reproducible(engine: Engine) -> None:
    seed(engine)
    with engine.connect() as conn:
        one = recompute(conn, config(), T0)[0]
        conn.rollback()
        two = recompute(conn, config(), T0)[0]
        conn.rollback()
    assert one.new_weights == two.new_weights
    assert one.reason == two.reason


def test_an_account_whose_types_all_left_loses_its_weights(engine: Engine) -> None:
    acc = seed(engine)
    recompute(engine, config(), T0)
    # Ten half-lives later none of its posts is known any more.
    (record,) = recompute(engine, config(), T0 + 200 * DAY)
    assert record.new_weights == {}
    assert record.reason == "no content types yet: nothing to weigh"
    assert stored(engine, acc) == {}


def test_only_the_named_accounts_are_recomputed(engine: Engine) -> None:
    seed(engine, "a")
    seed(engine, "z")
    assert [r.account for r in recompute(engine, config(), T0, accounts=["z"])] == ["z"]


def test_a_network_that_declares_reach_but_gives_none_is_measured_by_followers_and_said(
    engine: Engine,
) -> None:
    from structlog.testing import capture_logs

    from scheduler.cli.doctor import Level, check_er
    from scheduler.er.report import reach_fallbacks

    sys.modules["scheduler.er.recompute"]._fallback_logged.discard("silent")
    with engine.begin() as conn:
        b = Builder(conn)
        acc = b.account("silent", "sim")  # the sim declares reach
        for _ in range(2):
            post = b.post(acc, "laugh", followers=1000)
            b.snapshot(post, 73 * HOUR, likes=30, comments=0, shares=0)  # no reach at all
        counted = b.post(acc, "laugh", followers=1000)
        b.snapshot(counted, 73 * HOUR, likes=30, comments=0, shares=0, reach=300)
    with capture_logs() as logs:
        (record,) = recompute(engine, config(), T0)
        recompute(engine, config(), T0 + HOUR)
    # Measured, not left out: the two silent posts count, by followers.
    assert record.inputs["types"]["laugh"]["posts"] == 3
    assert record.inputs["reach_fallback_posts"] == 2
    warned = [e for e in logs if e["event"] == "er_reach_fallback"]
    assert len(warned) == 1  # a log line once, not at every recompute
    assert warned[0]["account"] == "silent"
    assert warned[0]["posts"] == 2
    with engine.connect() as conn:
        assert reach_fallbacks(conn) == {"silent": 2}
    (check,) = check_er(engine)
    assert check.level == Level.WARN
    assert "declares reach but reported none for 2 posts" in check.message
