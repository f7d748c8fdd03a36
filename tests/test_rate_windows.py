"""Several rate-limit windows per account (RateLimitPolicy.windows): the daemon budgets each
on its own, by what each publish costs in it and by what the network said of it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from scheduler.adapter import RateLimitPolicy, RateLimitStatus, RateWindow
from scheduler.daemon.limits import Budget, Limits

NOW = datetime(2026, 8, 1, 12, 0, tzinfo=UTC)
POLICY = RateLimitPolicy(
    requests=300,
    per=timedelta(minutes=5),
    windows=(
        RateWindow("statuses", 300, timedelta(hours=3)),
        RateWindow("media", 30, timedelta(minutes=30)),
    ),
)


def test_a_media_window_holds_back_a_publish_that_would_overflow_it() -> None:
    budget = Budget(POLICY)
    cost = {"statuses": 1, "media": 4}
    for minute in range(7):  # 28 uploads in 7 minutes
        at = NOW + timedelta(minutes=minute)
        assert budget.delay(at, cost=cost) == timedelta(0)
        budget.record(at, cost)
    at = NOW + timedelta(minutes=7)
    # 4 more would make 32 of 30: wait until the first publish's 4 leave the window.
    assert budget.delay(at, cost=cost) == timedelta(minutes=23)
    # A text post needs no media upload: it goes at once.
    assert budget.delay(at, cost={"statuses": 1}) == timedelta(0)
    # Two uploads still fit (28 + 2 = 30).
    assert budget.delay(at, cost={"statuses": 1, "media": 2}) == timedelta(0)


def test_the_networks_word_on_one_window_holds_only_what_uses_it() -> None:
    budget = Budget(POLICY)
    reset = NOW + timedelta(minutes=40)
    said = {
        "statuses": RateLimitStatus(remaining=0, reset_at=reset),
        "media": RateLimitStatus(remaining=25, reset_at=reset),
    }
    assert budget.delay(NOW, cost={"statuses": 1}, windows=said) == timedelta(minutes=40)
    assert budget.delay(NOW, cost={"media": 1}, windows=said) == timedelta(0)
    assert budget.delay(NOW, cost={}, windows=said) == timedelta(0)


def test_a_cost_larger_than_the_window_waits_for_an_empty_window_not_forever() -> None:
    budget = Budget(RateLimitPolicy(windows=(RateWindow("media", 2, timedelta(minutes=1)),)))
    budget.record(NOW, {"media": 1})
    assert budget.delay(NOW, cost={"media": 5}) == timedelta(minutes=1)
    assert budget.delay(NOW + timedelta(minutes=1), cost={"media": 5}) == timedelta(0)


def test_daemons_sharing_an_account_share_each_window() -> None:
    limits = Limits(16)
    limits.share(3)
    budget = limits.budget("toots", POLICY)
    assert {w.name: w.requests for w in budget.policy.windows} == {"statuses": 100, "media": 10}
