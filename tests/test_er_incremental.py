"""Incremental ER sums: after rounds of new snapshots they equal a full pass over the
snapshots, and so does a full pass over each post's kept readings."""

from __future__ import annotations

import random
from dataclasses import fields, replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from er_support import DAY, HOUR, T0, Builder
from sqlalchemy import Connection, Engine

from scheduler.config import ERSettings, empty_config
from scheduler.er.incremental import load, readings_sums
from scheduler.er.readings import AgeSums, sum_readings
from scheduler.er.recompute import recompute
from scheduler.er.stats import HORIZON_HALF_LIVES, account_stats

#: A short half-life, so that posts cross the fresh, recent and horizon lines between rounds.
SETTINGS = ERSettings(half_life=12 * HOUR, ages=(6 * HOUR, 24 * HOUR, 72 * HOUR))
FIELDS = [f.name for f in fields(AgeSums)]


def full_sums(conn: Connection, now: datetime, reach: set[int]) -> dict[tuple[int, str], Any]:
    return sum_readings(
        conn,
        ages=SETTINGS.ages,
        now=now,
        half_life=SETTINGS.half_life,
        horizon=now - SETTINGS.half_life * HORIZON_HALF_LIVES,
        reach_accounts=reach,
    )


def assert_same(
    got: dict[tuple[int, str], Any], want: dict[tuple[int, str], Any], rel: float = 1e-9
) -> None:
    assert set(got) == set(want)
    for key, per_age in want.items():
        for a, b in zip(got[key], per_age, strict=True):
            for f in FIELDS:
                assert getattr(a, f) == pytest.approx(getattr(b, f), rel=rel, abs=1e-12), (
                    key,
                    f,
                )


def snap(b: Builder, post: int, age: timedelta, er: float, reach: int = 5_000) -> None:
    b.snapshot(post, age, likes=round(er * reach), comments=1, shares=0, reach=reach)


def test_incremental_sums_equal_a_full_pass_round_after_round(engine: Engine) -> None:
    rng = random.Random(3)
    now = T0
    with engine.begin() as conn:
        b = Builder(conn)
        accounts = [b.account("a", "sim"), b.account("b", "mastodon")]
        reach = {accounts[0]}
        posts: list[tuple[int, datetime]] = []
        for i in range(40):
            acc = accounts[i % 2]
            published = now - timedelta(minutes=rng.randrange(60, 60 * 24 * 6))
            post = b.post(acc, f"t{i % 3}", published_at=published, followers=2_000)
            posts.append((post, published))
            for age in (6 * HOUR, 24 * HOUR, 72 * HOUR):
                if published + age <= now:
                    snap(
                        b, post, age + timedelta(minutes=rng.randrange(60)), rng.uniform(0.01, 0.05)
                    )
        # A post read at 24 h and 72 h 50 min: each round reads it earlier in the 72 h band.
        replaced = b.post(accounts[0], "t0", published_at=now - 4 * DAY, followers=2_000)
        snap(b, replaced, 24 * HOUR, 0.03)
        snap(b, replaced, 72 * HOUR + timedelta(minutes=50), 0.03)
        sums, how = readings_sums(conn, SETTINGS, now, reach_accounts=reach)
        assert how == "rebuild"
        assert_same(sums, full_sums(conn, now, reach), rel=1e-12)

    for round_ in range(6):
        now += timedelta(minutes=90)  # six rounds, all on the day of T0 (12:00 UTC)
        with engine.begin() as conn:
            b = Builder(conn, now=now)
            # New posts, some published a little before this round.
            for j in range(3):
                published = now - timedelta(hours=rng.randrange(0, 30))
                post = b.post(accounts[j % 2], f"t{j}", published_at=published, followers=3_000)
                posts.append((post, published))
                if published + 6 * HOUR <= now:
                    snap(b, post, 6 * HOUR, rng.uniform(0.01, 0.05))
            # Later readings of older posts: each moves its post to a later age.
            for post, published in rng.sample(posts, 8):
                age = timedelta(seconds=int((now - published).total_seconds()))
                if age > 6 * HOUR:
                    snap(b, post, age, rng.uniform(0.01, 0.08))
            # A reading taken earlier in a band than the one held: it replaces that reading.
            snap(b, replaced, 72 * HOUR + timedelta(minutes=45 - 5 * round_), 0.2 + 0.1 * round_)
            sums, how = readings_sums(conn, SETTINGS, now, reach_accounts=reach)
            assert how == "incremental"
            assert_same(sums, full_sums(conn, now, reach))
            got = account_stats(
                conn, SETTINGS, now, reach={a: a in reach for a in accounts}, sums=sums
            )
            want = account_stats(conn, SETTINGS, now, reach={a: a in reach for a in accounts})
            for acc in accounts:
                assert set(got[acc].types) == set(want[acc].types)
                for t, s in want[acc].types.items():
                    assert got[acc].types[t].er == pytest.approx(s.er, rel=1e-9)
                    assert got[acc].types[t].posts == s.posts
            # A full pass over the kept readings (what the daemon runs once a day) reads only
            # rows per post, and agrees with the snapshots to float rounding.
            if round_ % 2:
                sums, how = readings_sums(conn, SETTINGS, now, reach_accounts=reach, whole=True)
                assert how == "full"
                assert_same(sums, full_sums(conn, now, reach), rel=1e-12)


