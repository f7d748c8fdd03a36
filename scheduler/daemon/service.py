"""``smm run``: the long-running service around a ``Worker``.

APScheduler runs a handful of interval jobs — never one job per post: the tick (notice posts
the CLI or another daemon added), lease renewal, rescue of expired leases and settling of
unconfirmed posts, heartbeat, the systemd watchdog, metrics collection and the ER recompute.
The dispatch loop itself sleeps until the earliest due time or the next tick, whichever is
first, so a post due at 09:00:00 goes out at 09:00:00, not at the next minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import structlog
from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MAX_INSTANCES,
    JobEvent,
    JobExecutionEvent,
)
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import Engine

from scheduler import observability, plugins, tokens
from scheduler.config import Config, DaemonSettings
from scheduler.daemon import notices, systemd
from scheduler.daemon.store import HEARTBEAT_EVERY
from scheduler.daemon.weather import Unavailable, patiently, unreachable
from scheduler.daemon.worker import Worker
from scheduler.errors import SmmError
from scheduler.timeutil import Clock, SystemClock

log = structlog.get_logger("scheduler.service")

#: Of the shutdown deadline, what the steps after the worker's stop keep for themselves
#: (the last heartbeat; the wait for database calls still running at exit).
EXIT_MARGIN_S = 0.6
#: How often unconfirmed posts are looked up, unless ``[daemon] reconcile`` says otherwise.
RECONCILE_EVERY = DaemonSettings().reconcile


def _not_said_by_listen(record: logging.LogRecord) -> bool:
    """Drops APScheduler's own lines for what ``Service._listen`` logs as events."""
    return not str(record.msg).startswith(('Job "%s" raised', 'Execution of job "%s" skipped'))


