"""``smm queue list``'s first page at a large queue, beside a plain indexed SELECT of the same rows.

    python benchmarks/bench_queue.py [--posts 1000000] [--runs 7] [--json FILE]

Fills an SQLite database of the project's schema with ``--posts`` posts (20 accounts; most
queued, a quarter published, a few waiting for a retry, paused or cancelled), then times, runs
interleaved: the data path of ``smm queue list`` (``page_posts``: the first page of 100 posts
in due order, and the page after it), the CLI's whole command in this process (click, the
engine, the table) for the first page, and the peer: one plain SELECT of the first 100 queued
posts by ``next_attempt_at`` through ``ix_posts_due``, straight on sqlite3. Medians; the
target is the first page <= 0.3 s.
"""

from __future__ import annotations

import argparse
import io
import sqlite3
import sys
import tempfile
import time
from contextlib import redirect_stderr, redirect_stdout
from datetime import datetime, timedelta
from pathlib import Path

from benchlib import Report, add_json_option, load_line, median

from scheduler.db.engine import make_engine
from scheduler.db.migrate import upgrade
from scheduler.queue import PageCursor, page_posts

STATES = ["queued"] * 14 + ["published"] * 5 + ["retry_wait", "paused", "cancelled"]


def fill(db: Path, posts: int, accounts: int = 20) -> None:
    engine = make_engine(f"sqlite:///{db}")
    upgrade(engine)
    engine.dispose()
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    now = datetime(2030, 1, 1)  # stored as SQLAlchemy stores UTC times in SQLite: naive
    fmt = "%Y-%m-%d %H:%M:%S.%f"
    stamp = now.strftime(fmt)
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO accounts (id, name, platform, timezone, paused, auth_state, created_at,"
        " updated_at)"
        " VALUES (?, ?, 'sim', 'Europe/Riga', 0, 'ok', ?, ?)",
        [(i + 1, f"acc{i}", stamp, stamp) for i in range(accounts)],
    )

    def rows():  # type: ignore[no-untyped-def]
        for i in range(posts):
            state = STATES[i % len(STATES)]
            due = (now + timedelta(minutes=(i * 7919) % (posts * 2))).strftime(fmt)
            nxt = due if state != "retry_wait" else (now + timedelta(minutes=i)).strftime(fmt)
            yield (
                1 + i % accounts,
                "tip",
                f"post {i}: a tip about content plans",
                "[]",
                "[]",
                0,
                "queue",
                i,
                f"p{i:07d}",
                state,
                f"k{i:012x}",
                0,
                0,
                due,
                nxt,
                stamp,
                stamp,
                "h",
            )

    conn.executemany(
        "INSERT INTO posts (account_id, content_type, text, media, tags, evergreen, schedule,"
        " plan_order, key, state, idempotency_key, attempt_count, repeat_count, due_at,"
        " next_attempt_at, created_at, updated_at, content_hash)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows(),
    )
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=7)
    add_json_option(parser)
    args = parser.parse_args()
    report = Report("queue", settings={"posts": args.posts, "runs": args.runs})
    print(f"smm queue list at {args.posts:,} posts (SQLite), {args.runs} runs; {load_line()}")
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "queue.db"
        t0 = time.perf_counter()
        fill(db, args.posts)
        print(f"  filled in {time.perf_counter() - t0:.1f} s")
        from click.testing import CliRunner

        from scheduler.cli import cli

        engine = make_engine(f"sqlite:///{db}")
        raw = sqlite3.connect(db)
        first, second, command, peer = [], [], [], []
        for _ in range(args.runs):
            t = time.perf_counter()
            with engine.connect() as conn:
                rows, cursor = page_posts(conn, limit=100)
            first.append(time.perf_counter() - t)
            assert len(rows) == 100
            assert cursor is not None
            t = time.perf_counter()
            with engine.connect() as conn:
                nxt, _ = page_posts(conn, after=PageCursor.decode(cursor.encode()), limit=100)
            second.append(time.perf_counter() - t)
            assert nxt
            assert nxt[0].id != rows[0].id
            t = time.perf_counter()
            with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
                done = CliRunner().invoke(cli, ["--db", f"sqlite:///{db}", "queue", "list"])
            command.append(time.perf_counter() - t)
            assert done.exit_code == 0, done.output
            t = time.perf_counter()
            got = raw.execute(
                "SELECT * FROM posts WHERE state IN ('queued', 'retry_wait')"
                " ORDER BY next_attempt_at, id LIMIT 100"
            ).fetchall()
            peer.append(time.perf_counter() - t)
            assert len(got) == 100
        raw.close()
        engine.dispose()
    peer_m = median(peer)
    for name, runs in (
        ("first page (page_posts)", first),
        ("next page (page_posts --after)", second),
        ("smm queue list, whole command in-process", command),
    ):
        print(
            f"  {name:42s} {median(runs) * 1000:8.1f} ms (runs "
            f"{', '.join(f'{r * 1000:.0f}' for r in runs)}); plain indexed SELECT"
            f" {peer_m * 1000:.1f} ms; x{median(runs) / peer_m:.1f} of it"
        )
        report.add(
            f"queue list {name} at {args.posts:,} posts",
            runs,
            "s",
            peer="plain indexed SELECT of 100 rows (sqlite3)",
            peer_runs=peer,
            higher_is_better=False,
            target="<= 0.3 s" if "first" in name else None,
            ok=median(runs) <= 0.3 if "first" in name else None,
        )
    print(f"  target: first page <= 300 ms; {load_line()} (after)")
    report.write(args.json)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
