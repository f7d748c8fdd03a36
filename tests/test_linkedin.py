"""LinkedIn adapter: Posts API request shape, little-format escaping, errors, metrics, lookup."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote

import httpx
import pytest
import smm_linkedin
from adapter_support import registered_adapters
from smm_linkedin import LinkedInAdapter
from smm_linkedin.api import classify_error, next_midnight_utc
from smm_linkedin.little import escape

from scheduler.adapter import (
    Account,
    AuthExpired,
    MediaMeta,
    OutcomeUnknown,
    OutgoingPost,
    Published,
    PublishError,
    RateLimited,
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
TOKEN = "AQV-secret-linkedin-token"
ORG = "urn:li:organization:2414183"
PERSON = "urn:li:person:8675309"
SHARE = "urn:li:share:7199500000000000000"
DUE = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)
UPLOAD = "https://www.linkedin.com/dms-uploads/C4E10AQ/uploadedImage/0?ca=vector_feedshare&v=beta"


def make_account(author: str = ORG) -> Account:
    return account_with_secrets(
        "brand-li",
        "linkedin",
        {"author": author, "linkedin_version": "202410"},
        secrets={"access_token": TOKEN},
    )


def make_post(**changes: Any) -> OutgoingPost:
    post = OutgoingPost(
        key="l1",
        account="brand-li",
        content_type="instruction",
        text="Hiring checklist (2030 edition): read it [free]",
        link="https://example.com/hiring_checklist",
        idempotency_key="l1-key",
        due_at=DUE,
    )
    return replace(post, **changes)


def li_error(status: int, message: str, **extra: Any) -> httpx.Response:
    return httpx.Response(status, json={"status": status, "message": message, **extra})


class FakeLinkedIn(RecordingHandler):
    """api.linkedin.com/rest as LinkedIn's Posts, Images and Social Actions docs show it."""

    def __init__(self) -> None:
        super().__init__()
        self.posts: list[dict[str, Any]] = []
        self.uploads: list[httpx.Request] = []
        self.stats: httpx.Response | None = None

    def answer(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == "www.linkedin.com":
            self.uploads.append(request)
            return httpx.Response(201)
        # Media are fetched from the address their host was resolved to, named in Host.
        if request.headers["host"] == "media.example.com":
            return httpx.Response(
                200, content=b"\x89PNG\r\n\x1a\n", headers={"content-type": "image/png"}
            )
        path = request.url.path.removeprefix("/rest/")
        if request.method == "POST" and path == "posts":
            self.posts.append(json.loads(request.content))
            return httpx.Response(201, headers={"x-restli-id": SHARE, "x-linkedin-id": SHARE})
        if request.method == "POST" and path == "images":
            image = f"urn:li:image:C4E10AQFoyyAjHPMQ{len(self.uploads)}"
            value = {"uploadUrlExpiresAt": 1893456000000, "uploadUrl": UPLOAD, "image": image}
            return httpx.Response(200, json={"value": value})
        if request.method == "GET" and path.startswith("socialActions/"):
            urn = unquote(path.removeprefix("socialActions/"))
            return httpx.Response(
                200,
                json={
                    "likesSummary": {"totalLikes": 31, "likedByCurrentUser": False},
                    "commentsSummary": {"totalFirstLevelComments": 4, "aggregatedTotalComments": 6},
                    "target": urn,
                },
            )
        if request.method == "GET" and path == "organizationalEntityShareStatistics":
            if self.stats is not None:
                return self.stats
            stats = {
                "uniqueImpressionsCount": 820,
                "shareCount": 5,
                "engagement": 0.071,
                "clickCount": 17,
                "likeCount": 33,
                "impressionCount": 1204,
                "commentCount": 6,
            }
            element = {"totalShareStatistics": stats, "share": SHARE, "organizationalEntity": ORG}
            return httpx.Response(200, json={"elements": [element], "paging": {"count": 10}})
        if request.method == "GET" and path == "posts":
            elements = [
                {
                    "id": SHARE,
                    "author": ORG,
                    "commentary": p["commentary"],
                    "createdAt": int((DUE + timedelta(seconds=2)).timestamp() * 1000),
                    "lifecycleState": "PUBLISHED",
                }
                for p in self.posts
            ]
            return httpx.Response(200, json={"elements": elements, "paging": {"count": 20}})
        return li_error(404, f"No route {request.method} {path}")


def run(handler: Handler, call: Callable[[LinkedInAdapter], Awaitable[T]]) -> T:
    return run_adapter(LinkedInAdapter, handler, call)


def publish(handler: Any, post: OutgoingPost | None = None, account: Account | None = None) -> Any:
    post = post or make_post()
    return run(handler, lambda a: a.publish(post, account or make_account(), post.idempotency_key))


# --------------------------------------------------------------------------- contract


class TestLinkedInContract(AdapterContract):
    adapter_class = LinkedInAdapter
    lost_answer = OutcomeUnknown
    secret_values = (TOKEN,)

    def make_account(self) -> Account:
        return make_account()

    def make_handler(self, scenario: str) -> Handler:
        if scenario == "ok":
            return FakeLinkedIn()
        answers: dict[str, Handler] = {
            "rate_limited": lambda request: li_error(
                429,
                "Resource level throttle APPLICATION DAY limit for calls to this resource "
                "is reached.",
                serviceErrorCode=101,
                code="TOO_MANY_REQUESTS",
            ),
            "server_error": lambda request: li_error(500, "Internal Server Error"),
            "auth_expired": lambda request: li_error(
                401,
                "The token used in the request has been revoked by the user",
                serviceErrorCode=65601,
                code="REVOKED_ACCESS_TOKEN",
            ),
            "rejected": lambda request: li_error(
                422,
                "Content is a duplicate of urn:li:share:7073015422161784833",
                errorDetailType="com.linkedin.common.error.BadRequest",
            ),
        }
        return answers[scenario]


# --------------------------------------------------------------------------- publishing


def test_publish_sends_the_documented_body_and_headers_and_reads_x_restli_id() -> None:
    fake = FakeLinkedIn()
    result = publish(fake)
    (request,) = fake.requests
    assert str(request.url) == "https://api.linkedin.com/rest/posts"
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["LinkedIn-Version"] == "202410"
    assert request.headers["X-Restli-Protocol-Version"] == "2.0.0"
    assert fake.posts == [
        {
            "author": ORG,
            "commentary": "Hiring checklist \\(2030 edition\\): read it \\[free\\]\n\n"
            "https://example.com/hiring_checklist",
            "visibility": "PUBLIC",
            "distribution": {
                "feedDistribution": "MAIN_FEED",
                "targetEntities": [],
                "thirdPartyDistributionChannels": [],
            },
            "lifecycleState": "PUBLISHED",
            "isReshareDisabledByAuthor": False,
        }
    ]
    assert result == Published(SHARE, url=f"https://www.linkedin.com/feed/update/{SHARE}")


def test_created_without_x_restli_id_leaves_the_outcome_open() -> None:
    with pytest.raises(OutcomeUnknown, match="x-restli-id"):
        publish(lambda r: httpx.Response(201))


def test_one_image_is_uploaded_then_referenced_as_media(tmp_path: Path) -> None:
    image = tmp_path / "team.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\nteam")
    fake = FakeLinkedIn()
    publish(fake, make_post(media=(str(image),)))
    init = fake.requests[0]
    assert str(init.url) == "https://api.linkedin.com/rest/images?action=initializeUpload"
    assert json.loads(init.content) == {"initializeUploadRequest": {"owner": ORG}}
    (upload,) = fake.uploads
    assert upload.method == "PUT"
    assert upload.content == b"\x89PNG\r\n\x1a\nteam"
    assert upload.headers["Content-Type"] == "image/png"
    assert fake.posts[0]["content"] == {"media": {"id": "urn:li:image:C4E10AQFoyyAjHPMQ0"}}


