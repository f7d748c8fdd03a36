"""The daemon's work, step by step: claim, publish, record, rescue, settle.

``Worker`` holds no schedule of its own: the service (``smm run``) drives it from APScheduler
jobs and its dispatch loop, a simulation drives it in virtual time. Database steps run in a
thread so that network calls in flight never wait on a database lock: on SQLite one thread
of the worker's own takes them all in turn (the database has one write lock; steps queued in
one thread hand it on at once, where steps in several threads on several connections would
poll for it with SQLite's busy handler), on PostgreSQL asyncio's pool runs them side by side.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
import structlog
from sqlalchemy import Engine, func, select

from scheduler import __version__, checkpoints, comments, observability, plugins
from scheduler.accounts import sync_accounts
from scheduler.adapter import Adapter, Published, PublishError, Transient
from scheduler.config import Config
from scheduler.daemon import store
from scheduler.daemon.dispatch import Dispatcher, Launched, Outcomes, safe_lookup
from scheduler.daemon.limits import Limits
from scheduler.daemon.store import Claimed, Result
from scheduler.daemon.weather import (
    Started,
    Unavailable,
    Weather,
    briefly,
    patiently,
    start,
    unreachable,
)
from scheduler.db.engine import immediate
from scheduler.db.models import Post, PostState
from scheduler.logging import log_each
from scheduler.outgoing import account_view, from_row
from scheduler.timeutil import Clock, SystemClock

log_name = "scheduler.worker"
log = structlog.get_logger(log_name)
#: ``[daemon] concurrency = "auto"``: the most publishes in flight, whatever the networks take.
AUTO_MAX = 1000
#: A request leaves only while the lease holds this much longer (a quarter of a short lease).
_SEND_MARGIN = timedelta(seconds=5)
#: Lookups a rescue makes at once, and how long each may take.
RESCUE_LOOKUPS = 8
RESCUE_LOOKUP_TIMEOUT_S = 15.0
#: How long a rescue asks a network again whose lookup failed before deciding without it.
RESCUE_LOOKUP_PATIENCE_S = 60.0
posts_t = Post.__table__  # type: ignore[attr-defined]


def new_daemon_id() -> str:
    """``host:pid:random``: unique per process, readable in ``smm status``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def make_adapters(config: Config, client: httpx.AsyncClient) -> dict[str, Adapter]:
    """One adapter per platform the config uses, from whichever plugin provides it."""
    known = plugins.platforms()
    adapters: dict[str, Adapter] = {}
    for platform in sorted({a.platform for a in config.accounts.values()}):
        info = known.get(platform)
        if info is None:
            log.error("platform_missing", platform=platform, installed=sorted(known))
            continue
        try:
            adapters[platform] = info.adapter(client)
        except Exception as exc:  # a plugin that cannot even start must not stop the others
            log.error("adapter_start_failed", platform=platform, error=repr(exc))
    return adapters


@dataclass
class InFlight:
    claimed: Claimed
    #: The post's attempt task, or the call ``Dispatcher.launch`` started (both resolve to the
    #: post's Result; cancelling either gives up on the post, never waiting for a plugin).
    task: asyncio.Future[Result]
    sent: bool = False


