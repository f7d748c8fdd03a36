"""Metrics collection: which posts are due at which age band, and the job that reads them."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from er_support import DAY, HOUR, T0, Builder, FakeAdapter, counters, posts_t
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine, select
from structlog.testing import capture_logs

from scheduler import plugins
from scheduler.adapter import Account, Adapter, Metrics, OutgoingPost
from scheduler.config import AccountConfig, Config, empty_config
from scheduler.db.models import Account as AccountRow
from scheduler.db.models import MetricSnapshot
from scheduler.er import collect
from scheduler.er.collect import DEFAULT_BANDS, Reading, collect_metrics, due_band
from scheduler.hookspecs import hookimpl
from scheduler.timeutil import Clock

snapshots_t = MetricSnapshot.__table__  # type: ignore[attr-defined]
accounts_t = AccountRow.__table__  # type: ignore[attr-defined]

PUB = T0


def due(age: timedelta, readings: Sequence[Reading] = ()) -> timedelta | None:
    return due_band(PUB, readings, PUB + age)


def read(*ages: timedelta, same: bool = False) -> list[Reading]:
    return [Reading(int(a.total_seconds()), (1,) if same else (i,)) for i, a in enumerate(ages)]


# ============================================================================ due_band


def test_nothing_is_due_before_the_first_band() -> None:
    assert due(timedelta(minutes=59)) is None


def test_the_first_band_is_due_once_the_post_is_an_hour_old() -> None:
    assert due(HOUR) == HOUR
    assert due(HOUR + timedelta(minutes=5)) == HOUR


def test_a_band_already_read_is_not_due_again() -> None:
    assert due(3 * HOUR, read(HOUR)) is None
    assert due(6 * HOUR, read(HOUR)) == 6 * HOUR


def test_a_late_reading_covers_its_band_but_not_the_next() -> None:
    assert due(5 * HOUR, read(5 * HOUR)) is None
    assert due(6 * HOUR, read(5 * HOUR)) == 6 * HOUR


def test_a_post_missed_for_a_while_is_read_once_for_its_latest_band() -> None:
    assert due(30 * HOUR) == 24 * HOUR
    assert due(31 * HOUR, read(30 * HOUR)) is None


def test_the_last_band_is_the_last_reading() -> None:
    assert due(7 * DAY) == 7 * DAY
    assert due(9 * DAY, read(HOUR, 6 * HOUR, 24 * HOUR, 72 * HOUR, 7 * DAY)) is None


def test_a_settled_post_past_72_hours_is_not_read_again() -> None:
    moving = read(6 * HOUR, 24 * HOUR)
    settled = read(6 * HOUR, 24 * HOUR, same=True)
    assert due(73 * HOUR, moving) == 72 * HOUR
    assert due(73 * HOUR, settled) is None
    assert due(7 * DAY, read(24 * HOUR, 72 * HOUR, same=True)) is None


def test_two_equal_readings_before_72_hours_do_not_stop_reading() -> None:
    assert due(24 * HOUR, read(HOUR, 6 * HOUR, same=True)) == 24 * HOUR


def test_posts_older_than_the_horizon_are_never_read() -> None:
    assert due(31 * DAY) is None


def test_custom_bands() -> None:
    bands = (timedelta(minutes=30), 2 * HOUR)
    assert due_band(PUB, [], PUB + timedelta(minutes=45), bands) == timedelta(minutes=30)
    assert due_band(PUB, read(timedelta(minutes=45)), PUB + 3 * HOUR, bands) == 2 * HOUR


@given(st.lists(st.integers(0, 10 * 24 * 60), min_size=1, max_size=60))
def test_a_collector_running_at_any_times_reads_each_band_at_most_once(minutes: list[int]) -> None:
    readings: list[Reading] = []
    for m in sorted(set(minutes)):
        now = PUB + timedelta(minutes=m)
        band = due_band(PUB, readings, now)
        if band is not None:
            assert now - PUB >= band
            readings.append(Reading(m * 60, (len(readings),)))
    bands_read = [
        max(b for b in DEFAULT_BANDS if b.total_seconds() <= r.age_seconds) for r in readings
    ]
    assert len(bands_read) == len(set(bands_read))


# ============================================================================ the job


def config(*names: str, platform: str = "fake") -> Config:
    accounts = {n: AccountConfig(name=n, platform=platform, timezone="UTC") for n in names}
    return replace(empty_config(), accounts=accounts)


def publish(engine: Engine, account: str, ages: Sequence[timedelta]) -> list[int]:
    """Published posts of ``account`` (created on first use), one per age."""
    with engine.begin() as conn:
        b = Builder(conn)
        acc = conn.execute(select(accounts_t.c.id).where(accounts_t.c.name == account)).scalar()
        if acc is None:
            acc = b.account(account, "fake")
        return [b.post(acc, "laugh", published_at=T0 - age) for age in ages]


def snapshots(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(snapshots_t).order_by(snapshots_t.c.post_id)).all())


def run(engine: Engine, adapters: Mapping[str, Adapter], cfg: Config, **kw: Any) -> int:
    return asyncio.run(collect_metrics(engine, adapters, cfg, T0, **kw))


def test_due_posts_are_read_in_one_call_per_account_and_stored(engine: Engine) -> None:
    young, day_old, done = publish(engine, "a", [timedelta(minutes=30), 25 * HOUR, 40 * DAY])
    other = publish(engine, "b", [2 * HOUR])[0]
    adapter = FakeAdapter(counters)
    assert run(engine, {"fake": adapter}, config("a", "b")) == 2
    with engine.connect() as conn:
        remote = dict(conn.execute(select(posts_t.c.id, posts_t.c.remote_id)).all())
    assert sorted(adapter.calls) == [("a", [remote[day_old]]), ("b", [remote[other]])]
    rows = {r.post_id: r for r in snapshots(engine)}
    assert set(rows) == {day_old, other}
    assert rows[day_old].age_seconds == 25 * 3600
    assert rows[other].age_seconds == 2 * 3600
    assert young not in rows
    assert done not in rows


def test_unknown_counters_are_stored_as_null_never_zero(engine: Engine) -> None:
    publish(engine, "a", [2 * HOUR])
    run(engine, {"fake": FakeAdapter(counters)}, config("a"))
    (row,) = snapshots(engine)
    assert (row.likes, row.comments, row.reach) == (10, 2, 100)
    assert (row.shares, row.saves, row.clicks, row.impressions, row.views, row.followers) == (
        None,
    ) * 6


def test_a_second_run_at_the_same_time_reads_nothing(engine: Engine) -> None:
    publish(engine, "a", [2 * HOUR, 30 * HOUR])
    adapter = FakeAdapter(counters)
    assert run(engine, {"fake": adapter}, config("a")) == 2
    assert run(engine, {"fake": adapter}, config("a")) == 0
    assert len(adapter.calls) == 1


def test_a_failing_adapter_is_logged_and_the_other_accounts_still_read(engine: Engine) -> None:
    publish(engine, "bad", [2 * HOUR])
    (good,) = publish(engine, "good", [2 * HOUR])
    cfg = replace(
        config("good"),
        accounts={
            "good": AccountConfig("good", "fake", "UTC"),
            "bad": AccountConfig("bad", "broken", "UTC"),
        },
    )
    with capture_logs() as logs:
        stored = run(
            engine, {"fake": FakeAdapter(counters), "broken": FakeAdapter(raises=True)}, cfg
        )
    assert stored == 1
    assert [r.post_id for r in snapshots(engine)] == [good]
    assert any(
        e["event"] == "metrics_fetch_failed" and "the network is down" in e["error"] for e in logs
    )


def test_a_hanging_adapter_times_out(engine: Engine) -> None:
    publish(engine, "a", [2 * HOUR])
    with capture_logs() as logs:
        n = run(
            engine, {"fake": FakeAdapter(hangs=True)}, config("a"), timeout=timedelta(seconds=0.05)
        )
    assert n == 0
    assert any("no answer in 0.05 s" in e.get("error", "") for e in logs)


@pytest.mark.parametrize(
    "answer",
    [
        ["not", "a", "mapping"],
        {"r-unknown": Metrics("r-unknown", likes=1)},
        lambda posts: {p.remote_id: {"likes": 3} for p in posts},
        lambda posts: {p.remote_id: Metrics(p.remote_id, likes=-1) for p in posts},
        lambda posts: {p.remote_id: Metrics(p.remote_id, likes="12") for p in posts},  # type: ignore[arg-type]
    ],
    ids=["list", "unknown-id", "dict", "negative", "text"],
)
def test_garbage_from_an_adapter_is_dropped(engine: Engine, answer: Any) -> None:
    publish(engine, "a", [2 * HOUR])
    assert run(engine, {"fake": FakeAdapter(answer)}, config("a")) == 0
    assert snapshots(engine) == []


def test_accounts_without_an_adapter_or_disabled_are_skipped(engine: Engine) -> None:
    publish(engine, "a", [2 * HOUR])
    publish(engine, "off", [2 * HOUR])
    cfg = config("a", "off")
    cfg = replace(
        cfg, accounts={**cfg.accounts, "off": replace(cfg.accounts["off"], enabled=False)}
    )
    adapter = FakeAdapter(counters)
    assert run(engine, {"other": adapter}, cfg) == 0
    assert run(engine, {"fake": adapter}, cfg) == 1
    assert [name for name, _ in adapter.calls] == ["a"]


def test_followers_seen_in_metrics_are_kept_on_the_account(engine: Engine) -> None:
    publish(engine, "a", [2 * HOUR])

    def answer(posts: Sequence[OutgoingPost]) -> dict[str, Metrics]:
        return {
            p.remote_id or "": Metrics(p.remote_id or "", likes=1, followers=777) for p in posts
        }

    run(engine, {"fake": FakeAdapter(answer)}, config("a"))
    with engine.connect() as conn:
        assert conn.execute(select(accounts_t.c.followers)).scalar() == 777


def test_the_age_is_taken_when_the_answer_arrives_with_a_clock(engine: Engine) -> None:
    class Later(Clock):
        def now(self) -> datetime:
            return T0 + timedelta(minutes=3)

    publish(engine, "a", [2 * HOUR])
    run(engine, {"fake": FakeAdapter(counters)}, config("a"), clock=Later())
    (row,) = snapshots(engine)
    assert row.age_seconds == 2 * 3600 + 180
    assert row.collected_at == T0 + timedelta(minutes=3)


def test_metrics_collected_fires_per_account(engine: Engine) -> None:
    seen: list[tuple[str, int]] = []

    class Listener:
        @hookimpl
        async def metrics_collected(self, account: Account, metrics: list[Metrics]) -> None:
            seen.append((account.name, len(metrics)))

    publish(engine, "a", [2 * HOUR, 30 * HOUR])
    plugins.register_plugin(Listener(), name="test-er-listener")
    try:
        run(engine, {"fake": FakeAdapter(counters)}, config("a"))
    finally:
        plugins.unregister_plugin("test-er-listener")
    assert seen == [("a", 2)]


def test_due_posts_are_read_a_page_at_a_time(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The job holds one page of due posts, never all of them: an hour after a drain of a
    # million posts, all of them are due.
    monkeypatch.setattr(collect, "PAGE", 3)
    ids = publish(engine, "a", [2 * HOUR] * 7) + publish(engine, "b", [2 * HOUR] * 2)
    adapter = FakeAdapter(counters)
    assert run(engine, {"fake": adapter}, config("a", "b")) == 9
    assert sorted(r.post_id for r in snapshots(engine)) == sorted(ids)
    assert max(len(remote_ids) for _, remote_ids in adapter.calls) <= 3
    assert run(engine, {"fake": adapter}, config("a", "b")) == 0


def test_posts_a_network_leaves_out_do_not_stop_the_pages_after_them(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(collect, "PAGE", 2)
    ids = publish(engine, "a", [2 * HOUR] * 5)
    with engine.connect() as conn:
        remote = dict(conn.execute(select(posts_t.c.id, posts_t.c.remote_id)).all())
    gone = {remote[i] for i in ids[:3]}  # deleted on the network: never answered for

    def answer(posts: Sequence[OutgoingPost]) -> dict[str, Metrics]:
        return {k: m for k, m in counters(posts).items() if k not in gone}

    assert run(engine, {"fake": FakeAdapter(answer)}, config("a")) == 2
    assert sorted(r.post_id for r in snapshots(engine)) == ids[3:]


def test_a_network_that_reports_no_metrics_has_no_posts_read(engine: Engine) -> None:
    class Silent(Adapter):
        platform = "silent"
        capabilities = FakeAdapter.capabilities

        async def publish(self, post: OutgoingPost, account: Account, key: str) -> Any:
            raise NotImplementedError

    publish(engine, "a", [2 * HOUR])
    queried: list[str] = []
    from sqlalchemy import event

    listen = lambda *args: queried.append(args[2])  # noqa: E731
    event.listen(engine, "before_cursor_execute", listen)
    try:
        assert run(engine, {"fake": Silent(httpx.AsyncClient())}, config("a")) == 0
    finally:
        event.remove(engine, "before_cursor_execute", listen)
    assert not any("FROM posts" in sql for sql in queried)