@dataclass
class Service:
    """Runs until SIGTERM/SIGINT; SIGHUP reloads the config through ``reload_config``."""

    engine: Engine
    config: Config
    reload_config: Callable[[], Config] | None = None
    clock: Clock = field(default_factory=SystemClock)
    once: bool = False
    worker: Worker | None = None
    #: Run first, with the database waited for (``smm run``: check or create the schema).
    prepare: Callable[[], Any] | None = None

    def __post_init__(self) -> None:
        self._stop_at: float | None = None
        self._ready = False
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._reloads: set[asyncio.Task[None]] = set()

    # -------------------------------------------------------------- signals

    @property
    def stop_requested(self) -> bool:
        """Whether a signal (or a caller) asked the service to stop."""
        return self._stop_at is not None

    def request_stop(self) -> None:
        if not self._stop.is_set():
            log.info("stopping", reason="signal")
            systemd.notify("STOPPING=1")
            self._stop_at = time.monotonic()
            self._stop.set()
            self._wake.set()
            if self.worker is not None:
                self.worker.halt.set()

    def _reload(self) -> None:
        task = asyncio.get_running_loop().create_task(self.reload(), name="reload")
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    async def reload(self) -> None:
        """Read the config again; a bad one is logged and the old one kept."""
        if self.reload_config is None or self.worker is None:
            return
        try:
            config = self.reload_config()
            await self.worker.reload(config)
        except Exception as exc:  # keep running on the old config
            log.error("config_reload_failed", error=str(exc))
            return
        self.config = config
        log.info("config_reloaded", accounts=len(config.accounts))
        self._wake.set()

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self._reload)

    # -------------------------------------------------------------- jobs

    def _job(self, name: str, fn: Callable[[], Awaitable[Any]]) -> Callable[[], Awaitable[None]]:
        """``fn`` as an APScheduler job that never raises: whatever ends it is logged here,
        with the job's name and why, not as APScheduler's 'Job raised an exception'."""

        async def run() -> None:
            try:
                await fn()
            except Unavailable:
                pass  # stopping while the database is away: nothing to add
            except asyncio.CancelledError:
                # The scheduler's shutdown cancels the runs still going (a heartbeat waiting
                # on a slow database): expected at a stop, and the task ends here.
                reason = (
                    "the daemon is stopping; the run was cut short"
                    if self.stop_requested
                    else "cancelled while running"
                )
                log.info("job_cut", job=name, reason=reason)
            except Exception as exc:  # a failing job is logged and runs again next time
                if unreachable(exc) and self.worker is not None:
                    self.worker.weather.trouble(name, exc)
                else:
                    log.error("job_failed", job=name, error=repr(exc))

        run.__name__ = name
        return run

    def _listen(self, scheduler: AsyncIOScheduler) -> None:
        """What APScheduler itself would log about the jobs, in the daemon's own events:
        a run skipped because the last one has not finished (said once per stretch), and,
        should a job raise past ``_job`` all the same, the failure with its error."""
        overrunning: set[str] = set()

        def heard(event: JobEvent) -> None:
            if event.code == EVENT_JOB_MAX_INSTANCES:
                if event.job_id not in overrunning:
                    overrunning.add(event.job_id)
                    degraded = self.worker is not None and self.worker.weather.degraded
                    log.warning(
                        "job_skipped",
                        job=event.job_id,
                        reason="its last run has not finished"
                        + (" (waiting for the database)" if degraded else ""),
                    )
                return
            overrunning.discard(event.job_id)
            if event.code == EVENT_JOB_ERROR:
                assert isinstance(event, JobExecutionEvent)
                log.error("job_failed", job=event.job_id, error=repr(event.exception))

        scheduler.add_listener(
            heard, EVENT_JOB_MAX_INSTANCES | EVENT_JOB_ERROR | EVENT_JOB_EXECUTED
        )

    def _schedule(self, scheduler: AsyncIOScheduler, worker: Worker) -> None:
        daemon = self.config.daemon

        def every(name: str, interval: timedelta, fn: Callable[[], Awaitable[Any]]) -> None:
            scheduler.add_job(
                self._job(name, fn),
                "interval",
                seconds=max(interval.total_seconds(), 0.05),
                id=name,
                name=name,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
            )

        async def tick() -> None:
            self._wake.set()

        every("tick", daemon.tick, tick)
        every("leases", daemon.lease / 3, worker.renew_leases)
        every("rescue", daemon.lease / 2, worker.rescue)
        every("reconcile", daemon.reconcile, worker.reconcile)
        every("heartbeat", HEARTBEAT_EVERY, self._heartbeat)
        every(
            "tokens",
            tokens.CHECK_EVERY,
            lambda: tokens.refresh_all(self.config, worker.adapters or {}, self.engine),
        )
        interval = systemd.watchdog_interval()
        if interval:

            async def watchdog() -> None:
                systemd.notify("WATCHDOG=1")

            every("watchdog", timedelta(seconds=interval), watchdog)
        for name, interval_fn, job in self._engagement_jobs(worker):
            every(name, interval_fn, job)

    def _engagement_jobs(
        self, worker: Worker
    ) -> list[tuple[str, timedelta, Callable[[], Awaitable[Any]]]]:
        """The jobs plugins contribute through ``register_jobs``: metrics collection and the
        ER recompute come from the built-in ER plugin (scheduler/er/builtin.py)."""
        found: list[tuple[str, timedelta, Callable[[], Awaitable[Any]]]] = []
        for impl in plugins.hook_impls("register_jobs"):
            mine: list[tuple[str, timedelta, Callable[[], Awaitable[Any]]]] = []
            try:
                impl.function(worker=worker, register=lambda *job, into=mine: into.append(job))
            except Exception as exc:  # a broken plugin loses its jobs, not the daemon
                log.error("plugin_jobs_failed", plugin=impl.plugin_name, error=repr(exc))
                continue
            found += mine
        return found

    async def _heartbeat(self) -> None:
        assert self.worker is not None
        s = self.worker.stats
        status = (
            f"published {s['published']}, failed {s['failed']}, "
            f"unconfirmed {s['unconfirmed']}, missed {s['missed']}, "
            f"in flight {len(self.worker.inflight)}"
        )
        if self.worker.unwritten:
            status += f", unwritten {len(self.worker.unwritten)}"
        if self.worker.weather.degraded:
            status = f"degraded: the database is unreachable; {status}"
        systemd.notify(f"STATUS={status}")
        await self.worker.heartbeat(status)

    # -------------------------------------------------------------- main loop

    async def _dispatch_loop(self, worker: Worker) -> None:
        tick = self.config.daemon.tick.total_seconds()
        while not self._stop.is_set():
            self._wake.clear()
            try:
                if await self._dispatch_step(worker, tick):
                    return
            except Unavailable:
                continue  # asked to stop while the database was away
            except Exception as exc:  # a bug: logged, and the loop goes on after a tick
                log.error("dispatch_step_failed", error=repr(exc))
                await self._sleep(tick)

    async def _dispatch_step(self, worker: Worker, tick: float) -> bool:
        """Claim and start what is due, then wait for the next due post, a tick, room or a
        wake-up. Database steps wait out outages (``Worker.db``). True: ``once`` is done."""
        batch = self.config.daemon.batch_size
        n = await worker.claim_and_dispatch(ahead=True)
        if n >= min(batch, worker.capacity + n) and n > 0:
            await asyncio.sleep(0)  # more may be due right now
            return False
        if worker.capacity == 0:
            await worker.wait_for_room(tick)
            return False
        if self.once:
            if not worker.inflight and not worker.unwritten:
                due = await worker.next_due()
                if due is None or due > self.clock.now():
                    return True
            await worker.wait_for_room(0.05)
            return False
        due = await worker.next_due()
        delay = tick
        if due is not None:
            delay = min(tick, max(0.0, (due - self.clock.now()).total_seconds()))
        if delay > 0:
            await self._sleep(delay)
        return False

    async def _until_stopped(self, worker: Worker) -> None:
        """Run the dispatch loop until it ends (``once``) or a stop is asked for. A loop
        stuck in a database call (a locked SQLite file waits up to its busy timeout) is left
        behind after a moment, so that the shutdown deadline holds; a claim it may still
        commit is rescued like a crash's, its attempt given back (nothing was sent)."""
        dispatching = asyncio.ensure_future(self._dispatch_loop(worker))
        stopping = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({dispatching, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not dispatching.done():
                grace = min(1.0, self.config.daemon.shutdown_deadline.total_seconds() / 4)
                await asyncio.wait({dispatching}, timeout=grace)
        finally:
            stopping.cancel()
            if not dispatching.done():
                dispatching.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await dispatching
        if not dispatching.cancelled():
            dispatching.result()  # a bug that ended the loop is raised here

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def run(self) -> None:
        """Run until stopped; returns after in-flight work is finished or handed back."""
        loop = asyncio.get_running_loop()
        # APScheduler reports every job run at INFO, and a job's failure or overrun in
        # words of its own; the jobs and ``_listen`` log what matters as the daemon's events.
        logging.getLogger("apscheduler").setLevel(logging.WARNING)
        for name in ("apscheduler.executors.default", "apscheduler.scheduler"):
            logger = logging.getLogger(name)
            if _not_said_by_listen not in logger.filters:
                logger.addFilter(_not_said_by_listen)
        worker = self.worker or Worker(self.engine, self.config, clock=self.clock)
        self.worker = worker
        if not self.once:
            # Signals first: a SIGTERM during start-up is a clean stop, not a kill.
            self._install_signals(loop)
        metrics = observability.start_metrics_server(
            self.config.metrics_listen, self.engine, daemon_id=worker.owner, clock=self.clock
        )
        try:
            await self._start(worker)
        except Unavailable:
            log.info("daemon_stopped", daemon=worker.owner, reason="stopped while starting")
            await worker.close()
            if metrics is not None:
                metrics.close()
            return
        scheduler = AsyncIOScheduler(event_loop=loop)
        self._listen(scheduler)
        self._schedule(scheduler, worker)
        scheduler.start()
        for step in (worker.rescue, self._heartbeat):
            with contextlib.suppress(Unavailable):  # the jobs try again
                await step()
        systemd.notify("READY=1", "STATUS=dispatching")
        log.info(
            "daemon_started",
            daemon=worker.owner,
            accounts=len(self.config.accounts),
            platforms=sorted(worker.adapters or {}),
        )
        # Everything start-up built (modules, config, plugins, the engine) lives as long as
        # the daemon: moved out of the collector's generations, a full collection walks only
        # what the work itself allocated, not the whole process every few thousand posts.
        gc.freeze()
        # Posts other processes queue wake the loop at once, not at the next tick.
        watcher = loop.create_task(notices.watch(self.engine, self._wake.set), name="notices")
        try:
            await self._until_stopped(worker)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            gc.unfreeze()
            scheduler.shutdown(wait=False)
            end = (self._stop_at or time.monotonic()) + (
                self.config.daemon.shutdown_deadline.total_seconds()
            )
            # What follows the worker's stop (the last heartbeat, closing) gets a moment.
            await worker.stop(max(0.0, end - EXIT_MARGIN_S - time.monotonic()))
            # A daemon whose database is away just goes: this beat gets what time is left.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    worker.heartbeat("stopped"),
                    max(0.05, end - EXIT_MARGIN_S / 2 - time.monotonic()),
                )
            await worker.close()
            if metrics is not None:
                metrics.close()
            log.info("daemon_stopped", daemon=worker.owner, **worker.stats)

    async def _start(self, worker: Worker) -> None:
        """Wait for the database (``[daemon] database_wait``, 0: for as long as it takes),
        saying why in STATUS=, then start the worker."""
        wait = self.config.daemon.database_wait.total_seconds() or None
        deadline = None if wait is None else time.monotonic() + wait
        worker.weather.notify = lambda text: systemd.notify(
            f"STATUS={'waiting for the database: ' if not self._ready else ''}{text}"
        )
        try:
            if self.prepare is not None:
                await patiently(
                    worker.weather,
                    "start",
                    self.prepare,
                    give_up=self._stop.is_set,
                    deadline=deadline,
                    wake=self._stop,
                )
            await worker.start(wait=wait)
        except Unavailable as exc:
            if self._stop.is_set():
                raise
            raise SmmError(
                f"the database was unreachable for [daemon] database_wait ({wait:g} s): {exc}"
            ) from None
        finally:
            self._ready = True
            worker.weather.notify = lambda text: systemd.notify(f"STATUS={text}")


def run_forever(main: Coroutine[Any, Any, None], *, linger: float = 1.0) -> None:
    """Run the daemon's coroutine to the end, like ``asyncio.run`` but able to leave.

    ``asyncio.run`` waits for every task it cancels at exit; a plugin call that ignores
    cancellation would keep the process alive after SIGTERM forever. Leftover tasks get
    ``linger`` seconds to finish after being cancelled, then the loop is closed without them.
    """
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(main)
    finally:
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.wait(pending, timeout=linger))
            stuck = [t.get_name() for t in pending if not t.done()]
            if stuck:
                log.warning("abandoned_plugin_tasks", tasks=stuck)
        loop.run_until_complete(loop.shutdown_asyncgens())
        shutdown = loop.create_task(loop.shutdown_default_executor())
        loop.run_until_complete(asyncio.wait([shutdown], timeout=EXIT_MARGIN_S / 3))
        if not shutdown.done():
            _leave_stuck_threads()
        loop.close()


def _leave_stuck_threads() -> None:
    """A database call that never returns (a server gone without a word) holds its thread;
    the interpreter would wait for it at exit. The daemon has already recorded or logged
    everything: it leaves at once."""
    stuck = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    log.warning("abandoned_database_calls", threads=stuck)
    leave()


def leave(code: int = 0) -> None:
    """Exit now, without the interpreter's teardown (closing the pool, collecting modules:
    up to a second on a loaded host), once everything is recorded or logged: after a stop
    the shutdown deadline holds to the end."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
