"""The processes ``bench_dispatch.py`` starts: our daemon, PgQueuer and APScheduler baselines.

Each role runs in a fresh interpreter, so start-up time and memory are those of one process:

    python benchmarks/dispatch_roles.py daemon  [--record FILE] -- SMM ARGS...
    python benchmarks/dispatch_roles.py pgqueuer --dsn DSN --jobs N [--burst-at T]
    python benchmarks/dispatch_roles.py apscheduler --jobs N [--burst-at T]
    python benchmarks/dispatch_roles.py sqlite-raw --db FILE [--batch 200]

``sqlite-raw`` is the limit for the SQLite daemon: the same database work (the claim's
select, lease update and attempt inserts, the send record before the requests leave, the
publish results) through plain ``sqlite3``, with nothing around it (``run_sqlite_raw``).

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
import sqlite3
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

#: Where the no-op adapter writes each call (wall-clock time, post key), one line per call,
#: through the file's buffer: nothing per call stays in the daemon's memory, so its RSS is the
#: daemon's own.
RECORD: Any = None


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
            if RECORD is not None:
                RECORD.write(f"{time.time():.6f} {post.key}\n")
            return Published(remote_id=idempotency_key)

    class NoopPlugin:
        @staticmethod
        @hookimpl
        def register_platforms(register: Callable[[type[Adapter]], None]) -> None:
            register(NoopAdapter)

    return NoopPlugin


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
        global RECORD
        RECORD = open(record, "w", encoding="utf-8", buffering=1 << 16)  # noqa: SIM115
        atexit.register(RECORD.close)
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


#: The columns a claim reads back (the daemon's ``store._CLAIM_COLUMNS``).
CLAIM_COLUMNS = (
    "id, key, account_id, content_type, text, media, media_meta, post_options, link, tags,"
    " idempotency_key, state, due_at, next_attempt_at, attempt_count, remote_id, remote_url,"
    " published_at"
)


def _stamp(at: datetime) -> str:
    """A timestamp as the project's UTC column type stores it on SQLite."""
    return at.strftime("%Y-%m-%d %H:%M:%S.%f")


