"""A running daemon notices posts other processes queue at once, not at its next tick.

PostgreSQL: writers NOTIFY, the daemon LISTENs. SQLite: the daemon polls the file's data
version. The daemons here have a one-minute tick and nothing due when they start, so only the
notice can make them publish within seconds.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from unittest import mock

import psycopg
from daemon_support import (
    config_at,
    no_pending,
    post_rows,
    run_service,
    seed_posts,
    utcnow,
    write_config,
)
from sqlalchemy import Engine

from scheduler.daemon import notices
from scheduler.db.engine import make_engine
from scheduler.db.models import PostState
from scheduler.queue import CHANNEL, announce

DAEMON = {"tick": "60s", "lease": "5s", "shutdown_deadline": "2s", "publish_timeout": "5s"}


def _publish_one_queued_later(db_url: str, tmp_path: Path) -> float:
    """Start a daemon with nothing due, queue a post due now from another connection a
    moment later; return how long the post took to be published after it was queued."""
    path = write_config(tmp_path / "config.toml", {"a": {"platform": "sim"}}, daemon=DAEMON)
    config = config_at(path)
    engine = make_engine(db_url)
    # Something far away, so the daemon sleeps a whole tick.
    seed_posts(engine, config, [("later", "a", utcnow() + timedelta(days=30))])
    queued_at: list[float] = []
    # The daemon starts watching for notices once its first pass over the queue is done and
    # it is waiting for the tick: queue the post then, not after a guessed delay.
    watching = threading.Event()
    watch = notices.watch

    async def signalled_watch(engine: Engine, wake: Callable[[], None]) -> None:
        watching.set()
        await watch(engine, wake)

    def queue_soon() -> None:
        if not watching.wait(timeout=30):
            return  # the service never started: run_service reports why
        other = make_engine(db_url)
        try:
            seed_posts(other, config, [("now", "a", utcnow())])
            queued_at.append(time.monotonic())
        finally:
            other.dispose()

    def published() -> bool:
        return post_rows(engine)["now"].state == PostState.PUBLISHED if queued_at else False

    writer = threading.Thread(target=queue_soon)
    writer.start()
    try:
        with mock.patch.object(notices, "watch", signalled_watch):
            asyncio.run(run_service(engine, config, until=published, timeout=45))
    finally:
        watching.set()
        writer.join()
    took = time.monotonic() - queued_at[0]
    assert post_rows(engine)["later"].state == PostState.QUEUED
    engine.dispose()
    return took


def test_a_daemon_on_sqlite_notices_a_post_queued_by_another_process(
    sqlite_url: str, tmp_path: Path
) -> None:
    assert _publish_one_queued_later(sqlite_url, tmp_path) < 10  # the tick is 60 s


def test_a_daemon_on_postgres_notices_a_post_queued_by_another_process(
    postgres_url: str, tmp_path: Path
) -> None:
    assert _publish_one_queued_later(postgres_url, tmp_path) < 10  # the tick is 60 s


def test_announce_notifies_listeners_when_the_transaction_commits_only(
    postgres_url: str,
) -> None:
    engine = make_engine(postgres_url)
    conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as listener:
        listener.execute(f"LISTEN {CHANNEL}")

        def received() -> int:
            return sum(1 for _ in listener.notifies(timeout=0.5, stop_after=5))

        with engine.connect() as conn, conn.begin() as tx:
            announce(conn)
            tx.rollback()
        assert received() == 0
        with engine.begin() as conn:
            announce(conn)
            announce(conn)  # the same notice twice in a transaction arrives once
        assert received() == 1
    engine.dispose()


def test_a_daemon_keeps_working_when_it_cannot_listen(
    postgres_url: str, tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """Noticing is a shortcut: if LISTEN fails, the due post still goes out at its time."""
    from scheduler.daemon import notices

    async def refuse(*args: object, **kwargs: object) -> None:
        raise psycopg.OperationalError("no listening today")

    monkeypatch.setattr(psycopg.AsyncConnection, "connect", refuse)
    path = write_config(
        tmp_path / "config.toml", {"a": {"platform": "sim"}}, daemon={**DAEMON, "tick": "0.2s"}
    )
    config = config_at(path)
    engine: Engine = make_engine(postgres_url)
    seed_posts(engine, config, [("p", "a", utcnow() + timedelta(seconds=1))])
    assert notices.MAX_RETRY > 0
    asyncio.run(run_service(engine, config, until=no_pending(engine), timeout=30))
    assert post_rows(engine)["p"].state == PostState.PUBLISHED
    engine.dispose()
