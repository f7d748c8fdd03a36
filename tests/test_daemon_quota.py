"""The daemon spends a network's quota in due order: of 8 YouTube uploads due on one day on a
10,000-unit quota it publishes the six the quota covers and leaves the other two waiting for
the quota's reset, with the reason, without sending anything for them; OK topics past the
account's flood budget wait the same way. And it renews an access token that expired while
it ran before the upload, with no failed attempt."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from daemon_support import attempt_rows, post_rows, run_service, utcnow
from youtube_fake import FakeYouTube

from scheduler import tokens
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


def test_a_token_that_expired_while_the_daemon_ran_is_refreshed_before_the_publish(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon renews the token before it uploads: one attempt, published, and no request
    went out with the dead token."""
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    secrets = tmp_path / "secrets"
    secrets.mkdir(mode=0o700)
    for name, value in {
        "access": "ya29.expired-token",
        "refresh": "1//refresh",
        "cid": "cid",
        "csecret": "csecret",
    }.items():
        (secrets / name).write_text(value)
        (secrets / name).chmod(0o600)
    # Refreshed an hour ago; the token it gave expired a minute ago, while the daemon ran.
    state = tokens.TokenState(
        expires_at=datetime.now(UTC) - timedelta(minutes=1),
        refreshed_at=datetime.now(UTC) - timedelta(hours=1),
    )
    (secrets / "access.state.json").write_text(json.dumps(state.to_json()))
    (tmp_path / "config.toml").write_text(
        CONFIG.split("credentials =")[0]
        + f"""
[accounts.yt.credentials]
access_token = {{ file = "{secrets / "access"}" }}
refresh_token = {{ file = "{secrets / "refresh"}" }}
client_id = {{ file = "{secrets / "cid"}" }}
client_secret = {{ file = "{secrets / "csecret"}" }}
""",
        encoding="utf-8",
    )
    config = load_config(tmp_path / "config.toml")
    plans = tmp_path / "plans"
    plans.mkdir()
    (plans / "clip.mp4").write_bytes(MP4)
    now = utcnow()
    item = PlanItem(
        key="v1",
        account="yt",
        content_type="instruction",
        text="Video 1",
        media=(str(plans / "clip.mp4"),),
        link=None,
        tags=(),
        evergreen=False,
        at=now - timedelta(seconds=1),
        file=str(plans / "plan.yaml"),
        line=1,
        unit="line",
        order=0,
    )
    engine = make_engine(sqlite_url)
    with engine.begin() as conn:
        apply_plan(conn, [item], config, now)
    fake = FakeYouTube()
    fake.token = fake.renewed  # only a refreshed token is accepted

    def published() -> bool:
        return post_rows(engine)["v1"].state == "published"

    async def go() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(fake.handler)) as client:
            await run_service(engine, config, until=published, client=client, timeout=60)

    asyncio.run(go())
    attempts = attempt_rows(engine)
    engine.dispose()
    assert [(a.key, a.number, a.outcome) for a in attempts] == [("v1", 1, "published")]
    assert fake.refreshes[0]["refresh_token"] == "1//refresh"
    uploads = [r for r in fake.requests if r[1] != "/token"]
    assert fake.requests.index(("POST", "/token")) < fake.requests.index(uploads[0])
    assert (secrets / "access").read_text().strip() == fake.renewed


OK_CONFIG = """
[daemon]
tick = "0.1s"
lease = "5s"
publish_timeout = "10s"
shutdown_deadline = "2s"

[accounts.okg]
platform = "ok"
timezone = "Europe/Moscow"
options = { group_id = "70000001952510", topics_per_day = 2 }

[accounts.okg.credentials]
access_token = { env = "SMM_TEST_OK_TOKEN" }
application_key = { env = "SMM_TEST_OK_KEY" }
application_secret_key = { env = "SMM_TEST_OK_SECRET" }
"""


def test_the_daemon_holds_ok_topics_past_the_flood_budget_with_the_reason(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("TOKEN", "KEY", "SECRET"):
        monkeypatch.setenv(f"SMM_TEST_OK_{name}", f"ok-{name.lower()}")
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))  # the ledger
    (tmp_path / "config.toml").write_text(OK_CONFIG, encoding="utf-8")
    config = load_config(tmp_path / "config.toml")
    now = utcnow()
    items = [
        PlanItem(
            key=f"t{i}",
            account="okg",
            content_type="instruction",
            text=f"Topic {i}",
            media=(),
            link=None,
            tags=(),
            evergreen=False,
            at=now - timedelta(seconds=3 - i),
            file=str(tmp_path / "plan.yaml"),
            line=i + 1,
            unit="line",
            order=i,
        )
        for i in range(3)
    ]
    engine = make_engine(sqlite_url)
    with engine.begin() as conn:
        apply_plan(conn, items, config, now)
    topics: list[str] = []

    def ok(request: httpx.Request) -> httpx.Response:
        fields = dict(httpx.QueryParams(request.content.decode()))
        assert fields["method"] == "mediatopic.post"
        topics.append(json.loads(fields["attachment"])["media"][0]["text"])
        return httpx.Response(200, json=str(1567228473452 + len(topics)))

    def settled() -> bool:
        states = [p.state for p in post_rows(engine).values()]
        return states.count("published") + states.count("retry_wait") == 3

    async def go() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(ok)) as client:
            await run_service(engine, config, until=settled, client=client, timeout=60)

    asyncio.run(go())
    posts = post_rows(engine)
    engine.dispose()
    assert [k for k, p in sorted(posts.items()) if p.state == "published"] == ["t0", "t1"]
    assert topics == ["Topic 0", "Topic 1"]  # nothing was sent for the third
    held = posts["t2"]
    assert (held.state, held.error_class) == ("retry_wait", "rate_limited")
    assert "2 topics in 24 hours made already" in held.last_error
