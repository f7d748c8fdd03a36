"""Plan import throughput and memory: generated CSV plans into SQLite.

Prints posts/s and peak memory for the whole ``smm plan import`` path (read, validate with
each network's rules, reconcile, insert, commit), beside a raw ``sqlite3.executemany`` of the
same rows into the same schema, and their ratio. The import is timed from where the command
calls it, after its check of the accounts' platforms has loaded the network plugins.

    python benchmarks/bench_import.py [--posts 100000] [--accounts 20] [--runs 5] [--serial]
    python benchmarks/bench_import.py --sizes 10000 100000 1000000 [--runs 3] [--json FILE]

Each run imports into a new database; the figures are the medians of the runs (a shared
machine makes single runs vary by a tenth or more). Then the same plan is imported once more
into the last run's database, where every post is unchanged (a daily re-import).

``--sizes`` imports plans of each size in a fresh process per run, so that each run's peak
memory is its own: the importing process's and the validating process's peak RSS, beside the
raw insert of the same rows (run after it, interleaved), and how time grows with size.
"""

from __future__ import annotations

import argparse
import csv
import gc
import json
import os
import random
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchlib import Report, add_json_option, load_line

from scheduler import plugins
from scheduler.config import parse_config
from scheduler.db.engine import make_engine
from scheduler.db.migrate import upgrade
from scheduler.errors import Problem
from scheduler.outgoing import network_check
from scheduler.plan.pipeline import import_plan
from scheduler.plan.read import PlanFiles

TYPES = ["provocation", "instruction", "medal", "laugh", "announcement"]


def make_config(accounts: int) -> str:
    blocks = []
    zones = ["Europe/Riga", "America/New_York", "Australia/Lord_Howe", "Asia/Tokyo", "UTC"]
    for i in range(accounts):
        hours = ", ".join(f'"{h:02d}:00"' for h in range(24))
        blocks.append(
            f'[accounts.acc{i}]\nplatform = "sim"\ntimezone = "{zones[i % len(zones)]}"\n'
            f"slots = {{ daily = [{hours}] }}\n"
        )
    # A 1,000,000-post CSV is about 190 MB, over the default limit of a plan file.
    return "[plan]\nmax_file_bytes = 1_000_000_000\n\n" + "\n".join(blocks)


def make_plan(path: Path, posts: int, accounts: int, now: datetime) -> None:
    rng = random.Random(42)
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "account", "type", "text", "link", "tags", "evergreen", "at"])
        for i in range(posts):
            fixed = i % 2 == 0
            at = ""
            if fixed:
                when = now + timedelta(days=30 + rng.randrange(700), minutes=rng.randrange(1440))
                at = when.strftime("%Y-%m-%d %H:%M+00:00")
            w.writerow(
                [
                    f"post-{i:06d}",
                    f"acc{i % accounts}",
                    TYPES[i % len(TYPES)],
                    f"Post number {i}: a useful tip about content plans, with an emoji 🚀 "
                    f"and enough words to look like a real post in a real plan.",
                    f"https://example.com/p/{i}" if i % 3 == 0 else "",
                    "smm;tips" if i % 4 == 0 else "",
                    "yes" if i % 10 == 0 else "",
                    at,
                ]
            )


def bench_ours(
    plan: Path, config_text: str, db: Path | str, now: datetime, parallel: bool | None = None
) -> tuple[float, int, float]:
    """The import into ``db``: an SQLite file, or a PostgreSQL URL of an empty database."""
    config = parse_config(config_text, "bench.toml")
    engine = make_engine(db if isinstance(db, str) else f"sqlite:///{db}")
    upgrade(engine)
    # As `smm plan import` does before it imports: each account's platform is looked up
    # among the installed plugins (which loads them), and the accounts without one are
    # problems when the plan names them.
    known = plugins.platforms()
    blocked = {
        name: [Problem("bench.toml", None, f"accounts.{name}.platform", "no plugin")]
        for name, account in config.accounts.items()
        if account.platform not in known
    }
    gc.collect()
    t0 = time.perf_counter()
    # As ``smm plan import`` reads it: a stream, the plan never held whole.
    plan_files = PlanFiles([plan], config.plan.max_file_bytes)
    with (
        engine.connect() as plain,
        plain.execution_options(sqlite_begin="IMMEDIATE") as conn,
        conn.begin(),
    ):
        diff, bad = import_plan(
            conn,
            plan_files,
            config,
            now,
            network_check=network_check,
            parallel=parallel,
            account_problems=blocked,
        )
        if bad:
            raise SystemExit(f"generated plan is invalid: {bad[:3]}")
    elapsed = time.perf_counter() - t0
    engine.dispose()
    # Peak resident memory of the process so far: the import is all it has done.
    return (
        elapsed,
        diff.summary()["added"],
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )


