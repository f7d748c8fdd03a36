"""Dispatch: throughput, lateness, start-up and memory of ``smm run``, beside two baselines.

Every figure comes from real ``smm run`` processes publishing through a no-op network (platform
``noop``, registered in-process like any plugin; no HTTP), on SQLite and on the local
PostgreSQL server. In the same run, side by side:

* the limit on SQLite: a plain ``sqlite3`` loop doing the daemon's database work (the same
  statements and transactions on the same schema; ``dispatch_roles.py sqlite-raw``). It is
  the least work that keeps the daemon's guarantees: a claim that leases each post and opens
  its attempt, a send record committed before any request leaves, one result written per
  post. Whenever a cheaper sequence of statements or transactions that keeps all of them is
  found, the loop uses it too, so that the ratio moves only with the daemon's own overhead
  (its scheduling, plugins, event loop, threads and bookkeeping), never with the loop doing
  more than it needs;
* a naive baseline, one APScheduler 3 ``date`` job per post (AsyncIOScheduler, memory job
  store, default misfire grace), draining the same number of no-op jobs and the same burst;
* PgQueuer (batch 200), draining the same number of no-op jobs and the same burst on the same
  PostgreSQL server.

Repetitions are interleaved (ours, its peer, ours, its peer...) so that a change in the
machine's load falls on both; every figure is the median of the runs, printed beside all runs,
the peer's median and their ratio, with the load average before and after.

Scenarios:

* throughput: N posts all due, drained by 1 daemon (SQLite), 1 and 3 daemons (PostgreSQL);
  posts/s = N / (the moment the last result is committed - first claim): the end is seen by a
  watcher polling the queue every few milliseconds (two index lookups), not taken from a
  timestamp written before the commit;
* lateness at a steady rate: posts due every 1/rate s; lateness = attempt start - due time.
  The due times start at least a second after the daemon's READY=1: a run whose daemon was
  not ready by then is discarded and repeated with a longer lead, so start-up never counts as
  lateness;
* burst: B posts due in the same second: when the last one started, how many were missed;
* a million queued: 1,000,000 posts due in a month plus one due now; start-up = process start
  until READY=1 (sd_notify) and until the due post's first attempt; RSS of the daemon;
* drain memory: one daemon drains 10,000, 100,000 and 1,000,000 posts due at once; its peak
  RSS at each size (flat: nothing per post stays in the process).

    python benchmarks/bench_dispatch.py [--posts 20000] [--burst 10000] [--runs 5]
        [--rate 100] [--steady-seconds 30] [--queued 1000000] [--drain-sizes N ...]
        [--throughput-on sqlite|postgres ...] [--skip NAME ...]
        [--daemon-defaults] [--json FILE]

Needs PostgreSQL (``--pg-host``, default /var/run/postgresql; the user may create databases)
and, for the baselines, ``pip install 'pgqueuer==1.6.*'`` (APScheduler 3 is a dependency).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchlib import Report, add_json_option, load_line, median
from sqlalchemy import func, select, text

from scheduler.accounts import sync_accounts
from scheduler.config import parse_config
from scheduler.db.bulk import insert_rows
from scheduler.db.engine import make_engine
from scheduler.db.migrate import upgrade
from scheduler.db.models import Attempt, Post, PostState

HERE = Path(__file__).resolve().parent
ROLES = HERE / "dispatch_roles.py"
posts_t = Post.__table__  # type: ignore[attr-defined]
attempts_t = Attempt.__table__  # type: ignore[attr-defined]

ACCOUNTS = 10
#: The daemon settings: the shipped defaults, but for what a benchmark must pin (printed with
#: the figures). ``--concurrency N`` measures a tuned daemon beside them.
DAEMON_SETTINGS: dict[str, Any] = {"shutdown_deadline": "20s"}
DONE_STATES = (PostState.PUBLISHED, PostState.MISSED, PostState.FAILED, PostState.UNCONFIRMED)


def config_text(settings: dict[str, Any]) -> str:
    lines = ["[logging]", 'level = "info"', "", "[daemon]"]
    for key, value in settings.items():
        lines.append(f"{key} = {json.dumps(value)}")
    for i in range(ACCOUNTS):
        lines += ["", f"[accounts.bench{i}]", 'platform = "noop"', 'timezone = "UTC"']
    return "\n".join(lines) + "\n"


# ============================================================================ databases


@dataclass
class Databases:
    """Fresh databases per scenario: SQLite files in a temporary directory, PostgreSQL ones
    created on the local server and dropped at the end."""

    tmp: Path
    pg_host: str
    created: list[str] = field(default_factory=list)
    counter: int = 0

    def new(self, kind: str, name: str) -> str:
        self.counter += 1
        if kind == "sqlite":
            return f"sqlite:///{self.tmp / f'{name}-{self.counter}.db'}"
        db = f"smm_bench_{os.getpid()}_{self.counter}_{name}"
        with self.admin() as conn:
            conn.execute(f'CREATE DATABASE "{db}"')
        self.created.append(db)
        return f"postgresql+psycopg:///{db}?host={self.pg_host}"

    @contextlib.contextmanager
    def admin(self) -> Iterator[Any]:
        import psycopg

        with psycopg.connect(host=self.pg_host, dbname="postgres", autocommit=True) as conn:
            yield conn

    def drop_all(self) -> None:
        if not self.created:
            return
        with self.admin() as conn:
            for db in self.created:
                conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        self.created.clear()


def libpq_dsn(url: str) -> str:
    """``postgresql+psycopg:///db?host=...`` as a plain libpq URI (psycopg and asyncpg)."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def post_row(key: str, account_id: int, due: datetime, now: datetime, order: int) -> dict[str, Any]:
    return {
        "key": key,
        "account_id": account_id,
        "content_type": "tip",
        "text": f"Post {key}: a short text, as a real post would have.",
        "media": [],
        "tags": [],
        "evergreen": False,
        "schedule": "fixed",
        "plan_order": order,
        "content_hash": "0" * 64,
        "state": PostState.QUEUED.value,
        "due_at": due,
        "next_attempt_at": due,
        "idempotency_key": key,
        "attempt_count": 0,
        "repeat_count": 0,
        "created_at": now,
        "updated_at": now,
    }


