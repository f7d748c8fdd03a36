"""Threads adapter: text and image containers, emoji-aware length, insights mapping."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
import pytest
from adapter_support import form
from smm_meta import ThreadsAdapter

from scheduler.adapter import Account, MediaMeta, OutgoingPost, Published, RateLimited
from scheduler.testing import (
    AdapterContract,
    Handler,
    RecordingHandler,
    account_with_secrets,
    offline_adapter,
    run_adapter,
)

T = TypeVar("T")
TOKEN = "THQVJ-secret-threads-token"
USER = "25749843731371234"
DUE = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)


def make_account() -> Account:
    return account_with_secrets(
        "brand-threads", "threads", {"threads_user_id": USER}, secrets={"access_token": TOKEN}
    )


def make_post(**changes: Any) -> OutgoingPost:
    post = OutgoingPost(
        key="t1",
        account="brand-threads",
        content_type="laugh",
        text="Monday mood: coffee first",
        idempotency_key="t1-key",
        due_at=DUE,
    )
    return replace(post, **changes)


def graph_error(status: int, code: int, message: str, **extra: Any) -> httpx.Response:
    error = {"message": message, "type": "THApiException", "code": code, **extra}
    return httpx.Response(status, json={"error": {**error, "fbtrace_id": "AbC"}})


class FakeThreads(RecordingHandler):
    """graph.threads.net as the Threads API documents it."""

    def __init__(self, quota_usage: int = 4) -> None:
        super().__init__()
        self.quota_usage = quota_usage
        self.containers: dict[str, dict[str, str]] = {}
        self.published: dict[str, str] = {}

    def answer(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/v1.0/")
        if path == f"{USER}/threads_publishing_limit":
            config = {"quota_total": 250, "quota_duration": 86400}
            return httpx.Response(
                200, json={"data": [{"quota_usage": self.quota_usage, "config": config}]}
            )
        if request.method == "POST" and path == f"{USER}/threads":
            container = str(17889615691921648 + len(self.containers))
            self.containers[container] = form(request)
            return httpx.Response(200, json={"id": container})
        if request.method == "POST" and path == f"{USER}/threads_publish":
            media_id = "18050206876123456"
            self.published[media_id] = self.containers[form(request)["creation_id"]]["text"]
            return httpx.Response(200, json={"id": media_id})
        if request.method == "GET" and path == f"{USER}/threads":
            items = [
                {
                    "id": media_id,
                    "text": text,
                    "timestamp": "2030-01-07T09:00:01+0000",
                    "permalink": "https://www.threads.net/@brand/post/C1",
                }
                for media_id, text in self.published.items()
            ]
            return httpx.Response(200, json={"data": items})
        if path.endswith("/insights"):
            values = {"views": 480, "likes": 35, "replies": 6, "reposts": 3, "quotes": 2}
            data = [
                {"name": n, "period": "lifetime", "values": [{"value": v}], "id": f"x/{n}"}
                for n, v in values.items()
            ]
            return httpx.Response(200, json={"data": data})
        if path in self.containers:
            return httpx.Response(200, json={"status": "FINISHED", "id": path})
        if path in self.published:
            return httpx.Response(
                200, json={"permalink": "https://www.threads.net/@brand/post/C1", "id": path}
            )
        return graph_error(400, 100, f"Unsupported request {path}")


def fast(client: httpx.AsyncClient) -> ThreadsAdapter:
    """The adapter, with no pause between container status checks."""
    adapter = ThreadsAdapter(client)
    adapter.poll_interval = 0
    return adapter


def run(handler: Handler, call: Callable[[ThreadsAdapter], Awaitable[T]]) -> T:
    return run_adapter(fast, handler, call)


class TestThreadsContract(AdapterContract):
    adapter_class = ThreadsAdapter
    secret_values = (TOKEN,)

    def make_account(self) -> Account:
        return make_account()

    def make_handler(self, scenario: str) -> Handler:
        if scenario == "ok":
            return FakeThreads()
        answers: dict[str, Handler] = {
            "rate_limited": lambda request: graph_error(
                400, 4, "Application request limit reached", is_transient=True
            ),
            "server_error": lambda request: graph_error(
                500, 2, "Service temporarily unavailable", is_transient=True
            ),
            "auth_expired": lambda request: graph_error(
                401, 190, "Error validating access token: Session has expired", error_subcode=463
            ),
            "rejected": lambda request: graph_error(
                400, 100, "Param text must be at most 500 characters long.", is_transient=False
            ),
        }
        return answers[scenario]


def test_text_post_is_a_text_container_published_by_creation_id() -> None:
    fake = FakeThreads()
    post = make_post()
    result = run(fake, lambda a: a.publish(post, make_account(), post.idempotency_key))
    ((container, params),) = fake.containers.items()
    assert params == {
        "media_type": "TEXT",
        "text": "Monday mood: coffee first",
        "access_token": TOKEN,
    }
    publish_request = next(r for r in fake.requests if r.url.path.endswith("/threads_publish"))
    assert form(publish_request)["creation_id"] == container
    assert result == Published("18050206876123456", url="https://www.threads.net/@brand/post/C1")


def test_an_image_post_is_an_image_container() -> None:
    fake = FakeThreads()
    post = make_post(media=("https://cdn.example.com/mood.png",))
    run(fake, lambda a: a.publish(post, make_account(), post.idempotency_key))
    (params,) = fake.containers.values()
    assert params["media_type"] == "IMAGE"
    assert params["image_url"] == "https://cdn.example.com/mood.png"


def test_quota_of_250_used_up_is_rate_limited_before_any_container() -> None:
    fake = FakeThreads(quota_usage=250)
    post = make_post()
    with pytest.raises(RateLimited, match="250 of 250"):
        run(fake, lambda a: a.publish(post, make_account(), post.idempotency_key))
    assert fake.containers == {}


def test_a_video_is_a_video_container_with_its_alt_text() -> None:
    # POST /{threads-user-id}/threads: media_type=VIDEO with video_url (and alt_text, "for an
    # image or video"); GET /{container}?fields=status,error_message until FINISHED.
    fake = FakeThreads()
    video = "https://cdn.example.com/clips/mood.mp4"
    post = make_post(media=(video,), media_meta=(MediaMeta("A mug, steaming"),))
    run(fake, lambda a: a.publish(post, make_account(), post.idempotency_key))
    (params,) = fake.containers.values()
    assert params == {
        "media_type": "VIDEO",
        "video_url": video,
        "text": "Monday mood: coffee first",
        "alt_text": "A mug, steaming",
        "access_token": TOKEN,
    }
    adapter = offline_adapter(ThreadsAdapter)
    assert adapter.validate(post, make_account()) == []
    webm = adapter.validate(make_post(media=("https://cdn.example.com/a.webm",)), make_account())
    assert [i.message for i in webm] == [
        "'https://cdn.example.com/a.webm': Threads takes .mp4, .mov videos only"
    ]


def test_alt_text_rides_on_the_image_container() -> None:
    # POST /{threads-user-id}/threads: alt_text, at most 1,000 characters.
    fake = FakeThreads()
    post = make_post(media=("https://cdn.example.com/mood.png",), media_meta=(MediaMeta("A mug"),))
    run(fake, lambda a: a.publish(post, make_account(), post.idempotency_key))
    (params,) = fake.containers.values()
    assert params["alt_text"] == "A mug"
    over = make_post(media=post.media, media_meta=(MediaMeta("x" * 1001),))
    (issue,) = offline_adapter(ThreadsAdapter).media_meta_issues(over, make_account())
    assert "over threads's limit of 1000" in issue.message


@pytest.mark.parametrize(
    ("text", "length"),
    [
        ("hello", 5),
        ("hi 😀", 7),  # the emoji counts as its 4 UTF-8 bytes
        ("ok 👍🏽", 11),  # thumbs up and a skin tone: 4 + 4
        ("❤️", 6),  # heart (3 bytes) and variation selector 16 (3 bytes)
        ("漢字", 2),  # not emoji: one each
    ],
)
def test_text_length_counts_emoji_as_utf8_bytes(text: str, length: int) -> None:
    assert offline_adapter(ThreadsAdapter).text_length(text) == length


def test_validate_flags_text_that_emoji_push_over_500() -> None:
    adapter = offline_adapter(ThreadsAdapter)
    fits = make_post(text="a" * 496 + "😀")
    too_long = make_post(text="a" * 497 + "😀")
    assert adapter.validate(fits, make_account()) == []
    assert [i.field for i in adapter.validate(too_long, make_account())] == ["text"]


def test_validate_flags_local_files_and_empty_posts() -> None:
    adapter = offline_adapter(ThreadsAdapter)
    local = adapter.validate(make_post(media=("/srv/a.jpg",)), make_account())
    assert [i.field for i in local] == ["media"]
    empty = adapter.validate(make_post(text=""), make_account())
    assert [i.field for i in empty] == ["text"]


def test_metrics_count_replies_as_comments_and_reposts_plus_quotes_as_shares() -> None:
    post = make_post(remote_id="18050206876123456")
    metrics = run(FakeThreads(), lambda a: a.fetch_metrics([post], make_account()))
    m = metrics["18050206876123456"]
    assert (m.views, m.likes, m.comments, m.shares, m.reach) == (480, 35, 6, 5, None)
