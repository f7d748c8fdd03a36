"""ER recompute over 3,000,000 metric snapshots on SQLite: a full pass (target: at most
2 s), and the incremental one after 1,000 new snapshots on top (target: at most 0.2 s).

Builds a database of published posts, each read at the five collection bands (1 h, 6 h, 24 h,
72 h, 7 d; the 24 h and 72 h readings a little late, as a real job takes them), spread over
the last 90 days, for accounts on networks with reach and without (``--db`` keeps it for the
next run). Times a rebuild (every snapshot read, each post's readings kept), then, interleaved
in each run: 1,000 new snapshots (later readings of posts already read) are added, and the
whole ``recompute`` (statistics, the policy for every account, the weights and decision
records written and committed) is timed as the daemon runs it (kept sums: only the posts new
snapshots touch are read) and as a full pass (every post's kept readings summed), beside the
statistics read from every snapshot with nothing kept (the peer). Prints medians, wall and
CPU seconds, ratios and the load average.

    python benchmarks/bench_er.py [--snapshots 3000000] [--accounts 20] [--types 5] [--runs 5]
        [--db PATH]
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from scheduler.config import empty_config
from scheduler.db.engine import make_engine
from scheduler.db.migrate import upgrade
from scheduler.er.recompute import recompute
from scheduler.er.stats import account_stats

TARGET_S = 2.0
INCREMENTAL_TARGET_S = 0.2
NEW_SNAPSHOTS = 1_000
NOW = datetime(2026, 6, 1, tzinfo=UTC)
BANDS_S = (3600, 6 * 3600, 24 * 3600, 72 * 3600, 7 * 86400)
STAMP = "%Y-%m-%d %H:%M:%S.%f"


def build(path: Path, snapshots: int, accounts: int, types: int, seed: int = 1) -> int:
    """Write the benchmark database; return the number of posts."""
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    rng = random.Random(seed)
    posts = snapshots // len(BANDS_S)
    created = NOW.strftime(STAMP)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO accounts (id, name, platform, timezone, paused, auth_state, created_at,"
        " updated_at) VALUES (?, ?, ?, 'UTC', 0, 'ok', ?, ?)",
        [
            (a + 1, f"acc{a}", "sim" if a % 2 == 0 else "mastodon", created, created)
            for a in range(accounts)
        ],
    )
    true_er = {(a, t): rng.uniform(0.01, 0.05) for a in range(accounts) for t in range(types)}
    post_rows, snap_rows = [], []
    for i in range(posts):
        account, kind = i % accounts, (i // accounts) % types
        published = NOW - timedelta(days=8, seconds=rng.randrange(90 * 86400))
        followers = rng.randrange(1_000, 50_000)
        post_rows.append(
            (
                i + 1, f"post-{i}", account + 1, f"type{kind}", "text", "[]", "[]", 0, "queue",
                i, "0" * 64, "published", f"key-{i}", 0, 0, published.strftime(STAMP),
                f"remote-{i}", followers, created, created,
            )
        )  # fmt: skip
        er = true_er[(account, kind)] * rng.lognormvariate(0, 0.25)
        reach = int(followers * 0.3 * rng.lognormvariate(0, 0.25)) + 1
        for age in BANDS_S:
            late = rng.randrange(0, 1800) if age >= 86400 else 0
            share = 1 - 2.718281828 ** (-(age + late) / 72000)
            engaged = int(reach * er * share)
            snap_rows.append(
                (
                    i + 1, (published + timedelta(seconds=age + late)).strftime(STAMP),
                    age + late, int(engaged * 0.7), int(engaged * 0.12), int(engaged * 0.1),
                    int(engaged * 0.08), None, int(reach * share), int(reach * share * 1.35),
                    None, followers,
                )
            )  # fmt: skip
    conn.executemany(
        "INSERT INTO posts (id, key, account_id, content_type, text, media, tags, evergreen,"
        " schedule, plan_order, content_hash, state, idempotency_key, attempt_count,"
        " repeat_count, published_at, remote_id, followers_at_publish, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        post_rows,
    )
    conn.executemany(
        "INSERT INTO metric_snapshots (post_id, collected_at, age_seconds, likes, comments,"
        " shares, saves, clicks, reach, impressions, views, followers)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        snap_rows,
    )
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return posts


def add_snapshots(path: Path, posts: int, count: int, at: datetime, rng: random.Random) -> None:
    """``count`` new readings of existing posts (a late 7 d reading, as a job takes them)."""
    conn = sqlite3.connect(path, isolation_level=None)
    rows = []
    for post_id in rng.sample(range(1, posts + 1), count):
        age = 7 * 86400 + rng.randrange(60, 3600)
        rows.append(
            (post_id, at.strftime(STAMP), age, rng.randrange(10, 500), rng.randrange(0, 50), 1,
             0, None, rng.randrange(1_000, 20_000), None, None, 10_000)
        )  # fmt: skip
    conn.executemany(
        "INSERT INTO metric_snapshots (post_id, collected_at, age_seconds, likes, comments,"
        " shares, saves, clicks, reach, impressions, views, followers)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    conn.close()


def timed(fn: Any) -> tuple[Any, float, float]:
    """``fn()``, its wall and CPU seconds (SQLite works in this process: its CPU counts)."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snapshots", type=int, default=3_000_000)
    parser.add_argument("--accounts", type=int, default=20)
    parser.add_argument("--types", type=int, default=5)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--db", type=Path, help="build the database here, or use it if it exists")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = args.db or Path(tmp) / "bench.db"
        t0 = time.perf_counter()
        if args.db is None or not args.db.exists():
            build(path, args.snapshots, args.accounts, args.types)
        engine = make_engine(f"sqlite:///{path}")
        upgrade(engine)
        with engine.connect() as conn:
            posts = int(conn.exec_driver_sql("SELECT count(*) FROM posts").scalar() or 0)
            snapshots = int(
                conn.exec_driver_sql("SELECT max(id) FROM metric_snapshots").scalar() or 0
            )
        print(
            f"{snapshots:,} snapshots of {posts:,} posts, {args.accounts} accounts, "
            f"{args.types} content types ready in {time.perf_counter() - t0:.1f} s"
        )
        config = replace(empty_config())
        # The sim has reach, Mastodon has not: half the accounts are read by followers.
        reach = {f"acc{a}": a % 2 == 0 for a in range(args.accounts)}
        ids = {a + 1: reach[f"acc{a}"] for a in range(args.accounts)}
        print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")

        # The rebuild: every snapshot read, every post's readings kept anew.
        records, rebuild_wall, rebuild_cpu = timed(
            lambda: recompute(engine, config, NOW, reach=reach, keep_sums=True, full=True)
        )
        # Interleaved in each run: 1,000 new snapshots, then the daemon's recompute (kept
        # sums), a full pass (every post's kept readings summed) and, as the peer, the
        # statistics read from every snapshot without anything kept (the pass before kept
        # readings).
        rng = random.Random(2)
        figures: dict[str, list[tuple[float, float]]] = {"inc": [], "full": [], "raw": []}
        for run in range(args.runs):
            at = NOW + timedelta(hours=run + 1)
            add_snapshots(path, posts, NEW_SNAPSHOTS, at, rng)
            _, wall, cpu = timed(
                lambda at=at: recompute(engine, config, at, reach=reach, keep_sums=True)
            )
            figures["inc"].append((wall, cpu))
            _, wall, cpu = timed(
                lambda at=at: recompute(engine, config, at, reach=reach, keep_sums=True, whole=True)
            )
            figures["full"].append((wall, cpu))
            with engine.connect() as conn:
                stats, wall, cpu = timed(
                    lambda at=at, conn=conn: account_stats(conn, config.er, at, reach=ids)
                )
            figures["raw"].append((wall, cpu))
        engine.dispose()
    counted = sum(s.posts for a in stats.values() for s in a.types.values())

    def med(key: str, i: int) -> float:
        return statistics.median(x[i] for x in figures[key])

    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"load average after: {load}")
    print(f"posts with an ER reading: {counted:,}; decisions per recompute: {len(records)}")
    print(
        f"full pass over {snapshots:,} snapshots' kept readings: median {med('full', 0):.3f} s, "
        f"{med('full', 1):.3f} s of CPU (target <= {TARGET_S:.0f} s): "
        + ("OK" if med("full", 0) <= TARGET_S else "TOO SLOW")
    )
    print(
        f"  statistics from every snapshot (nothing kept): median {med('raw', 0):.3f} s, "
        f"{med('raw', 1):.3f} s of CPU (ratio {med('raw', 0) / med('full', 0):.1f}x wall, "
        f"{med('raw', 1) / med('full', 1):.1f}x CPU)"
    )
    print(f"  rebuild (every snapshot read, readings kept): {rebuild_wall:.3f} s, "
          f"{rebuild_cpu:.3f} s of CPU")  # fmt: skip
    print(
        f"after {NEW_SNAPSHOTS:,} new snapshots: incremental median {med('inc', 0):.3f} s, "
        f"{med('inc', 1):.3f} s of CPU (full pass {med('full', 0) / med('inc', 0):.1f}x; "
        f"target <= {INCREMENTAL_TARGET_S} s): "
        + ("OK" if med("inc", 0) <= INCREMENTAL_TARGET_S else "TOO SLOW")
    )
    return 0 if med("full", 0) <= TARGET_S and med("inc", 0) <= INCREMENTAL_TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
