"""ER per post and per (account, content type): denominators, unknowns, decay, shrinkage."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from er_support import DAY, HOUR, T0, Builder
from sqlalchemy import Connection, Engine

from scheduler.config import ERSettings
from scheduler.er.readings import post_readings, reading_windows
from scheduler.er.stats import (
    Evidence,
    account_stats,
    decay_weight,
    engagement_rate,
    engagements,
    shrink,
)

SETTINGS = ERSettings()


@dataclass
class C:
    """Counters, as a snapshot row holds them."""

    likes: int | None = None
    comments: int | None = None
    shares: int | None = None
    saves: int | None = None
    clicks: int | None = None
    reach: int | None = None
    impressions: int | None = None
    views: int | None = None
    followers: int | None = None
    reactions: int | None = None


@pytest.fixture
def conn(engine: Engine) -> Iterator[Connection]:
    with engine.begin() as c:
        yield c


# ============================================================================ one post


def test_engagements_add_saves_and_clicks_only_where_known() -> None:
    assert engagements(C(likes=10, comments=2, shares=1)) == 13
    assert engagements(C(likes=10, comments=2, shares=1, saves=4, clicks=5)) == 22
    assert engagements(C(likes=0, comments=None, shares=None)) == 0
    assert engagements(C(likes=10, reactions=6, comments=2)) == 18
    assert engagements(C(reactions=4)) == 4  # reactions alone are known engagement


def test_engagements_are_unknown_when_likes_comments_and_shares_all_are() -> None:
    assert engagements(C(saves=3, clicks=4, reach=100)) is None


def test_er_by_reach_prefers_reach_then_impressions_then_views() -> None:
    assert engagement_rate(C(likes=10, reach=200, impressions=400), by_reach=True) == 0.05
    assert engagement_rate(C(likes=10, impressions=400, views=1000), by_reach=True) == 0.025
    assert engagement_rate(C(likes=10, views=1000), by_reach=True) == 0.01


def test_er_by_followers_uses_followers_at_publish_then_at_reading() -> None:
    m = C(likes=30, reach=100, followers=2000)
    assert engagement_rate(m, by_reach=False, followers_at_publish=1000) == 0.03
    assert engagement_rate(m, by_reach=False) == 0.015


@pytest.mark.parametrize(
    ("counters", "by_reach"),
    [
        (C(likes=5), True),  # no reach, impressions or views
        (C(likes=5, reach=0), True),  # zero reach is no denominator
        (C(reach=100), True),  # no engagement counters at all
        (C(likes=5, reach=100), False),  # no followers anywhere
    ],
)
def test_er_is_none_not_zero_when_a_side_is_unknown(counters: C, by_reach: bool) -> None:
    assert engagement_rate(counters, by_reach=by_reach) is None


def test_decay_halves_the_weight_at_one_half_life() -> None:
    assert decay_weight(timedelta(0), timedelta(days=14)) == 1.0
    assert decay_weight(timedelta(days=14), timedelta(days=14)) == pytest.approx(0.5)
    assert decay_weight(timedelta(days=28), timedelta(days=14)) == pytest.approx(0.25)


def test_reading_windows_do_not_overlap_and_allow_a_late_reading() -> None:
    assert reading_windows([timedelta(hours=72), timedelta(hours=24)]) == [
        (86_400, 86_400 + 21_600),
        (259_200, 259_200 + 64_800),
    ]
    assert reading_windows([timedelta(hours=1), timedelta(hours=2)])[0] == (3600, 7200)


# ============================================================================ the SQL agrees


CASES = [
    C(likes=10, comments=2, shares=1, reach=500),
    C(likes=None, reactions=7, comments=None, shares=None, reach=300),
    C(likes=10, comments=None, shares=None, saves=3, clicks=7, impressions=800),
    C(likes=None, comments=4, shares=None, views=100),
    C(likes=10, followers=900),
    C(likes=None, comments=None, shares=None, reach=500),
    C(likes=3, reach=0, impressions=200),
    C(likes=7, reach=None, impressions=None, views=None, followers=None),
]


@pytest.mark.parametrize("by_reach", [True, False], ids=["reach", "followers"])
def test_sql_computes_the_same_er_as_python(conn: Connection, by_reach: bool) -> None:
    b = Builder(conn)
    acc = b.account()
    expected = {}
    for i, counters in enumerate(CASES):
        followers = 1000 if i % 2 else None
        post = b.post(acc, "t", followers=followers)
        b.snapshot(post, 25 * HOUR, **vars(counters))
        expected[post] = engagement_rate(
            counters, by_reach=by_reach, followers_at_publish=followers
        )
    got = post_readings(
        conn, list(expected), ages=SETTINGS.ages, reach_accounts={acc} if by_reach else set()
    )
    assert {p: got.get(p) for p in expected} == pytest.approx(expected)


# ============================================================================ per type


def test_networks_without_reach_are_measured_by_followers(conn: Connection) -> None:
    b = Builder(conn)
    reach_acc, plain_acc = b.account("fb", "facebook"), b.account("masto", "mastodon")
    for acc in (reach_acc, plain_acc):
        post = b.post(acc, "laugh", followers=2000)
        b.snapshot(post, 73 * HOUR, likes=40, comments=0, shares=0, reach=400, followers=2100)
    stats = account_stats(conn, SETTINGS, T0, reach={reach_acc: True, plain_acc: False})
    assert stats[reach_acc].basis == "reach"
    assert stats[reach_acc].types["laugh"].raw_er == pytest.approx(0.10)
    assert stats[plain_acc].basis == "followers"
    assert stats[plain_acc].types["laugh"].raw_er == pytest.approx(0.02)


def test_posts_without_a_denominator_are_skipped_not_counted_as_zero(conn: Connection) -> None:
    b = Builder(conn)
    acc = b.account()
    for _ in range(3):
        b.measured(acc, "medal", 0.04)
    unknown = b.post(acc, "medal")
    b.snapshot(unknown, 73 * HOUR, likes=50, comments=1, shares=0)  # no reach at all
    silent = b.post(acc, "medal")
    b.snapshot(silent, 73 * HOUR, reach=1000)  # no engagement counters
    medal = account_stats(conn, SETTINGS, T0, reach={acc: True})[acc].types["medal"]
    assert medal.posts == 3
    assert medal.raw_er == pytest.approx(0.04)


def test_a_reading_outside_every_age_window_is_not_used(conn: Connection) -> None:
    b = Builder(conn)
    acc = b.account()
    post = b.post(acc, "laugh")
    b.snapshot(post, 6 * HOUR, likes=1, comments=0, shares=0, reach=100)
    b.snapshot(post, 40 * HOUR, likes=9, comments=0, shares=0, reach=100)  # 24 h + 16 h: late
    laugh = account_stats(conn, SETTINGS, T0, reach={acc: True})[acc].types["laugh"]
    assert laugh.posts == 0
    assert laugh.er is None


def test_the_first_reading_at_or_after_the_age_is_used(conn: Connection) -> None:
    b = Builder(conn)
    acc = b.account()
    post = b.post(acc, "laugh")
    b.snapshot(post, 23 * HOUR, likes=1, comments=0, shares=0, reach=100)
    b.snapshot(post, 26 * HOUR, likes=5, comments=0, shares=0, reach=100)
    b.snapshot(post, 28 * HOUR, likes=7, comments=0, shares=0, reach=100)
    laugh = account_stats(conn, SETTINGS, T0, reach={acc: True})[acc].types["laugh"]
    assert laugh.raw_er == pytest.approx(0.05)


def test_decay_gives_a_post_one_half_life_older_half_the_weight(conn: Connection) -> None:
    b = Builder(conn)
    acc = b.account()
    b.measured(acc, "new", 0.03, published_at=T0 - 4 * DAY)
    b.measured(acc, "old", 0.03, published_at=T0 - 4 * DAY - SETTINGS.half_life)
    types = account_stats(conn, SETTINGS, T0, reach={acc: True})[acc].types
    assert types["old"].effective_posts / types["new"].effective_posts == pytest.approx(0.5)


def test_recent_posts_outweigh_old_ones_in_the_mean(conn: Connection) -> None:
    b = Builder(conn)
    acc = b.account()
    b.measured(acc, "laugh", 0.02, published_at=T0 - 5 * DAY)
    b.measured(acc, "laugh", 0.05, published_at=T0 - 5 * DAY - 2 * SETTINGS.half_life)
    laugh = account_stats(conn, SETTINGS, T0, reach={acc: True})[acc].types["laugh"]
    assert laugh.raw_er == pytest.approx((0.02 * 1 + 0.05 * 0.25) / 1.25)


def test_young_posts_are_put_on_the_last_ages_scale(conn: Connection) -> None:
    b = Builder(conn)
    acc = b.account()
    # Older posts show the account's posts gain half again between 24 h and 72 h...
    for _ in range(4):
        b.measured(acc, "laugh", 0.03, growth=1.5)
    # ...so a post read only at 24 h (2 %) stands for 3 % at 72 h.
    young = b.post(acc, "medal", published_at=T0 - 30 * HOUR)
    b.snapshot(young, 25 * HOUR, likes=200, comments=0, shares=0, reach=10_000)
    types = account_stats(conn, SETTINGS, T0, reach={acc: True})[acc].types
    assert types["medal"].raw_er == pytest.approx(0.03)
    assert types["medal"].by_age == {86_400: pytest.approx(0.02)}


def test_trend_compares_recent_posts_with_older_ones(conn: Connection) -> None:
    b = Builder(conn)
    acc = b.account()
    for days in (4, 6, 8):
        b.measured(acc, "laugh", 0.03, published_at=T0 - days * DAY)
    for days in (20, 25, 30):
        b.measured(acc, "laugh", 0.02, published_at=T0 - days * DAY)
    laugh = account_stats(conn, SETTINGS, T0, reach={acc: True})[acc].types["laugh"]
    assert laugh.trend == pytest.approx(0.5)


def test_planned_types_are_known_before_any_measurement(conn: Connection) -> None:
    b = Builder(conn)
    acc = b.account()
    b.measured(acc, "laugh", 0.03)
    b.post(acc, "promo", state="queued")
    b.post(acc, "ancient", published_at=T0 - 400 * DAY)  # long gone from plan and horizon
    types = account_stats(conn, SETTINGS, T0, reach={acc: True})[acc].types
    assert set(types) == {"laugh", "promo"}
    assert types["promo"].posts == 0
    # The prior: the account's typical post (the log of an ER adds half an engagement).
    assert types["promo"].er == pytest.approx(0.03, rel=0.01)


# ============================================================================ shrinkage


def _evidence(values: list[float]) -> Evidence:
    return Evidence(
        weight=len(values),
        total=sum(values),
        squares=sum(v * v for v in values),
        posts=len(values),
    )


def test_shrinkage_pulls_three_lucky_posts_toward_the_account_mean() -> None:
    # Post-to-post luck of +-30 % around each type's rate, as real feeds (and the sim) show.
    luck = [0.7, 0.85, 1.0, 1.15, 1.3]
    evidence = {
        "best": _evidence([0.036 * x for x in luck] * 6),
        "steady": _evidence([0.030 * x for x in luck] * 6),
        "weak": _evidence([0.028 * x for x in luck] * 6),
        "lucky": _evidence([0.037, 0.038, 0.039]),
    }
    mean, _, k, stats = shrink(evidence)
    lucky, best = stats["lucky"], stats["best"]
    assert mean is not None
    assert k is not None
    assert k >= 2
    # The posterior is the raw mean pulled toward the account's by k posts' worth...
    assert lucky.er == pytest.approx(mean + 3 / (3 + k) * (0.038 - mean))
    # ...so three posts above the best type's rate still rank below its long record.
    assert lucky.raw_er > best.raw_er  # type: ignore[operator]
    assert lucky.er < best.er  # type: ignore[operator]
    assert lucky.er_high - lucky.er_low > best.er_high - best.er_low  # type: ignore[operator]


def test_shrinkage_interval_narrows_with_more_posts() -> None:
    evidence = {
        "few": _evidence([0.02, 0.03, 0.025]),
        "many": _evidence([0.02, 0.03, 0.025] * 10),
    }
    _, _, _, stats = shrink(evidence)
    width = {t: s.er_high - s.er_low for t, s in stats.items()}  # type: ignore[operator]
    assert width["many"] < width["few"]
    assert all(s.er_low <= s.er <= s.er_high for s in stats.values())  # type: ignore[operator]


def test_shrinkage_without_data_reports_nothing() -> None:
    mean, spread, k, stats = shrink({"laugh": Evidence()})
    assert (mean, spread, k) == (None, None, None)
    assert stats["laugh"].er is None


def test_stats_are_computed_per_account(conn: Connection) -> None:
    b = Builder(conn)
    a, z = b.account("a"), b.account("z")
    b.measured(a, "laugh", 0.05)
    b.measured(z, "laugh", 0.01)
    stats = account_stats(conn, SETTINGS, T0, reach={a: True, z: True})
    assert stats[a].mean == pytest.approx(0.05)
    assert stats[z].mean == pytest.approx(0.01)
    only = account_stats(conn, SETTINGS, T0, reach={a: True}, accounts=[z])
    assert set(only) == {z}


def test_posts_published_after_now_are_ignored(conn: Connection) -> None:
    # A simulation replays history: "now" may be before rows written by a later step.
    b = Builder(conn)
    acc = b.account()
    b.measured(acc, "laugh", 0.05, published_at=T0 + DAY)
    b.measured(acc, "laugh", 0.01, published_at=T0 - 5 * DAY)
    laugh = account_stats(conn, SETTINGS, T0, reach={acc: True})[acc].types["laugh"]
    assert laugh.raw_er == pytest.approx(0.01)


@pytest.mark.parametrize("fresh", [1, 2], ids=["one-fresh-post", "two-fresh-posts"])
def test_a_change_of_taste_is_followed_on_the_fresh_posts(conn: Connection, fresh: int) -> None:
    b = Builder(conn)
    acc = b.account()
    rng = __import__("random").Random(5)
    for day in range(8, 40, 2):  # a long record: provocation at 1 %, laugh at 3 %
        b.measured(acc, "provocation", 0.01 * rng.uniform(0.8, 1.2), published_at=T0 - day * DAY)
        b.measured(acc, "laugh", 0.03 * rng.uniform(0.8, 1.2), published_at=T0 - day * DAY)
    for day in range(fresh):  # then provocation's fresh posts engage 6 %
        b.measured(acc, "provocation", 0.06, published_at=T0 - (4 + day) * DAY)
    provocation = account_stats(conn, SETTINGS, T0, reach={acc: True})[acc].types["provocation"]
    if fresh == 1:  # one post could be an outlier: the record still stands
        assert not provocation.changed
        assert provocation.er is not None
        assert provocation.er < 0.02
    else:  # two: the estimate rests on them alone
        assert provocation.changed
        assert provocation.er is not None
        assert provocation.er > 0.04
        assert provocation.posts == 16 + fresh  # the record still counts for eligibility


def test_a_negative_count_from_a_broken_network_does_not_stop_the_statistics(
    conn: Connection,
) -> None:
    b = Builder(conn)
    acc = b.account()
    b.measured(acc, "laugh", 0.03)
    broken = b.post(acc, "laugh")
    b.snapshot(broken, 73 * HOUR, likes=-5, comments=0, shares=0, reach=-100)
    laugh = account_stats(conn, SETTINGS, T0, reach={acc: True})[acc].types["laugh"]
    assert laugh.er == pytest.approx(0.03, rel=0.01)