@dataclass
class Worker:
    """Claims due posts and publishes them; every step is safe to interrupt."""

    engine: Engine
    config: Config
    clock: Clock = field(default_factory=SystemClock)
    owner: str = field(default_factory=new_daemon_id)
    adapters: dict[str, Adapter] | None = None
    rng: random.Random = field(default_factory=random.Random)
    client: httpx.AsyncClient | None = None

    def __post_init__(self) -> None:
        self.limits = Limits(self.config.daemon.concurrency)
        #: ``[daemon] concurrency = "auto"``: what the accounts' networks take at once.
        self._auto_room = 1
        self.inflight: dict[int, InFlight] = {}
        self._results = Outcomes()
        self._writer: asyncio.Task[None] | None = None
        self._owns_client = False
        #: The run's summary. ``processed``: every post a claim took, to publish or to mark
        #: missed (``claimed`` counts the former, ``missed`` the latter).
        self.stats: dict[str, int] = {
            "processed": 0,
            "claimed": 0,
            "published": 0,
            "failed": 0,
            "unconfirmed": 0,
            "missed": 0,
        }
        self._account_ids: dict[str, int] = {}
        self._slot_free = asyncio.Event()
        #: post id -> until when our lease certainly holds (claim or last renewal).
        self._lease_until: dict[int, datetime] = {}
        self.stopping = False
        #: Whether the database answers; steps wait out its outages.
        self.weather = Weather()
        #: Set when the service is asked to stop: steps stop waiting for the database.
        self.halt = asyncio.Event()
        #: Results not written yet, by post id (their leases are renewed with the in-flight
        #: ones; they count against the concurrency, which bounds them).
        self.unwritten: dict[int, Result] = {}
        #: First comments being posted (kept referenced until they finish).
        self._side_tasks: set[asyncio.Task[None]] = set()
        #: Set at the shutdown deadline: writes stop waiting for the database.
        self._abandon = False
        #: The connections claims and outcome writes go through (one thread at a time uses
        #: each: claims come one after another, and so do writes). SQLite: one for every
        #: step, as they all run in the one database thread, in turn.
        self._claims = store.Link(self.engine)
        sqlite = self.engine.dialect.name == "sqlite"
        self._writes = self._claims if sqlite else store.Link(self.engine)
        #: Send records: on PostgreSQL a connection of their own, as a claim made ahead
        #: runs beside them (``claim_and_dispatch``).
        self._marks = self._claims if sqlite else store.Link(self.engine)
        #: The claim made ahead, and the room it holds until it is taken.
        self._next: asyncio.Future[tuple[list[Claimed], list[Any], datetime, int]] | None = None
        self._reserved = 0
        #: SQLite: the one thread every database step of this worker runs in (see above).
        self._db_thread: ThreadPoolExecutor | None = None
        #: Open attempts of expired leases whose network's lookup failed -> since when
        #: (``time.monotonic()``): the rescue asks again for a while (``_ask_again``).
        self._lookups_failed: dict[int, float] = {}
        #: Heartbeats run in threads; see ``_beat``.
        self._beat_lock = threading.Lock()
        self._beat_stopped = False

    @property
    def _executor(self) -> ThreadPoolExecutor | None:
        """Where database steps run: the worker's own thread on SQLite, else None (the
        default pool)."""
        if self._db_thread is None and self.engine.dialect.name == "sqlite":
            self._db_thread = ThreadPoolExecutor(1, thread_name_prefix="smm-sqlite")
        return self._db_thread

    # ------------------------------------------------------------------ life cycle

    async def start(self, *, wait: float | None = None) -> None:
        """Create the adapters and record the accounts; an unreachable database is waited for
        (``wait`` seconds at most, None: until it answers or the service is stopped)."""
        # Adapters note their progress in this database, so any daemon on it resumes a post
        # where another one stopped (scheduler.checkpoints).
        checkpoints.keep_in(self.engine)
        if self.adapters is None:
            if self.client is None:
                self.client = httpx.AsyncClient(
                    timeout=httpx.Timeout(30.0, connect=10.0),
                    limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
                    headers={"User-Agent": f"smm-scheduler/{__version__}"},
                )
                self._owns_client = True
            self.adapters = make_adapters(self.config, self.client)
        self._size_room()
        deadline = None if wait is None else time.monotonic() + wait
        await self.sync_accounts(deadline=deadline)
        self.dispatcher = Dispatcher(
            config=self.config,
            adapters=self.adapters,
            limits=self.limits,
            clock=self.clock,
            plan_file_of=self._plan_file_of,
            rng=self.rng,
            publish_timeout=self.config.daemon.publish_timeout.total_seconds(),
        )
        self._writer = asyncio.create_task(self._write_loop(), name="results-writer")

    async def sync_accounts(self, *, deadline: float | None = None) -> None:
        def sync() -> dict[str, int]:
            with immediate(self.engine) as conn:
                return sync_accounts(conn, self.config, self.clock.now())

        self._account_ids = await self.db("accounts", sync, deadline=deadline)

    async def db(self, step: str, fn: Any, *args: Any, deadline: float | None = None) -> Any:
        """``fn(*args)`` in a thread, waiting out database outages until the service stops
        (then ``Unavailable``); a bug raises at once."""
        return await patiently(
            self.weather,
            step,
            fn,
            *args,
            give_up=self.halt.is_set,
            deadline=deadline,
            wake=self.halt,
            executor=self._executor,
        )

    async def reload(self, config: Config) -> None:
        """Take a new config (SIGHUP): new accounts are recorded and their posts taken,
        adapters for new platforms are created on the fly."""
        self.config = config
        self.dispatcher.config = config
        if self.client is not None and self.adapters is not None:
            for platform, adapter in make_adapters(config, self.client).items():
                self.adapters.setdefault(platform, adapter)
        self._size_room()
        await self.sync_accounts()

    async def close(self) -> None:
        if self._next is not None:  # not taken, nor given back by ``stop``
            self._next.cancel()
            self._next = None
        if self._writer is not None:
            if not self._abandon:
                await self._results.join()
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
            self._writer = None
        if self._db_thread is not None:
            # Closed in the thread that uses it, after any step queued there. A step still
            # running (a SQLite file locked by another process) is not waited for: its
            # outcome no longer matters, and a claim it commits is rescued.
            self._db_thread.submit(self._claims.close)
            self._db_thread.shutdown(wait=False)
            self._db_thread = None
        else:
            self._claims.close()
            self._writes.close()
            self._marks.close()
        if self._owns_client and self.client is not None:
            await self.client.aclose()

    # ------------------------------------------------------------------ claiming

    def _grace(self) -> tuple[dict[int, Any], Any]:
        grace = {
            self._account_ids[name]: acc.policies.misfire_grace
            for name, acc in self.config.accounts.items()
            if name in self._account_ids
        }
        return grace, self.config.policies.misfire_grace

    def _known_accounts(self) -> list[int]:
        """Ids of the accounts in this daemon's config: the only posts it takes."""
        return [self._account_ids[n] for n in self.config.accounts if n in self._account_ids]

    def may_send(self, c: Claimed, now: datetime | None = None) -> bool:
        """True while the post may go out: not stopping, and our lease surely still holds
        (at ``now``, the clock's time when not given)."""
        if self.stopping:
            return False
        until = self._lease_until.get(c.post_id)
        if until is None:
            return False
        lease = self.config.daemon.lease
        margin = _SEND_MARGIN if lease >= 4 * _SEND_MARGIN else lease / 4
        return (self.clock.now() if now is None else now) < until - margin

    @property
    def room(self) -> int:
        """The most posts in flight (and results not yet written) at once: ``[daemon]
        concurrency``, or with ``"auto"`` what the accounts' networks take at once."""
        return self.config.daemon.concurrency or self._auto_room

    def _size_room(self) -> None:
        """``"auto"``: the requests every account of the config may have in flight at once
        (the plugin's declared per-account concurrency, this daemon's share of it), added
        up, at most ``AUTO_MAX``. A post claimed beyond that could only wait in memory for
        its account's slot, holding its lease, where another daemon could have taken it."""
        total = 0
        for acc in self.config.accounts.values():
            adapter = (self.adapters or {}).get(acc.platform)
            if adapter is None:
                continue
            try:
                policy = adapter.capabilities_for(account_view(acc)).rate_limit
            except Exception:  # a broken plugin: its posts fail in ``attempt``, one slot
                total += 1
                continue
            total += self.limits.slots(policy)
            if total >= AUTO_MAX:
                break
        self._auto_room = max(1, min(AUTO_MAX, total))

    @property
    def capacity(self) -> int:
        """Posts that may be claimed now: ``room`` less the posts in flight and the results
        still to write (so an outage holds at most that many in memory)."""
        busy = len(self.inflight) + len(self.unwritten) + self._reserved
        return max(0, self.room - busy)

    async def claim_and_dispatch(self, *, ahead: bool = False) -> int:
        """Claim as many due posts as there is room for and start publishing them.

        ``ahead`` (the service's loop, which calls again at once after a full batch): a claim
        that filled its batch is followed at once by the next one, made while this batch's
        send record is written and its calls start, so that the database is not left idle
        while the daemon launches; the next call takes it (``stop`` hands back its posts)."""
        made, self._next = self._next, None
        if made is not None:
            self._reserved = 0
            claimed, missed, now, room = await made
        else:
            room = min(self.capacity, self.config.daemon.batch_size)
            if room == 0:
                return 0
            now = self.clock.now()
            claimed, missed = await self._claim(now, room)
        lease_until = now + self.config.daemon.lease
        for c in claimed:
            self._lease_until[c.post_id] = lease_until
        observability.record_claimed(claimed, missed, self.config)
        if missed:
            self.stats["missed"] += len(missed)
            log.warning("posts_missed", count=len(missed), posts=[m.key for m in missed[:20]])
        # The claim's RETURNING gives no order: start the posts in due order, so that an
        # account's posts take its concurrency slots (and a quota's units) in that order.
        claimed = sorted(claimed, key=lambda c: (c.row.next_attempt_at or now, c.post_id))
        launched, rest = self.dispatcher.launch(claimed, self.may_send, start=False)
        for call in launched:
            self.inflight[call.claimed.post_id] = InFlight(call.claimed, call)
            call.on_done = self._call_done
        for c in rest:
            self._start(c)
        full = ahead and len(claimed) + len(missed) >= room
        if launched:
            # The attempts count once their requests may leave: recorded first, durably.
            mark = asyncio.ensure_future(
                self._mark_sent([call.claimed for call in launched], self._marks)
            )
            if full:
                self._claim_ahead()  # after the send record: it goes to the database first
            marked = await mark
            go = []
            sending = self.clock.now()
            for call in launched:
                if call.claimed.attempt_id in marked and self.may_send(call.claimed, sending):
                    self.inflight[call.claimed.post_id].sent = True
                    go.append(call)
                else:
                    call.hand_back("not sent: the request could not be recorded first")
            self.dispatcher.begin(go)
        elif full:
            self._claim_ahead()
        self.stats["claimed"] += len(claimed)
        self.stats["processed"] += len(claimed) + len(missed)
        return len(claimed) + len(missed)

    async def _claim(self, now: datetime, room: int) -> tuple[list[Claimed], list[Any]]:
        grace, default = self._grace()
        claimed, missed = await self.db(
            "claim",
            functools.partial(
                store.claim,
                self.engine,
                self.owner,
                now,
                lease=self.config.daemon.lease,
                limit=room,
                grace=grace,
                default_grace=default,
                accounts=self._known_accounts(),
                names={i: n for n, i in self._account_ids.items()},
                link=self._claims,
            ),
        )
        return claimed, missed

    def _claim_ahead(self) -> None:
        """Start the next claim now, if there is room for one (see ``claim_and_dispatch``);
        its room is held (``capacity``) until it is taken."""
        room = min(self.capacity, self.config.daemon.batch_size)
        if room == 0 or self.stopping or self.halt.is_set():
            return
        now = self.clock.now()

        async def ahead() -> tuple[list[Claimed], list[Any], datetime, int]:
            claimed, missed = await self._claim(now, room)
            return claimed, missed, now, room

        self._reserved = room
        self._next = asyncio.ensure_future(ahead())

    async def _give_back_ahead(self, timeout: float) -> None:
        """Stopping: the posts a claim made ahead took are handed back unsent (their
        results go through the writer, as the other posts that did not start)."""
        ahead, self._next = self._next, None
        self._reserved = 0
        if ahead is None:
            return
        done, _ = await asyncio.wait({ahead}, timeout=max(0.0, timeout))
        if not done or ahead.cancelled() or ahead.exception() is not None:
            # Still waiting on the database, or failed: a claim it commits is rescued once
            # its lease expires, its attempt given back (nothing was sent).
            ahead.cancel()
            return
        claimed, _missed, _now, _room = ahead.result()
        for c in claimed:
            result = self.dispatcher._handback(c, "shutdown")
            self.unwritten[c.post_id] = result
            self._results.put_nowait(result)

    def _mark_sent(
        self, claims: list[Claimed], link: store.Link | None
    ) -> Coroutine[Any, Any, set[int]]:
        """Record that these attempts' requests may leave; the attempt ids recorded (none
        when the database cannot be written: the posts are then handed back unsent). The
        record goes to the database now, not when the awaiting task first runs: the batch's
        requests wait on it, and the steps of tasks that would run first (the results
        writer's) would otherwise go ahead of it."""
        ids = [c.attempt_id for c in claims]

        def record() -> set[int]:
            return store.mark_sent(self.engine, ids, self.clock.now(), link=link)

        return self._recorded(record, start(self._executor, record))

    async def _recorded(self, record: Callable[[], set[int]], first: Started[set[int]]) -> set[int]:
        try:
            marked: set[int] = await briefly(
                self.weather, "sending", record, executor=self._executor, first=first
            )
        except Exception as exc:
            if not unreachable(exc):
                raise
            return set()  # said by ``briefly``
        return marked

    def _start(self, c: Claimed) -> None:
        entry: InFlight

        async def before_send(_: Claimed) -> bool:
            if c.attempt_id not in await self._mark_sent([c], None):
                return False
            entry.sent = True
            return True

        task = asyncio.create_task(
            self.dispatcher.attempt(c, before_send=before_send, may_send=self.may_send),
            name=f"post-{c.row.key}",
        )
        entry = InFlight(c, task)
        self.inflight[c.post_id] = entry
        task.add_done_callback(functools.partial(self._done, c.post_id))

    def _call_done(self, call: Launched) -> None:
        self._done(call.claimed.post_id, call)

    def _done(self, post_id: int, task: asyncio.Future[Result]) -> None:
        entry = self.inflight.pop(post_id, None)
        self._lease_until.pop(post_id, None)
        self._slot_free.set()
        if task.cancelled() or entry is None:
            return
        exc = task.exception()
        if exc is not None:  # a bug in the dispatcher itself: never lose the post
            log.error("dispatch_crashed", post=entry.claimed.row.key, error=repr(exc))
            result = Result(
                entry.claimed,
                _outcome_for_crash(entry.sent),
                PostState.UNCONFIRMED if entry.sent else PostState.RETRY_WAIT,
                self.clock.now(),
                message=f"internal error: {exc!r}",
                next_attempt_at=None if entry.sent else self.clock.now(),
                counts=entry.sent,
            )
        else:
            result = task.result()
        self.unwritten[post_id] = result
        self._results.put_nowait(result)

    async def wait_for_room(self, timeout: float | None = None) -> None:
        """Wait until there is room: a publish in flight finished or a result was written
        (or ``timeout`` seconds pass)."""
        self._slot_free.clear()
        if self.capacity > 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._slot_free.wait(), timeout)

    # ------------------------------------------------------------------ results

    async def _write_loop(self) -> None:
        while True:
            batch = await self._results.take()
            # A batch about to be sent goes first: its requests wait on its send record,
            # nothing waits on this write. A claim made ahead is taken (its send record handed
            # to the database thread) as soon as it returns; this write follows it.
            ahead = self._next
            if ahead is not None and not ahead.done():
                await asyncio.wait({ahead})
            await asyncio.sleep(0)
            try:
                await self._write(batch)
            except Unavailable:
                pass  # the shutdown deadline passed: ``stop`` logs what is left
            finally:
                self._results.done(len(batch))
            del batch  # written: an idle daemon keeps none of a burst's outcomes

    async def _write(self, batch: list[Result], deadline: float | None = None) -> None:
        """Write ``batch``, waiting out database outages (until ``deadline``, or until the
        shutdown deadline gives up). A result a bug keeps from being written is logged in
        full and dropped, alone: the others of its batch are written one by one."""
        try:
            await patiently(
                self.weather,
                "results",
                functools.partial(
                    store.write_results,
                    self.engine,
                    self.owner,
                    batch,
                    self.clock.now(),
                    link=self._writes,
                ),
                give_up=lambda: self._abandon,
                deadline=deadline,
                executor=self._executor,
            )
        except Unavailable:
            raise
        except Exception as exc:
            if len(batch) > 1:
                for r in batch:
                    await self._write([r], deadline)
                return
            log.error("result_write_failed", error=repr(exc), **describe(batch[0]))
            self.unwritten.pop(batch[0].claimed.post_id, None)
            self._slot_free.set()
            return
        for r in batch:
            self.unwritten.pop(r.claimed.post_id, None)
        # Written results make room too (they count against the concurrency): a loop
        # waiting for room claims again now, not at the next tick.
        self._slot_free.set()
        observability.record_results(batch, self.config)
        for r in batch:
            if r.state == PostState.PUBLISHED:
                self.stats["published"] += 1
            elif r.state == PostState.FAILED:
                self.stats["failed"] += 1
            elif r.state == PostState.UNCONFIRMED:
                self.stats["unconfirmed"] += 1
        _log_outcomes(batch)
        hook = plugins.get_plugin_manager().hook
        listening = {
            name
            for name in ("post_published", "post_failed")
            if getattr(hook, name).get_hookimpls()
        }
        for r in batch:
            if listening:
                self._fire_hooks(r, listening)
            if r.state == PostState.PUBLISHED and r.remote_id:
                self._first_comment(r)

    def _first_comment(self, r: Result) -> None:
        """Post the first comment of a post now recorded published (scheduler.comments)."""
        options = getattr(r.claimed.row, "post_options", None)
        if not isinstance(options, dict) or not options.get("first_comment"):
            return
        account = self.config.accounts.get(r.claimed.account)
        adapter = (self.adapters or {}).get(account.platform) if account is not None else None
        if account is None or adapter is None or r.remote_id is None:
            return
        task = asyncio.create_task(self._comment(r, adapter, account_view(account), r.remote_id))
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    async def _comment(self, r: Result, adapter: Adapter, view: Any, remote_id: str) -> None:
        post = from_row(r.claimed.row, r.claimed.account)
        _ok, message = await comments.first_comment(adapter, post, view, remote_id, r.remote_url)
        with contextlib.suppress(Exception):  # reported in the log already
            await self.db(
                "comment",
                comments.record,
                self.engine,
                r.claimed.post_id,
                self.owner,
                self.clock.now(),
                message,
            )

    def _fire_hooks(self, r: Result, listening: set[str]) -> None:
        hook = "post_published" if r.state == PostState.PUBLISHED else "post_failed"
        if hook not in listening:
            return  # nobody listens: skip building the event
        account = self.config.accounts.get(r.claimed.account)
        if account is None:
            return
        view = account_view(account)
        post = from_row(r.claimed.row, r.claimed.account)
        if r.state == PostState.PUBLISHED:
            from scheduler.adapter import Published

            plugins.call_all(
                "post_published",
                post=post,
                account=view,
                result=Published(r.remote_id or "", r.remote_url, r.followers),
            )
        elif r.state != PostState.QUEUED:
            plugins.call_all(
                "post_failed",
                post=post,
                account=view,
                error=_as_error(r),
                final=r.state in (PostState.FAILED, PostState.UNCONFIRMED, PostState.PAUSED),
            )

    async def flush(self) -> None:
        """Wait until every finished attempt is recorded."""
        await self._results.join()

    async def drain(self) -> None:
        """Wait for every publish in flight, then for its outcome to be recorded."""
        while self.inflight:
            await asyncio.gather(
                *(e.task for e in list(self.inflight.values())), return_exceptions=True
            )
        await self.flush()

    # ------------------------------------------------------------------ upkeep

    async def renew_leases(self) -> int:
        """Extend the leases of posts in flight, and of those whose outcome is not written
        yet (a database outage); a post no longer ours is never sent."""
        ids = list(self.inflight.keys() | self.unwritten.keys())
        if not ids:
            # Nothing to renew, so no step: one that does not reach the database would be
            # taken as the database answering (``Weather.fine``), while it may be away.
            return 0
        now = self.clock.now()
        kept = await self.db(
            "leases",
            store.renew_leases,
            self.engine,
            self.owner,
            ids,
            now,
            self.config.daemon.lease,
        )
        until = now + self.config.daemon.lease
        for post_id in kept:
            if post_id in self._lease_until:
                self._lease_until[post_id] = until
        for post_id in set(ids) - set(kept):
            self._lease_until.pop(post_id, None)  # lost: may_send now says no
        return len(kept)

    def _key_lifetimes(self) -> dict[int, timedelta | None]:
        """Accounts whose network honours idempotency keys -> how long a key holds."""
        out: dict[int, timedelta | None] = {}
        for name, acc in self.config.accounts.items():
            adapter = (self.adapters or {}).get(acc.platform)
            if name not in self._account_ids or adapter is None:
                continue
            caps = adapter.capabilities_for(account_view(acc))
            if caps.idempotent:
                out[self._account_ids[name]] = caps.idempotency_window
        return out

    async def rescue(self) -> tuple[int, int]:
        """Recover posts whose daemon died mid-attempt (expired leases).

        Not within a lease period of the database coming back: the daemons that rode out
        the outage first renew their leases and write what they hold.
        """
        if (
            self.weather.degraded
            or self.weather.calm_for() < self.config.daemon.lease.total_seconds() / 2
        ):
            return 0, 0
        accounts = self._known_accounts()
        expired = await self.db(
            "rescue",
            functools.partial(
                store.expired_leases, self.engine, self.clock.now(), accounts=accounts
            ),
        )
        # Each post with its open attempts recorded as sent: what the networks are asked
        # about, and all the rescue may decide on (what changed meanwhile waits for the next).
        seen: dict[int, set[int]] = {}
        for row in expired:
            sent = seen.setdefault(row.id, set())
            if row.attempt_id is not None and row.sent_at is not None:
                sent.add(row.attempt_id)
        answers, failed = await self._ask_networks(expired)
        for post_id in self._ask_again(expired, failed):
            del seen[post_id]
        if not seen:
            return 0, 0
        requeued, unsure = await self.db(
            "rescue",
            functools.partial(
                store.rescue_expired,
                self.engine,
                self.owner,
                self.clock.now(),
                self._key_lifetimes(),
                accounts=accounts,
                absent={a for a, found in answers.items() if found is None},
                present={a for a, found in answers.items() if isinstance(found, Published)},
                seen=seen,
            ),
        )

        observability.record_rescued(requeued, unsure)
        if requeued or unsure:
            log.warning("leases_rescued", requeued=requeued, unconfirmed=unsure)
        return requeued, unsure

    async def _ask_networks(
        self, expired: list[Any]
    ) -> tuple[dict[int, Published | str | None], set[int]]:
        """Ask the networks about the open attempts among ``expired`` whose request was
        recorded as leaving (the daemon died after the record): their lookup's answer by
        attempt id (the post, None when the network certainly does not have it, or why it
        cannot tell), and the attempts whose plugin has a lookup that failed this time."""
        gate = asyncio.Semaphore(RESCUE_LOOKUPS)
        timeout = min(self.dispatcher.publish_timeout, RESCUE_LOOKUP_TIMEOUT_S)
        failed: set[int] = set()

        async def ask(row: Any) -> Published | str | None:
            account = self.config.accounts.get(row.account)
            adapter = (self.adapters or {}).get(account.platform) if account else None
            if account is None or adapter is None:
                return "no adapter"
            if type(adapter).lookup is Adapter.lookup:
                return "the plugin cannot look posts up"
            async with gate:
                found = await safe_lookup(
                    adapter, from_row(row, row.account), account_view(account), timeout
                )
            if isinstance(found, str):
                failed.add(row.attempt_id)
            return found

        sent = [row for row in expired if row.sent_at is not None]
        answers = await asyncio.gather(*(ask(row) for row in sent))
        return {row.attempt_id: a for row, a in zip(sent, answers, strict=True)}, failed

    def _ask_again(self, expired: list[Any], failed: set[int]) -> set[int]:
        """The posts among ``expired`` to leave for the next rescue, their lease expired:
        a lookup of theirs failed (it timed out, the network did not answer) less than
        ``RESCUE_LOOKUP_PATIENCE_S`` ago, so their network is asked again then rather than
        counting an attempt it could have told apart. After that the rescue decides
        without the answer, as for a network that cannot look posts up."""
        now = time.monotonic()
        open_ = {row.attempt_id for row in expired}
        for attempt_id in self._lookups_failed.keys() - open_:
            del self._lookups_failed[attempt_id]  # rescued, or no longer expired
        wait = set()
        for row in expired:
            if row.attempt_id not in failed:
                continue
            first = self._lookups_failed.setdefault(row.attempt_id, now)
            if now - first < RESCUE_LOOKUP_PATIENCE_S:
                wait.add(row.id)
        return wait

    async def reconcile(self) -> int:
        """Ask the networks about ``unconfirmed`` posts; settle those they can answer for."""
        rows = await self.db("reconcile", store.unconfirmed_posts, self.engine)
        settled = 0
        for row in rows:
            account = self.config.accounts.get(row.account)
            adapter = (self.adapters or {}).get(account.platform) if account else None
            if account is None or adapter is None:
                continue
            found = await safe_lookup(
                adapter,
                from_row(row, row.account),
                account_view(account),
                self.dispatcher.publish_timeout,
            )
            if isinstance(found, str):
                continue  # it cannot tell: the post waits for a person (`smm queue resolve`)
            ok = await self.db(
                "reconcile",
                functools.partial(
                    store.settle,
                    self.engine,
                    row.id,
                    self.clock.now(),
                    self.owner,
                    published=found is not None,
                    remote_id=found.remote_id if found else None,
                    remote_url=found.url if found else None,
                    reason="the network confirmed it" if found else "the network has no such post",
                    absent=found is None,
                ),
            )
            settled += ok
        if settled:
            log.info("unconfirmed_settled", count=settled)
        return settled

    async def heartbeat(self, status: str = "running") -> None:
        info = {"hostname": socket.gethostname(), "pid": os.getpid(), "version": __version__}
        peers, blocks = await self.db("heartbeat", self._beat, info, status)
        if peers != self.limits.peers:
            # The daemons alive on this database share each account's declared limits.
            log.info("rate_limits_shared", daemons=peers)
            self.limits.share(peers)
            self._size_room()
        # And what a network answered to any of them: a 429 holds back every daemon.
        for account, until in blocks.items():
            self.limits.block(account, until)

    def _beat(self, info: dict[str, Any], status: str) -> tuple[int, dict[str, datetime]]:
        # One beat at a time, and none after the last: a beat whose job a stop cut short
        # still runs in its thread, and must not write "running" over "stopped".
        with self._beat_lock:
            if self._beat_stopped:
                return self.limits.peers, {}
            beat = self._beat_now(info, status)
            self._beat_stopped = status == "stopped"
            return beat

    def _beat_now(self, info: dict[str, Any], status: str) -> tuple[int, dict[str, datetime]]:
        now = self.clock.now()  # read at each try: an outage may have lasted
        peers = store.heartbeat(self.engine, self.owner, info, now, status)
        # A stopping daemon sends nothing more: what the networks said is of no use to it.
        blocks = {} if self.stopping else store.rate_limit_blocks(self.engine, now)
        return peers, blocks

    async def next_due(self) -> datetime | None:
        due: datetime | None = await self.db("next-due", store.next_due, self.engine)
        return due

    def _plan_file_of(self, post_id: int) -> str | None:
        # An evergreen repeat has no plan file of its own: its media came from its original's.
        original = posts_t.alias("original")
        with self.engine.connect() as conn:
            return conn.execute(
                select(func.coalesce(posts_t.c.plan_file, original.c.plan_file))
                .select_from(
                    posts_t.outerjoin(original, original.c.id == posts_t.c.recycled_from_id)
                )
                .where(posts_t.c.id == post_id)
            ).scalar()

    # ------------------------------------------------------------------ shutdown

    async def stop(self, deadline: float) -> None:
        """Finish in-flight work and record it within ``deadline`` seconds, whatever the
        database does; give back what did not start.

        Attempts cut off after their request went out are settled like a crash: resent
        under an honoured idempotency key, otherwise ``unconfirmed``. What cannot be written
        by the deadline is logged in full (``result_unwritten``), so that nothing is lost.
        """
        end = time.monotonic() + deadline
        # From now on no attempt starts a request: those still waiting hand their post back.
        self.stopping = True
        self.halt.set()
        await self._give_back_ahead(min(1.0, deadline / 4))
        if self.inflight:
            # The in-flight work may use the deadline but a moment kept to record it.
            reserve = min(2.0, deadline / 4)
            tasks = [e.task for e in self.inflight.values()]
            await asyncio.wait(tasks, timeout=max(0.0, end - reserve - time.monotonic()))
        leftovers = list(self.inflight.values())
        for e in leftovers:
            e.task.cancel()
        if leftovers:
            await asyncio.gather(*(e.task for e in leftovers), return_exceptions=True)
        now = self.clock.now()
        lifetimes = self._key_lifetimes()
        for e in leftovers:
            c = e.claimed
            if not e.sent:
                result = self.dispatcher._handback(c, "shutdown")
            else:
                result = Result(
                    c,
                    _outcome_for_crash(True),
                    PostState.RETRY_WAIT if c.account_id in lifetimes else PostState.UNCONFIRMED,
                    now,
                    message="the daemon stopped while the request was in flight",
                    next_attempt_at=now,
                )
            self.unwritten[c.post_id] = result
            self._results.put_nowait(result)
        self.inflight.clear()
        # The writer takes them; wait for it until the deadline, then give up on the database.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._results.join(), max(0.0, end - time.monotonic()))
        if self.unwritten:
            self._abandon = True
            for r in self.unwritten.values():
                log.error("result_unwritten", **describe(r))
            log.error(
                "results_unwritten",
                count=len(self.unwritten),
                why="the database could not be written before the shutdown deadline",
                fix="the posts' leases expire and they are rescued; the lines above say what "
                "each attempt ended in",
            )


