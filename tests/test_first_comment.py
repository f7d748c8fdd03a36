"""First comments: posted once, right after the post is recorded published; a failing or
hanging comment never makes the post count as failed, and is reported (event, log)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

import httpx
from daemon_support import (
    config_at,
    event_rows,
    post_rows,
    registered,
    run_service,
    utcnow,
    write_config,
)
from structlog.testing import capture_logs

from scheduler.adapter import (
    Account,
    Adapter,
    Capabilities,
    OutgoingPost,
    PostOptions,
    Published,
    RateLimitPolicy,
    Rejected,
)
from scheduler.db.engine import make_engine
from scheduler.db.models import PostState
from scheduler.hookspecs import hookimpl
from scheduler.plan.importer import apply_plan
from scheduler.plan.items import PlanItem

DAEMON = {"tick": "0.1s", "lease": "2s", "publish_timeout": "1s", "shutdown_deadline": "2s"}


class CommentNet(Adapter):
    """Publishes; its comments succeed, are refused, or hang, as the account's ``mode`` says."""

    platform = "commentnet"
    capabilities = Capabilities(
        text_limit=5000,
        rate_limit=RateLimitPolicy(requests=6000, per=timedelta(minutes=1)),
        post_options=frozenset({"first_comment"}),
    )
    calls: ClassVar[list[str]] = []
    published: ClassVar[Counter[str]] = Counter()

    async def publish(self, post: OutgoingPost, account: Account, idempotency_key: str) -> Any:
        CommentNet.published[post.key] += 1
        CommentNet.calls.append(f"publish {post.key}")
        return Published(remote_id=f"p-{post.key}", url=f"https://commentnet.invalid/{post.key}")

    async def publish_comment(self, post: OutgoingPost, account: Account, text: str) -> Published:
        CommentNet.calls.append(f"comment {post.remote_id} {text}")
        mode = account.option("mode", "ok")
        if mode == "refuse":
            raise Rejected("comments are closed on this post", http_status=403)
        if mode == "hang":
            await asyncio.sleep(3600)
        return Published(remote_id=f"c-{post.key}", url=f"https://commentnet.invalid/c/{post.key}")


class Plugin:
    @hookimpl
    def register_platforms(self, register: Any) -> None:
        register(CommentNet)


def _item(key: str, account: str, order: int, comment: str | None) -> PlanItem:
    return PlanItem(
        key, account, "laugh", f"post {key}", (), None, (), False, utcnow(),
        "plan.yaml", order + 1, "line", order,
        options=PostOptions(first_comment=comment) if comment else PostOptions(),
    )  # fmt: skip


def test_a_first_comment_follows_its_post_and_its_failure_is_reported(
    tmp_path: Path, sqlite_url: str, monkeypatch: Any
) -> None:
    from scheduler import comments

    monkeypatch.setattr(comments, "COMMENT_TIMEOUT_S", 0.3)
    monkeypatch.setattr(comments.first_comment, "__kwdefaults__", {"timeout": 0.3})
    CommentNet.calls.clear()
    CommentNet.published.clear()
    accounts = {
        "ok": {"platform": "commentnet"},
        "refuse": {"platform": "commentnet", "options": {"mode": "refuse"}},
        "hang": {"platform": "commentnet", "options": {"mode": "hang"}},
    }
    with registered(("comment-net", Plugin())):
        config = config_at(write_config(tmp_path / "c.toml", accounts, daemon=DAEMON))
        engine = make_engine(sqlite_url)
        items = [
            _item("a", "ok", 0, "Sources: https://example.com/study"),
            _item("b", "refuse", 1, "Link in the comments"),
            _item("c", "hang", 2, "Thread below"),
            _item("d", "ok", 3, None),
        ]
        with engine.begin() as conn:
            apply_plan(conn, items, config, utcnow())

        def settled() -> bool:
            reasons = [e.reason or "" for e in event_rows(engine)]
            return sum("first comment" in r for r in reasons) == 3

        with capture_logs() as logs:
            asyncio.run(run_service(engine, config, until=settled, timeout=30))
    rows = post_rows(engine)
    assert {k: r.state for k, r in rows.items()} == dict.fromkeys("abcd", PostState.PUBLISHED)
    assert CommentNet.published == Counter("abcd")  # each post once, whatever its comment did
    # The comment goes to the published post, after it.
    assert CommentNet.calls.index("publish a") < CommentNet.calls.index(
        "comment p-a Sources: https://example.com/study"
    )
    assert not any(c.startswith("comment p-d") for c in CommentNet.calls)
    reasons = {e.key: e.reason for e in event_rows(engine) if "first comment" in (e.reason or "")}
    assert reasons["a"] == "first comment published: https://commentnet.invalid/c/a"
    assert reasons["b"] == "first comment failed (rejected): comments are closed on this post"
    assert reasons["c"] == "first comment: no answer within 0.3 s; it may be on the network"
    events = Counter(e["event"] for e in logs if "first_comment" in str(e.get("event")))
    assert events == {"first_comment_published": 1, "first_comment_failed": 2}


