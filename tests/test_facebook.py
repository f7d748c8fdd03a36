"""Facebook Page adapter: feed and photo posts, metrics with reach, lookup by message."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from adapter_support import form
from smm_meta import FacebookAdapter

from scheduler.adapter import (
    Account,
    MediaMeta,
    OutcomeUnknown,
    OutgoingPost,
    Published,
    Rejected,
    Transient,
)
from scheduler.testing import (
    AdapterContract,
    Handler,
    RecordingHandler,
    account_with_secrets,
    fault_handler,
    offline_adapter,
    run_adapter,
)

# Media files come from each test's tmp_path; media URLs resolve to a public address.
pytestmark = pytest.mark.usefixtures("media_roots")

T = TypeVar("T")
TOKEN = "EAAB-secret-page-token"
PAGE = "104582671234567"
DUE = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)
POST_ID = f"{PAGE}_122107356123456789"


def make_account(**options: Any) -> Account:
    return account_with_secrets(
        "brand-fb", "facebook", {"page_id": PAGE, **options}, secrets={"page_access_token": TOKEN}
    )


def make_post(**changes: Any) -> OutgoingPost:
    post = OutgoingPost(
        key="p1",
        account="brand-fb",
        content_type="announcement",
        text="Our spring collection is out",
        link="https://shop.example.com/spring?utm_source=facebook",
        tags=("spring",),
        idempotency_key="p1-key",
        due_at=DUE,
    )
    return replace(post, **changes)


def graph_error(status: int, code: int, message: str, **extra: Any) -> httpx.Response:
    error = {"message": message, "type": "OAuthException", "code": code, **extra}
    return httpx.Response(status, json={"error": {**error, "fbtrace_id": "AbC"}})


class FakePage(RecordingHandler):
    """The Page endpoints this adapter uses, answering as the Graph API documents."""

    def __init__(self) -> None:
        super().__init__()
        self.feed: list[dict[str, str]] = []
        self.photos: list[httpx.Request] = []
        self.insights: httpx.Response | None = None

    def answer(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/v21.0")
        if request.method == "POST" and path == f"/{PAGE}/feed":
            self.feed.append(form(request))
            return httpx.Response(200, json={"id": POST_ID})
        if request.method == "POST" and path == f"/{PAGE}/photos":
            self.photos.append(request)
            photo = str(122107356000000000 + len(self.photos))
            multipart = request.headers["content-type"].startswith("multipart/")
            if not multipart and form(request).get("published") == "false":
                return httpx.Response(200, json={"id": photo})
            return httpx.Response(200, json={"id": photo, "post_id": POST_ID})
        if request.method == "GET" and path == f"/{PAGE}/posts":
            return httpx.Response(
                200,
                json={
                    "data": [
                        {
                            "id": POST_ID,
                            "message": "Our spring collection is out\n\n#spring",
                            "created_time": "2030-01-07T09:00:02+0000",
                            "permalink_url": f"https://www.facebook.com/{PAGE}/posts/1",
                        }
                    ]
                },
            )
        if request.method == "GET" and path == "/":
            fields = request.url.params["fields"]
            ids = request.url.params["ids"].split(",")
            if fields.startswith("insights"):
                if self.insights is not None:
                    return self.insights
                return httpx.Response(200, json={i: _insights(i) for i in ids})
            return httpx.Response(200, json={i: _counts(i) for i in ids})
        return graph_error(400, 100, f"Unsupported {request.method} request {path}")


def _counts(remote_id: str) -> dict[str, Any]:
    return {
        "reactions": {"data": [], "summary": {"total_count": 42, "viewer_reaction": "NONE"}},
        "comments": {"data": [], "summary": {"order": "ranked", "total_count": 5}},
        "shares": {"count": 3},
        "id": remote_id,
    }


def _insights(remote_id: str) -> dict[str, Any]:
    values = [
        {
            "name": "post_impressions_unique",
            "period": "lifetime",
            "values": [{"value": 912}],
            "title": "Lifetime Post Total Reach",
            "id": f"{remote_id}/insights/post_impressions_unique/lifetime",
        }
    ]
    return {"insights": {"data": values}, "id": remote_id}


def run(handler: Handler, call: Callable[[FacebookAdapter], Awaitable[T]]) -> T:
    return run_adapter(FacebookAdapter, handler, call)


def publish(handler: Handler, post: OutgoingPost) -> Any:
    return run(handler, lambda a: a.publish(post, make_account(), post.idempotency_key))


# --------------------------------------------------------------------------- contract


class TestFacebookContract(AdapterContract):
    adapter_class = FacebookAdapter
    secret_values = (TOKEN,)

    def make_account(self) -> Account:
        return make_account()

    def make_handler(self, scenario: str) -> Handler:
        if scenario == "ok":
            return FakePage()
        usage = {
            PAGE: [
                {
                    "type": "pages",
                    "call_count": 100,
                    "total_cputime": 20,
                    "total_time": 31,
                    "estimated_time_to_regain_access": 12,
                }
            ]
        }
        answers: dict[str, Handler] = {
            "rate_limited": lambda request: httpx.Response(
                400,
                headers={"X-Business-Use-Case-Usage": json.dumps(usage)},
                json={
                    "error": {
                        "message": "(#32) Page request limit reached",
                        "type": "OAuthException",
                        "code": 32,
                        "fbtrace_id": "AbC",
                    }
                },
            ),
            "server_error": lambda request: graph_error(
                500, 1, "An unknown error occurred", is_transient=True, error_subcode=99
            ),
            "auth_expired": lambda request: graph_error(
                400,
                190,
                "Error validating access token: The user has not authorized application 123.",
                error_subcode=458,
            ),
            "rejected": lambda request: graph_error(
                400,
                100,
                "(#100) The parameter link is not a valid URL.",
                is_transient=False,
            ),
        }
        return answers[scenario]


# --------------------------------------------------------------------------- publishing


def test_a_text_post_goes_to_the_feed_with_its_link_as_a_card() -> None:
    page = FakePage()
    result = publish(page, make_post())
    assert page.feed == [
        {
            "message": "Our spring collection is out\n\n#spring",
            "link": "https://shop.example.com/spring?utm_source=facebook",
            "access_token": TOKEN,
        }
    ]
    assert result == Published(
        POST_ID, url=f"https://www.facebook.com/{PAGE}/posts/122107356123456789"
    )


def test_one_image_by_url_is_a_photo_post_with_the_link_in_its_message() -> None:
    page = FakePage()
    post = make_post(media=("https://cdn.example.com/spring.jpg",))
    result = publish(page, post)
    assert form(page.photos[0]) == {
        "url": "https://cdn.example.com/spring.jpg",
        "message": "Our spring collection is out\n\n"
        "https://shop.example.com/spring?utm_source=facebook\n\n#spring",
        "access_token": TOKEN,
    }
    assert page.feed == []
    assert result.remote_id == POST_ID


def test_a_local_image_is_uploaded_as_multipart_source(tmp_path: Path) -> None:
    image = tmp_path / "spring.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\nfake")
    page = FakePage()
    publish(page, make_post(media=(str(image),)))
    body = page.photos[0].content
    assert b'name="source"; filename="spring.png"' in body
    assert b"Content-Type: image/png" in body
    assert b"\x89PNG" in body


def test_a_missing_local_image_is_rejected_before_anything_is_posted(tmp_path: Path) -> None:
    page = FakePage()
    with pytest.raises(Rejected, match="cannot read media file"):
        publish(page, make_post(media=(str(tmp_path / "gone.jpg"),)))
    assert page.requests == []


def test_several_images_are_uploaded_unpublished_then_attached_to_one_post() -> None:
    page = FakePage()
    images = ("https://cdn.example.com/a.jpg", "https://cdn.example.com/b.jpg")
    publish(page, make_post(media=images))
    assert [form(r)["published"] for r in page.photos] == ["false", "false"]
    (feed,) = page.feed
    assert json.loads(feed["attached_media[0]"]) == {"media_fbid": "122107356000000001"}
    assert json.loads(feed["attached_media[1]"]) == {"media_fbid": "122107356000000002"}
    assert "link" not in feed


def test_alt_text_goes_with_each_photo_as_alt_text_custom(tmp_path: Path) -> None:
    # POST /{page-id}/photos: alt_text_custom, "Accessible alternative description for an
    # image" (developers.facebook.com/docs/graph-api/reference/photo, Publishing).
    page = FakePage()
    post = make_post(media=("https://cdn.example.com/a.jpg",), media_meta=(MediaMeta("A coat"),))
    publish(page, post)
    assert form(page.photos[0])["alt_text_custom"] == "A coat"

    page = FakePage()
    images = ("https://cdn.example.com/a.jpg", "https://cdn.example.com/b.jpg")
    publish(page, make_post(media=images, media_meta=(MediaMeta(), MediaMeta("A scarf"))))
    assert [form(r).get("alt_text_custom") for r in page.photos] == [None, "A scarf"]

    image = tmp_path / "coat.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\nfake")
    page = FakePage()
    publish(page, make_post(media=(str(image),), media_meta=(MediaMeta("A coat"),)))
    assert b'name="alt_text_custom"\r\n\r\nA coat\r\n' in page.photos[0].content


def test_alt_text_is_held_to_1000_characters() -> None:
    adapter = offline_adapter(FacebookAdapter)
    post = make_post(media=("https://cdn.example.com/a.jpg",), media_meta=(MediaMeta("x" * 1001),))
    (issue,) = adapter.media_meta_issues(post, make_account())
    assert "over facebook's limit of 1000" in issue.message


def test_a_lost_answer_while_uploading_hidden_photos_is_safe_to_retry() -> None:
    lost = fault_handler("read_timeout")
    images = ("https://cdn.example.com/a.jpg", "https://cdn.example.com/b.jpg")
    with pytest.raises(Transient):
        publish(lost, make_post(media=images))
    with pytest.raises(OutcomeUnknown):
        publish(lost, make_post())


def test_duplicate_post_is_rejected_with_facebooks_message() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return graph_error(400, 506, "Duplicate status message", error_subcode=1455006)

    with pytest.raises(Rejected, match="Duplicate status message"):
        publish(handler, make_post())


@pytest.mark.parametrize(
    ("post", "account", "field"),
    [
        (make_post(), replace(make_account(), options={}), "account"),
        (make_post(text="", link=None, tags=()), make_account(), "text"),
        (make_post(text="x" * 63207, link=None, tags=()), make_account(), "text"),
    ],
)
def test_validate_flags_what_facebook_refuses(
    post: OutgoingPost, account: Account, field: str
) -> None:
    issues = offline_adapter(FacebookAdapter).validate(post, account)
    assert [i.field for i in issues] == [field]


# --------------------------------------------------------------------------- metrics, lookup


def test_fetch_metrics_reads_reactions_comments_shares_and_reach_in_one_batch() -> None:
    page = FakePage()
    posts = [make_post(remote_id=POST_ID), make_post(remote_id=f"{PAGE}_2")]
    metrics = run(page, lambda a: a.fetch_metrics(posts, make_account()))
    m = metrics[POST_ID]
    assert (m.likes, m.comments, m.shares, m.reach) == (42, 5, 3, 912)
    reads = [r for r in page.requests if r.method == "GET"]
    assert len(reads) == 2
    assert reads[0].url.params["ids"] == f"{POST_ID},{PAGE}_2"


def test_fetch_metrics_without_insights_permission_leaves_reach_unknown() -> None:
    page = FakePage()
    page.insights = graph_error(400, 10, "(#10) Requires read_insights permission")
    metrics = run(page, lambda a: a.fetch_metrics([make_post(remote_id=POST_ID)], make_account()))
    assert metrics[POST_ID].reach is None
    assert metrics[POST_ID].likes == 42


def test_fetch_metrics_skips_a_deleted_post_without_losing_the_others() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/gone") or "gone" in request.url.params.get("ids", ""):
            return graph_error(400, 100, "Some of the aliases you requested do not exist: gone")
        if request.url.params["fields"].startswith("insights"):
            return httpx.Response(200, json={})
        remote_id = request.url.path.rsplit("/", 1)[-1]
        return httpx.Response(200, json=_counts(remote_id))

    posts = [make_post(remote_id="gone"), make_post(remote_id="kept")]
    metrics = run(handler, lambda a: a.fetch_metrics(posts, make_account()))
    assert list(metrics) == ["kept"]
    assert metrics["kept"].reach is None


def test_a_post_nobody_shared_has_zero_shares() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        body = _counts(POST_ID)
        del body["shares"]
        return httpx.Response(200, json={POST_ID: body})

    metrics = run(
        handler, lambda a: a.fetch_metrics([make_post(remote_id=POST_ID)], make_account())
    )
    assert metrics[POST_ID].shares == 0


def test_lookup_finds_the_post_by_its_message() -> None:
    found = run(FakePage(), lambda a: a.lookup(make_post(), make_account()))
    assert found == Published(POST_ID, url=f"https://www.facebook.com/{PAGE}/posts/1")


def test_lookup_says_not_published_when_the_page_has_no_such_post_since_it_was_due() -> None:
    found = run(FakePage(), lambda a: a.lookup(make_post(text="Something else"), make_account()))
    assert found is None
