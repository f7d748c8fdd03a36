"""One publish attempt: isolated from the plugin, kept within limits, classified.

Whatever a plugin does — raise, hang, return garbage — ends here as a ``Result`` with a clear
reason; nothing a plugin does reaches the daemon's loop. The rules that keep the never-twice
invariant live in ``classify``: a post is sent again only when the failure certainly happened
before the network accepted it, or when the network honours our idempotency key.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from scheduler import observability
from scheduler.adapter import Account, Adapter, OutgoingPost, Published, PublishError
from scheduler.config import AccountConfig, Config, Policies
from scheduler.daemon.limits import Limits
from scheduler.daemon.store import Claimed, Result
from scheduler.db.models import Outcome, PostState
from scheduler.logging import redact
from scheduler.outgoing import account_view, from_row, prepare
from scheduler.timeutil import Clock

log = structlog.get_logger("scheduler.dispatch")

#: A rate-limit wait longer than this gives the post back instead of holding its lease.
MAX_HOLD = timedelta(seconds=5)
#: How long a ``prepare_post`` transform may take.
PREPARE_TIMEOUT_S = 10.0


def backoff(policies: Policies, attempt: int, rng: random.Random) -> timedelta:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2^(n-1))]."""
    ceiling = min(policies.backoff_max, policies.backoff_base * (2 ** max(0, attempt - 1)))
    return timedelta(seconds=rng.uniform(0, ceiling.total_seconds()))


