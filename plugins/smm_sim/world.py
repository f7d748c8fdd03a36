"""The simulated audience of one account: who sees a post, who engages, and when.

The model, in short (docs/plugins/networks/sim.md has the options):

* followers start at ``followers`` and grow by ``growth`` a day from ``start``;
* a post published on simulated day *d* reaches about ``reach_ratio`` of the followers at that
  moment, and each person reached engages with probability *true ER(content type, d)*, both
  scaled by a per-post lognormal factor of spread ``noise`` (some posts simply do better);
* the final counts accrue along the saturating curve ``1 - exp(-age / tau)`` (95% after
  3 tau), so counters read at 1 h, 6 h, 24 h, 72 h and 7 d never decrease.

Every number derives from (seed, account, post) through ``rng``, never from call order.
"""

from __future__ import annotations

import json
import math
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from scheduler.adapter import Metrics

from .ledger import Ledger, LedgerEntry
from .rng import binomial, rng_for, token, unit
from .settings import SimSettings

__all__ = ["SimPost", "SimWorld", "reset_worlds", "world_for"]

_DAY = 86400.0

# How the engagements of a post split between kinds (likes dominate everywhere).
_SPLIT = (("likes", 0.70), ("comments", 0.12), ("shares", 0.10), ("saves", 0.08))


class SimPost(NamedTuple):
    """A post the simulated network holds (a tuple: publishing 100,000 must stay cheap)."""

    key: str  # the idempotency key it was sent with
    remote_id: str
    post_key: str
    content_type: str
    published_at: datetime
    followers: int  # at publish time


@dataclass(frozen=True)
class _Final:
    """The counts a post ends with, once its 2-3 days are over."""

    reach: int
    impressions: int
    engagements: dict[str, int] = field(default_factory=dict)


