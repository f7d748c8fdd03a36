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
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import structlog

from scheduler import media, observability
from scheduler.adapter import (
    Account,
    Adapter,
    OutgoingPost,
    Published,
    PublishError,
    RateLimitPolicy,
)
from scheduler.checkpoints import NotesUnavailable
from scheduler.config import AccountConfig, Config, Policies
from scheduler.daemon.limits import Limits, Slots
from scheduler.daemon.store import Claimed, Result
from scheduler.db.models import Outcome, PostState
from scheduler.fetch import Resolver
from scheduler.logging import redact
from scheduler.media import MediaPolicy
from scheduler.outgoing import account_view, from_row, has_transforms, prepare
from scheduler.timeutil import Clock

log = structlog.get_logger("scheduler.dispatch")
T = TypeVar("T")

#: A rate-limit wait longer than this gives the post back instead of holding its lease.
MAX_HOLD = timedelta(seconds=5)
#: How long a ``prepare_post`` transform may take.
PREPARE_TIMEOUT_S = 10.0


def backoff(policies: Policies, attempt: int, rng: random.Random) -> timedelta:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2^(n-1))]."""
    ceiling = min(policies.backoff_max, policies.backoff_base * (2 ** max(0, attempt - 1)))
    return timedelta(seconds=rng.uniform(0, ceiling.total_seconds()))


def _cost(
    adapter: Adapter, post: OutgoingPost, view: Account, policy: RateLimitPolicy
) -> Mapping[str, int]:
    """The requests a publish makes per rate window; a plugin failing to say costs nothing
    extra (the network's own answers still hold the budget back)."""
    if not policy.windows:
        return {}
    try:
        cost = adapter.publish_cost(post, view)
    except Exception as exc:
        log.warning("publish_cost_failed", platform=adapter.platform, error=repr(exc))
        return {}
    return cost if isinstance(cost, Mapping) else {}


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
    rng: random.Random
    publish_timeout: float = 60.0
    #: The plan file a post came from (an evergreen repeat: its original's), for its media
    #: root; read only for posts with media.
    plan_file_of: Callable[[int], str | None] = lambda _post_id: None
    #: How media URLs' hosts are resolved (None: the system resolver).
    media_resolver: Resolver | None = None

    def _result(self, c: Claimed, outcome: Outcome, state: PostState, **kw: object) -> Result:
        return Result(c, outcome, state, self.clock.now(), **kw)  # type: ignore[arg-type]

    def _fail(self, c: Claimed, message: str) -> Result:
        log.error("plugin_failed", post=c.row.key, account=c.account, error=message)
        return self._result(c, Outcome.PLUGIN_ERROR, PostState.FAILED, message=_text(message))

    async def attempt(
        self,
        c: Claimed,
        before_send: Callable[[Claimed], Awaitable[bool]] | None = None,
        may_send: Callable[[Claimed], bool] | None = None,
    ) -> Result:
        """Run one attempt for a claimed post; never raises (except on cancellation).

        ``may_send`` is asked right before the network call (after every wait): False means
        the post must not go out now (the daemon is stopping, or its lease may have lapsed)
        and it is handed back untried. ``before_send`` is awaited right before the call (the
        worker records there, durably, that the request may leave); False hands the post
        back untried too. From then on, an interrupted attempt may have reached the network.
        """
        account = self.config.accounts.get(c.account)
        if account is None:
            return self._handback(c, f"account {c.account!r} is not in this daemon's config")
        adapter = self.adapters.get(account.platform)
        if adapter is None:
            return self._result(
                c,
                Outcome.PLUGIN_ERROR,
                PostState.FAILED,
                message=f"no plugin provides platform {account.platform!r}",
            )
        view = account_view(account)
        post: Any = from_row(c.row, c.account)
        if has_transforms():  # the common case has none: no task to isolate them in
            done, post = await call_plugin(prepare(post, view), PREPARE_TIMEOUT_S)
            if not done:
                return self._fail(c, f"prepare_post did not finish within {PREPARE_TIMEOUT_S:g} s")
            if isinstance(post, BaseException):
                return self._fail(c, f"prepare_post failed: {type(post).__name__}: {post}")

        policy = adapter.capabilities_for(view).rate_limit
        budget = self.limits.budget(c.account, policy)
        cost = _cost(adapter, post, view, policy)
        # Budget checks happen under the account's semaphore, and again after every wait, so
        # posts queued behind each other never all pass one check, and a 429 that arrives
        # meanwhile holds back everyone behind it. The slot is taken before anything is
        # awaited, so an account's posts go out in the order they were started (due order).
        async with self.limits.account_semaphore(c.account, policy):
            media_policy: MediaPolicy | None = None
            if post.media:
                # Checked again here, not only at import: the file may have changed since,
                # and nothing is sent when one is refused.
                media_policy = await asyncio.to_thread(self._media_policy, c.post_id)
                caps = adapter.capabilities_for(view)
                problem = await media.check_post(post.media, caps, media_policy)
                if problem is not None:
                    log.warning("media_refused", post=c.row.key, account=c.account, error=problem)
                    return self._result(
                        c, Outcome.REJECTED, PostState.FAILED, message=_text(problem)
                    )
            while True:
                if may_send is not None and not may_send(c):
                    return self._handback(c, "not sent: the daemon is stopping or lost its lease")
                wait = budget.delay(
                    self.clock.now(),
                    adapter.rate_limit_status.get(c.account),
                    cost=cost,
                    windows=adapter.rate_limit_windows.get(c.account),
                )
                if wait <= timedelta(0):
                    break
                if wait > MAX_HOLD:
                    until = self.clock.now() + wait
                    return self._result(
                        c,
                        Outcome.RATE_LIMITED,
                        PostState.RETRY_WAIT,
                        next_attempt_at=until,
                        retry_at=until,
                        counts=False,
                        message=f"waiting for {account.platform}'s rate limit "
                        f"(until {until:%H:%M:%S} UTC)",
                    )
                observability.record_rate_limit_wait(account, wait.total_seconds())
                await asyncio.sleep(wait.total_seconds())
            budget.record(self.clock.now(), cost)
            if before_send is not None and not await before_send(c):
                return self._handback(c, "not sent: the request could not be recorded first")
            started = time.perf_counter()
            call = adapter.publish(post, view, c.row.idempotency_key)
            if media_policy is not None:
                call = media.confined(media_policy, call)
            done, published = await call_plugin(call, self.publish_timeout)
        latency = (time.perf_counter() - started) * 1000
        return self._outcome(c, account, adapter, done, published, latency)

    def _outcome(
        self,
        c: Claimed,
        account: AccountConfig,
        adapter: Adapter,
        done: bool,
        published: object,
        latency: float,
    ) -> Result:
        """What a publish call's end means for the post (the call's result, or what it
        raised, or ``done`` False: no answer within the timeout)."""
        if not done:
            return self._unknown(
                c,
                account,
                adapter,
                f"the {account.platform} plugin did not answer within "
                f"{self.publish_timeout:g} s; the post may or may not be on the network",
                latency,
            )
        if isinstance(published, PublishError):
            return self.classify(c, account, adapter, published, latency)
        if isinstance(published, NotesUnavailable):
            # Its notes could not be read or written (a database outage) and the plugin did
            # not say whether a request had left: settled by lookup, never sent blindly.
            return self._unknown(
                c,
                account,
                adapter,
                f"the {account.platform} plugin could not use its checkpoint notes "
                f"({published.strerror}); the post may or may not be on the network",
                latency,
            )
        if isinstance(published, BaseException):
            return self._fail(
                c, f"the {account.platform} plugin raised {type(published).__name__}: {published}"
            )
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

    def _media_policy(self, post_id: int) -> MediaPolicy:
        return media.policy_for(self.config.media, self.plan_file_of(post_id), self.media_resolver)

    def launch(
        self,
        claims: Sequence[Claimed],
        may_send: Callable[[Claimed], bool] | None = None,
        *,
        start: bool = True,
    ) -> tuple[list[Launched], list[Claimed]]:
        """Start at once the publish calls of the posts nothing holds back.

        A post starts here when it has no media, no ``prepare_post`` transform is installed,
        its account has a free concurrency slot, its rate budget lets a request go now and
        ``may_send`` agrees:
        exactly the posts ``attempt`` would send without waiting. Each plugin call still runs
        as a task of its own, isolated as ``call_plugin`` isolates it, but no attempt task
        wraps it: the call's end settles the post's ``Launched`` future with its ``Result``,
        and the batch shares one timer for the publish timeout. Cancelling a ``Launched``
        abandons its call (the plugin task is cancelled, never awaited).

        Returns the launched posts (their requests may reach the network from now on) and the
        others, which need ``attempt`` (it waits, hands back or explains). With ``start``
        False the calls hold their slots but are not made yet: ``begin`` makes them, and
        ``Launched.hand_back`` gives up on one before it is made.
        """
        if not claims or has_transforms():
            return [], list(claims)
        loop = asyncio.get_running_loop()
        now = self.clock.now()
        launched: list[Launched] = []
        rest: list[Claimed] = []
        # What ``attempt`` asks per post, asked once per account of the batch: the same
        # answers (nothing here awaits, so nothing changes them in between).
        known: dict[str, _AccountStep | None] = {}
        for c in claims:
            step = known.get(c.account, _UNKNOWN)
            if step is _UNKNOWN:
                step = known[c.account] = self._account_step(c.account)
            # Media are checked (and their plugin call confined) by ``attempt``.
            if step is None or c.row.media:
                rest.append(c)
                continue
            account, adapter, view, policy = step
            slots = self.limits.account_semaphore(c.account, policy)
            if not slots.try_acquire():
                rest.append(c)
                continue
            try:
                budget = self.limits.budget(c.account, policy)
                post = from_row(c.row, c.account)
                cost = _cost(adapter, post, view, policy)
                if budget.delay(
                    now,
                    adapter.rate_limit_status.get(c.account),
                    cost=cost,
                    windows=adapter.rate_limit_windows.get(c.account),
                ) > _NO_WAIT or (may_send is not None and not may_send(c)):
                    slots.release()
                    rest.append(c)
                    continue
            except Exception:  # ``attempt`` runs the same steps and reports what fails
                slots.release()
                rest.append(c)
                continue
            budget.record(now, cost)
            launched.append(Launched(self, c, account, adapter, slots, post, view, loop=loop))
        if start:
            self.begin(launched)
        return launched, rest

    def _account_step(self, name: str) -> _AccountStep | None:
        """The account's config, adapter, view and rate-limit policy (None: the post needs
        ``attempt``, which explains what is missing or what the plugin raised)."""
        account = self.config.accounts.get(name)
        adapter = self.adapters.get(account.platform) if account is not None else None
        if account is None or adapter is None:
            return None
        view = account_view(account)
        try:
            policy = adapter.capabilities_for(view).rate_limit
        except Exception:
            return None
        return account, adapter, view, policy

    def begin(self, calls: Sequence[Launched]) -> None:
        """Make the publish calls of posts ``launch`` took (one timer for the batch)."""
        if not calls:
            return
        loop = asyncio.get_running_loop()
        batch = _Batch()
        started = time.perf_counter()
        for call in calls:
            call.batch, call.started = batch, started
            call.task = loop.create_task(_settling_call(call))
        batch.calls = list(calls)
        batch.pending = len(calls)
        batch.timer = loop.call_later(self.publish_timeout, batch.overdue)

    def _handback(self, c: Claimed, reason: str) -> Result:
        """The post was not sent: it is due again at once, the attempt not counted."""
        return self._result(
            c, Outcome.ABANDONED, PostState.RETRY_WAIT, counts=False, message=reason
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
                policy = adapter.capabilities_for(account_view(account)).rate_limit
                self.limits.budget(c.account, policy).block(until)
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
                    # An earlier attempt may have reached the network (an unknown outcome
                    # resent under its key): the post may exist, so settle it by lookup.
                    final = PostState.UNCONFIRMED if c.had_unknown else PostState.FAILED
                    return self._result(c, Outcome.TRANSIENT, final, **common)
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
        caps = adapter.capabilities_for(account_view(account))
        now = self.clock.now()
        common = {"message": message, "http_status": http_status, "latency_ms": latency}
        if caps.idempotent and c.attempt_number < account.policies.max_attempts:
            first = c.first_sent_at or now
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


async def call_plugin(call: Awaitable[T], timeout: float) -> tuple[bool, T | BaseException]:
    """Run a plugin coroutine as its own task, at most ``timeout`` seconds.

    Returns (finished, result or exception). A plugin that overruns is cancelled and left
    behind — never awaited, so one that swallows the cancellation cannot hang the daemon — and
    anything it raises, even ``SystemExit``, is returned, not propagated. Only the caller's own
    cancellation propagates.
    """
    # What ``asyncio.wait({task}, timeout=...)`` does, without its per-call sets and
    # wrappers (this runs once or twice for every post).
    loop = asyncio.get_running_loop()
    task = loop.create_task(_contained(call))
    waiter = loop.create_future()

    def wake(_: object) -> None:
        if not waiter.done():
            waiter.set_result(None)

    task.add_done_callback(wake)
    timer = loop.call_later(timeout, wake, None)
    try:
        await waiter
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        timer.cancel()
        task.remove_done_callback(wake)
    if not task.done():
        task.cancel()
        task.add_done_callback(_consume)
        return False, TimeoutError()
    if task.cancelled():
        return True, asyncio.CancelledError("the plugin cancelled itself")
    result = task.result()
    return True, result.exc if isinstance(result, _Raised) else result


@dataclass
class _Raised:
    exc: BaseException


async def _contained(call: Awaitable[T]) -> T | _Raised:
    # asyncio re-raises SystemExit and KeyboardInterrupt out of the event loop itself; caught
    # here, inside the task, a plugin calling sys.exit() fails only its own post.
    try:
        return await call
    except asyncio.CancelledError:
        raise
    except BaseException as exc:
        return _Raised(exc)


def _consume(task: asyncio.Future[Any]) -> None:
    # Retrieve the abandoned task's outcome so asyncio does not log it as never retrieved.
    if not task.cancelled():
        task.exception()


async def _settling_call(call: Launched) -> None:
    """``call``'s publish call, isolated as ``_contained`` isolates a plugin coroutine (the
    call itself inside: a plugin method that raises before returning an awaitable, or returns
    none, fails its post too, not the daemon). Its end settles ``call`` here, in the task,
    rather than in a done callback the event loop would schedule for every post."""
    try:
        value: object = await call.adapter.publish(
            call.post, call.view, call.claimed.row.idempotency_key
        )
    except asyncio.CancelledError:
        # Cancelled by ``Launched`` (timed out, given up: already settled), or by the
        # plugin itself.
        if not call.done():
            call.landed(asyncio.CancelledError("the plugin cancelled itself"))
        raise
    except BaseException as exc:
        value = exc
    if not call.done():  # not timed out or given up meanwhile
        call.landed(value)


_NO_WAIT = timedelta(0)
_AccountStep = tuple[AccountConfig, Adapter, Account, RateLimitPolicy]
_UNKNOWN: Any = object()


class _Batch:
    """The posts one ``launch`` started: one timer holds them all to the publish timeout."""

    __slots__ = ("calls", "pending", "timer")

    def __init__(self) -> None:
        self.calls: list[Launched] = []
        self.pending = 0
        self.timer: asyncio.TimerHandle | None = None

    def one_done(self) -> None:
        self.pending -= 1
        if self.pending == 0 and self.timer is not None:
            self.timer.cancel()  # drops the references to the batch's calls
            self.timer = None
            self.calls = []

    def overdue(self) -> None:
        for call in self.calls:
            if not call.done():
                call.timed_out()
        self.calls = []


class Launched(asyncio.Future[Result]):
    """A publish call ``Dispatcher.launch`` started: resolves to the post's ``Result``."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        claimed: Claimed,
        account: AccountConfig,
        adapter: Adapter,
        slots: Slots,
        post: OutgoingPost,
        view: Account,
        *,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        super().__init__(loop=loop)
        self.dispatcher = dispatcher
        self.claimed = claimed
        self.account = account
        self.adapter = adapter
        self.slots = slots
        self.post = post
        self.view = view
        self.batch: _Batch | None = None
        self.started = 0.0
        self.task: asyncio.Task[Any] | None = None
        #: Called, at once, when the call is settled (a result, a crash, or cancelled):
        #: what a done callback would do, without the event loop scheduling one per post.
        self.on_done: Callable[[Launched], None] | None = None

    def hand_back(self, reason: str) -> None:
        """Give up on the call before it is made: the post is due again, not counted."""
        if self.done() or self.task is not None:
            return
        self.slots.release()
        self.set_result(self.dispatcher._handback(self.claimed, reason))
        self._notify()

    def _notify(self) -> None:
        if self.on_done is not None:
            self.on_done(self)

    def _settle(self, done: bool, published: object) -> None:
        self.slots.release()
        if self.batch is not None:
            self.batch.one_done()
        latency = (time.perf_counter() - self.started) * 1000
        try:
            result = self.dispatcher._outcome(
                self.claimed, self.account, self.adapter, done, published, latency
            )
        except Exception as exc:  # a bug in the dispatcher: the worker records the crash
            self.set_exception(exc)
        else:
            self.set_result(result)
        self._notify()

    def landed(self, value: object) -> None:
        """The plugin call ended with ``value`` (what it returned or raised)."""
        if not self.done():  # timed out or cancelled meanwhile: already settled
            self._settle(True, value)

    def timed_out(self) -> None:
        """No answer within the publish timeout: abandon the call, never await it."""
        if self.task is not None:
            self.task.cancel()
        self._settle(False, None)

    def cancel(self, msg: Any | None = None) -> bool:
        if not super().cancel(msg):
            return False
        # The worker gave up on the post (shutdown): abandon the call as a timeout would.
        if self.task is not None:
            self.task.cancel()
        self.slots.release()
        if self.batch is not None:
            self.batch.one_done()
        self._notify()
        return True


class Outcomes:
    """Results waiting to be written: ``asyncio.Queue``'s ``put_nowait`` and ``join`` as the
    worker uses them, but the writer takes everything waiting at once (``take``) and marks
    it written at once (``done``), where a queue's ``get_nowait`` and ``task_done`` ran for
    every post."""

    def __init__(self) -> None:
        self._items: list[Result] = []
        self._unfinished = 0
        self._waiter: asyncio.Future[None] | None = None
        self._finished = asyncio.Event()
        self._finished.set()

    def put_nowait(self, item: Result) -> None:
        self._items.append(item)
        if self._unfinished == 0:
            self._finished.clear()
        self._unfinished += 1
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def take(self) -> list[Result]:
        """Everything waiting (at least one result; waits for one)."""
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        items, self._items = self._items, []
        return items

    def done(self, count: int) -> None:
        """``count`` results taken are written (or given up on)."""
        self._unfinished = max(0, self._unfinished - count)
        if self._unfinished == 0:
            self._finished.set()

    async def join(self) -> None:
        """Wait until every result put is done."""
        if self._unfinished:
            await self._finished.wait()


async def safe_lookup(
    adapter: Adapter, post: OutgoingPost, view: Account, timeout: float
) -> Published | str | None:
    """``adapter.lookup`` isolated: Published, None (certainly absent), or why it can't tell."""
    done, found = await call_plugin(adapter.lookup(post, view), timeout)
    if not done:
        return f"lookup did not answer within {timeout:g} s"
    if isinstance(found, PublishError):
        return _text(found.message or type(found).__name__)
    if isinstance(found, BaseException):
        return _text(f"lookup raised {type(found).__name__}: {found}")
    if found is None or (isinstance(found, Published) and found.remote_id):
        return found
    return f"lookup returned {type(found).__name__}"