def test_when_a_recompute_is_incremental_full_or_a_rebuild(engine: Engine) -> None:
    with engine.begin() as conn:
        b = Builder(conn)
        acc = b.account("a")
        for i in range(5):
            b.measured(acc, "t", 0.03, published_at=T0 - (4 + i) * DAY)

        def how(settings: ERSettings, now: datetime, reach: set[int], **kw: Any) -> str:
            return readings_sums(conn, settings, now, reach_accounts=reach, **kw)[1]

        assert how(SETTINGS, T0, {acc}) == "rebuild"  # nothing kept yet
        assert how(SETTINGS, T0 + HOUR, {acc}) == "incremental"
        # Another half-life, the accounts read by reach, a clock that went back: rebuilt.
        other = replace(SETTINGS, half_life=timedelta(days=3))
        assert how(other, T0 + HOUR, {acc}) == "rebuild"
        assert how(other, T0 + HOUR, set()) == "rebuild"
        assert how(other, T0, set()) == "rebuild"
        # A gap longer than a half-life: every post's kept readings summed again.
        assert how(other, T0 + 4 * DAY, set()) == "full"
        assert how(other, T0 + 4 * DAY, set(), full=True) == "rebuild"
        kept = load(conn)
        assert kept is not None
        assert kept.computed_at == kept.rebuilt_at == T0 + 4 * DAY
        # Later that day from the kept sums; the first recompute of the next day is a full
        # pass, and a week after the last rebuild every snapshot is read again.
        later = T0 + 4 * DAY + HOUR
        assert how(other, later, set()) == "incremental"
        assert how(other, later + 12 * HOUR, set()) == "full"
        assert how(other, later + 12 * HOUR, set(), whole=True) == "full"
        assert how(other, T0 + 6 * DAY, set()) == "full"
        assert how(other, T0 + 11 * DAY, set()) == "rebuild"


def test_the_daemons_recompute_keeps_the_sums_and_decides_as_a_full_one(engine: Engine) -> None:
    config = empty_config()
    with engine.begin() as conn:
        b = Builder(conn)
        acc = b.account("a")
        for t, er in (("x", 0.04), ("y", 0.02)):
            for i in range(6):
                b.measured(acc, t, er, published_at=T0 - (4 + i) * DAY)
    recompute(engine, config, T0, keep_sums=True)
    with engine.begin() as conn:
        b = Builder(conn, now=T0 + HOUR)
        b.measured(acc, "y", 0.09, published_at=T0 - 4 * DAY)
    (kept,) = recompute(engine, config, T0 + HOUR, keep_sums=True)
    (full,) = recompute(engine, config, T0 + HOUR, keep_sums=True, full=True)
    for t in ("x", "y"):
        assert kept.inputs["types"][t]["er"] == pytest.approx(full.inputs["types"][t]["er"])
        assert (
            kept.inputs["types"][t]["posts"]
            == full.inputs["types"][t]["posts"]
            == (7 if t == "y" else 6)
        )