def prepare(url: str, config: str, dues: Sequence[datetime], prefix: str = "p") -> list[int]:
    """Migrate ``url``, create the accounts, queue one post per due time; the account ids."""
    engine = make_engine(url)
    upgrade(engine)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        ids = sorted(sync_accounts(conn, parse_config(config, "bench.toml"), now).values())
        rows = [
            post_row(f"{prefix}-{i:07d}", ids[i % len(ids)], due, now, i)
            for i, due in enumerate(dues)
        ]
        for start in range(0, len(rows), 10_000):
            insert_rows(conn, posts_t, rows[start : start + 10_000])
    engine.dispose()
    settle(url)
    return ids


def queue_far_future(
    url: str, account_ids: Sequence[int], n: int, *, now_due: bool = False, prefix: str = "far"
) -> float:
    """Queue ``n`` posts due in 30+ days (``now_due``: all due now) with one SQL statement;
    seconds taken."""
    engine = make_engine(url)
    now = datetime.now(UTC)
    ahead = timedelta(0) if now_due else timedelta(days=30)
    t0 = time.perf_counter()
    first, count = min(account_ids), len(account_ids)
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            stamp = (now + ahead).strftime("%Y-%m-%d %H:%M:%S.%f")
            created = now.strftime("%Y-%m-%d %H:%M:%S.%f")
            conn.exec_driver_sql(
                "INSERT INTO posts (key, account_id, content_type, text, media, tags, evergreen,"
                " schedule, plan_order, content_hash, state, due_at, next_attempt_at,"
                " idempotency_key, attempt_count, repeat_count, created_at, updated_at)"
                " WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
                " SELECT ? || i, ? + i % ?, 'tip', 'A post queued far ahead, number ' || i,"
                " '[]', '[]', 0, 'fixed', i, ?, 'queued', ?, ?, ? || i, 0, 0, ?, ? FROM n",
                (
                    n,
                    f"{prefix}-",
                    first,
                    count,
                    "0" * 64,
                    stamp,
                    stamp,
                    f"{prefix}-",
                    created,
                    created,
                ),
            )
        else:
            conn.execute(
                text(
                    "INSERT INTO posts (key, account_id, content_type, text, media, tags,"
                    " evergreen, schedule, plan_order, content_hash, state, due_at,"
                    " next_attempt_at, idempotency_key, attempt_count, repeat_count,"
                    " created_at, updated_at)"
                    " SELECT :prefix || i, :first + i % :count, 'tip',"
                    " 'A post queued far ahead, number ' || i, '[]', '[]', false, 'fixed', i,"
                    " :hash, 'queued', :due + i * :step * interval '1 second',"
                    " :due + i * :step * interval '1 second', :prefix || i, 0, 0, :now, :now"
                    " FROM generate_series(1, :n) AS i"
                ),
                {
                    "first": first,
                    "count": count,
                    "hash": "0" * 64,
                    "due": now + ahead,
                    "step": 0 if now_due else 1,
                    "prefix": f"{prefix}-",
                    "now": now,
                    "n": n,
                },
            )
    engine.dispose()
    elapsed = time.perf_counter() - t0
    settle(url)
    return elapsed