def _log_outcomes(batch: Sequence[Result]) -> None:
    """One line per recorded outcome: an operator watching the daemon sees each post go out,
    or why not, without querying the attempts table. A batch's lines are written together
    (``log_each``): one logger call per post cost as much as the post's database work."""
    by_level: dict[int, list[dict[str, Any]]] = {}
    for r in batch:
        level, event = _outcome_event(r)
        by_level.setdefault(level, []).append(event)
    for level, events in by_level.items():
        log_each(log_name, level, events)


def _outcome_event(r: Result) -> tuple[int, dict[str, Any]]:
    """The level and the event of ``r``'s outcome line."""
    event: dict[str, Any] = {
        "event": "post_published",
        "post": r.claimed.row.key,
        "account": r.claimed.account,
        "attempt": r.claimed.attempt_number,
    }
    if r.state == PostState.PUBLISHED:
        event["remote_url"] = r.remote_url or r.remote_id
        return logging.INFO, event
    event["outcome"] = str(r.outcome)
    event["message"] = r.message
    if r.state == PostState.RETRY_WAIT:
        event["event"] = "post_retry"
        event["next_attempt_at"] = r.next_attempt_at.isoformat() if r.next_attempt_at else None
        return logging.INFO, event
    if r.state == PostState.UNCONFIRMED:
        event["event"] = "post_unconfirmed"
        return logging.WARNING, event
    event["event"] = "post_failed"
    event["state"] = str(r.state)
    return logging.WARNING, event


