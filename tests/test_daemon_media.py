"""The daemon checks a post's media again when it publishes: what validation would have refused
(the database edited by hand here) fails the post with the reason, and the network receives
nothing for it; a post whose image lies in its plan's folder still goes out."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
from daemon_support import no_pending, post_rows, run_service, utcnow
from sqlalchemy import select, update

from scheduler.config import load_config
from scheduler.db.engine import make_engine
from scheduler.plan.importer import apply_plan
from scheduler.plan.items import PlanItem
from scheduler.queue import posts_t

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32

CONFIG = """
[daemon]
tick = "0.1s"
lease = "5s"
publish_timeout = "5s"
shutdown_deadline = "2s"

[accounts.fb]
platform = "facebook"
timezone = "UTC"
options = { page_id = "5", graph_host = "https://graph.example.com" }
credentials = { page_access_token = { env = "SMM_TEST_FB_TOKEN" } }

[accounts.li]
platform = "linkedin"
timezone = "UTC"
options = { author = "urn:li:organization:5", api_base = "https://api.example.com/rest" }
credentials = { access_token = { env = "SMM_TEST_LI_TOKEN" } }
"""


def test_the_daemon_sends_nothing_for_media_validation_would_refuse(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMM_TEST_FB_TOKEN", "fb-token")
    monkeypatch.setenv("SMM_TEST_LI_TOKEN", "li-token")
    plans = tmp_path / "plans"
    (plans / "img").mkdir(parents=True)
    image = plans / "img" / "cat.png"
    image.write_bytes(PNG)
    secret = tmp_path / "secret.png"  # beside the plan's folder, private
    secret.write_bytes(PNG)
    secret.chmod(0o600)
    (tmp_path / "config.toml").write_text(CONFIG, encoding="utf-8")
    config = load_config(tmp_path / "config.toml")

    hostile = {
        "environ": ("fb", "/proc/self/environ", "kernel or device file"),
        "passwd": ("fb", "/etc/passwd", "outside the media roots"),
        "outside": ("fb", str(secret), "outside the media roots"),
        "metadata": (
            "li",
            "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
            "169.254.169.254 is a cloud metadata address",
        ),
        "loopback": ("li", "http://127.0.0.1:5432/", "127.0.0.1 is a loopback address"),
    }
    now = utcnow()
    keys = [("good", "fb"), *((key, acc) for key, (acc, _, _) in hostile.items())]
    items = [
        PlanItem(
            key=key,
            account=account,
            content_type="t",
            text=f"post {key}",
            media=(str(image),),
            link=None,
            tags=(),
            evergreen=False,
            at=now,
            file=str(plans / "plan.yaml"),
            line=i + 1,
            unit="line",
            order=i,
        )
        for i, (key, account) in enumerate(keys)
    ]
    engine = make_engine(db_url)
    with engine.begin() as conn:
        apply_plan(conn, items, config, now)
        # What validation would have refused, written straight into the queue.
        for key, (_account, entry, _why) in hostile.items():
            conn.execute(update(posts_t).where(posts_t.c.key == key).values(media=[entry]))
        # An evergreen repeat has no plan file of its own: its original's folder is its root.
        good = conn.execute(select(posts_t).where(posts_t.c.key == "good")).one()
        conn.execute(
            posts_t.insert().values(
                key="good~2",
                account_id=good.account_id,
                content_type=good.content_type,
                text=good.text,
                media=list(good.media),
                content_hash=good.content_hash,
                state="queued",
                due_at=now,
                next_attempt_at=now,
                idempotency_key="repeat-of-good",
                recycled_from_id=good.id,
                plan_file=None,
                created_at=now,
                updated_at=now,
            )
        )

    received: list[httpx.Request] = []

    def network(request: httpx.Request) -> httpx.Response:
        received.append(request)
        return httpx.Response(200, json={"id": "77", "post_id": "5_77"})

    async def go() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(network)) as client:
            await run_service(engine, config, until=no_pending(engine), client=client)

    asyncio.run(go())
    posts = post_rows(engine)
    engine.dispose()

    assert (posts["good"].state, posts["good~2"].state) == ("published", "published")
    # One photo upload for the good post and one for its repeat, with the plan's image.
    assert [r.url.path for r in received] == ["/v21.0/5/photos"] * 2
    assert all(PNG in r.content for r in received)
    for key, (_account, _entry, why) in hostile.items():
        assert posts[key].state == "failed", key
        assert why in posts[key].last_error, (key, posts[key].last_error)
        assert posts[key].error_class == "rejected", key
    assert json.dumps([p.last_error for p in posts.values()]).count("PATH=") == 0