def test_several_images_become_a_multi_image_post() -> None:
    fake = FakeLinkedIn()
    media = ("https://media.example.com/a.png", "https://media.example.com/b.png")
    publish(fake, make_post(media=media))
    assert fake.posts[0]["content"] == {
        "multiImage": {
            "images": [
                {"id": "urn:li:image:C4E10AQFoyyAjHPMQ0"},
                {"id": "urn:li:image:C4E10AQFoyyAjHPMQ1"},
            ]
        }
    }


def test_a_lost_answer_while_uploading_an_image_is_transient() -> None:
    with pytest.raises(Transient):
        publish(
            fault_handler("read_timeout"), make_post(media=("https://media.example.com/a.png",))
        )


# --------------------------------------------------------------------------- little format


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("Plain words, with #hashtags!", "Plain words, with #hashtags!"),
        ("Q&A (live) [today] {maybe}", "Q&A \\(live\\) \\[today\\] \\{maybe\\}"),
        (
            "a < b > c | d ~ e _ f * g @ h \\ i",
            "a \\< b \\> c \\| d \\~ e \\_ f \\* g \\@ h \\\\ i",
        ),
        ("see https://example.com/a_b?x=1~2*3@4", "see https://example.com/a_b?x=1~2*3@4"),
        ("(see https://example.com/x)", "\\(see https://example.com/x\\)"),
        ("snake_case and https://t.co/a_b", "snake\\_case and https://t.co/a_b"),
    ],
)
def test_little_format_escapes_reserved_characters_outside_urls(text: str, escaped: str) -> None:
    assert escape(text) == escaped


