"""``smm run --once``'s closing summary counts every post the run dealt with."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import structlog
from daemon_support import config_at, post_rows, seed_posts, utcnow, write_config
from smm_sim import reset_worlds
from sqlalchemy import update

from scheduler.daemon.service import Service
from scheduler.db.engine import make_engine
from scheduler.db.models import Post, PostState


def test_once_summary_counts_the_missed_and_the_retried_posts(db_url: str, tmp_path: Path) -> None:
    reset_worlds()
    path = write_config(
        tmp_path / "config.toml",
        {"a": {"platform": "sim", "options": {"ledger": str(tmp_path / "l.jsonl")}}},
        daemon={"tick": "0.1s", "lease": "2s", "shutdown_deadline": "2s"},
        policies={"misfire_grace": "60s"},
    )
    config = config_at(path)
    engine = make_engine(db_url)
    now = utcnow()
    seed_posts(
        engine,
        config,
        [("late", "a", now - timedelta(minutes=5)), ("retry", "a", now - timedelta(seconds=5))],
    )
    # The second post's first attempt failed: it waits to be tried again, due now.
    with engine.begin() as conn:
        conn.execute(
            update(Post)
            .where(Post.key == "retry")
            .values(state=PostState.RETRY_WAIT, next_attempt_at=now - timedelta(seconds=1))
        )

    with structlog.testing.capture_logs() as logs:
        service = Service(engine, config, once=True)
        asyncio.run(asyncio.wait_for(service.run(), 60))

    posts = post_rows(engine)
    assert posts["late"].state == PostState.MISSED
    assert posts["retry"].state == PostState.PUBLISHED
    (summary,) = [e for e in logs if e["event"] == "daemon_stopped"]
    assert (summary["processed"], summary["claimed"], summary["missed"]) == (2, 1, 1)
    assert summary["published"] == 1
    engine.dispose()
    reset_worlds()