class SimWorld:
    """One account's simulated network: its audience, the posts it holds, what it received.

    Inspect ``published`` (posts created per idempotency key: more than 1 is a duplicate post),
    ``requests`` (accepted publish requests per key, deduplicated repeats included) and
    ``attempts`` (publish calls that reached the sim per key, failed ones included).
    """

    def __init__(self, account: str, settings: SimSettings, start: datetime) -> None:
        self.account = account
        self.settings = settings
        self.start = settings.start or start
        #: The first post made per idempotency key (the one a deduplicated retry returns).
        self.posts: dict[str, SimPost] = {}
        self.by_remote_id: dict[str, SimPost] = {}
        self.published: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()
        self.attempts: Counter[str] = Counter()
        self.ledger = Ledger(settings.ledger) if settings.ledger else None
        self._finals: dict[str, _Final] = {}
        self._lock = threading.Lock()

    # -- the audience ----------------------------------------------------------------------

    def day(self, when: datetime) -> float:
        """Simulated days since ``start`` (negative before it)."""
        return (when - self.start).total_seconds() / _DAY

    def followers_at(self, when: datetime) -> int:
        """Followers at ``when``: the start count plus ``growth`` a day, never below zero."""
        s = self.settings
        return max(0, round(s.followers + s.growth * self.day(when)))

    def true_er(self, content_type: str, when: datetime) -> float:
        """The hidden engagement rate of ``content_type`` for a post published at ``when``."""
        table, default = self.settings.er_table(self.day(when))
        return table.get(content_type, default)

    # -- failures --------------------------------------------------------------------------

    def draw_fault(self, key: str) -> tuple[str, bool] | None:
        """Whether this publish attempt fails, and how: (kind, accepted anyway) or None.

        Each attempt on a key draws afresh (seeded by the attempt number), so retries can
        succeed. ``accepted anyway`` is only ever True for ``outcome_unknown``: the network
        took the post but the answer was lost.
        """
        s = self.settings
        with self._lock:
            attempt = self.attempts[key] = self.attempts.get(key, 0) + 1
        if s.fail_rate <= 0.0:
            return None
        u = unit(s.seed, self.account, key, attempt, "fault")
        if u >= s.fail_rate:
            return None
        # Given a failure, u / fail_rate is again uniform on [0, 1): reuse it to pick the kind.
        kind = _pick(s.fail_mix, u / s.fail_rate)
        accepted = (
            kind == "outcome_unknown"
            and unit(s.seed, self.account, key, attempt, "accepted") < s.unknown_accepted
        )
        return kind, accepted

    # -- publishing ------------------------------------------------------------------------

    def accept(
        self,
        key: str,
        *,
        post_key: str,
        content_type: str,
        now: datetime,
        dedupe: bool = True,
    ) -> SimPost:
        """Take a publish request; with ``dedupe``, a known key returns the post it made."""
        with self._lock:
            if self.ledger is None:
                return self._accept(key, post_key, content_type, now, dedupe)
            with self.ledger.locked():
                self._absorb(self.ledger.read_new())
                return self._accept(key, post_key, content_type, now, dedupe)

    def _accept(
        self, key: str, post_key: str, content_type: str, now: datetime, dedupe: bool
    ) -> SimPost:
        # ``c[k] = c.get(k, 0) + 1`` rather than ``c[k] += 1``: Counter's missing-key hook is
        # Python code, and this runs for every publish.
        self.requests[key] = self.requests.get(key, 0) + 1
        existing = self.posts.get(key)
        if dedupe and existing is not None:
            self._log(existing, duplicate=True)
            return existing
        n = self.published.get(key, 0)
        # Named after the plan's post, not the (random) idempotency key, so the same plan and
        # seed give the same audience response run after run.
        remote_id = "sim-" + token(self.settings.seed, self.account, post_key or key, n)
        post = SimPost(key, remote_id, post_key, content_type, now, self.followers_at(now))
        self._add(post)
        self._log(post, duplicate=False)
        return post

    def _add(self, post: SimPost) -> None:
        self.posts.setdefault(post.key, post)
        self.by_remote_id[post.remote_id] = post
        self.published[post.key] = self.published.get(post.key, 0) + 1

    def _log(self, post: SimPost, *, duplicate: bool) -> None:
        if self.ledger is None:
            return
        self.ledger.append(
            LedgerEntry(
                key=post.key,
                remote_id=post.remote_id,
                account=self.account,
                post_key=post.post_key,
                content_type=post.content_type,
                published_at=post.published_at.isoformat(),
                followers=post.followers,
                duplicate=duplicate,
            )
        )

    def _absorb(self, entries: list[LedgerEntry]) -> None:
        """Learn the posts other processes (or earlier runs) published for this account."""
        for e in entries:
            if e.account != self.account:
                continue
            self.requests[e.key] = self.requests.get(e.key, 0) + 1
            if e.duplicate or e.remote_id in self.by_remote_id:
                continue
            self._add(
                SimPost(e.key, e.remote_id, e.post_key, e.content_type, e.published, e.followers)
            )

    def refresh(self) -> None:
        """Read what other processes appended to the ledger (no-op without one)."""
        if self.ledger is not None:
            with self._lock:
                self._absorb(self.ledger.read_new())

    def lookup(self, key: str) -> SimPost | None:
        """The (first) post made with idempotency key ``key``, or None."""
        self.refresh()
        return self.posts.get(key)

    # -- engagement ------------------------------------------------------------------------

    def metrics(self, post: SimPost, now: datetime) -> Metrics:
        """The post's counters at ``now``: its final counts scaled by the saturation curve."""
        final = self._final(post)
        age = max(0.0, (now - post.published_at).total_seconds())
        share = -math.expm1(-age / self.settings.tau.total_seconds())  # 1 - exp(-age/tau)
        # Rounding (not flooring) keeps the counts unbiased and still never decreasing.
        e = {k: round(v * share) for k, v in final.engagements.items()}
        return Metrics(
            remote_id=post.remote_id,
            likes=e["likes"],
            comments=e["comments"],
            shares=e["shares"],
            saves=e["saves"],
            reach=round(final.reach * share),
            impressions=round(final.impressions * share),
            followers=self.followers_at(now),
        )

    def _final(self, post: SimPost) -> _Final:
        cached = self._finals.get(post.remote_id)
        if cached is None:
            cached = self._finals[post.remote_id] = self._draw_final(post)
        return cached

    def _draw_final(self, post: SimPost) -> _Final:
        s = self.settings
        rng = rng_for(s.seed, self.account, post.remote_id, "final")
        sigma = s.noise
        # Mean-preserving lognormal factors: E[exp(N(-s²/2, s))] = 1, so averages stay true.
        reach_factor = math.exp(rng.gauss(-sigma * sigma / 2, sigma))
        er_factor = math.exp(rng.gauss(-sigma * sigma / 2, sigma))
        reach = min(post.followers, round(post.followers * s.reach_ratio * reach_factor))
        rate = min(1.0, self.true_er(post.content_type, post.published_at) * er_factor)
        total = binomial(rng, reach, rate)
        engagements: dict[str, int] = {}
        left, mass = total, 1.0
        for name, share in _SPLIT:  # a multinomial split, one binomial at a time
            n = binomial(rng, left, min(1.0, share / mass)) if mass > 0 else 0
            engagements[name] = n
            left -= n
            mass -= share
        engagements["likes"] += left  # rounding leftovers
        impressions = reach + binomial(rng, reach, 0.35)  # some people see it twice
        return _Final(reach=reach, impressions=impressions, engagements=engagements)


def _pick(weights: Mapping[str, float], v: float) -> str:
    """The kind whose slice of [0, 1) holds ``v`` (weights sum to 1)."""
    kinds = list(weights)
    for kind in kinds[:-1]:
        if v < weights[kind]:
            return kind
        v -= weights[kind]
    return kinds[-1]  # also absorbs floating-point rounding


# --------------------------------------------------------------------------- registry

_worlds: dict[tuple[str, str], SimWorld] = {}
_registry_lock = threading.Lock()


def _fingerprint(options: Mapping[str, Any]) -> str:
    relevant = {k: v for k, v in options.items() if k != "clock"}
    return json.dumps(relevant, sort_keys=True, default=str)


def world_for(account: str, options: Mapping[str, Any], now: datetime) -> SimWorld:
    """The process's world for ``account`` with these options, made on first use.

    Worlds live for the process (like a real network outlives a daemon's calls); accounts with
    different options get different worlds. ``now`` becomes the world's day 0 unless the
    ``start`` option fixes it.
    """
    key = (account, _fingerprint(options))
    with _registry_lock:
        world = _worlds.get(key)
        if world is None:
            settings = SimSettings.from_options(options)
            world = _worlds[key] = SimWorld(account, settings, now.astimezone(UTC))
        return world


def reset_worlds() -> None:
    """Forget every world (tests start from an empty network)."""
    with _registry_lock:
        _worlds.clear()