# --------------------------------------------------------------------------- request shapes


def _post(**options: Any) -> OutgoingPost:
    return OutgoingPost(
        "k1", "acc", "laugh", "hello", idempotency_key="key-1", remote_id="111",
        options=PostOptions(**options),
    )  # fmt: skip


def _run(adapter_cls: type[Adapter], handler: Any, account: Account, text: str) -> Published:
    from scheduler.testing import run_adapter

    return run_adapter(adapter_cls, handler, lambda a: a.publish_comment(_post(), account, text))


def test_mastodon_posts_the_first_reply_with_its_own_key() -> None:
    # POST /api/v1/statuses with in_reply_to_id (docs.joinmastodon.org/methods/statuses).
    from urllib.parse import parse_qs

    from smm_mastodon import MastodonAdapter

    from scheduler.testing import RecordingHandler, account_with_secrets

    status = {"id": "112", "url": "https://social.example/@me/112", "account": {}}
    recorder = RecordingHandler(lambda r: httpx.Response(200, json=status))
    account = account_with_secrets(
        "toots", "mastodon", {"instance": "https://social.example", "visibility": "unlisted"},
        secrets={"access_token": "tok"},
    )  # fmt: skip
    published = _run(MastodonAdapter, recorder, account, "Sources below")
    assert published.remote_id == "112"
    (request,) = recorder.requests
    assert request.url.path == "/api/v1/statuses"
    assert request.headers["idempotency-key"] == "key-1-comment"
    assert parse_qs(request.content.decode()) == {
        "status": ["Sources below"],
        "in_reply_to_id": ["111"],
        "visibility": ["unlisted"],
    }


def test_x_posts_the_first_reply() -> None:
    import json

    from smm_x import XAdapter

    from scheduler.testing import RecordingHandler, account_with_secrets

    created = {"data": {"id": "1880028106020515999", "text": "Sources below"}}
    recorder = RecordingHandler(lambda r: httpx.Response(201, json=created))
    account = account_with_secrets("x-main", "x", {}, secrets={"access_token": "tok"})
    published = _run(XAdapter, recorder, account, "Sources below")
    assert published.remote_id == "1880028106020515999"
    (request,) = recorder.requests
    assert json.loads(request.content) == {
        "text": "Sources below",
        "reply": {"in_reply_to_tweet_id": "111"},
    }


def test_facebook_and_instagram_comment_on_the_post() -> None:
    # POST /{object-id}/comments with message, answered {"id": ...} (Graph API reference,
    # Object Comments and IG Media Comments).
    from urllib.parse import parse_qs

    from smm_meta import FacebookAdapter, InstagramAdapter

    from scheduler.testing import RecordingHandler, account_with_secrets

    for cls, options, credential in (
        (FacebookAdapter, {"page_id": "1234567890"}, "page_access_token"),
        (InstagramAdapter, {"ig_user_id": "17841400000000000"}, "access_token"),
    ):
        recorder = RecordingHandler(lambda r: httpx.Response(200, json={"id": "111_222"}))
        account = account_with_secrets("a", cls.platform, options, secrets={credential: "t"})
        assert _run(cls, recorder, account, "Link: https://example.com").remote_id == "111_222"
        (request,) = recorder.requests
        assert request.url.path.endswith("/111/comments")
        assert parse_qs(request.content.decode())["message"] == ["Link: https://example.com"]


def test_a_first_comment_on_a_network_without_comments_is_refused() -> None:
    from smm_bluesky import BlueskyAdapter

    from scheduler.testing import offline_adapter

    post = dataclasses.replace(_post(first_comment="hi"), remote_id=None)
    account = Account("sky", "bluesky", "UTC", {"handle": "a.bsky.social"})
    (issue,) = offline_adapter(BlueskyAdapter).option_issues(post, account)
    assert (issue.field, issue.message) == (
        "first_comment",
        "bluesky cannot honour 'first_comment'",
    )