def test_the_limit_is_checked_on_the_text_as_written_not_as_escaped() -> None:
    adapter = offline_adapter(LinkedInAdapter)
    fits = make_post(text="(" * 3000, link=None)
    assert adapter.validate(fits, make_account()) == []
    too_long = make_post(text="a" * 3001, link=None)
    assert [i.field for i in adapter.validate(too_long, make_account())] == ["text"]


@pytest.mark.parametrize("author", [None, "2414183", "urn:li:company:1"])
def test_validate_flags_an_author_that_is_not_a_person_or_organization_urn(author: Any) -> None:
    account = replace(make_account(), options={"author": author})
    issues = offline_adapter(LinkedInAdapter).validate(make_post(), account)
    assert [i.field for i in issues] == ["account"]


# --------------------------------------------------------------------------- errors


NOW = datetime(2030, 1, 7, 21, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            429,
            {
                "serviceErrorCode": 101,
                "code": "TOO_MANY_REQUESTS",
                "message": "Resource level throttle MEMBER DAY limit is reached.",
            },
            RateLimited,
        ),
        (
            401,
            {
                "serviceErrorCode": 65600,
                "code": "INVALID_ACCESS_TOKEN",
                "message": "Invalid access token",
            },
            AuthExpired,
        ),
        (
            401,
            {
                "serviceErrorCode": 65601,
                "code": "REVOKED_ACCESS_TOKEN",
                "message": "The token used in the request has been revoked by the user",
            },
            AuthExpired,
        ),
        (
            403,
            {
                "serviceErrorCode": 100,
                "code": "ACCESS_DENIED",
                "message": "Not enough permissions to access: partnerApiPostsExternal.CREATE",
            },
            AuthExpired,
        ),
        (422, {"message": "Content is a duplicate of urn:li:share:7073015422161784833"}, Rejected),
        (422, {"message": "ERROR :: /commentary :: length exceeds 3000"}, Rejected),
        (
            400,
            {
                "code": "ILLEGAL_ARGUMENT",
                "message": "Request body could not be converted to data map",
            },
            Rejected,
        ),
        (404, {"message": "Not Found"}, Rejected),
        # No idempotency key on the create: a 5xx may follow the post's creation.
        (500, {"message": "Internal Server Error"}, OutcomeUnknown),
        (503, None, OutcomeUnknown),
        (504, None, OutcomeUnknown),
    ],
)
def test_linkedin_errors_map_to_the_taxonomy(
    status: int, body: dict[str, Any] | None, expected: type[PublishError]
) -> None:
    error = classify_error(
        status, body, httpx.Headers(), where="POST /posts", mutating=True, now=NOW
    )
    assert type(error) is expected
    assert error.http_status == status


def test_rejection_keeps_linkedins_message_and_codes() -> None:
    body = {
        "status": 422,
        "serviceErrorCode": 100,
        "code": "UNPROCESSABLE_ENTITY",
        "message": "Content is a duplicate of urn:li:share:7073015422161784833",
    }
    error = classify_error(422, body, httpx.Headers(), where="POST /posts", mutating=True)
    assert error.message == (
        "LinkedIn: Content is a duplicate of urn:li:share:7073015422161784833 "
        "[HTTP 422, UNPROCESSABLE_ENTITY, 100]"
    )


def test_a_429_without_retry_after_waits_for_midnight_utc() -> None:
    error = classify_error(429, {}, httpx.Headers(), where="POST /posts", mutating=True, now=NOW)
    assert error.retry_at == datetime(2030, 1, 8, tzinfo=UTC)


def test_a_429_with_retry_after_waits_that_long() -> None:
    headers = httpx.Headers({"Retry-After": "90"})
    error = classify_error(429, {}, headers, where="POST /posts", mutating=True, now=NOW)
    assert error.retry_at == NOW + timedelta(seconds=90)


