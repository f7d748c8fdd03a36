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
from scheduler.daemon.limits import Budget, Limits, Slots
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
    # An earlier request of the post may have left a minute ago (for the key's lifetime).
    return Claimed(1, 10, number, 1, "a", row, first_sent_at=NOW - timedelta(minutes=1))


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


def test_notes_a_plugin_could_not_use_leave_the_post_unconfirmed_not_failed() -> None:
    # The database keeping the notes was away, and the plugin let the error out: whether a
    # request had left is unknown, so the post is settled by lookup, neither failed nor resent.
    from scheduler.checkpoints import NotesUnavailable

    r = run(make(raising(NotesUnavailable(5, "the database keeping the notes cannot be used"))))
    assert (r.state, r.outcome) == (PostState.UNCONFIRMED, Outcome.OUTCOME_UNKNOWN)
    assert r.message is not None
    assert "could not use its checkpoint notes" in r.message


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


async def stubborn(post: OutgoingPost) -> Published:
    """A publish that hangs and swallows every cancellation."""
    while True:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            continue


def test_a_hang_that_swallows_cancellation_does_not_hang_the_attempt() -> None:
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


def test_daemons_alive_on_one_database_share_each_accounts_declared_limits() -> None:
    policy = RateLimitPolicy(requests=10, per=timedelta(seconds=10), concurrency=4)
    limits = Limits(100)
    budget = limits.budget("a", policy)
    for i in range(4):
        budget.record(NOW + timedelta(seconds=i))
    limits.share(3)  # three daemons: a third each, what was sent lately still counts
    shared = limits.budget("a", policy)
    assert shared is budget
    assert (shared.policy.requests, shared.policy.concurrency) == (3, 1)
    assert shared.delay(NOW + timedelta(seconds=4)) == timedelta(seconds=6)
    assert limits.account_semaphore("a", policy).size == 1
    limits.share(20)  # never below one request and one slot
    assert limits.budget("a", policy).policy.requests == 1
    limits.share(1)
    assert limits.budget("a", policy).policy == policy
    assert limits.account_semaphore("a", policy).size == 4


def test_a_wait_the_network_asked_for_holds_back_this_daemons_budget_too() -> None:
    policy = RateLimitPolicy(requests=10, per=timedelta(seconds=10), concurrency=4)
    limits = Limits(100)
    # Read from the database before this daemon sent anything to the account...
    limits.block("a", NOW + timedelta(seconds=30))
    limits.block("a", NOW + timedelta(seconds=20))  # an earlier end does not shorten it
    assert limits.budget("a", policy).delay(NOW) == timedelta(seconds=30)
    # ...and after: the budget it already has is blocked.
    limits.block("a", NOW + timedelta(minutes=2))
    assert limits.budget("a", policy).delay(NOW) == timedelta(minutes=2)
    assert limits.budget("b", policy).delay(NOW) == timedelta(0)


def test_slots_that_shrink_while_held_hand_nothing_on_until_below_the_new_size() -> None:
    async def scenario() -> list[str]:
        slots = Slots(3)
        for _ in range(3):
            assert slots.try_acquire()
        order: list[str] = []

        async def wait(name: str) -> None:
            await slots.acquire()
            order.append(name)

        waiter = asyncio.create_task(wait("w"))
        await asyncio.sleep(0)
        slots.resize(1)
        slots.release()
        slots.release()
        await asyncio.sleep(0)
        assert order == []  # one still held, and the size is one: full
        slots.release()
        await waiter  # the last one goes to the waiter
        assert slots.free == 0
        assert not slots.try_acquire()
        return order

    assert asyncio.run(asyncio.wait_for(scenario(), 1)) == ["w"]


# ----------------------------------------------------------------- launch: the no-wait path