def _text(message: object, limit: int = 2000) -> str:
    text = str(redact(str(message)))
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class Dispatcher:
    """Publishes claimed posts through the adapters, one attempt each."""

    config: Config
    adapters: Mapping[str, Adapter]
    limits: Limits
    clock: Clock
    #: When a post's first attempt started (to honour an idempotency key's lifetime).
    first_attempt_at: Callable[[int], datetime | None]
    rng: random.Random
    publish_timeout: float = 60.0

    def _result(self, c: Claimed, outcome: Outcome, state: PostState, **kw: object) -> Result:
        return Result(c, outcome, state, self.clock.now(), **kw)  # type: ignore[arg-type]

    def _fail(self, c: Claimed, message: str) -> Result:
        log.error("plugin_failed", post=c.row.key, account=c.account, error=message)
        return self._result(c, Outcome.PLUGIN_ERROR, PostState.FAILED, message=_text(message))

    async def attempt(self, c: Claimed, on_send: Callable[[Claimed], None] | None = None) -> Result:
        """Run one attempt for a claimed post; never raises (except on cancellation).

        ``on_send`` is called right before the network call: from then on, an interrupted
        attempt may have reached the network.
        """
        account = self.config.accounts.get(c.account)
        if account is None:
            return self._result(
                c,
                Outcome.REJECTED,
                PostState.FAILED,
                message=f"account {c.account!r} is no longer in the config",
            )
        adapter = self.adapters.get(account.platform)
        if adapter is None:
            return self._result(
                c,
                Outcome.PLUGIN_ERROR,
                PostState.FAILED,
                message=f"no plugin provides platform {account.platform!r}",
            )
        view = account_view(account)
        try:
            post = await asyncio.wait_for(
                prepare(from_row(c.row, c.account), view), PREPARE_TIMEOUT_S
            )
        except TimeoutError:
            return self._fail(c, f"prepare_post did not finish within {PREPARE_TIMEOUT_S:.0f} s")
        except Exception as exc:
            return self._fail(c, f"prepare_post failed: {type(exc).__name__}: {exc}")

        policy = adapter.capabilities.rate_limit
        budget = self.limits.budget(c.account, policy)
        wait = budget.delay(self.clock.now(), adapter.rate_limit_status.get(c.account))
        if wait > MAX_HOLD:
            until = self.clock.now() + wait
            return self._result(
                c,
                Outcome.RATE_LIMITED,
                PostState.RETRY_WAIT,
                next_attempt_at=until,
                retry_at=until,
                counts=False,
                message=f"waiting for {account.platform}'s rate limit (until {until:%H:%M:%S} UTC)",
            )
        if wait > timedelta(0):
            observability.record_rate_limit_wait(account, wait.total_seconds())
            await asyncio.sleep(wait.total_seconds())
        async with self.limits.account_semaphore(c.account, policy):
            budget.record(self.clock.now())
            if on_send is not None:
                on_send(c)
            started = time.perf_counter()
            try:
                published = await asyncio.wait_for(
                    adapter.publish(post, view, c.row.idempotency_key), self.publish_timeout
                )
            except PublishError as exc:
                latency = (time.perf_counter() - started) * 1000
                return self.classify(c, account, adapter, exc, latency)
            except TimeoutError:
                latency = (time.perf_counter() - started) * 1000
                return self._unknown(
                    c,
                    account,
                    adapter,
                    f"the {account.platform} plugin did not answer within "
                    f"{self.publish_timeout:.0f} s; the post may or may not be on the network",
                    latency,
                )
            except Exception as exc:
                return self._fail(
                    c, f"the {account.platform} plugin raised {type(exc).__name__}: {exc}"
                )
        latency = (time.perf_counter() - started) * 1000
        if (
            not isinstance(published, Published)
            or not isinstance(published.remote_id, str)
            or not published.remote_id
        ):
            return self._fail(
                c,
                f"the {account.platform} plugin returned {type(published).__name__}, not a "
                "Published with a remote id",
            )
        return self._result(
            c,
            Outcome.PUBLISHED,
            PostState.PUBLISHED,
            remote_id=published.remote_id[:200],
            remote_url=published.url,
            followers=published.followers if isinstance(published.followers, int) else None,
            latency_ms=latency,
        )

    def classify(
        self,
        c: Claimed,
        account: AccountConfig,
        adapter: Adapter,
        exc: PublishError,
        latency: float,
    ) -> Result:
        """Map a classified failure to the post's next state (docs/concepts.md#failures)."""
        now = self.clock.now()
        message = _text(exc.message or type(exc).__name__)
        policies = account.policies
        common = {"message": message, "http_status": exc.http_status, "latency_ms": latency}
        out_of_attempts = c.attempt_number >= policies.max_attempts
        match exc.error_class:
            case "rate_limited":
                until = (
                    exc.retry_at
                    if exc.retry_at and exc.retry_at > now
                    else now + backoff(policies, c.attempt_number, self.rng)
                )
                self.limits.budget(c.account, adapter.capabilities.rate_limit).block(until)
                return self._result(
                    c,
                    Outcome.RATE_LIMITED,
                    PostState.RETRY_WAIT,
                    next_attempt_at=until,
                    retry_at=until,
                    counts=False,
                    **common,
                )
            case "transient":
                if out_of_attempts:
                    return self._result(c, Outcome.TRANSIENT, PostState.FAILED, **common)
                when = now + backoff(policies, c.attempt_number, self.rng)
                return self._result(
                    c,
                    Outcome.TRANSIENT,
                    PostState.RETRY_WAIT,
                    next_attempt_at=when,
                    retry_at=when,
                    **common,
                )
            case "auth_expired":
                log.critical(
                    "account_auth_expired",
                    account=c.account,
                    platform=account.platform,
                    error=message,
                    action="paused: renew the credentials, then `smm queue resume --account`",
                )
                return self._result(
                    c,
                    Outcome.AUTH_EXPIRED,
                    PostState.PAUSED,
                    pause_reason=f"credentials rejected by {account.platform}: {message}",
                    **common,
                )
            case "rejected":
                return self._result(c, Outcome.REJECTED, PostState.FAILED, **common)
            case _:
                return self._unknown(c, account, adapter, message, latency, exc.http_status)

    def _unknown(
        self,
        c: Claimed,
        account: AccountConfig,
        adapter: Adapter,
        message: str,
        latency: float,
        http_status: int | None = None,
    ) -> Result:
        """The request may have reached the network: resend only under an honoured key."""
        caps = adapter.capabilities
        now = self.clock.now()
        common = {"message": message, "http_status": http_status, "latency_ms": latency}
        if caps.idempotent and c.attempt_number < account.policies.max_attempts:
            first = self.first_attempt_at(c.post_id) or now
            window = caps.idempotency_window
            when = now + backoff(account.policies, c.attempt_number, self.rng)
            if window is None or when - first < window:
                return self._result(
                    c,
                    Outcome.OUTCOME_UNKNOWN,
                    PostState.RETRY_WAIT,
                    next_attempt_at=when,
                    retry_at=when,
                    **common,
                )
        return self._result(c, Outcome.OUTCOME_UNKNOWN, PostState.UNCONFIRMED, **common)


async def safe_lookup(
    adapter: Adapter, post: OutgoingPost, view: Account, timeout: float
) -> Published | str | None:
    """``adapter.lookup`` isolated: Published, None (certainly absent), or why it can't tell."""
    try:
        found = await asyncio.wait_for(adapter.lookup(post, view), timeout)
    except PublishError as exc:
        return _text(exc.message or type(exc).__name__)
    except TimeoutError:
        return f"lookup did not answer within {timeout:.0f} s"
    except Exception as exc:
        return _text(f"lookup raised {type(exc).__name__}: {exc}")
    if found is None or (isinstance(found, Published) and found.remote_id):
        return found
    return f"lookup returned {type(found).__name__}"