def bench_postgres(
    plan: Path, config_text: str, now: datetime, host: str, run: int, serial: bool
) -> float:
    """The same import into a new PostgreSQL database (created and dropped here)."""
    name = f"smm_bench_import_{os.getpid()}_{run}"
    admin = make_engine(f"postgresql+psycopg:///postgres?host={host}")
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        url = f"postgresql+psycopg:///{name}?host={host}"
        elapsed, added, _ = bench_ours(plan, config_text, url, now, False if serial else None)
        assert added > 0
        return elapsed
    finally:
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        admin.dispose()


def bench_raw(ours: Path, db: Path) -> float:
    """The rows the import wrote, read back into memory, inserted into an empty database of
    the same schema with one ``sqlite3.executemany`` (no parsing, no validation)."""
    src = sqlite3.connect(ours)
    columns = [r[1] for r in src.execute("PRAGMA table_info(posts)") if r[1] != "id"]
    rows = src.execute(f"SELECT {', '.join(columns)} FROM posts ORDER BY id").fetchall()
    accounts = src.execute("SELECT * FROM accounts ORDER BY id").fetchall()
    src.close()
    engine = make_engine(f"sqlite:///{db}")
    upgrade(engine)
    engine.dispose()
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executemany(f"INSERT INTO accounts VALUES ({', '.join('?' * len(accounts[0]))})", accounts)
    insert = f"INSERT INTO posts ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    gc.collect()
    t0 = time.perf_counter()
    conn.execute("BEGIN")
    conn.executemany(insert, rows)
    conn.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    conn.close()
    return elapsed


