"""The daemon spends a network's quota in due order: of 8 YouTube uploads due on one day on a
10,000-unit quota it publishes the six the quota covers and leaves the other two waiting for
the quota's reset, with the reason, without sending anything for them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from daemon_support import post_rows, run_service, utcnow
from youtube_fake import FakeYouTube

from scheduler.budgets import Budget, window
from scheduler.config import load_config
from scheduler.db.engine import make_engine
from scheduler.plan.importer import apply_plan
from scheduler.plan.items import PlanItem

CONFIG = """
[daemon]
tick = "0.1s"
lease = "5s"
publish_timeout = "10s"
shutdown_deadline = "2s"

[accounts.yt]
platform = "youtube"
timezone = "UTC"
options = { processing_checks = 0 }
credentials = { access_token = { env = "SMM_TEST_YT_TOKEN" } }
"""

MP4 = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + b"\0" * 2048


def test_the_daemon_publishes_what_the_quota_covers_and_holds_the_rest_with_the_reason(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMM_TEST_YT_TOKEN", "ya29.secret-youtube-token")
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))  # checkpoints and ledger
    plans = tmp_path / "plans"
    plans.mkdir()
    (plans / "clip.mp4").write_bytes(MP4)
    (tmp_path / "config.toml").write_text(CONFIG, encoding="utf-8")
    config = load_config(tmp_path / "config.toml")
    now = utcnow()
    items = [
        PlanItem(
            key=f"v{i}",
            account="yt",
            content_type="instruction",
            text=f"Video {i}",
            media=(str(plans / "clip.mp4"),),
            link=None,
            tags=(),
            evergreen=False,
            at=now - timedelta(seconds=8 - i),
            file=str(plans / "plan.yaml"),
            line=i + 1,
            unit="line",
            order=i,
        )
        for i in range(8)
    ]
    engine = make_engine(db_url)
    with engine.begin() as conn:
        apply_plan(conn, items, config, now)
    fake = FakeYouTube()

    def settled() -> bool:
        states = [p.state for p in post_rows(engine).values()]
        return states.count("published") + states.count("retry_wait") == 8

    async def go() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(fake.handler)) as client:
            await run_service(engine, config, until=settled, client=client, timeout=60)

    asyncio.run(go())
    posts = post_rows(engine)
    engine.dispose()
    published = sorted(k for k, p in posts.items() if p.state == "published")
    waiting = sorted(k for k, p in posts.items() if p.state == "retry_wait")
    assert published == [f"v{i}" for i in range(6)]  # in due order
    assert waiting == ["v6", "v7"]
    assert len(fake.inits) == 6  # nothing was sent for the two
    day = Budget("youtube-units", "", 10_000, "day", "America/Los_Angeles")
    reset = window(day, datetime.now(UTC))[1]
    # The first post the quota cannot cover says why; the account then waits for the reset
    # (as after any rate limit), so the next one waits until then too.
    assert "quota of 10,000 units" in posts["v6"].last_error
    assert (
        f"until {reset:%H:%M:%S} UTC" in posts["v7"].last_error or "quota" in posts["v7"].last_error
    )
    for key in waiting:
        assert posts[key].error_class == "rate_limited"
        due = posts[key].next_attempt_at
        due = due if due.tzinfo else due.replace(tzinfo=UTC)
        assert abs((due - reset).total_seconds()) < 5
