"""ER recompute over 1,000,000 metric snapshots on SQLite (target: at most 2 s), and the
incremental one after 1,000 new snapshots on top (target: at most 0.2 s).

Builds a database of published posts, each read at the five collection bands (1 h, 6 h, 24 h,
72 h, 7 d; the 24 h and 72 h readings a little late, as a real job takes them), spread over
the last 90 days, for accounts on networks with reach and without. Then times the whole
``recompute`` (statistics in SQL, the policy for every account, the weights and decision
records written and committed), best and median of a few runs, and the statistics query on
its own. Then, interleaved in the same runs: 1,000 new snapshots (later readings of posts
already read) are added and the daemon's recompute, which keeps the readings' sums and reads
only the posts new snapshots touch, is timed beside the full one with kept sums rebuilt
(``--full``). Prints medians, the ratio and the load average.

    python benchmarks/bench_er.py [--snapshots 1000000] [--accounts 20] [--types 5] [--runs 5]
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snapshots", type=int, default=1_000_000)
    parser.add_argument("--accounts", type=int, default=20)
    parser.add_argument("--types", type=int, default=5)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        t0 = time.perf_counter()
        posts = build(path, args.snapshots, args.accounts, args.types)
        print(
            f"built {args.snapshots:,} snapshots of {posts:,} posts, {args.accounts} accounts, "
            f"{args.types} content types in {time.perf_counter() - t0:.1f} s"
        )
        engine = make_engine(f"sqlite:///{path}")
        config = replace(empty_config())
        # The sim has reach, Mastodon has not: half the accounts are read by followers.
        reach = {f"acc{a}": a % 2 == 0 for a in range(args.accounts)}
        ids = {a + 1: reach[f"acc{a}"] for a in range(args.accounts)}

        query = []
        for _ in range(args.runs):
            with engine.connect() as conn:
                t = time.perf_counter()
                stats = account_stats(conn, config.er, NOW, reach=ids)
                query.append(time.perf_counter() - t)
        counted = sum(s.posts for a in stats.values() for s in a.types.values())

        full = []
        for run in range(args.runs):
            t = time.perf_counter()
            records = recompute(engine, config, NOW + timedelta(hours=run), reach=reach)
            full.append(time.perf_counter() - t)

        # Incremental beside full, interleaved: each run adds new snapshots, then times the
        # daemon's recompute (kept sums) and a full one (sums rebuilt) at the same moment.
        rng = random.Random(2)
        recompute(engine, config, NOW, reach=reach, keep_sums=True, full=True)
        incremental, rebuilt = [], []
        for run in range(args.runs):
            at = NOW + timedelta(hours=run + 1)
            add_snapshots(path, posts, NEW_SNAPSHOTS, at, rng)
            t = time.perf_counter()
            recompute(engine, config, at, reach=reach, keep_sums=True)
            incremental.append(time.perf_counter() - t)
            t = time.perf_counter()
            recompute(engine, config, at, reach=reach, keep_sums=True, full=True)
            rebuilt.append(time.perf_counter() - t)
        engine.dispose()

    best, median = min(full), statistics.median(full)
    inc, reb = statistics.median(incremental), statistics.median(rebuilt)
    print(f"load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"posts with an ER reading: {counted:,}; decisions per recompute: {len(records)}")
    print(f"statistics query: best {min(query):.3f} s, median {statistics.median(query):.3f} s")
    print(
        f"ER recompute over {args.snapshots:,} snapshots: best {best:.3f} s, "
        f"median {median:.3f} s (target <= {TARGET_S:.0f} s): "
        + ("OK" if median <= TARGET_S else "TOO SLOW")
    )
    print(
        f"after {NEW_SNAPSHOTS:,} new snapshots: incremental median {inc:.3f} s, full median "
        f"{reb:.3f} s (ratio {reb / inc:.1f}x; target <= {INCREMENTAL_TARGET_S} s): "
        + ("OK" if inc <= INCREMENTAL_TARGET_S else "TOO SLOW")
    )
    return 0 if median <= TARGET_S and inc <= INCREMENTAL_TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