def run_sqlite_raw(db: str, batch: int, owner: str = "raw-limit") -> dict[str, Any]:
    """Drain every due post of ``db`` doing the daemon's SQL on one plain connection.

    The least database work that keeps the daemon's guarantees, batch after batch: a claim
    leases the due posts and opens their attempts; before a batch's requests leave, its
    attempts are recorded as sent (``sent_at``), committed; then each post's one result is
    written. The daemon's statements and pragmas (the due posts selected through the due
    index, active accounts only; leased, their claim columns read back, their attempt rows
    opened and read back; the outcomes written with one ``UPDATE ... FROM (VALUES ...)`` per
    table), without its scheduling, plugins, event loop or bookkeeping: what SQLite allows on
    this machine. Two ``BEGIN IMMEDIATE`` transactions per batch: one records the sends of
    the claimed batch and claims the next, one writes the results (the daemon commits the
    send record and the claim it makes ahead apart, three a batch; one, two or three
    transactions a batch measured the same CPU time per post here: the statements cost, not
    the commits).
    """
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA busy_timeout = 5000")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    select_due = (
        "SELECT p.id FROM posts p WHERE p.state IN ('queued', 'retry_wait') "
        "AND p.next_attempt_at <= ? "
        "AND EXISTS (SELECT 1 FROM accounts a WHERE a.id = p.account_id AND NOT a.paused) "
        "ORDER BY p.next_attempt_at, p.id LIMIT ?"
    )

    def close_attempts(rows: list[tuple[Any, ...]]) -> None:
        """(attempt id, finished_at, outcome, message, http_status, latency_ms, retry_at)."""
        conn.execute(
            "UPDATE attempts SET finished_at = v.column2, outcome = v.column3, "
            "message = v.column4, http_status = v.column5, latency_ms = v.column6, "
            "retry_at = v.column7 FROM (VALUES "
            + ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * len(rows))
            + ") AS v WHERE attempts.id = v.column1",
            [value for row in rows for value in row],
        )

    def publish(rows: list[tuple[Any, ...]], now_v: str) -> None:
        """(post id, remote_id, remote_url, published_at, followers_at_publish)."""
        conn.execute(
            "UPDATE posts SET remote_id = v.column2, remote_url = v.column3, "
            "published_at = v.column4, followers_at_publish = v.column5, state = ?, "
            "lease_owner = NULL, lease_expires_at = NULL, last_error = NULL, "
            "error_class = NULL, updated_at = ? FROM (VALUES "
            + ", ".join(["(?, ?, ?, ?, ?)"] * len(rows))
            + ") AS v WHERE posts.id = v.column1",
            ["published", now_v, *(value for row in rows for value in row)],
        )

    def one(sql: str, params: Any) -> Any:
        return conn.execute(sql, params).fetchone()[0]

    def claim(now: datetime) -> list[tuple[int, int, str]]:
        """Lease the due posts, open their attempts: (attempt id, post id, key) each. Lists
        are read as one row (``group_concat``, ``json_group_array``), as the daemon reads
        them: the driver steps once per row read (and the daemon's database thread takes the
        interpreter lock back each time); measured here, it is no dearer than row by row."""
        now_v = _stamp(now)
        found = one(f"SELECT group_concat(id) FROM ({select_due})", (now_v, batch))
        if not found:
            return []
        ids = [int(i) for i in found.split(",")]
        marks = ", ".join("?" * len(ids))
        conn.execute(
            "UPDATE posts SET state = 'claimed', lease_owner = ?, lease_expires_at = ?, "
            f"attempt_count = attempt_count + 1, updated_at = ? WHERE id IN ({marks})",
            (owner, _stamp(now + timedelta(minutes=2)), now_v, *ids),
        )
        leased = json.loads(
            one(
                f"SELECT json_group_array(json_array({CLAIM_COLUMNS})) FROM posts "
                f"WHERE id IN ({marks})",
                ids,
            )
        )
        values = ", ".join("(?, ?, ?, ?, ?)" for _ in leased)
        params: list[Any] = []
        for r in leased:
            params += (r[0], r[14], r[10], owner, now_v)
        conn.execute(
            "INSERT INTO attempts (post_id, number, idempotency_key, owner, started_at) "
            f"VALUES {values}",
            params,
        )
        opened = json.loads(
            one(
                "SELECT json_group_array(json_array(id, post_id)) FROM attempts "
                f"WHERE post_id IN ({marks}) AND outcome IS NULL AND owner = ? "
                "AND started_at = ?",
                (*ids, owner, now_v),
            )
        )
        key_of = {r[0]: r[10] for r in leased}
        return [(a, p, key_of[p]) for a, p in opened]

    done = 0
    first = time.time()
    conn.execute("BEGIN IMMEDIATE")
    claimed = claim(datetime.now(UTC))
    conn.execute("COMMIT")
    while claimed:
        now = datetime.now(UTC)
        conn.execute("BEGIN IMMEDIATE")
        # The send record: the requests of ``claimed`` may leave once this commits.
        ids = [a for a, _, _ in claimed]
        marks = ", ".join("?" * len(ids))
        sent = set(ids)
        if conn.execute(
            f"UPDATE attempts SET sent_at = ? WHERE id IN ({marks}) AND outcome IS NULL",
            (_stamp(now), *ids),
        ).rowcount != len(
            ids
        ):  # some were closed meanwhile (never here; the daemon reads back which)
            found = one(
                f"SELECT group_concat(id) FROM attempts WHERE id IN ({marks}) AND outcome IS NULL",
                ids,
            )
            sent = {int(i) for i in found.split(",")} if found else set()
        following = claim(now)
        conn.execute("COMMIT")
        going = [c for c in claimed if c[0] in sent]  # the requests leave here (no-op)
        finished = _stamp(datetime.now(UTC))
        if going:
            conn.execute("BEGIN IMMEDIATE")
            close_attempts([(a, finished, "published", None, None, 0.1, None) for a, _, _ in going])
            publish([(p, k, None, finished, None) for _, p, k in going], finished)
            conn.execute("COMMIT")
        done += len(going)
        claimed = following
    end = time.time()
    conn.close()
    return {"first": first, "end": end, "done": done, "peak_rss_mb": _peak_rss_mb()}


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
    r = sub.add_parser("sqlite-raw")
    r.add_argument("--db", required=True, help="an SQLite file with the project's schema")
    r.add_argument("--batch", type=int, default=200)
    args = parser.parse_args()
    if args.role == "daemon":
        smm_args = args.smm_args[1:] if args.smm_args[:1] == ["--"] else args.smm_args
        run_daemon(args.record, smm_args)
        return
    if args.role == "sqlite-raw":
        out = run_sqlite_raw(args.db, args.batch)
    elif args.role == "pgqueuer":
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