def settle(url: str) -> None:
    """Checkpoint after a bulk load, so that its write-back does not land on the next scenario
    (a running system's database is not in the middle of absorbing a million new rows)."""
    engine = make_engine(url)
    with engine.connect() as conn:
        auto = conn.execution_options(isolation_level="AUTOCOMMIT")
        if engine.dialect.name == "sqlite":
            auto.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        else:
            auto.exec_driver_sql("VACUUM ANALYZE posts")
            auto.exec_driver_sql("CHECKPOINT")
    engine.dispose()


@dataclass
class PostOutcome:
    key: str
    state: str
    due: datetime
    started: datetime | None  # first attempt
    committed: datetime  # the post row's last update: the result's commit


def outcomes(url: str, prefix: str = "p") -> list[PostOutcome]:
    engine = make_engine(url)
    first = (
        select(attempts_t.c.post_id, func.min(attempts_t.c.started_at).label("started"))
        .group_by(attempts_t.c.post_id)
        .subquery()
    )
    q = (
        select(
            posts_t.c.key, posts_t.c.state, posts_t.c.due_at, first.c.started, posts_t.c.updated_at
        )
        .outerjoin(first, first.c.post_id == posts_t.c.id)
        .where(posts_t.c.key.like(f"{prefix}-%"))
    )
    with engine.connect() as conn:
        rows = [PostOutcome(*r) for r in conn.execute(q)]
    engine.dispose()
    return rows


def queue_one(url: str, key: str, account_id: int) -> None:
    """One more post, due now."""
    engine = make_engine(url)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        insert_rows(conn, posts_t, [post_row(key, account_id, now, now, 0)])
    engine.dispose()


def first_attempt(url: str, key: str) -> datetime | None:
    """When the first attempt at post ``key`` started."""
    engine = make_engine(url)
    with engine.connect() as conn:
        started: datetime | None = conn.execute(
            select(func.min(attempts_t.c.started_at))
            .join(posts_t, posts_t.c.id == attempts_t.c.post_id)
            .where(posts_t.c.key == key)
        ).scalar()
    engine.dispose()
    return started


def count_done(url: str, prefix: str = "p") -> int:
    engine = make_engine(url)
    with engine.connect() as conn:
        n = conn.execute(
            select(func.count()).where(
                posts_t.c.state.in_(DONE_STATES), posts_t.c.key.like(f"{prefix}-%")
            )
        ).scalar_one()
    engine.dispose()
    return int(n)


class DoneWatcher:
    """Watches a draining queue and notes the moment nothing is left waiting or leased: the
    last result's commit, seen from outside (two lookups on partial indexes every ``every``
    seconds, so the watcher costs the daemon next to nothing)."""

    QUERY = (
        "SELECT (SELECT 1 FROM posts WHERE state IN ('queued', 'retry_wait') LIMIT 1),"
        " (SELECT 1 FROM posts WHERE state = 'claimed' LIMIT 1)"
    )

    def __init__(self, url: str, every: float = 0.003) -> None:
        self.url, self.every = url, every
        self.done_at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        # A plain driver connection in autocommit: each poll sees the latest commit (an
        # engine connection would hold one read snapshot for as long as it is open).
        conn: Any
        if self.url.startswith("sqlite:///"):
            conn = sqlite3.connect(self.url.removeprefix("sqlite:///"), isolation_level=None)
        else:
            import psycopg

            conn = psycopg.connect(libpq_dsn(self.url), autocommit=True)
        try:
            while not self._stop.is_set():
                row = conn.execute(self.QUERY).fetchone()
                if row[0] is None and row[1] is None:
                    self.done_at = time.time()
                    break
                time.sleep(self.every)
        finally:
            conn.close()

    def wait(self, timeout: float = 900) -> float:
        self._thread.join(timeout)
        self._stop.set()
        if self.done_at is None:
            raise RuntimeError("the queue did not drain")
        return self.done_at


# ============================================================================ processes


