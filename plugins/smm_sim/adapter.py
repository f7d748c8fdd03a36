"""The ``sim`` platform: a simulated network for demos, ER-loop simulations and daemon tests.

It makes no HTTP requests (it accepts the client only to honour the adapter contract) and
answers from a seeded ``SimWorld`` per account, so the same inputs always give the same posts,
failures and counters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any, ClassVar

import httpx

from scheduler.adapter import (
    Account,
    Adapter,
    AuthExpired,
    Capabilities,
    Issue,
    Metrics,
    OutcomeUnknown,
    OutgoingPost,
    Published,
    PublishError,
    RateLimited,
    RateLimitPolicy,
    Rejected,
    Transient,
)
from scheduler.timeutil import Clock, SystemClock

from .settings import SimOptionError
from .world import SimWorld, world_for

__all__ = ["SimAdapter", "SimPlainAdapter"]

_METRICS = frozenset({"likes", "comments", "shares", "saves", "reach", "impressions", "followers"})

_FAULT_MESSAGES: dict[str, tuple[type[PublishError], str]] = {
    "transient": (Transient, "simulated server error (503), the post was not accepted"),
    "rate_limited": (RateLimited, "simulated rate limit (429)"),
    "outcome_unknown": (OutcomeUnknown, "simulated timeout: the answer never came back"),
    "auth_expired": (AuthExpired, "simulated expired token (401)"),
    "rejected": (Rejected, "simulated rejection (422): the network refused this post"),
}


class SimAdapter(Adapter):
    """A simulated network that honours idempotency keys (docs/plugins/networks/sim.md).

    "Now" comes from ``clock``: the account option ``clock`` if set, else the instance's or
    class's ``clock`` attribute (a ``SystemClock`` by default), so virtual-time simulations
    drive post ages.
    """

    platform = "sim"
    capabilities = Capabilities(
        text_limit=5000,
        text_counting="characters",
        max_media=4,
        idempotent=True,
        metrics=_METRICS,
        has_reach=True,
        rate_limit=RateLimitPolicy(requests=600, per=timedelta(minutes=1), concurrency=16),
        post_options=frozenset({"thread"}),
    )
    #: Where "now" comes from, unless the account option ``clock`` overrides it.
    clock: Clock = SystemClock()
    #: Whether the simulated network deduplicates publishes by idempotency key.
    honours_idempotency: ClassVar[bool] = True

    def __init__(self, client: httpx.AsyncClient, *, clock: Clock | None = None) -> None:
        super().__init__(client)
        if clock is not None:
            self.clock = clock
        # account name -> (the options mapping it was built from, its world): building the
        # world key hashes the options, too slow to repeat on every call.
        self._worlds: dict[str, tuple[Mapping[str, Any], SimWorld]] = {}

    # -- plumbing --------------------------------------------------------------------------

    def _clock(self, account: Account) -> Clock:
        clock = account.options.get("clock")
        return clock if isinstance(clock, Clock) else self.clock

    def world(self, account: Account) -> SimWorld:
        """The simulated network behind ``account`` (for tests and simulations to inspect).

        Raises ``SimOptionError`` when the account's options are unusable.
        """
        cached = self._worlds.get(account.name)
        if cached is not None and cached[0] is account.options:
            return cached[1]
        world = world_for(account.name, account.options, self._clock(account).now())
        self._worlds[account.name] = (account.options, world)
        return world

    def _world_or_reject(self, account: Account) -> SimWorld:
        try:
            return self.world(account)
        except SimOptionError as exc:
            raise Rejected(f"sim account {account.name}: {exc}") from None

    # -- the contract ----------------------------------------------------------------------

    def validate(self, post: OutgoingPost, account: Account) -> list[Issue]:
        """The usual text and media checks, plus the account's sim options."""
        issues = super().validate(post, account)
        try:
            self.world(account)
        except SimOptionError as exc:
            issues.append(Issue("account", f"sim account {account.name}: {exc}"))
        return issues

    async def publish(
        self, post: OutgoingPost, account: Account, idempotency_key: str
    ) -> Published:
        """Publish into the simulated network, failing as ``fail_rate``/``fail_mix`` say."""
        world = self._world_or_reject(account)
        now = self._clock(account).now()
        issues = super().validate(post, account)
        if issues:
            raise Rejected("; ".join(i.message for i in issues), http_status=422)
        key = idempotency_key or post.key
        fault = world.draw_fault(key)
        if fault is not None:
            kind, accepted = fault
            if accepted:
                world.accept(
                    key,
                    post_key=post.key,
                    content_type=post.content_type,
                    now=now,
                    dedupe=self.honours_idempotency,
                )
            error, message = _FAULT_MESSAGES[kind]
            retry_at = now + world.settings.retry_after if kind == "rate_limited" else None
            raise error(message, http_status=None, retry_at=retry_at, code=f"sim.{kind}")
        sim_post = world.accept(
            key,
            post_key=post.key,
            content_type=post.content_type,
            now=now,
            dedupe=self.honours_idempotency,
        )
        # A thread's parts: each a post of its own, under a key of its own (the post's key
        # and the part's number), so a retry after a crash mid-chain finds the parts the
        # network already has and goes on from the first it does not.
        for number, _part in enumerate(post.options.thread, 2):
            await self.between_parts(account)
            world.accept(
                f"{key}-part{number}",
                post_key=f"{post.key}#{number}",
                content_type=post.content_type,
                now=self._clock(account).now(),
                dedupe=self.honours_idempotency,
            )
        return self._published(account, sim_post.remote_id, sim_post.followers)

    async def between_parts(self, account: Account) -> None:
        """Awaited before each thread part (tests slow the chain down here)."""

    async def fetch_metrics(
        self, posts: Sequence[OutgoingPost], account: Account
    ) -> Mapping[str, Metrics]:
        """Counters at the clock's now; posts the sim does not hold are left out."""
        world = self._world_or_reject(account)
        world.refresh()
        now = self._clock(account).now()
        result: dict[str, Metrics] = {}
        for post in posts:
            sim_post = world.by_remote_id.get(post.remote_id or "")
            if sim_post is not None:
                result[sim_post.remote_id] = world.metrics(sim_post, now)
        return result

    async def lookup(self, post: OutgoingPost, account: Account) -> Published | None:
        """The post made with this post's idempotency key, or None: the sim always knows."""
        world = self._world_or_reject(account)
        sim_post = world.lookup(post.idempotency_key or post.key)
        if sim_post is None:
            return None
        return self._published(account, sim_post.remote_id, sim_post.followers)

    def _published(self, account: Account, remote_id: str, followers: int) -> Published:
        return Published(
            remote_id=remote_id,
            url=f"https://sim.invalid/{account.name}/{remote_id}",
            followers=followers,
        )


class SimPlainAdapter(SimAdapter):
    """The ``sim-plain`` platform: the same network without idempotency keys.

    Every accepted request creates a new post, as on networks that ignore retries' keys, so
    daemon tests can prove a post is never sent twice when a resend could duplicate it.
    """

    platform = "sim-plain"
    capabilities = Capabilities(
        text_limit=5000,
        text_counting="characters",
        max_media=4,
        idempotent=False,
        metrics=_METRICS,
        has_reach=True,
        rate_limit=RateLimitPolicy(requests=600, per=timedelta(minutes=1), concurrency=16),
    )
    honours_idempotency = False