def test_next_midnight_utc_is_computed_in_utc_whatever_the_zone() -> None:
    from zoneinfo import ZoneInfo

    local = datetime(2030, 1, 8, 0, 30, tzinfo=ZoneInfo("Europe/Riga"))  # 22:30 UTC, Jan 7
    assert next_midnight_utc(local) == datetime(2030, 1, 8, tzinfo=UTC)


# --------------------------------------------------------------------------- metrics, lookup


def test_organization_posts_get_share_statistics_with_reach_in_one_request() -> None:
    fake = FakeLinkedIn()
    metrics = run(fake, lambda a: a.fetch_metrics([make_post(remote_id=SHARE)], make_account()))
    (request,) = fake.requests
    assert request.url.raw_path.decode() == (
        "/rest/organizationalEntityShareStatistics?q=organizationalEntity"
        "&organizationalEntity=urn%3Ali%3Aorganization%3A2414183"
        "&shares=List(urn%3Ali%3Ashare%3A7199500000000000000)"
    )
    m = metrics[SHARE]
    assert (m.likes, m.comments, m.shares, m.clicks, m.impressions, m.reach) == (
        33,
        6,
        5,
        17,
        1204,
        820,
    )


def test_member_posts_get_social_action_counts_and_no_reach() -> None:
    fake = FakeLinkedIn()
    post = make_post(remote_id=SHARE)
    metrics = run(fake, lambda a: a.fetch_metrics([post], make_account(PERSON)))
    (request,) = fake.requests
    assert (
        request.url.raw_path.decode()
        == "/rest/socialActions/urn%3Ali%3Ashare%3A7199500000000000000"
    )
    m = metrics[SHARE]
    assert (m.likes, m.comments, m.reach, m.impressions) == (31, 4, None, None)


def test_organization_statistics_refused_falls_back_to_social_actions() -> None:
    fake = FakeLinkedIn()
    fake.stats = li_error(
        403, "Not enough permissions to access: organizationalEntityShareStatistics"
    )
    metrics = run(fake, lambda a: a.fetch_metrics([make_post(remote_id=SHARE)], make_account()))
    assert (metrics[SHARE].likes, metrics[SHARE].reach) == (31, None)


def test_a_revoked_token_during_metrics_is_still_auth_expired() -> None:
    fake = FakeLinkedIn()
    fake.stats = li_error(401, "The token used in the request has been revoked by the user")
    with pytest.raises(AuthExpired):
        run(fake, lambda a: a.fetch_metrics([make_post(remote_id=SHARE)], make_account()))


def test_lookup_finds_the_post_by_its_escaped_commentary() -> None:
    fake = FakeLinkedIn()
    publish(fake)
    found = run(fake, lambda a: a.lookup(make_post(), make_account()))
    assert found == Published(SHARE, url=f"https://www.linkedin.com/feed/update/{SHARE}")
    listing = fake.requests[-1]
    assert listing.url.raw_path.decode() == (
        "/rest/posts?author=urn%3Ali%3Aorganization%3A2414183&q=author&count=20&sortBy=CREATED"
    )


def test_lookup_says_not_published_when_the_author_has_no_such_post() -> None:
    assert run(FakeLinkedIn(), lambda a: a.lookup(make_post(), make_account())) is None


def test_lookup_without_permission_to_read_member_posts_cannot_tell() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return li_error(403, "Not enough permissions to access: posts.FINDER-author")

    with pytest.raises(OutcomeUnknown, match="cannot look the post up"):
        run(handler, lambda a: a.lookup(make_post(), make_account(PERSON)))


def test_the_plugin_registers_the_linkedin_platform() -> None:
    assert registered_adapters(smm_linkedin.register_platforms) == [LinkedInAdapter]
    assert LinkedInAdapter.platform == "linkedin"


def test_alt_text_rides_with_each_image_as_alt_text() -> None:
    # Posts API (learn.microsoft.com, LinkedIn Posts API): content.media.altText and
    # content.multiImage.images[].altText.
    fake = FakeLinkedIn()
    media = ("https://media.example.com/a.png", "https://media.example.com/b.png")
    meta = (MediaMeta("Our team at the Riga office"), MediaMeta())
    publish(fake, make_post(media=media, media_meta=meta))
    assert fake.posts[0]["content"] == {
        "multiImage": {
            "images": [
                {"id": "urn:li:image:C4E10AQFoyyAjHPMQ0", "altText": "Our team at the Riga office"},
                {"id": "urn:li:image:C4E10AQFoyyAjHPMQ1"},
            ]
        }
    }