class Notify:
    """A NOTIFY_SOCKET, as systemd gives a Type=notify service: records when READY=1 came."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.ready_at: float | None = None

    def poll(self) -> None:
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return
            if b"READY=1" in data.split(b"\n") and self.ready_at is None:
                self.ready_at = time.time()

    def close(self) -> None:
        self.sock.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class Daemon:
    """One ``smm run`` process with the no-op network."""

    def __init__(self, tmp: Path, url: str, config: Path, name: str, *, once: bool) -> None:
        self.record = tmp / f"{name}.calls"
        self.log = tmp / f"{name}.log"
        self.notify = Notify(tmp / f"{name}.notify")
        env = dict(os.environ, SMM_DATABASE_URL=url, NOTIFY_SOCKET=str(self.notify.path))
        args = ["--config", str(config), "run"] + (["--once"] if once else [])
        self.spawned_at = time.time()
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(ROLES), "daemon", "--record", str(self.record), "--", *args],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.peak_rss = 0.0
        self._rss_watcher = threading.Thread(target=self._watch_rss, daemon=True)
        self._rss_watcher.start()

    def wait_ready(self, timeout: float = 60.0) -> float:
        deadline = time.monotonic() + timeout
        while self.notify.ready_at is None:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited early: {self.log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError("daemon did not send READY=1")
            time.sleep(0.002)
            self.notify.poll()
        return self.notify.ready_at

    def rss_mb(self) -> tuple[float, float]:
        """(current, peak) resident memory of the daemon, MiB."""
        fields = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            fields[key] = value.strip()
        return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024

    def _watch_rss(self) -> None:
        # From the start: a ``--once`` daemon exits as soon as the queue is drained.
        while self.proc.poll() is None:
            with contextlib.suppress(OSError, KeyError, ValueError):
                self.peak_rss = max(self.peak_rss, self.rss_mb()[1])
            time.sleep(0.05)

    def wait_peak_rss_mb(self, timeout: float = 900.0) -> float:
        """Wait for the daemon to exit (``--once``); its peak resident memory, MiB, as last
        read while it ran (``VmHWM``). Raises if it was never read."""
        self.proc.wait(timeout)
        self._rss_watcher.join(timeout)
        if not self.peak_rss:
            raise RuntimeError("the daemon's memory was never read while it ran")
        return self.peak_rss

    def stop(self, timeout: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout)
        self.notify.close()
        if rc != 0:
            raise RuntimeError(f"daemon exited {rc}: {self.log.read_text()[-2000:]}")
        return rc

    def problems(self) -> list[str]:
        """The events the daemon logged above info (a claim that failed shows up here)."""
        found = []
        for line in self.log.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(event, dict) and event.get("level") not in (None, "debug", "info"):
                found.append(f"{event.get('level')} {event.get('event')}")
        return found

    def calls(self) -> list[tuple[float, str]]:
        if not self.record.exists():
            return []
        out = []
        for line in self.record.read_text().splitlines():
            at, key = line.split(" ", 1)
            out.append((float(at), key))
        return out


def run_role(*args: str, timeout: float = 900) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(ROLES), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{args[0]} failed: {done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# ============================================================================ statistics


def pct(values: Sequence[float], q: float) -> float:
    """The q-th percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms"


def rates(result: dict[str, Any]) -> str:
    return "/".join(f"{r:,.0f}" for r in result["all_rates"])


def check(ok: bool) -> str:
    return "ok" if ok else "MISSED"


# ============================================================================ scenarios