def _peak_mib() -> float:
    """This process's peak resident memory since it started its program (``VmHWM``). Not
    ``ru_maxrss``: after ``exec`` that still counts the process it was forked from (here the
    benchmark itself, holding the raw insert's rows of the previous size)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux


def child_import(plan: Path, config_path: Path, db: Path) -> None:
    """One import in this fresh process; prints its figures as one JSON line."""
    now = datetime.fromisoformat(os.environ["SMM_BENCH_NOW"])
    elapsed, added, _ = bench_ours(plan, config_path.read_text(), db, now)
    peak_mb = _peak_mib()
    child_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"s": elapsed, "added": added, "peak_mb": peak_mb, "child_mb": child_mb}))


def sizes(args: argparse.Namespace) -> None:
    """Import plans of each size in fresh processes, beside the raw insert of the same rows."""
    report = Report("import", settings={"accounts": args.accounts, "runs": args.runs})
    now = datetime.now(UTC)
    print(f"plan import (SQLite) by plan size, {args.runs} runs each; {load_line()}")
    per_post: list[tuple[int, float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        config_path = tmpdir / "config.toml"
        config_path.write_text(make_config(args.accounts))
        for size in args.sizes:
            plan = tmpdir / f"plan-{size}.csv"
            make_plan(plan, size, args.accounts, now)
            ours, raw, peaks, childs = [], [], [], []
            for run in range(args.runs):
                db = tmpdir / f"ours-{size}-{run}.db"
                done = subprocess.run(
                    [sys.executable, __file__, "--child", str(plan), str(config_path), str(db)],
                    capture_output=True,
                    text=True,
                    check=False,
                    env=dict(os.environ, SMM_BENCH_NOW=now.isoformat()),
                )
                if done.returncode != 0:
                    raise SystemExit(f"the import of {size:,} posts failed:\n{done.stderr}")
                fig = json.loads(done.stdout.strip().splitlines()[-1])
                assert fig["added"] == size, fig
                ours.append(fig["s"])
                peaks.append(fig["peak_mb"])
                childs.append(fig["child_mb"])
                raw.append(bench_raw(db, tmpdir / f"raw-{size}-{run}.db"))
                db.unlink()
                (tmpdir / f"raw-{size}-{run}.db").unlink()
            plan.unlink()
            ours_m, raw_m = statistics.median(ours), statistics.median(raw)
            peak, child = max(peaks), max(childs)
            ratio = raw_m / ours_m
            per_post.append((size, ours_m / size, raw_m / size))
            print(
                f"  {size:>9,} posts: {ours_m:7.2f} s {size / ours_m:9,.0f} posts/s"
                f" (runs {', '.join(f'{t:.2f}' for t in ours)}); raw executemany"
                f" {raw_m:6.2f} s, ratio {ratio:.2f} (target >= 0.5);"
                f" peak RSS {peak:.0f} MiB importing + {child:.0f} MiB validating"
            )
            report.add(
                f"import of {size:,} posts",
                [size / t for t in ours],
                "posts/s",
                peer="raw sqlite3.executemany of the same rows",
                peer_runs=[size / t for t in raw],
                target="ratio >= 0.5",
                ok=ratio >= 0.5,
            )
            report.add(
                f"peak RSS, import of {size:,} posts (both processes)",
                [p + c for p, c in zip(peaks, childs, strict=True)],
                "MiB",
                target="<= 300 MiB at 1,000,000" if size >= 1_000_000 else None,
                ok=(peak + child <= 300) if size >= 1_000_000 else None,
            )
    if len(per_post) > 1:
        (small, small_t, small_raw), (big, big_t, big_raw) = per_post[0], per_post[-1]
        print(
            f"  time per post at {big:,} / at {small:,}: {big_t / small_t:.2f} (1.00 is linear;"
            f" the raw insert's: {big_raw / small_raw:.2f}, as SQLite's indexes grow)"
        )
    print(f"  {load_line()} (after)")
    report.write(args.json)


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        child_import(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=100_000)
    parser.add_argument("--accounts", type=int, default=20)
    parser.add_argument("--runs", type=int, default=5, help="import and raw insert pairs")
    parser.add_argument(
        "--serial", action="store_true", help="validate in this process only (no fork)"
    )
    parser.add_argument(
        "--postgres",
        metavar="HOST",
        help="also import into PostgreSQL at HOST (a socket directory, e.g. /var/run/postgresql)",
    )
    parser.add_argument(
        "--sizes", type=int, nargs="+", help="plan sizes to import, each in fresh processes"
    )
    add_json_option(parser)
    args = parser.parse_args()
    if args.sizes:
        sizes(args)
        return
    now = datetime.now(UTC)
    print(f"plan import (SQLite), {args.posts:,} posts, {args.accounts} accounts, {args.runs} runs")
    ours: list[float] = []
    raw: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        plan = tmpdir / "plan.csv"
        make_plan(plan, args.posts, args.accounts, now)
        config_text = make_config(args.accounts)
        for run in range(args.runs):
            db = tmpdir / f"ours-{run}.db"
            ours_s, added, peak_mb = bench_ours(
                plan, config_text, db, now, parallel=False if args.serial else None
            )
            assert added == args.posts
            raw_s = bench_raw(db, tmpdir / f"raw-{run}.db")
            ours.append(ours_s)
            raw.append(raw_s)
            print(
                f"  run {run + 1}: smm plan import {ours_s:5.2f} s ({args.posts / ours_s:7,.0f}"
                f" posts/s), raw executemany {raw_s:5.2f} s, ratio {raw_s / ours_s:.2f}"
            )
        # The same plan again into the last database: every post unchanged.
        reimport_s, readded, _ = bench_ours(
            plan, config_text, db, now, parallel=False if args.serial else None
        )
        assert readded == 0
        if args.postgres:
            pg = [
                bench_postgres(plan, config_text, now, args.postgres, run, args.serial)
                for run in range(args.runs)
            ]
    ours_m, raw_m = statistics.median(ours), statistics.median(raw)
    child_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print("  median:")
    print(
        f"  smm plan import:        {ours_m:7.2f} s  {args.posts / ours_m:10,.0f} posts/s"
        f"  (peak RSS {peak_mb:.0f} MiB, validating process {child_mb:.0f} MiB)"
    )
    print(
        f"  raw sqlite3.executemany:{raw_m:7.2f} s  {args.posts / raw_m:10,.0f} posts/s"
        "  (the same rows, already in memory)"
    )
    print(f"  ratio (ours / raw):     {raw_m / ours_m:.2f}")
    print("  targets: >= 50,000 posts/s, ratio >= 0.5")
    print(
        f"  re-import of the same plan (all {args.posts:,} unchanged): {reimport_s:5.2f} s"
        f"  {args.posts / reimport_s:10,.0f} posts/s"
    )
    if args.postgres:
        pg_m = statistics.median(pg)
        print(
            f"  PostgreSQL, smm plan import: {pg_m:5.2f} s  {args.posts / pg_m:10,.0f} posts/s"
            f"  (median of {', '.join(f'{t:.2f}' for t in pg)} s)"
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
