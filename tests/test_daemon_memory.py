"""The daemon's memory stays flat: nothing per post outlives the post's attempt.

A daemon runs for months and publishes without end; anything it keeps per post (a dict entry
by post id, a future, a logger, a ledger line) grows until the host runs out of memory. One
``Service`` publishes posts in rounds, through a network that does nothing; tracemalloc
counts what the later rounds leave behind, which must not grow with their posts.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sqlite3
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from daemon_support import config_at, write_config

from scheduler.accounts import sync_accounts
from scheduler.adapter import Adapter, Capabilities, Published, RateLimitPolicy
from scheduler.daemon.service import Service
from scheduler.daemon.worker import Worker
from scheduler.db.engine import make_engine
from scheduler.logging import configure_logging, reset_logging

#: Posts per round: the measured round publishes twice as many as the one before it.
ROUND = 600
#: The posts in flight at once. What the daemon holds while it works (the posts in flight,
#: the dicts sized for them) is bounded by this, not by the posts published.
CONCURRENCY = 40
#: What the measured round may leave behind, in all: the dicts and buffers sized for the
#: posts in flight, caches that fill once. A leak of 100 bytes per post would leave 120 kB.
ALLOWED = 64 * 1024


class Quiet(Adapter):
    """Accepts every post at once, keeps nothing."""

    platform = "quiet"
    capabilities = Capabilities(
        text_limit=1000,
        idempotent=True,
        rate_limit=RateLimitPolicy(requests=10**9, per=timedelta(seconds=1), concurrency=10**5),
    )

    async def publish(self, post: Any, account: Any, idempotency_key: str) -> Published:
        return Published(remote_id=idempotency_key)


@pytest.fixture
def quiet_logging() -> Iterator[None]:
    """Logging as ``smm run`` sets it up, to nowhere, at warning (no line per post)."""
    with open(os.devnull, "w", encoding="utf-8") as devnull:
        configure_logging("warning", json=True, stream=devnull)
        try:
            yield
        finally:
            reset_logging()


def queue(db: sqlite3.Connection, first: int, n: int) -> None:
    """Posts ``first + 1`` ... ``first + n``, due now, spread over the accounts."""
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    with db:
        db.execute("BEGIN IMMEDIATE")
        ids = sorted(i for (i,) in db.execute("SELECT id FROM accounts"))
        db.execute(
            "INSERT INTO posts (key, account_id, content_type, text, media, tags, evergreen,"
            " schedule, plan_order, content_hash, state, due_at, next_attempt_at,"
            " idempotency_key, attempt_count, repeat_count, created_at, updated_at)"
            " WITH RECURSIVE n(i) AS (SELECT ? UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
            " SELECT 'p-' || i, ? + i % ?, 'tip', 'Post number ' || i, '[]', '[]', 0, 'fixed',"
            " i, ?, 'queued', ?, ?, 'p-' || i, 0, 0, ?, ? FROM n",
            (first + 1, first + n, ids[0], len(ids), "0" * 64, now, now, now, now),
        )


def published(db: sqlite3.Connection) -> int:
    (n,) = db.execute("SELECT count(*) FROM posts WHERE state = 'published'").fetchone()
    return int(n)


def retained() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


@pytest.mark.slow
def test_what_a_round_of_posts_leaves_behind_does_not_grow_with_its_posts(
    sqlite_url: str, tmp_path: Path, quiet_logging: None
) -> None:
    accounts = {f"a{i}": {"platform": "quiet"} for i in range(4)}
    daemon = {"tick": "0.1s", "concurrency": CONCURRENCY, "batch_size": CONCURRENCY}
    config = config_at(write_config(tmp_path / "config.toml", accounts, daemon=daemon))
    engine = make_engine(sqlite_url)
    # The test's own connection, opened before anything is measured (plain sqlite3: one
    # connection, nothing pooled).
    feeder = sqlite3.connect(
        sqlite_url.removeprefix("sqlite:///"), isolation_level=None, check_same_thread=False
    )
    with engine.begin() as conn:
        sync_accounts(conn, config, datetime.now(UTC))

    async def scenario() -> tuple[int, int, Worker]:
        async with httpx.AsyncClient() as client:
            worker = Worker(engine, config, adapters={"quiet": Quiet(client)})
            service = Service(engine, config, worker=worker)
            service._install_signals = lambda loop: None  # type: ignore[method-assign]
            task = asyncio.create_task(service.run())
            total = 0

            async def publish_round(n: int) -> None:
                nonlocal total
                # In slices, as posts come due over time, not all in one claim.
                for _ in range(4):
                    await asyncio.to_thread(queue, feeder, total, n // 4)
                    total += n // 4
                    await asyncio.sleep(0.02)
                deadline = asyncio.get_running_loop().time() + 60
                while await asyncio.to_thread(published, feeder) < total:
                    assert not task.done(), "the service stopped on its own"
                    assert asyncio.get_running_loop().time() < deadline, "the posts did not go"
                    await asyncio.sleep(0.05)
                await worker.flush()

            try:
                await publish_round(ROUND)  # the caches that fill once, filled
                tracemalloc.start()
                try:
                    await publish_round(ROUND)
                    before = retained()
                    await publish_round(2 * ROUND)
                    after = retained()
                finally:
                    tracemalloc.stop()
            finally:
                service.request_stop()
                await task
            return before, after, worker

    before, after, worker = asyncio.run(scenario())
    engine.dispose()
    feeder.close()
    assert after - before < ALLOWED, f"{after - before:,} bytes left by {2 * ROUND} posts"
    assert not worker.inflight
    assert not worker.unwritten
    assert not worker._lease_until