def _outcome_for_crash(sent: bool) -> Any:
    from scheduler.db.models import Outcome

    return Outcome.OUTCOME_UNKNOWN if sent else Outcome.ABANDONED


def describe(r: Result) -> dict[str, Any]:
    """Everything a result says, for a log line that must stand in for the database."""
    return {
        "post": r.claimed.row.key,
        "post_id": r.claimed.post_id,
        "attempt_id": r.claimed.attempt_id,
        "attempt": r.claimed.attempt_number,
        "outcome": str(r.outcome),
        "state": str(r.state),
        "remote_id": r.remote_id,
        "remote_url": r.remote_url,
        "message": r.message,
        "finished_at": r.finished_at.isoformat(),
        "next_attempt_at": r.next_attempt_at.isoformat() if r.next_attempt_at else None,
    }


def _as_error(r: Result) -> PublishError:
    from scheduler.adapter import AuthExpired, OutcomeUnknown, RateLimited, Rejected

    cls: type[PublishError] = {
        "transient": Transient,
        "rate_limited": RateLimited,
        "auth_expired": AuthExpired,
        "rejected": Rejected,
        "outcome_unknown": OutcomeUnknown,
    }.get(str(r.outcome), Rejected)
    return cls(r.message or str(r.outcome), http_status=r.http_status, retry_at=r.retry_at)


__all__ = ["InFlight", "Worker", "make_adapters", "new_daemon_id"]
