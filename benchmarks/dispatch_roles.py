"""The processes ``bench_dispatch.py`` starts: our daemon, PgQueuer and APScheduler baselines.

Each role runs in a fresh interpreter, so start-up time and memory are those of one process:

    python benchmarks/dispatch_roles.py daemon  [--record FILE] -- SMM ARGS...
    python benchmarks/dispatch_roles.py pgqueuer --dsn DSN --jobs N [--burst-at T]
    python benchmarks/dispatch_roles.py apscheduler --jobs N [--burst-at T]

``daemon`` registers the no-op network (platform ``noop``) in-process, exactly as a
third-party plugin would be registered, then runs the real ``smm`` command line. The baselines
print one JSON line of figures on standard output.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import os
import resource
import runpy
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

#: What the no-op adapter saw: (wall-clock time of the publish call, post key).
CALLS: list[tuple[float, str]] = []


def noop_plugin() -> Any:
    """A plugin object contributing the ``noop`` platform: accepts everything, no I/O."""
    from scheduler.adapter import Adapter, Capabilities, Published, RateLimitPolicy
    from scheduler.hookspecs import hookimpl

    class NoopAdapter(Adapter):
        platform = "noop"
        capabilities = Capabilities(
            text_limit=100_000,
            idempotent=True,
            # Nothing to protect: the limits must never be what is measured.
            rate_limit=RateLimitPolicy(
                requests=1_000_000_000, per=timedelta(seconds=1), concurrency=100_000
            ),
        )

        async def publish(self, post: Any, account: Any, idempotency_key: str) -> Any:
            CALLS.append((time.time(), post.key))
            return Published(remote_id=idempotency_key)

    class NoopPlugin:
        @staticmethod
        @hookimpl
        def register_platforms(register: Callable[[type[Adapter]], None]) -> None:
            register(NoopAdapter)

    return NoopPlugin


def _dump_calls(path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for at, key in CALLS:
            f.write(f"{at:.6f} {key}\n")


def run_daemon(record: str | None, argv: list[str]) -> None:
    """``smm ARGV...`` with the no-op network registered.

    ``SMM_BENCH_PRELOAD=FILE`` runs FILE first: a way to measure a change to the daemon (a
    monkeypatch) without editing it.
    """
    from scheduler import plugins
    from scheduler.cli import cli

    preload = os.environ.get("SMM_BENCH_PRELOAD")
    if preload:
        runpy.run_path(preload)
    plugins.register_plugin(noop_plugin(), name="noop")
    if record:
        atexit.register(_dump_calls, record)
    cli.main(args=argv, prog_name="smm", standalone_mode=True)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def run_pgqueuer(
    dsn: str, jobs: int, batch: int, burst_at: float | None, driver: str
) -> dict[str, Any]:
    """Drain ``jobs`` no-op jobs (already enqueued) with one QueueManager; report the times.

    Without ``burst_at``: drain mode, the run ends when the queue is empty. With it (a wall-clock
    time the jobs were enqueued to become due at): run until all ``jobs`` ran, then stop.
    """
    from pgqueuer import QueueManager
    from pgqueuer.models import Job
    from pgqueuer.queries import Queries
    from pgqueuer.types import QueueExecutionMode

    starts: list[float] = []
    conn: Any
    if driver == "asyncpg":  # PgQueuer's default and fastest driver
        import asyncpg
        from pgqueuer import AsyncpgDriver

        conn = await asyncpg.connect(dsn)
        qm = QueueManager(Queries(AsyncpgDriver(conn)))
    else:
        import psycopg
        from pgqueuer import PsycopgDriver

        conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
        qm = QueueManager(Queries(PsycopgDriver(conn)))

    @qm.entrypoint("noop")
    async def noop(job: Job) -> None:
        starts.append(time.time())
        if burst_at is not None and len(starts) >= jobs:
            qm.shutdown.set()

    t_start = time.time()
    if burst_at is None:
        await qm.run(batch_size=batch, mode=QueueExecutionMode.drain)
    else:
        await qm.run(batch_size=batch, dequeue_timeout=timedelta(seconds=1))
    t_end = time.time()
    await conn.close()
    return {
        "started": t_start,
        "first": min(starts) if starts else None,
        "last": max(starts) if starts else None,
        "end": t_end,
        "done": len(starts),
        "p50": _pct([s - burst_at for s in starts], 50) if burst_at else None,
        "p99": _pct([s - burst_at for s in starts], 99) if burst_at else None,
        "peak_rss_mb": _peak_rss_mb(),
    }


def _pct(values: list[float], q: float) -> float | None:
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5))) - 1]


async def run_apscheduler(jobs: int, burst_at: float | None) -> dict[str, Any]:
    """One APScheduler 3 ``date`` job per post: AsyncIOScheduler, memory store, defaults.

    Without ``burst_at`` the jobs are all due when the scheduler starts (a queue to drain);
    with it they are due at that wall-clock time. Misfires are counted from its own events.
    """
    from apscheduler.events import EVENT_JOB_EXECUTED, EVENT_JOB_MISSED, JobEvent
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    ran: list[float] = []
    missed: list[float] = []
    finished = asyncio.Event()

    async def publish() -> None:  # the same work as the no-op adapter
        ran.append(time.time())

    def listener(event: JobEvent) -> None:
        if event.code == EVENT_JOB_MISSED:
            missed.append(time.time())
        if len(ran) + len(missed) >= jobs:
            finished.set()

    scheduler = AsyncIOScheduler(timezone=UTC)
    scheduler.add_listener(listener, EVENT_JOB_EXECUTED | EVENT_JOB_MISSED)
    due = datetime.fromtimestamp(burst_at, UTC) if burst_at is not None else datetime.now(UTC)
    t0 = time.time()
    for i in range(jobs):
        scheduler.add_job(publish, "date", run_date=due, id=f"post-{i}")
    t_added = time.time()
    scheduler.start()
    t_started = time.time()
    await asyncio.wait_for(finished.wait(), timeout=600)
    t_end = time.time()
    scheduler.shutdown(wait=False)
    return {
        "due": due.timestamp(),
        "add_s": t_added - t0,
        "started": t_started,
        "first": min(ran) if ran else None,
        "last": max(ran) if ran else None,
        "end": t_end,
        "done": len(ran),
        "missed": len(missed),
        "peak_rss_mb": _peak_rss_mb(),
    }


def run_apscheduler_memory(jobs: int) -> dict[str, Any]:
    """RSS and start-up of APScheduler holding ``jobs`` future jobs (a queue of that size)."""
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    async def publish() -> None:
        pass

    async def main() -> dict[str, Any]:
        t0 = time.time()
        scheduler = AsyncIOScheduler(timezone=UTC)
        base = datetime.now(UTC) + timedelta(days=30)
        for i in range(jobs):
            scheduler.add_job(publish, "date", run_date=base + timedelta(seconds=i), id=str(i))
        scheduler.start()
        t_ready = time.time()
        scheduler.shutdown(wait=False)
        return {"startup_s": t_ready - t0, "peak_rss_mb": _peak_rss_mb()}

    return asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="role", required=True)
    d = sub.add_parser("daemon")
    d.add_argument("--record", help="write each publish call's time and post key here")
    d.add_argument("smm_args", nargs=argparse.REMAINDER)
    p = sub.add_parser("pgqueuer")
    p.add_argument("--dsn", required=True)
    p.add_argument("--jobs", type=int, required=True)
    p.add_argument("--batch", type=int, default=200)
    p.add_argument("--burst-at", type=float)
    p.add_argument("--driver", choices=["asyncpg", "psycopg"], default="asyncpg")
    a = sub.add_parser("apscheduler")
    a.add_argument("--jobs", type=int, required=True)
    a.add_argument("--burst-at", type=float)
    a.add_argument("--memory", action="store_true", help="future jobs: RSS and start-up only")
    args = parser.parse_args()
    if args.role == "daemon":
        smm_args = args.smm_args[1:] if args.smm_args[:1] == ["--"] else args.smm_args
        run_daemon(args.record, smm_args)
        return
    if args.role == "pgqueuer":
        out = asyncio.run(run_pgqueuer(args.dsn, args.jobs, args.batch, args.burst_at, args.driver))
    elif args.memory:
        out = run_apscheduler_memory(args.jobs)
    else:
        out = asyncio.run(run_apscheduler(args.jobs, args.burst_at))
    out["pid"] = os.getpid()
    print(json.dumps(out))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
