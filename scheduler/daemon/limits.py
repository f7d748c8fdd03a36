"""Keeping within what each network allows: concurrency caps and request-rate budgets.

Two sources feed the limits: the adapter's declared ``RateLimitPolicy`` (a sliding window of
N requests per period and a per-account concurrency cap) and what the network said lately
(``Adapter.rate_limit_status``: remaining requests and the reset time from its headers, or the
retry time of a 429). The dispatcher asks ``delay()`` before each request and waits or gives
the post back rather than hammering.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from scheduler.adapter import RateLimitPolicy, RateLimitStatus, RateWindow

_NONE: Mapping[str, int] = {}


@dataclass
class Budget:
    """One account's request budget: a sliding window plus the network's own word."""

    policy: RateLimitPolicy
    sent: deque[datetime] = field(default_factory=deque)
    blocked_until: datetime | None = None
    #: Per window of ``policy.windows``: (when, how many requests) of the recent publishes.
    window_sent: dict[str, deque[tuple[datetime, int]]] = field(default_factory=dict)

    def delay(
        self,
        now: datetime,
        status: RateLimitStatus | None = None,
        *,
        cost: Mapping[str, int] = _NONE,
        windows: Mapping[str, RateLimitStatus] | None = None,
    ) -> timedelta:
        """How long to wait before the next publish may go (zero: now). ``cost``: its
        requests in each of ``policy.windows``; ``windows``: what the network said of them."""
        waits = [timedelta(0)]
        for extra in self.policy.windows:
            need = min(cost.get(extra.name, 0), extra.requests)
            if need > 0:
                said = (windows or {}).get(extra.name)
                waits.append(self._window_wait(extra, need, now, said))
        if self.blocked_until and self.blocked_until > now:
            waits.append(self.blocked_until - now)
        window = self.policy.per
        while self.sent and now - self.sent[0] >= window:
            self.sent.popleft()
        if len(self.sent) >= self.policy.requests:
            waits.append(self.sent[0] + window - now)
        if (
            status is not None
            and status.remaining is not None
            and status.remaining <= 0
            and status.reset_at is not None
            and status.reset_at > now
        ):
            waits.append(status.reset_at - now)
        return max(waits)

    def _window_wait(
        self, window: RateWindow, need: int, now: datetime, said: RateLimitStatus | None
    ) -> timedelta:
        sent = self.window_sent.setdefault(window.name, deque())
        while sent and now - sent[0][0] >= window.per:
            sent.popleft()
        wait = timedelta(0)
        used = sum(n for _, n in sent)
        if used + need > window.requests:
            # Until enough of the oldest publishes leave the window.
            for at, n in sent:
                used -= n
                if used + need <= window.requests:
                    wait = at + window.per - now
                    break
        if (
            said is not None
            and said.remaining is not None
            and said.remaining < need
            and said.reset_at is not None
            and said.reset_at > now
        ):
            wait = max(wait, said.reset_at - now)
        return wait

    def record(self, now: datetime, cost: Mapping[str, int] = _NONE) -> None:
        self.sent.append(now)
        for window in self.policy.windows:
            count = cost.get(window.name, 0)
            if count > 0:
                self.window_sent.setdefault(window.name, deque()).append((now, count))

    def block(self, until: datetime) -> None:
        """The network said to wait until ``until`` (a 429 with a reset time)."""
        if self.blocked_until is None or until > self.blocked_until:
            self.blocked_until = until


class Slots:
    """A semaphore that can also be taken without waiting (``try_acquire``).

    Waiters are served in order: a freed slot goes straight to the first waiter, and
    ``try_acquire`` fails while anyone waits, so a post that finds a free slot at once never
    overtakes one that has been waiting for it.
    """

    def __init__(self, value: int) -> None:
        self.size = value
        self.free = value
        self._waiters: deque[asyncio.Future[None]] = deque()

    def resize(self, value: int) -> None:
        """Hold at most ``value`` from now on; slots held above it are not taken back, they
        just are not handed out again when released."""
        self.free += value - self.size
        self.size = value
        while self.free > 0 and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.free -= 1
                waiter.set_result(None)

    def try_acquire(self) -> bool:
        if self.free > 0 and not self._waiters:
            self.free -= 1
            return True
        return False

    async def acquire(self) -> bool:
        if self.try_acquire():
            return True
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed a slot while being cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):  # a release may have dropped it already
                    self._waiters.remove(waiter)
            raise
        return True

    def release(self) -> None:
        # Above the size (it shrank while the slots were held): the slot is not handed on.
        while self.free >= 0 and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot changes hands, ``free`` stays as it is
                return
        self.free += 1

    def locked(self) -> bool:
        return self.free == 0 or bool(self._waiters)

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self.release()


class Limits:
    """Concurrency slots and budgets, per account, for this daemon's share of the network.

    Daemons that work on one database divide each account's declared limits among them
    (``share``): with N daemons alive, each may send a 1/N-th of the declared requests per
    period and hold a 1/N-th of the concurrent requests (at least one of each), so that all of
    them together stay within what the plugin declared.
    """

    def __init__(self, total: int) -> None:
        self.total = total
        self.peers = 1
        self._account_sem: dict[str, tuple[RateLimitPolicy, Slots]] = {}
        self._budgets: dict[str, Budget] = {}
        #: Waits the network asked for (``block``) on accounts without a budget yet.
        self._blocked: dict[str, datetime] = {}

    def share(self, peers: int) -> None:
        """``peers`` daemons (this one included) are alive: take this one's share."""
        self.peers = max(1, peers)

    def _shared(self, policy: RateLimitPolicy) -> RateLimitPolicy:
        if self.peers == 1:
            return policy
        return replace(
            policy,
            requests=max(1, policy.requests // self.peers),
            concurrency=max(1, policy.concurrency // self.peers),
            windows=tuple(
                replace(w, requests=max(1, w.requests // self.peers)) for w in policy.windows
            ),
        )

    def slots(self, policy: RateLimitPolicy) -> int:
        """How many requests of an account with ``policy`` this daemon may have in flight."""
        return max(1, self._shared(policy).concurrency)

    def account_semaphore(self, account: str, policy: RateLimitPolicy) -> Slots:
        limit = self.slots(policy)
        found = self._account_sem.get(account)
        if found is None:
            sem = Slots(limit)
            self._account_sem[account] = (policy, sem)
            return sem
        declared, sem = found
        if declared != policy or sem.size != limit:
            sem.resize(limit)
            self._account_sem[account] = (policy, sem)
        return sem

    def block(self, account: str, until: datetime) -> None:
        """The network told ``account`` to wait until ``until`` (a 429 answered to this
        daemon or, read from the database, to another one)."""
        budget = self._budgets.get(account)
        if budget is not None:
            budget.block(until)
        elif account not in self._blocked or until > self._blocked[account]:
            self._blocked[account] = until

    def budget(self, account: str, policy: RateLimitPolicy) -> Budget:
        shared = self._shared(policy)
        budget = self._budgets.get(account)
        if budget is None:
            budget = self._budgets[account] = Budget(
                shared, blocked_until=self._blocked.pop(account, None)
            )
        elif budget.policy != shared:
            budget.policy = shared  # what was sent lately still counts
        return budget
