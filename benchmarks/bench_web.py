"""The web calendar at 100,000 queued posts: how long a week page takes to serve.

Imports a generated plan of ``--posts`` queue posts (20 accounts in five zones, hourly slots,
so about 3,400 posts a week) into SQLite through the real importer, serves the web app with
uvicorn on loopback and asks, signed in, for the week page of a busy week, the month page,
and a trivial page (``/healthz``) in the same run. Prints the medians and the ratio of the
week page to the trivial one; the target is a week page in at most 200 ms.

    python benchmarks/bench_web.py [--posts 100000] [--requests 30]
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from web_support import PASSWORD, Server, login

from scheduler.config import parse_config
from scheduler.db.engine import immediate, make_engine
from scheduler.db.migrate import upgrade
from scheduler.outgoing import network_check
from scheduler.plan.pipeline import import_plan
from scheduler.plan.read import read_plan_files
from scheduler.timeutil import FixedClock
from scheduler.web import auth
from scheduler.web.app import create_app

TYPES = ["provocation", "instruction", "medal", "laugh", "announcement"]
ZONES = ["Europe/Riga", "America/New_York", "Australia/Lord_Howe", "Asia/Tokyo", "UTC"]
ACCOUNTS = 20
TARGET_MS = 200.0


def make_config() -> str:
    hours = ", ".join(f'"{h:02d}:00"' for h in range(24))
    blocks = ['[web]\nhorizon = "90d"\n']
    for i in range(ACCOUNTS):
        blocks.append(
            f'[accounts.acc{i}]\nplatform = "sim"\ntimezone = "{ZONES[i % len(ZONES)]}"\n'
            f"slots = {{ daily = [{hours}] }}\n"
        )
    return "\n".join(blocks)


def make_plan(path: Path, posts: int) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "account", "type", "text"])
        for i in range(posts):
            w.writerow(
                [
                    f"post-{i:06d}",
                    f"acc{i % ACCOUNTS}",
                    TYPES[i % len(TYPES)],
                    f"Post number {i}: a useful tip about content plans, with an emoji 🚀.",
                ]
            )


def median_ms(client: httpx.Client, path: str, n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = client.get(path)
        times.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 200, (path, r.status_code)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--keep", metavar="FILE", help="Keep the database in FILE.")
    args = parser.parse_args()

    now = datetime(2027, 1, 4, 6, 0, tzinfo=UTC)
    with tempfile.TemporaryDirectory() as tmp:
        plan, db = Path(tmp) / "plan.csv", Path(args.keep or Path(tmp) / "smm.db")
        make_plan(plan, args.posts)
        config = parse_config(make_config(), "bench.toml")
        engine = make_engine(f"sqlite:///{db}")
        upgrade(engine)
        raws, problems = read_plan_files([plan])
        with immediate(engine) as conn:
            diff, bad = import_plan(conn, raws, config, now, network_check=network_check)
        if problems or bad:
            raise SystemExit(f"generated plan is invalid: {(problems + bad)[:3]}")
        with immediate(engine) as conn:
            auth.add_user(conn, "bench", "viewer", PASSWORD, now)
        added, size = diff.summary()["added"], db.stat().st_size / 2**20
        print(f"{added:,} queued posts in {size:.0f} MiB of SQLite")

        server = Server(create_app(engine, config, FixedClock(now)))
        try:
            with httpx.Client(base_url=server.url, follow_redirects=True, timeout=30) as c:
                login(c, "bench")
                week = (now + timedelta(days=21)).date().isoformat()
                week_path = f"/calendar?view=week&start={week}&tz=Europe/Riga"
                shown = c.get(week_path).text.count('class="post ')
                trivial = median_ms(c, "/healthz", args.requests)
                week_ms = median_ms(c, week_path, args.requests)
                month_ms = median_ms(c, f"/calendar?view=month&start={week}", args.requests)
                filtered_ms = median_ms(c, week_path + "&account=acc3&type=medal", args.requests)
        finally:
            server.stop()
            engine.dispose()
    print(f"week page ({shown} posts shown): median {week_ms:.1f} ms (target <= {TARGET_MS:.0f})")
    print(f"week page, one account and type: median {filtered_ms:.1f} ms")
    print(f"month page: median {month_ms:.1f} ms")
    print(f"trivial page (/healthz): median {trivial:.1f} ms")
    print(
        f"week page / trivial page: {week_ms / trivial:.1f}x; target / week page: "
        f"{TARGET_MS / week_ms:.1f}x"
    )
    if week_ms > TARGET_MS:
        raise SystemExit(f"the week page took {week_ms:.0f} ms, over {TARGET_MS:.0f} ms")


if __name__ == "__main__":
    main()