@dataclass
class Bench:
    args: argparse.Namespace
    tmp: Path
    dbs: Databases
    config_path: Path
    config: str
    report: Report
    lines: list[str] = field(default_factory=list)

    def out(self, line: str = "") -> None:
        print(line, flush=True)
        self.lines.append(line)

    # ------------------------------------------------------------------ throughput

    def ours_throughput(
        self, kind: str, daemons: int, n: int, *, bulk: bool = False
    ) -> dict[str, Any]:
        url = self.dbs.new(kind, f"tp{daemons}")
        if bulk:  # generated by the database: a million posts are not built in Python
            queue_far_future(url, prepare(url, self.config, []), n, now_due=True, prefix="p")
        else:
            prepare(url, self.config, [datetime.now(UTC)] * n)
        watcher = DoneWatcher(url)
        procs = [
            Daemon(self.tmp, url, self.config_path, f"tp-{kind}-{daemons}-{i}", once=True)
            for i in range(daemons)
        ]
        end = watcher.wait()
        peaks = []
        for p in procs:
            peaks.append(p.wait_peak_rss_mb())
            p.stop()
            if problems := p.problems():
                self.out(f"  (daemon log: {len(problems)} events above info: {problems[:5]})")
        rows = outcomes(url)
        published = [r for r in rows if r.state == PostState.PUBLISHED]
        started = min(r.started for r in rows if r.started).timestamp()
        span = end - started
        calls = [c for p in procs for c in p.calls()]
        keys = [k for _, k in calls]
        return {
            "rate": len(published) / span,
            "span": span,
            "published": len(published),
            "not_published": n - len(published),
            "duplicate_calls": len(keys) - len(set(keys)),
            "per_daemon": [len(p.calls()) for p in procs],
            "peak_rss_mb": max(peaks),
        }

    def raw_sqlite_throughput(self, n: int) -> dict[str, Any]:
        url = self.dbs.new("sqlite", "raw")
        prepare(url, self.config, [datetime.now(UTC)] * n)
        r = run_role("sqlite-raw", "--db", url.removeprefix("sqlite:///"))
        return {"rate": r["done"] / (r["end"] - r["first"]), **r}

    def pgqueuer_throughput(self, n: int) -> dict[str, Any]:
        url = self.dbs.new("postgres", "pgq")
        dsn = libpq_dsn(url)
        pgq_install_and_enqueue(dsn, n, None)
        r = run_role("pgqueuer", "--dsn", dsn, "--jobs", str(n), "--batch", "200")
        return {"rate": r["done"] / (r["end"] - r["first"]), "done": r["done"], **r}

    def apscheduler_drain(self, n: int) -> dict[str, Any]:
        r = run_role("apscheduler", "--jobs", str(n))
        span = r["end"] - r["started"]
        return {"rate": r["done"] / span, **r}

    def interleaved(self, *scenarios: tuple[Any, ...]) -> list[dict[str, Any]]:
        """Run each scenario ``--runs`` times, alternating between them (A B A B ...); per
        scenario the median run by rate, with every run's rate and misses."""
        results: list[list[dict[str, Any]]] = [[] for _ in scenarios]
        for _ in range(self.args.runs):
            for i, (fn, *a) in enumerate(scenarios):
                results[i].append(fn(*a))
        out = []
        for runs in results:
            ordered = sorted(runs, key=lambda r: r["rate"])
            mid = dict(ordered[(len(ordered) - 1) // 2])
            mid["rate"] = median([r["rate"] for r in runs])
            mid["all_rates"] = [r["rate"] for r in runs]
            mid["all_missed"] = [r.get("missed", 0) for r in runs]
            out.append(mid)
        return out

    def throughput(self) -> None:
        n = self.args.posts
        self.out(
            f"\n== throughput: {n:,} posts due at once, median of {self.args.runs}"
            " interleaved runs =="
        )
        if "sqlite" in self.args.throughput_on:
            self.sqlite_throughput(n)
        if "postgres" in self.args.throughput_on:
            self.postgres_throughput(n)
        if self.skip("apscheduler"):
            return
        aps = self.interleaved((self.apscheduler_drain, n))[0]
        self.out(
            f"  APScheduler 3, 1 job per post    {aps['rate']:9,.0f} jobs/s"
            f"  ({aps['done']:,} ran, {aps['missed']:,} MISSED by the default misfire grace,"
            f" {aps['add_s']:.2f} s to add the jobs; MISSED in each run: {aps['all_missed']})"
        )

    def sqlite_throughput(self, n: int) -> None:
        sqlite, raw = self.interleaved(
            (self.ours_throughput, "sqlite", 1, n), (self.raw_sqlite_throughput, n)
        )
        ratio = sqlite["rate"] / raw["rate"]
        self.out(
            f"  smm run, SQLite, 1 daemon        {sqlite['rate']:9,.0f} posts/s"
            f"  (runs {rates(sqlite)}, {sqlite['duplicate_calls']} duplicate calls)"
        )
        self.out(
            f"  raw sqlite3, same SQL (limit)    {raw['rate']:9,.0f} posts/s  (runs {rates(raw)})"
            f"   ratio {ratio:.2f}   target >= 0.5  {check(ratio >= 0.5)}"
        )
        self.report.add(
            "throughput, SQLite, 1 daemon",
            sqlite["all_rates"],
            "posts/s",
            peer="raw sqlite3 loop, same SQL",
            peer_runs=raw["all_rates"],
            target="ratio >= 0.5",
            ok=ratio >= 0.5,
        )

    def postgres_throughput(self, n: int) -> None:
        if self.skip("pgqueuer"):
            pg1, pg3 = self.interleaved(
                (self.ours_throughput, "postgres", 1, n), (self.ours_throughput, "postgres", 3, n)
            )
            pgq = None
        else:
            pg1, pgq, pg3 = self.interleaved(
                (self.ours_throughput, "postgres", 1, n),
                (self.pgqueuer_throughput, n),
                (self.ours_throughput, "postgres", 3, n),
            )
        for label, r, want in (("1 daemon ", pg1, 1.0), ("3 daemons", pg3, 1.3)):
            verdict = ""
            if pgq:
                ratio = r["rate"] / pgq["rate"]
                verdict = (
                    f"ratio to PgQueuer {ratio:.2f}   target >= {want}  {check(ratio >= want)}"
                )
            self.out(
                f"  smm run, PostgreSQL, {label}  {r['rate']:9,.0f} posts/s"
                f"  (runs {rates(r)}, per daemon {r['per_daemon']},"
                f" {r['duplicate_calls']} duplicate calls)   {verdict}"
            )
            self.report.add(
                f"throughput, PostgreSQL, {label.strip()}",
                r["all_rates"],
                "posts/s",
                peer="PgQueuer 1.6, batch 200" if pgq else None,
                peer_runs=pgq["all_rates"] if pgq else (),
                target=f"ratio >= {want}",
                ok=(r["rate"] / pgq["rate"] >= want) if pgq else None,
            )
        if pgq:
            self.out(
                f"  PgQueuer 1.6, batch 200, 1 proc  {pgq['rate']:9,.0f} jobs/s"
                f"  (runs {rates(pgq)})"
            )

    def drain_memory(self) -> None:
        """Peak RSS of one daemon draining queues of growing size: flat, or it keeps
        something per post."""
        sizes = self.args.drain_sizes
        self.out(f"\n== memory while draining {', '.join(f'{n:,}' for n in sizes)} posts ==")
        for kind in self.args.drain_on:
            peaks = []
            for n in sizes:
                r = self.ours_throughput(kind, 1, n, bulk=True)
                peaks.append(r["peak_rss_mb"])
                self.out(
                    f"  smm run, {kind:10s}  {n:>9,} posts: peak RSS {r['peak_rss_mb']:.0f} MiB"
                    f"  ({r['rate']:,.0f} posts/s, {r['not_published']} not published)"
                    f"   target <= 120 MiB  {check(r['peak_rss_mb'] <= 120)}"
                )
                self.report.add(
                    f"peak RSS draining {n:,} posts, {kind}",
                    [r["peak_rss_mb"]],
                    "MiB",
                    target="<= 120 MiB",
                    ok=r["peak_rss_mb"] <= 120,
                )
            self.out(
                f"  smm run, {kind:10s}  growth from {sizes[0]:,} to {sizes[-1]:,} posts:"
                f" {peaks[-1] - peaks[0]:+.0f} MiB"
            )

    # ------------------------------------------------------------------ lateness

    def ours_lateness(
        self, kind: str, dues_from: Any, lead: float = 4.0, tries: int = 4
    ) -> dict[str, Any]:
        """Lateness of the posts ``dues_from(due0)`` gives, the first due ``lead`` s from now.

        A run counts only if the daemon sent READY=1 at least a second before the first due
        time; otherwise it is discarded and run again with twice the lead.
        """
        for _ in range(tries):
            due0 = time.time() + lead
            dues = dues_from(due0)
            url = self.dbs.new(kind, "late")
            prepare(url, self.config, dues)
            d = Daemon(self.tmp, url, self.config_path, f"late-{kind}-{len(dues)}", once=False)
            ready = d.wait_ready()
            if ready > due0 - 1.0:
                d.stop()
                self.out(
                    f"  (READY came {ready - due0 + 1.0:.2f} s too late for a lead of {lead:.0f} s:"
                    " run discarded, repeated with twice the lead)"
                )
                lead *= 2
                continue
            return self._lateness(url, d, dues, due0, ready)
        raise RuntimeError(f"the daemon was never ready {lead / 2:.0f} s after its start")

    def _lateness(
        self, url: str, d: Daemon, dues: list[datetime], due0: float, ready: float
    ) -> dict[str, Any]:
        last_due = max(dues).timestamp()
        while time.time() < last_due + 1 or count_done(url) < len(dues):
            time.sleep(0.5)
            if time.time() > last_due + 120:
                break
        d.stop()
        if problems := d.problems():
            self.out(f"  (daemon log: {len(problems)} events above info: {problems[:5]})")
        rows = outcomes(url)
        late = [(r.started - r.due).total_seconds() for r in rows if r.started]
        calls = d.calls()
        due_of = {r.key: r.due.timestamp() for r in rows}
        call_late = [at - due_of[k] for at, k in calls if k in due_of]
        return {
            "ready_before_due": due0 - ready,
            "n": len(rows),
            "published": sum(r.state == PostState.PUBLISHED for r in rows),
            "missed": sum(r.state == PostState.MISSED for r in rows),
            "p50": pct(late, 50),
            "p99": pct(late, 99),
            "max": max(late) if late else float("nan"),
            "call_p50": pct(call_late, 50),
            "call_p99": pct(call_late, 99),
            "call_max": max(call_late) if call_late else float("nan"),
        }

    def steady(self) -> None:
        rate, seconds = self.args.rate, self.args.steady_seconds
        n = int(rate * seconds)
        self.out(f"\n== lateness at a steady {rate} posts/s for {seconds} s ({n:,} posts) ==")
        for kind in self.args.steady_on:

            def dues(due0: float) -> list[datetime]:
                return [datetime.fromtimestamp(due0 + i / rate, UTC) for i in range(n)]

            r = self.ours_lateness(kind, dues)
            ok = r["p99"] <= 0.050
            self.out(
                f"  smm run, {kind:10s}  p50 {ms(r['p50'])}, p99 {ms(r['p99'])},"
                f" max {ms(r['max'])}  (attempt start - due; READY"
                f" {r['ready_before_due']:.1f} s before the first due time);"
                f" publish call p50 {ms(r['call_p50'])}, p99 {ms(r['call_p99'])};"
                f" {r['published']:,} published, {r['missed']} missed"
                f"   target p99 <= 50 ms  {check(ok)}"
            )
            self.report.add(
                f"lateness p99, steady {rate}/s, {kind}",
                [r["p99"] * 1000],
                "ms",
                target="<= 50 ms",
                ok=ok,
            )

    def burst(self) -> None:
        b = self.args.burst
        self.out(f"\n== burst: {b:,} posts due in the same second ==")
        for kind in self.args.steady_on:
            r = self.ours_lateness(kind, lambda due0: [datetime.fromtimestamp(due0, UTC)] * b)
            ok = r["max"] <= 1.0 and r["missed"] == 0 and r["published"] == b
            self.out(
                f"  smm run, {kind:10s}  last started {ms(r['max'])} after the due time"
                f" (p50 {ms(r['p50'])}, p99 {ms(r['p99'])}; last publish call"
                f" {ms(r['call_max'])}); {r['published']:,} published, {r['missed']} missed"
                f"   target all within 1 s, 0 missed  {check(ok)}"
            )
            self.report.add(
                f"burst of {b:,}, last start, {kind}",
                [r["max"] * 1000],
                "ms",
                target="<= 1000 ms, 0 missed",
                ok=ok,
            )
        if not self.skip("pgqueuer"):
            url = self.dbs.new("postgres", "pgqburst")
            dsn = libpq_dsn(url)
            due0 = time.time() + 5.0
            pgq_install_and_enqueue(dsn, b, due0)
            r = run_role("pgqueuer", "--dsn", dsn, "--jobs", str(b), "--burst-at", str(due0))
            self.out(
                f"  PgQueuer 1.6, batch 200      first started {ms(r['first'] - due0)}, last"
                f" {ms(r['last'] - due0)} after the due time; {r['done']:,} ran"
            )
        if self.skip("apscheduler"):
            return
        due0 = time.time() + 5.0
        r = run_role("apscheduler", "--jobs", str(b), "--burst-at", str(due0))
        last = ms(r["last"] - due0) if r["last"] else "-"
        self.out(
            f"  APScheduler 3, 1 job/post    last ran {last} after the due time;"
            f" {r['done']:,} ran, {r['missed']:,} MISSED (default misfire grace)"
        )

    # ------------------------------------------------------------------ a million queued

    def million(self) -> None:
        n = self.args.queued
        runs = max(self.args.runs, 1)
        self.out(
            f"\n== start-up and memory with {n:,} posts queued (plus 1 due now),"
            f" median of {runs} starts =="
        )
        for kind in self.args.million_on:
            url = self.dbs.new(kind, "million")
            ids = prepare(url, self.config, [])
            fill_s = queue_far_future(url, ids, n)
            readies, firsts, rss = [], [], []
            for run in range(runs):
                key = f"now-{run}"
                queue_one(url, key, ids[0])
                d = Daemon(self.tmp, url, self.config_path, f"million-{kind}-{run}", once=False)
                readies.append(d.wait_ready() - d.spawned_at)
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    started = first_attempt(url, key)
                    if started is not None:
                        firsts.append(started.timestamp() - d.spawned_at)
                        break
                    time.sleep(0.01)
                time.sleep(3.0)  # a few ticks of steady running
                rss.append(d.rss_mb())
                d.stop()
            ready, peak = median(readies), max(p for _, p in rss)
            first = f"{median(firsts):.2f} s" if firsts else "never"
            ok = ready <= 1.0 and peak <= 100
            self.out(
                f"  smm run, {kind:10s}  READY {ready:.2f} s after exec (runs:"
                f" {', '.join(f'{r:.2f}' for r in readies)}), first claim {first};"
                f" RSS {max(r for r, _ in rss):.0f} MiB, peak {peak:.0f} MiB"
                f"   [queued in {fill_s:.1f} s]"
                f"   target start-up <= 1 s, RSS <= 100 MB  {check(ok)}"
            )
            self.report.add(
                f"start-up to READY with {n:,} queued, {kind}",
                readies,
                "s",
                target="<= 1 s",
                ok=ready <= 1.0,
            )
            self.report.add(
                f"peak RSS with {n:,} queued, {kind}",
                [p for _, p in rss],
                "MiB",
                target="<= 100 MiB",
                ok=peak <= 100,
            )
        if not self.skip("apscheduler-million"):
            r = run_role("apscheduler", "--jobs", str(n), "--memory", timeout=3600)
            self.out(
                f"  APScheduler 3, {n:,} jobs in the memory store: start-up"
                f" {r['startup_s']:.1f} s, peak RSS {r['peak_rss_mb']:.0f} MiB"
            )

    def skip(self, name: str) -> bool:
        return name in self.args.skip


def pgq_install_and_enqueue(dsn: str, n: int, due_at: float | None) -> None:
    """Install PgQueuer's schema in ``dsn`` and enqueue ``n`` no-op jobs (due at ``due_at``)."""
    import asyncio

    import psycopg
    from pgqueuer import PsycopgDriver
    from pgqueuer.queries import Queries

    async def go() -> None:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            q = Queries(PsycopgDriver(conn))
            await q.install()
            for start in range(0, n, 10_000):
                size = min(10_000, n - start)
                after = None
                if due_at is not None:
                    after = [timedelta(seconds=max(0.0, due_at - time.time()))] * size
                await q.enqueue(["noop"] * size, [None] * size, [0] * size, after)

    asyncio.run(go())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=20_000, help="throughput: posts drained")
    parser.add_argument(
        "--runs", type=int, default=5, help="throughput and start-up: median of this many"
    )
    parser.add_argument("--rate", type=int, default=100, help="steady lateness: posts/s")
    parser.add_argument("--steady-seconds", type=int, default=30)
    parser.add_argument("--burst", type=int, default=10_000)
    parser.add_argument("--queued", type=int, default=1_000_000)
    parser.add_argument("--pg-host", default="/var/run/postgresql")
    parser.add_argument("--batch-size", type=int, help="[daemon] batch_size (default: shipped)")
    parser.add_argument(
        "--concurrency", type=int, help="[daemon] concurrency (default: the shipped default)"
    )
    parser.add_argument(
        "--throughput-on",
        nargs="+",
        default=["sqlite", "postgres"],
        choices=["sqlite", "postgres"],
        help="databases for throughput",
    )
    parser.add_argument(
        "--steady-on", nargs="+", default=["sqlite", "postgres"], help="databases for lateness"
    )
    parser.add_argument("--million-on", nargs="+", default=["sqlite", "postgres"])
    parser.add_argument(
        "--drain-sizes",
        nargs="+",
        type=int,
        default=[10_000, 100_000, 1_000_000],
        help="drain memory: queue sizes drained by one daemon",
    )
    parser.add_argument("--drain-on", nargs="+", default=["sqlite", "postgres"])
    parser.add_argument(
        "--skip",
        nargs="*",
        default=[],
        choices=[
            "throughput",
            "steady",
            "burst",
            "million",
            "drain-memory",
            "pgqueuer",
            "apscheduler",
            "apscheduler-million",
        ],
    )
    add_json_option(parser)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument(
        "--preload",
        metavar="FILE",
        help="run FILE in each daemon before it starts (to measure a patched daemon)",
    )
    args = parser.parse_args()

    if args.preload:
        os.environ["SMM_BENCH_PRELOAD"] = str(Path(args.preload).resolve())
    tmp = Path(tempfile.mkdtemp(prefix="smm-bench-dispatch-"))
    settings = dict(DAEMON_SETTINGS)
    if args.batch_size:
        settings["batch_size"] = args.batch_size
    if args.concurrency:
        settings["concurrency"] = args.concurrency
    config = config_text(settings)
    config_path = tmp / "config.toml"
    config_path.write_text(config)
    dbs = Databases(tmp, args.pg_host)
    report = Report("dispatch", settings={"daemon": settings, "posts": args.posts})
    bench = Bench(args, tmp, dbs, config_path, config, report)
    bench.out(
        f"dispatch benchmark: no-op network, {ACCOUNTS} accounts, {load_line()},"
        f" Python {platform.python_version()}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )
    import scheduler

    bench.out(f"  scheduler {scheduler.__version__} from {Path(scheduler.__file__).parent}")
    bench.out(
        "  [daemon] shipped defaults, but " + ", ".join(f"{k} = {v}" for k, v in settings.items())
    )
    if args.preload:
        bench.out(f"  daemons patched with {args.preload} (not the released daemon)")
    try:
        if not bench.skip("throughput"):
            bench.throughput()
        if not bench.skip("steady"):
            bench.steady()
        if not bench.skip("burst"):
            bench.burst()
        if not bench.skip("million"):
            bench.million()
        if not bench.skip("drain-memory"):
            bench.drain_memory()
    finally:
        bench.out(f"\n{load_line()} (after)")
        report.write(args.json)
        dbs.drop_all()
        if not args.keep:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"(kept {tmp})")


if __name__ == "__main__":
    main()
