"""One attempt's classification: the rules that keep "never twice" and "never lost"."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any, ClassVar

import httpx
import pytest

from scheduler.adapter import (
    Adapter,
    AuthExpired,
    Capabilities,
    OutcomeUnknown,
    OutgoingPost,
    Published,
    RateLimited,
    RateLimitPolicy,
    Rejected,
    Transient,
)
from scheduler.config import parse_config
from scheduler.daemon.dispatch import Dispatcher, backoff
from scheduler.daemon.limits import Budget, Limits
from scheduler.daemon.store import Claimed
from scheduler.db.models import Outcome, PostState
from scheduler.timeutil import Clock

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)

CONFIG = parse_config(
    """
[policies]
max_attempts = 3
backoff_base = "10s"
backoff_max = "1m"

[accounts.a]
platform = "fake"
timezone = "UTC"
""",
    "c.toml",
)


class FixedClock(Clock):
    def now(self) -> datetime:
        return NOW


class FakeAdapter(Adapter):
    platform: ClassVar[str] = "fake"
    capabilities: ClassVar[Capabilities] = Capabilities(text_limit=100)
    behaviour: Any = None

    async def publish(self, post: OutgoingPost, account: Any, idempotency_key: str) -> Published:
        return await self.behaviour(post)


def make(
    behaviour: Any, *, idempotent: bool = False, window: timedelta | None = None, timeout: float = 5
):  # type: ignore[no-untyped-def]
    adapter = FakeAdapter(httpx.AsyncClient())
    adapter.behaviour = behaviour
    adapter.capabilities = Capabilities(  # type: ignore[misc]
        text_limit=100, idempotent=idempotent, idempotency_window=window
    )
    return Dispatcher(
        config=CONFIG,
        adapters={"fake": adapter},
        limits=Limits(10),
        clock=FixedClock(),
        first_attempt_at=lambda _pid: NOW - timedelta(minutes=1),
        had_unknown=lambda _pid: False,
        rng=random.Random(1),
        publish_timeout=timeout,
    )


def claimed(number: int = 1) -> Claimed:
    row = SimpleNamespace(
        key="p1",
        content_type="t",
        text="hello",
        media=[],
        link=None,
        tags=[],
        idempotency_key="k1",
        due_at=NOW,
        remote_id=None,
        remote_url=None,
        published_at=None,
    )
    return Claimed(1, 10, number, 1, "a", row)


def run(dispatcher: Dispatcher, number: int = 1):  # type: ignore[no-untyped-def]
    return asyncio.run(dispatcher.attempt(claimed(number)))


def raising(exc: Exception):  # type: ignore[no-untyped-def]
    async def behave(post: OutgoingPost) -> Published:
        raise exc

    return behave


async def ok(post: OutgoingPost) -> Published:
    return Published("r1", "https://x/r1", followers=42)


def test_success_is_published_with_remote_id_and_followers() -> None:
    r = run(make(ok))
    assert (r.state, r.outcome, r.remote_id, r.followers) == (
        PostState.PUBLISHED,
        Outcome.PUBLISHED,
        "r1",
        42,
    )


def test_transient_failure_waits_with_backoff_within_the_cap() -> None:
    r = run(make(raising(Transient("503", http_status=503))))
    assert r.state == PostState.RETRY_WAIT
    assert NOW <= r.next_attempt_at <= NOW + timedelta(seconds=10)


def test_transient_failure_on_the_last_attempt_fails_the_post() -> None:
    r = run(make(raising(Transient("503"))), number=3)
    assert (r.state, r.outcome) == (PostState.FAILED, Outcome.TRANSIENT)


def test_rate_limit_waits_until_the_reset_and_does_not_use_up_an_attempt() -> None:
    reset = NOW + timedelta(minutes=7)
    r = run(make(raising(RateLimited("429", retry_at=reset))), number=3)
    assert (r.state, r.next_attempt_at, r.counts) == (PostState.RETRY_WAIT, reset, False)


def test_auth_expired_pauses_the_account_with_the_reason() -> None:
    r = run(make(raising(AuthExpired("token revoked", http_status=401))))
    assert r.state == PostState.PAUSED
    assert r.pause_reason is not None
    assert "token revoked" in r.pause_reason


def test_rejection_fails_with_the_networks_message() -> None:
    r = run(make(raising(Rejected("Validation failed: Text character limit of 500 exceeded"))))
    assert (r.state, r.outcome) == (PostState.FAILED, Outcome.REJECTED)
    assert r.message is not None
    assert "500 exceeded" in r.message


def test_unknown_outcome_without_idempotency_is_never_resent() -> None:
    r = run(make(raising(OutcomeUnknown("read timeout"))))
    assert r.state == PostState.UNCONFIRMED
    assert r.next_attempt_at is None


def test_unknown_outcome_under_an_honoured_key_is_resent_within_its_window() -> None:
    r = run(
        make(raising(OutcomeUnknown("read timeout")), idempotent=True, window=timedelta(hours=1))
    )
    assert r.state == PostState.RETRY_WAIT


def test_unknown_outcome_past_the_key_window_is_not_resent() -> None:
    d = make(raising(OutcomeUnknown("timeout")), idempotent=True, window=timedelta(seconds=30))
    assert run(d).state == PostState.UNCONFIRMED


def test_a_plugin_that_raises_fails_the_post_with_a_clear_reason() -> None:
    r = run(make(raising(KeyError("data"))))
    assert (r.state, r.outcome) == (PostState.FAILED, Outcome.PLUGIN_ERROR)
    assert r.message is not None
    assert "raised KeyError" in r.message


def test_a_plugin_that_returns_garbage_fails_the_post() -> None:
    async def garbage(post: OutgoingPost) -> Any:
        return {"id": "1"}

    r = run(make(garbage))
    assert (r.state, r.outcome) == (PostState.FAILED, Outcome.PLUGIN_ERROR)
    assert r.message is not None
    assert "not a Published" in r.message


def test_a_plugin_that_hangs_leaves_the_post_unconfirmed_not_resent() -> None:
    async def hang(post: OutgoingPost) -> Published:
        await asyncio.sleep(60)
        raise AssertionError

    r = run(make(hang, timeout=0.05))
    assert r.state == PostState.UNCONFIRMED
    assert r.message is not None
    assert "did not answer" in r.message


def test_messages_never_carry_registered_secrets() -> None:
    from scheduler.logging import register_secret

    register_secret("s3cr3t-token-value")
    r = run(make(raising(Rejected("bad token s3cr3t-token-value"))))
    assert r.message is not None
    assert "s3cr3t-token-value" not in r.message


def test_a_post_of_an_account_this_daemon_does_not_know_is_handed_back() -> None:
    d = make(ok)
    c = claimed()
    c.account = "gone"
    r = asyncio.run(d.attempt(c))
    assert (r.state, r.counts) == (PostState.RETRY_WAIT, False)
    assert "not in this daemon's config" in (r.message or "")


def test_a_post_is_not_sent_when_the_daemon_may_not_send() -> None:
    sent = []

    async def publish(post: OutgoingPost) -> Published:
        sent.append(post.key)
        return Published("r1")

    r = asyncio.run(make(publish).attempt(claimed(), may_send=lambda c: False))
    assert sent == []
    assert (r.state, r.outcome, r.counts) == (PostState.RETRY_WAIT, Outcome.ABANDONED, False)


def test_a_plugin_that_calls_sys_exit_fails_only_its_post() -> None:
    r = run(make(raising(SystemExit(3))))
    assert (r.state, r.outcome) == (PostState.FAILED, Outcome.PLUGIN_ERROR)


def test_a_hang_that_swallows_cancellation_does_not_hang_the_attempt() -> None:
    async def stubborn(post: OutgoingPost) -> Published:
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                continue

    async def go() -> Any:
        result = await asyncio.wait_for(make(stubborn, timeout=0.05).attempt(claimed()), 2)
        for task in asyncio.all_tasks():  # let the test loop close: stop the stubborn task
            if task is not asyncio.current_task():
                task.get_coro().close()  # type: ignore[union-attr]
        return result

    r = asyncio.run(go())
    assert r.state == PostState.UNCONFIRMED


@pytest.mark.parametrize("attempt", [1, 2, 5, 10])
def test_backoff_is_full_jitter_under_the_cap(attempt: int) -> None:
    policies = CONFIG.policies
    rng = random.Random(attempt)
    delays = [backoff(policies, attempt, rng) for _ in range(200)]
    cap = min(policies.backoff_max, policies.backoff_base * 2 ** (attempt - 1))
    assert all(timedelta(0) <= d <= cap for d in delays)
    assert max(delays) > cap * 0.8  # spread over the whole range, not fixed


def test_budget_waits_when_the_window_is_full() -> None:
    budget = Budget(RateLimitPolicy(requests=2, per=timedelta(seconds=10)))
    budget.record(NOW)
    budget.record(NOW + timedelta(seconds=1))
    assert budget.delay(NOW + timedelta(seconds=2)) == timedelta(seconds=8)
    assert budget.delay(NOW + timedelta(seconds=11)) == timedelta(0)


def test_budget_obeys_a_block_from_the_network() -> None:
    budget = Budget(RateLimitPolicy())
    budget.block(NOW + timedelta(seconds=30))
    assert budget.delay(NOW) == timedelta(seconds=30)