def launch(dispatcher: Dispatcher, *claims: Claimed, may_send: Any = None) -> Any:
    """``dispatcher.launch`` in a fresh loop: (results of the launched posts, the others)."""

    async def go() -> Any:
        launched, rest = dispatcher.launch(list(claims) or [claimed()], may_send)
        results = await asyncio.wait_for(asyncio.gather(*launched), 5)
        return results, rest

    return asyncio.run(go())


def test_launch_publishes_without_an_attempt_task() -> None:
    tasks: list[int] = []

    async def publish(post: OutgoingPost) -> Published:
        tasks.append(len(asyncio.all_tasks()))
        return Published("r1", "https://x/r1", followers=42)

    d = make(publish)
    results, rest = launch(d, claimed(), claimed())
    assert rest == []
    assert [(r.state, r.outcome, r.remote_id, r.followers) for r in results] == [
        (PostState.PUBLISHED, Outcome.PUBLISHED, "r1", 42)
    ] * 2
    assert all(r.latency_ms is not None for r in results)
    # Two posts in flight: the test's own task and the two plugin calls, nothing else.
    assert max(tasks) == 3


@pytest.mark.parametrize(
    ("behaviour", "words"),
    [
        (raising(KeyError("data")), "raised KeyError"),
        (raising(SystemExit(3)), "raised SystemExit"),
        (raising(KeyboardInterrupt()), "raised KeyboardInterrupt"),
        (raising(asyncio.CancelledError()), "raised CancelledError"),
    ],
)
def test_launched_calls_that_raise_fail_only_their_post(behaviour: Any, words: str) -> None:
    [r], _ = launch(make(behaviour))
    assert (r.state, r.outcome) == (PostState.FAILED, Outcome.PLUGIN_ERROR)
    assert words in (r.message or "")


def test_a_launched_call_that_raises_before_it_awaits_fails_its_post() -> None:
    # ``publish`` that is no coroutine function and raises when called, or returns garbage.
    d = make(ok)
    adapter: Any = d.adapters["fake"]

    def broken(post: OutgoingPost, account: Any, key: str) -> Any:
        raise SystemExit(4)

    adapter.publish = broken
    [r], _ = launch(d)
    assert (r.state, r.outcome) == (PostState.FAILED, Outcome.PLUGIN_ERROR)
    adapter.publish = lambda *a: {"not": "awaitable"}
    [r], _ = launch(d)
    assert r.state == PostState.FAILED


def test_launched_calls_are_classified_as_attempts_are() -> None:
    [r], _ = launch(make(raising(RateLimited("slow down", retry_at=NOW + timedelta(minutes=2)))))
    assert (r.state, r.next_attempt_at, r.counts) == (
        PostState.RETRY_WAIT,
        NOW + timedelta(minutes=2),
        False,
    )
    [r], _ = launch(make(raising(OutcomeUnknown("timeout"))))
    assert r.state == PostState.UNCONFIRMED


def test_launched_calls_that_hang_end_unconfirmed_at_the_timeout_even_if_stubborn() -> None:
    async def hang(post: OutgoingPost) -> Published:
        await asyncio.sleep(60)
        raise AssertionError

    for behaviour in (hang, stubborn):
        d = make(behaviour, timeout=0.05)

        async def go(d: Dispatcher = d) -> Any:
            launched, _ = d.launch([claimed(), claimed()])
            results = await asyncio.wait_for(asyncio.gather(*launched), 2)
            for task in asyncio.all_tasks():  # let the test loop close: stop the plugin
                if task is not asyncio.current_task():
                    task.get_coro().close()  # type: ignore[union-attr]
            return results

        results = asyncio.run(go())
        assert [r.state for r in results] == [PostState.UNCONFIRMED] * 2
        assert all("did not answer" in (r.message or "") for r in results)
        # The slots came back: the account can send again.
        slots = d.limits.account_semaphore("a", d.adapters["fake"].capabilities.rate_limit)
        assert slots.free == slots_cap(d)


def slots_cap(d: Dispatcher) -> int:
    return max(1, d.adapters["fake"].capabilities.rate_limit.concurrency)


