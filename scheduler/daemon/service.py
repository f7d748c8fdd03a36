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
import signal
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import Engine

from scheduler import observability, plugins, tokens
from scheduler.config import Config, DaemonSettings
from scheduler.daemon import notices, systemd
from scheduler.daemon.store import HEARTBEAT_EVERY
from scheduler.daemon.worker import Worker
from scheduler.timeutil import Clock, SystemClock

log = structlog.get_logger("scheduler.service")

#: How often unconfirmed posts are looked up, unless ``[daemon] reconcile`` says otherwise.
RECONCILE_EVERY = DaemonSettings().reconcile


@dataclass
class Service:
    """Runs until SIGTERM/SIGINT; SIGHUP reloads the config through ``reload_config``."""

    engine: Engine
    config: Config
    reload_config: Callable[[], Config] | None = None
    clock: Clock = field(default_factory=SystemClock)
    once: bool = False
    worker: Worker | None = None

    def __post_init__(self) -> None:
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._reloads: set[asyncio.Task[None]] = set()

    # -------------------------------------------------------------- signals

    def request_stop(self) -> None:
        if not self._stop.is_set():
            log.info("stopping", reason="signal")
            systemd.notify("STOPPING=1")
            self._stop.set()
            self._wake.set()

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
        async def run() -> None:
            try:
                await fn()
            except Exception as exc:  # a failing job is logged and runs again next time
                log.error("job_failed", job=name, error=repr(exc))

        run.__name__ = name
        return run

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
            lambda: tokens.refresh_all(self.config, worker.adapters or {}),
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
            f"published {s['published']}, failed {s['failed']}, missed {s['missed']}, "
            f"in flight {len(self.worker.inflight)}"
        )
        systemd.notify(f"STATUS={status}")
        await self.worker.heartbeat(status)

    # -------------------------------------------------------------- main loop

    async def _dispatch_loop(self, worker: Worker) -> None:
        tick = self.config.daemon.tick.total_seconds()
        batch = self.config.daemon.batch_size
        while not self._stop.is_set():
            self._wake.clear()
            try:
                n = await worker.claim_and_dispatch()
            except Exception as exc:  # database away: wait a tick and try again
                log.error("claim_failed", error=repr(exc))
                n = 0
                await self._sleep(tick)
                continue
            if n >= min(batch, worker.capacity + n) and n > 0:
                await asyncio.sleep(0)  # more may be due right now
                continue
            if worker.capacity == 0:
                await worker.wait_for_room(tick)
                continue
            if self.once:
                if not worker.inflight:
                    due = await worker.next_due()
                    if due is None or due > self.clock.now():
                        return
                await worker.wait_for_room(0.05)
                continue
            due = await worker.next_due()
            delay = tick
            if due is not None:
                delay = min(tick, max(0.0, (due - self.clock.now()).total_seconds()))
            if delay > 0:
                await self._sleep(delay)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def run(self) -> None:
        """Run until stopped; returns after in-flight work is finished or handed back."""
        loop = asyncio.get_running_loop()
        # APScheduler reports every job run at INFO; the jobs log what matters themselves.
        logging.getLogger("apscheduler").setLevel(logging.WARNING)
        worker = self.worker or Worker(self.engine, self.config, clock=self.clock)
        self.worker = worker
        if not self.once:
            # Signals first: a SIGTERM during start-up is a clean stop, not a kill.
            self._install_signals(loop)
        metrics = observability.start_metrics_server(
            self.config.metrics_listen, self.engine, daemon_id=worker.owner, clock=self.clock
        )
        await worker.start()
        scheduler = AsyncIOScheduler(event_loop=loop)
        self._schedule(scheduler, worker)
        scheduler.start()
        await worker.rescue()
        await self._heartbeat()
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
            await self._dispatch_loop(worker)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            gc.unfreeze()
            scheduler.shutdown(wait=False)
            deadline = self.config.daemon.shutdown_deadline.total_seconds()
            await worker.stop(deadline)
            await worker.heartbeat("stopped")
            await worker.close()
            if metrics is not None:
                metrics.close()
            log.info("daemon_stopped", daemon=worker.owner, **worker.stats)


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
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