def test_a_cancelled_launch_abandons_the_call_and_frees_its_slot() -> None:
    started = []

    async def slow(post: OutgoingPost) -> Published:
        started.append(post.key)
        await asyncio.sleep(60)
        raise AssertionError

    d = make(slow)

    async def go() -> Any:
        [call], _ = d.launch([claimed()])
        await asyncio.sleep(0.01)
        assert call.task is not None
        call.cancel()
        await asyncio.sleep(0)
        return call

    call = asyncio.run(go())
    assert started == ["p1"]
    assert call.cancelled()
    assert call.task.cancelled()
    slots = d.limits.account_semaphore("a", d.adapters["fake"].capabilities.rate_limit)
    assert slots.free == slots_cap(d)


def test_launch_leaves_posts_that_would_wait_to_the_attempt() -> None:
    sent: list[str] = []

    async def publish(post: OutgoingPost) -> Published:
        sent.append(post.key)
        return Published("r1")

    # The daemon may not send: the attempt hands the post back.
    d = make(publish)
    launched, rest = launch(d, may_send=lambda c: False)
    assert (launched, len(rest), sent) == ([], 1, [])
    # The budget is used up: the attempt waits (or gives the post back).
    d = make(publish)
    d.limits.budget("a", d.adapters["fake"].capabilities.rate_limit).block(
        NOW + timedelta(seconds=3)
    )
    launched, rest = launch(d)
    assert (launched, len(rest), sent) == ([], 1, [])
    # Every slot of the account is taken: the attempt queues for one.
    d = make(publish)
    slots = d.limits.account_semaphore("a", d.adapters["fake"].capabilities.rate_limit)
    while slots.try_acquire():
        pass
    launched, rest = launch(d)
    assert (launched, len(rest), sent) == ([], 1, [])
    # An account this daemon does not know: the attempt hands it back with the reason.
    d = make(publish)
    c = claimed()
    c.account = "gone"
    launched, rest = launch(d, c)
    assert (launched, rest, sent) == ([], [c], [])


def test_launch_leaves_everything_to_the_attempt_when_a_transform_is_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from scheduler.daemon import dispatch

    monkeypatch.setattr(dispatch, "has_transforms", lambda: True)
    launched, rest = launch(make(ok))
    assert (launched, len(rest)) == ([], 1)


def test_launch_takes_no_more_slots_than_the_account_has() -> None:
    d = make(ok)
    cap = slots_cap(d)
    launched, rest = launch(d, *(claimed() for _ in range(cap + 2)))
    assert (len(launched), len(rest)) == (cap, 2)


# ----------------------------------------------------------------- slots


def test_slots_serve_waiters_in_order_and_a_newcomer_never_overtakes() -> None:
    async def go() -> list[str]:
        slots = Slots(1)
        order: list[str] = []
        assert slots.try_acquire()

        async def wait(name: str) -> None:
            async with slots:
                order.append(name)
                await asyncio.sleep(0)

        waiters = [asyncio.create_task(wait(n)) for n in ("first", "second")]
        await asyncio.sleep(0)
        slots.release()
        assert not slots.try_acquire()  # the freed slot went to "first"
        await asyncio.gather(*waiters)
        assert slots.free == 1
        return order

    assert asyncio.run(go()) == ["first", "second"]


def test_a_cancelled_waiter_does_not_keep_or_lose_a_slot() -> None:
    async def go() -> int:
        slots = Slots(1)
        assert slots.try_acquire()
        waiting = asyncio.create_task(slots.acquire())
        handed = asyncio.create_task(slots.acquire())
        await asyncio.sleep(0)
        waiting.cancel()  # gives up while waiting
        await asyncio.gather(waiting, return_exceptions=True)
        slots.release()  # goes to ``handed``...
        handed.cancel()  # ...which is cancelled before it runs: the slot is passed on
        await asyncio.gather(handed, return_exceptions=True)
        return slots.free

    assert asyncio.run(go()) == 1
