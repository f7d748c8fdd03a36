"""The X adapter: weighted length, requests, error classification, metrics and lookup."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs

import httpx
import pytest
from adapter_support import adapter_from_entry_point, png
from hypothesis import given
from hypothesis import strategies as st
from smm_x import XAdapter
from smm_x.weighted import find_urls, weighted_length
from structlog.testing import capture_logs

from scheduler.adapter import (
    Account,
    AuthExpired,
    MediaMeta,
    OutcomeUnknown,
    OutgoingPost,
    Poll,
    PostOptions,
    Published,
    RateLimited,
    RateLimitStatus,
    Rejected,
    Transient,
)
from scheduler.testing import (
    AdapterContract,
    Handler,
    RecordingHandler,
    account_with_secrets,
    offline_adapter,
    run_adapter,
)

# Media files come from each test's tmp_path; media URLs resolve to a public address.
pytestmark = pytest.mark.usefixtures("media_roots")

T = TypeVar("T")
TOKEN = "dGhpcy1pcy1hbi14LWFjY2Vzcy10b2tlbg"
USER_ID = "2244994945"
POST_ID = "1445880548472328192"
RESET = 1767776400  # 2026-01-07 09:00:00 UTC
LIMIT_HEADERS = {
    "x-rate-limit-limit": "100",
    "x-rate-limit-remaining": "99",
    "x-rate-limit-reset": str(RESET),
}


def make_account(**options: Any) -> Account:
    return account_with_secrets("x-main", "x", options, secrets={"access_token": TOKEN})


def make_post(**changes: Any) -> OutgoingPost:
    post = OutgoingPost(
        key="p1",
        account="x-main",
        content_type="instruction",
        text="Five checklists for launch day",
        due_at=datetime(2026, 1, 7, 9, 0, tzinfo=UTC),
    )
    return replace(post, **changes)


def problem(status: int, title: str, detail: str, **extra: Any) -> httpx.Response:
    body = {"title": title, "detail": detail, "type": "about:blank", "status": status, **extra}
    return httpx.Response(status, json=body, headers={"content-type": "application/problem+json"})


def created(text: str = "Five checklists for launch day") -> httpx.Response:
    data = {"edit_history_tweet_ids": [POST_ID], "id": POST_ID, "text": text}
    return httpx.Response(201, json={"data": data}, headers=LIMIT_HEADERS)


def timeline_post(post_id: str, text: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": post_id,
        "text": text,
        "created_at": "2026-01-07T09:00:02.000Z",
        "edit_history_tweet_ids": [post_id],
        **extra,
    }


def run(handler: Handler, call: Callable[[XAdapter], Awaitable[T]]) -> T:
    return run_adapter(XAdapter, handler, call)


def publish(
    handler: Handler,
    post: OutgoingPost | None = None,
    account: Account | None = None,
) -> Published:
    return run(handler, lambda a: a.publish(post or make_post(), account or make_account(), "k"))


# --------------------------------------------------------------------------- contract


class TestXContract(AdapterContract):
    adapter_class = XAdapter
    lost_answer = OutcomeUnknown
    secret_values = (TOKEN,)

    def make_account(self) -> Account:
        return make_account()

    def make_handler(self, scenario: str) -> Handler:
        def handler(request: httpx.Request) -> httpx.Response:
            if scenario == "rate_limited":
                headers = {**LIMIT_HEADERS, "x-rate-limit-remaining": "0"}
                response = problem(429, "Too Many Requests", "Too Many Requests")
                response.headers.update(headers)
                return response
            if scenario == "server_error":
                return problem(503, "Service Unavailable", "Service Unavailable")
            if scenario == "auth_expired":
                return problem(401, "Unauthorized", "Unauthorized")
            if scenario == "rejected":
                return problem(
                    400,
                    "Invalid Request",
                    "One or more parameters to your request was invalid.",
                    errors=[{"parameters": {"text": [""]}, "message": "text must not be empty"}],
                )
            return ok_network(request)

        return handler


def ok_network(request: httpx.Request) -> httpx.Response:
    """X as it answers the contract suite's post: create, metrics, and the user timeline."""
    path = request.url.path
    if path == "/2/tweets" and request.method == "POST":
        return created(json.loads(request.content)["text"])
    if path == "/2/tweets":
        metrics = {
            "retweet_count": 1,
            "reply_count": 2,
            "like_count": 3,
            "quote_count": 0,
            "bookmark_count": 0,
            "impression_count": 120,
        }
        return httpx.Response(200, json={"data": [{"id": POST_ID, "public_metrics": metrics}]})
    if path == "/2/users/me":
        return httpx.Response(200, json={"data": {"id": USER_ID, "username": "smm"}})
    text = "Hello from the contract suite https://t.co/Ab12Cd34"
    url = {"start": 30, "end": 53, "url": "https://t.co/Ab12Cd34"}
    url |= {"expanded_url": "https://example.com/x", "display_url": "example.com/x"}
    item = timeline_post(POST_ID, text, entities={"urls": [url]})
    return httpx.Response(200, json={"data": [item], "meta": {"result_count": 1}})


# --------------------------------------------------------------------------- weighted length


@pytest.mark.parametrize(
    ("text", "length"),
    [
        ("hello", 5),
        ("привет", 6),  # Cyrillic is inside U+0000-U+10FF
        ("’“”", 3),  # U+2010-U+201F punctuation weighs 1
        ("…", 2),  # U+2026 is outside every light range
        ("漢字", 4),
        ("한국어", 6),
        ("e\u0301", 1),  # NFC composes e + acute into é
        ("\u1100\u1161", 2),  # NFC composes Hangul jamo into one syllable (weight 2)
        ("x\u0301", 2),  # no precomposed form: x and the combining accent weigh 1 each
        ("😀", 2),
        ("👍🏽", 2),  # skin-tone modifier belongs to its emoji
        ("👨‍👩‍👧‍👦", 2),  # a whole ZWJ sequence is one emoji
        ("🏋️‍♀️", 2),  # ZWJ sequence with variation selectors and a BMP sign
        ("🇺🇦", 2),  # two regional indicators make one flag
        ("1️⃣", 2),  # keycap sequence
        ("🏴󠁧󠁢󠁳󠁣󠁴󠁿", 2),  # tag sequence (Scotland)
        ("❤️", 2),
        ("©", 1),  # text presentation: a plain Latin-1 symbol
        ("©️", 2),  # emoji presentation
        ("👍🏽👍🏽", 4),
    ],
)
def test_weighted_length_per_twitter_text_rules(text: str, length: int) -> None:
    assert weighted_length(text) == length


@pytest.mark.parametrize(
    ("text", "length"),
    [
        ("https://example.com/" + "a" * 200, 23),
        ("http://x.co", 23),
        ("example.com", 23),
        ("news.bbc.co.uk", 23),  # a country code with a subdomain is linked
        ("shop.example.io/catalogue/spring-summer-collection", 23),
        ("Read https://example.com.", 5 + 23 + 1),  # the full stop ends the sentence
        ("(https://en.wikipedia.org/wiki/Foo_(bar))", 1 + 23 + 1),
        ("two https://a.example/1 https://b.example/2", 4 + 23 + 1 + 23),
        ("file.py", 7),  # one label and a country code, no path: not linked
        ("file.py/readme", 23),
        ("mail me@example.com", 19),  # an address is not a link
        ("#example.com", 12),
        ("漢字 https://example.com/漢字", 5 + 23),
    ],
)
def test_every_url_counts_23(text: str, length: int) -> None:
    assert weighted_length(text) == length


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_/?=&%", max_size=300))
def test_a_url_counts_23_whatever_its_path(path: str) -> None:
    url = f"https://example.com/{path}z"  # ends in a letter: no sentence punctuation to trim
    assert find_urls(f"see {url} now") == [(4, 4 + len(url))]
    assert weighted_length(f"see {url} now") == 4 + 23 + 4


def test_280_weighted_is_the_limit() -> None:
    adapter = offline_adapter(XAdapter)
    assert adapter.validate(make_post(text="a" * 280), make_account()) == []
    assert adapter.validate(make_post(text="漢" * 140), make_account()) == []
    assert [i.field for i in adapter.validate(make_post(text="a" * 281), make_account())] == [
        "text"
    ]
    assert adapter.validate(make_post(text="漢" * 140 + "a"), make_account())
    long_link = "x" * 256 + " https://example.com/" + "p" * 500
    assert adapter.validate(make_post(text=long_link), make_account()) == []


def test_premium_accounts_may_raise_the_limit() -> None:
    adapter = offline_adapter(XAdapter)
    account = make_account(max_characters=25_000)
    assert adapter.validate(make_post(text="a" * 5000), account) == []


def test_validate_wants_local_image_files(tmp_path: Path) -> None:
    adapter = offline_adapter(XAdapter)
    media = ("https://cdn.example.com/a.png", str(tmp_path / "gone.png"), png(tmp_path, "ok.png"))
    issues = adapter.validate(make_post(media=media), make_account())
    assert [i.message.split(":")[-1].strip() for i in issues] == [
        "X needs image files, not URLs",
        "no such file",
    ]


# --------------------------------------------------------------------------- publish


def test_publish_creates_a_post_with_the_bearer_token() -> None:
    recorder = RecordingHandler(ok_network)
    published = publish(recorder, make_post(link="https://example.com/launch", tags=("smm",)))
    (request,) = recorder.requests
    assert (request.method, str(request.url)) == ("POST", "https://api.x.com/2/tweets")
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert json.loads(request.content) == {
        "text": "Five checklists for launch day\n\nhttps://example.com/launch\n\n#smm"
    }
    assert published == Published(POST_ID, f"https://x.com/i/web/status/{POST_ID}")


def test_images_are_uploaded_first_and_attached(tmp_path: Path) -> None:
    media_ids = iter(["1880028106020515840", "1880028106020515841"])

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/2/media/upload":
            media_id = next(media_ids)
            data = {"id": media_id, "media_key": f"3_{media_id}", "size": 24}
            return httpx.Response(200, json={"data": data | {"expires_after_secs": 86400}})
        return ok_network(request)

    recorder = RecordingHandler(handler)
    publish(recorder, make_post(media=(png(tmp_path, "a.png"), png(tmp_path, "b.png"))))
    upload, _, create = recorder.requests
    assert upload.url.path == "/2/media/upload"
    assert b'name="media_category"\r\n\r\ntweet_image' in upload.content
    assert b'name="media"; filename="a.png"' in upload.content
    assert json.loads(create.content)["media"] == {
        "media_ids": ["1880028106020515840", "1880028106020515841"]
    }


def test_api_base_option_replaces_the_host() -> None:
    recorder = RecordingHandler(ok_network)
    publish(recorder, account=make_account(api_base="http://127.0.0.1:9000/"))
    assert str(recorder.requests[0].url) == "http://127.0.0.1:9000/2/tweets"


def test_create_headers_update_the_rate_limit_status() -> None:
    async def call(adapter: XAdapter) -> dict[str, RateLimitStatus]:
        await adapter.publish(make_post(), make_account(), "k")
        return adapter.rate_limit_status

    status = run(ok_network, call)
    assert status == {
        "x-main": RateLimitStatus(
            remaining=99, reset_at=datetime.fromtimestamp(RESET, UTC), limit=100
        )
    }


def test_a_media_url_is_rejected_before_any_request() -> None:
    recorder = RecordingHandler(ok_network)
    with pytest.raises(Rejected, match="not a local"):
        publish(recorder, make_post(media=("https://cdn.example.com/a.png",)))
    assert recorder.requests == []


# --------------------------------------------------------------------------- errors


def rate_limited(**headers: str) -> httpx.Response:
    response = problem(429, "Too Many Requests", "Too Many Requests")
    response.headers.update(headers)
    return response


def test_429_retries_at_the_window_reset() -> None:
    response = rate_limited(**{**LIMIT_HEADERS, "x-rate-limit-remaining": "0"})
    with pytest.raises(RateLimited) as caught:
        publish(lambda r: response)
    assert caught.value.retry_at == datetime.fromtimestamp(RESET, UTC)
    assert caught.value.message == "Too Many Requests"


def test_429_with_the_daily_cap_spent_retries_when_the_day_resets() -> None:
    daily_reset = RESET + 20 * 3600
    response = rate_limited(
        **LIMIT_HEADERS,
        **{"x-user-limit-24hour-remaining": "0", "x-user-limit-24hour-reset": str(daily_reset)},
    )
    with pytest.raises(RateLimited) as caught:
        publish(lambda r: response)
    assert caught.value.retry_at == datetime.fromtimestamp(daily_reset, UTC)


def test_429_without_headers_leaves_the_wait_to_backoff() -> None:
    legacy = {"errors": [{"code": 88, "message": "Rate limit exceeded"}]}
    with pytest.raises(RateLimited) as caught:
        publish(lambda r: httpx.Response(429, json=legacy))
    assert caught.value.retry_at is None
    assert caught.value.message == "Rate limit exceeded"


def test_401_is_auth_expired() -> None:
    with pytest.raises(AuthExpired, match="Unauthorized"):
        publish(lambda r: problem(401, "Unauthorized", "Unauthorized"))


def test_403_duplicate_content_is_rejected_as_duplicate() -> None:
    detail = "You are not allowed to create a Tweet with duplicate content."
    with pytest.raises(Rejected) as caught:
        publish(lambda r: problem(403, "Forbidden", detail))
    assert caught.value.message == detail
    assert caught.value.code == "duplicate"


def test_other_403_is_rejected_with_the_detail() -> None:
    detail = "You are not permitted to perform this action."
    with pytest.raises(Rejected) as caught:
        publish(lambda r: problem(403, "Forbidden", detail))
    assert caught.value.message == detail
    assert caught.value.code is None


def test_403_for_an_app_without_access_pauses_the_account() -> None:
    body = {
        "client_id": "123456",
        "detail": "When authenticating requests to the Twitter API v2 endpoints, you must use "
        "keys and tokens from a Twitter developer App that is attached to a Project.",
        "registration_url": "https://developer.twitter.com/en/docs/projects/overview",
        "title": "Client Forbidden",
        "required_enrollment": "Appropriate Level of API Access",
        "reason": "client-not-enrolled",
        "type": "https://api.twitter.com/2/problems/client-forbidden",
    }
    with pytest.raises(AuthExpired, match="attached to a Project"):
        publish(lambda r: httpx.Response(403, json=body))


def test_400_problem_is_rejected_with_detail_and_each_error() -> None:
    response = problem(
        400,
        "Invalid Request",
        "One or more parameters to your request was invalid.",
        errors=[
            {"parameters": {"media.media_ids": ["1"]}, "message": "Your media IDs are invalid."}
        ],
        type="https://api.twitter.com/2/problems/invalid-request",
    )
    with pytest.raises(Rejected) as caught:
        publish(lambda r: response)
    assert caught.value.message == (
        "One or more parameters to your request was invalid.; Your media IDs are invalid."
    )
    assert caught.value.code == "https://api.twitter.com/2/problems/invalid-request"


@pytest.mark.parametrize("status", [500, 502, 503])
def test_a_server_error_on_create_has_an_unknown_outcome(status: int) -> None:
    # X takes no idempotency key: the post may have been made before the 5xx, so it is
    # settled by lookup, never resent blindly.
    with pytest.raises(OutcomeUnknown):
        publish(lambda r: problem(status, "Server Error", "Internal error"))


def test_a_server_error_on_a_media_upload_is_transient(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/2/media/upload":
            return problem(503, "Service Unavailable", "Service Unavailable")
        return ok_network(request)

    recorder = RecordingHandler(handler)
    with pytest.raises(Transient):
        publish(recorder, make_post(media=(png(tmp_path, "a.png"),)))
    assert [r.url.path for r in recorder.requests] == ["/2/media/upload"]


def test_a_gateway_timeout_on_create_has_an_unknown_outcome() -> None:
    with pytest.raises(OutcomeUnknown):
        publish(lambda r: httpx.Response(504, text="upstream request timeout"))


def test_an_upload_timeout_is_transient_and_creates_nothing(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/2/media/upload":
            raise httpx.ReadTimeout("The read operation timed out", request=request)
        return ok_network(request)

    recorder = RecordingHandler(handler)
    with pytest.raises(Transient):
        publish(recorder, make_post(media=(png(tmp_path, "a.png"),)))
    assert [r.url.path for r in recorder.requests] == ["/2/media/upload"]


def test_a_created_answer_without_json_has_an_unknown_outcome() -> None:
    with pytest.raises(OutcomeUnknown):
        publish(lambda r: httpx.Response(201, text="<html>ok</html>"))


# --------------------------------------------------------------------------- metrics


def test_metrics_map_public_metrics_to_counters() -> None:
    metrics = run(
        ok_network, lambda a: a.fetch_metrics([make_post(remote_id=POST_ID)], make_account())
    )
    (m,) = metrics.values()
    assert (m.remote_id, m.likes, m.comments, m.shares, m.saves, m.impressions) == (
        POST_ID,
        3,
        2,
        1,
        0,
        120,
    )
    assert m.reach is None


def test_metrics_are_fetched_100_ids_at_a_time_and_missing_posts_left_out() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        ids = request.url.params["ids"].split(",")
        assert request.url.params["tweet.fields"] == "public_metrics"
        counts = {"like_count": 1, "retweet_count": 2, "quote_count": 3, "reply_count": 0}
        data = [{"id": i, "public_metrics": counts} for i in ids if i != "7"]
        missing = {
            "value": "7",
            "detail": "Could not find tweet with ids: [7].",
            "title": "Not Found Error",
            "resource_type": "tweet",
            "parameter": "ids",
            "resource_id": "7",
            "type": "https://api.twitter.com/2/problems/resource-not-found",
        }
        return httpx.Response(200, json={"data": data, "errors": [missing]})

    recorder = RecordingHandler(handler)
    posts = [make_post(remote_id=str(i)) for i in range(250)] + [make_post(remote_id=None)]
    metrics = run(recorder, lambda a: a.fetch_metrics(posts, make_account()))
    assert [len(r.url.params["ids"].split(",")) for r in recorder.requests] == [100, 100, 50]
    assert len(metrics) == 249
    assert "7" not in metrics
    assert metrics["8"].shares == 5
    assert metrics["8"].impressions is None  # not reported: unknown, not zero


def test_metrics_rate_limit_is_reported_as_such() -> None:
    with pytest.raises(RateLimited):
        run(
            lambda r: rate_limited(**LIMIT_HEADERS),
            lambda a: a.fetch_metrics([make_post(remote_id="1")], make_account()),
        )


# --------------------------------------------------------------------------- lookup


def timeline(*items: dict[str, Any], next_token: str | None = None) -> httpx.Response:
    meta: dict[str, Any] = {"result_count": len(items)}
    if next_token:
        meta["next_token"] = next_token
    return httpx.Response(200, json={"data": list(items), "meta": meta})


def lookup(handler: Handler, post: OutgoingPost | None = None) -> Published | None:
    return run(handler, lambda a: a.lookup(post or make_post(), make_account()))


def with_user(
    pages: Handler,
) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/2/users/me":
            return httpx.Response(200, json={"data": {"id": USER_ID, "username": "smm"}})
        assert request.url.path == f"/2/users/{USER_ID}/tweets"
        return pages(request)

    return handler


def test_lookup_finds_the_post_despite_tco_links_media_and_entities() -> None:
    post = make_post(
        text="Tips & tricks for launch day", link="https://example.com/launch", tags=("smm",)
    )
    links = [
        {"url": "https://t.co/AAA", "expanded_url": "https://example.com/launch/"},
        {"url": "https://t.co/BBB", "media_key": "3_1", "expanded_url": "https://x.com/p/1"},
    ]
    sent = "Tips &amp; tricks for launch day\n\nhttps://t.co/AAA\n\n#smm https://t.co/BBB"
    other = timeline_post("1", "Another post")
    ours = timeline_post("2", sent, entities={"urls": links})
    recorder = RecordingHandler(with_user(lambda r: timeline(other, ours)))
    assert lookup(recorder, post) == Published("2", "https://x.com/i/web/status/2")
    params = recorder.requests[1].url.params
    assert params["start_time"] == "2026-01-07T08:55:00Z"
    assert "entities" in params["tweet.fields"]


def test_lookup_reads_the_full_text_of_a_long_post() -> None:
    text = "word " * 100
    item = timeline_post("3", text[:270] + "…", note_tweet={"text": text})
    assert lookup(with_user(lambda r: timeline(item)), make_post(text=text)) is not None


def test_lookup_follows_pages() -> None:
    def pages(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("pagination_token") == "p2":
            return timeline(timeline_post("9", "Five checklists for launch day"))
        return timeline(timeline_post("8", "Something else"), next_token="p2")

    assert lookup(with_user(pages)) == Published("9", "https://x.com/i/web/status/9")


def test_lookup_says_none_when_the_whole_window_was_read_without_a_match() -> None:
    assert lookup(with_user(lambda r: timeline(timeline_post("8", "Other")))) is None


def test_lookup_cannot_tell_while_the_due_time_is_too_recent() -> None:
    post = make_post(due_at=datetime.now(UTC) - timedelta(seconds=30))
    with pytest.raises(OutcomeUnknown, match="too recent"):
        lookup(with_user(lambda r: timeline()), post)


def test_lookup_cannot_tell_when_the_window_holds_too_many_posts() -> None:
    with pytest.raises(OutcomeUnknown, match="not all were read"):
        lookup(with_user(lambda r: timeline(timeline_post("8", "x"), next_token="more")))


def test_lookup_cannot_tell_without_a_due_time() -> None:
    with pytest.raises(OutcomeUnknown, match="due time"):
        lookup(with_user(lambda r: timeline()), make_post(due_at=None))


def test_lookup_failures_are_outcome_unknown() -> None:
    with pytest.raises(OutcomeUnknown, match="Unauthorized") as caught:
        lookup(lambda r: problem(401, "Unauthorized", "Unauthorized"))
    assert caught.value.http_status == 401


def test_lookup_asks_for_the_user_id_once_per_account() -> None:
    recorder = RecordingHandler(with_user(lambda r: timeline()))

    async def twice(adapter: XAdapter) -> None:
        for _ in range(2):
            await adapter.lookup(make_post(), make_account())

    run(recorder, twice)
    assert [r.url.path for r in recorder.requests].count("/2/users/me") == 1


def test_the_entry_point_registers_the_x_platform(monkeypatch: pytest.MonkeyPatch) -> None:
    assert adapter_from_entry_point(monkeypatch, "x") is XAdapter


def test_alt_text_is_attached_through_media_metadata_before_the_post(tmp_path: Path) -> None:
    # Shapes from X's API reference (docs.x.com/x-api/media/create-media-metadata):
    # POST /2/media/metadata {"id": ..., "metadata": {"alt_text": {"text": ...}}}, answered
    # {"data": {"associated_metadata": {"alt_text": {"text": ...}}, "id": ...}}.
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/2/media/upload":
            data = {"id": "1880028106020515840", "media_key": "3_1880028106020515840"}
            return httpx.Response(200, json={"data": data})
        if request.url.path == "/2/media/metadata":
            sent = json.loads(request.content)
            answer = {"associated_metadata": sent["metadata"], "id": sent["id"]}
            return httpx.Response(200, json={"data": answer})
        return ok_network(request)

    recorder = RecordingHandler(handler)
    meta = (MediaMeta(), MediaMeta("A red bike against a brick wall"))
    post = make_post(media=(png(tmp_path, "a.png"), png(tmp_path, "b.png")), media_meta=meta)
    publish(recorder, post)
    paths = [r.url.path for r in recorder.requests]
    assert paths == ["/2/media/upload", "/2/media/upload", "/2/media/metadata", "/2/tweets"]
    described = recorder.requests[2]
    assert json.loads(described.content) == {
        "id": "1880028106020515840",
        "metadata": {"alt_text": {"text": "A red bike against a brick wall"}},
    }


def test_a_failed_alt_text_call_is_retryable_as_no_post_exists_yet(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/2/media/upload":
            return httpx.Response(200, json={"data": {"id": "1", "media_key": "3_1"}})
        if request.url.path == "/2/media/metadata":
            return httpx.Response(503, json={"title": "Service Unavailable"})
        raise AssertionError("the post must not be created without its alt text")

    post = make_post(media=(png(tmp_path, "a.png"),), media_meta=(MediaMeta("A cat"),))
    with pytest.raises(Transient):
        publish(RecordingHandler(handler), post)


def test_a_reply_with_a_poll_is_sent_as_x_takes_it() -> None:
    # POST /2/tweets (docs.x.com/x-api/posts/create-post): reply.in_reply_to_tweet_id and
    # poll {options, duration_minutes}.
    recorder = RecordingHandler(ok_network)
    options = PostOptions(
        reply_to="1880028106020515840", poll=Poll(("Tea", "Coffee"), timedelta(days=1))
    )
    publish(recorder, make_post(options=options))
    (create,) = recorder.requests
    body = json.loads(create.content)
    assert body["reply"] == {"in_reply_to_tweet_id": "1880028106020515840"}
    assert body["poll"] == {"options": ["Tea", "Coffee"], "duration_minutes": 1440}


MP4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes(range(256)) * 40  # 10,264 B


class ChunkyX(XAdapter):
    """X with 4 KiB video segments and processing checks that do not sleep."""

    video_chunk_bytes = 4096
    video_max_wait = 0.0
    video_max_checks = 5


class VideoServer:
    """X's chunked upload as documented (docs.x.com media-upload-chunked, STATUS reference):
    INIT answers the id, APPEND an empty 2xx, FINALIZE and STATUS a processing_info whose
    state goes through ``states``."""

    def __init__(self, *states: str, error: str | None = None) -> None:
        self.states = list(states)
        self.error = error
        self.commands: list[str] = []
        self.segments: list[bytes] = []
        self.init: dict[str, str] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/2/tweets":
            return ok_network(request)
        media_id = "1880028106020515840"
        if request.method == "GET":
            assert request.url.params["command"] == "STATUS"
            assert request.url.params["media_id"] == media_id
            self.commands.append("STATUS")
            return httpx.Response(200, json={"data": self._info(media_id)})
        if request.headers["content-type"].startswith("application/x-www-form-urlencoded"):
            form = parse_qs(request.content.decode())
            fields = {k: v[0].encode() for k, v in form.items()}
        else:
            fields = self._multipart(request)
        command = fields["command"].decode()
        self.commands.append(command)
        if command == "INIT":
            self.init = {k: v.decode() for k, v in fields.items()}
            data = {"id": media_id, "media_key": f"7_{media_id}", "expires_after_secs": 86400}
            return httpx.Response(200, json={"data": data})
        if command == "APPEND":
            self.segments.append(fields["media"])
            return httpx.Response(204)
        return httpx.Response(200, json={"data": self._info(media_id)})

    @staticmethod
    def _multipart(request: httpx.Request) -> dict[str, bytes]:
        return {
            name.decode(): value
            for name, value in re.findall(
                rb'name="([^"]+)"(?:; filename="[^"]*")?\r\n(?:Content-Type: [^\r]*\r\n)?\r\n'
                rb"(.*?)\r\n--",
                request.content,
                re.S,
            )
        }

    def _info(self, media_id: str) -> dict[str, Any]:
        state = self.states.pop(0) if self.states else "succeeded"
        info: dict[str, Any] = {"state": state, "check_after_secs": 1}
        if state == "failed":
            info["error"] = {"code": 1, "name": "InvalidMedia", "message": self.error}
        return {"id": media_id, "media_key": f"7_{media_id}", "processing_info": info}


def test_a_video_is_uploaded_in_chunks_and_posted_once_processed(tmp_path: Path) -> None:
    (tmp_path / "clip.mp4").write_bytes(MP4)
    server = VideoServer("pending", "in_progress", "succeeded")
    recorder = RecordingHandler(server)
    with capture_logs() as logs:
        run_adapter(
            ChunkyX,
            recorder,
            lambda a: a.publish(
                make_post(media=(str(tmp_path / "clip.mp4"),)), make_account(), "k"
            ),
        )
    assert server.commands == ["INIT", "APPEND", "APPEND", "APPEND", "FINALIZE", "STATUS", "STATUS"]
    assert b"".join(server.segments) == MP4  # every byte, in order, in 4 KiB segments
    assert [len(s) for s in server.segments] == [4096, 4096, len(MP4) - 8192]
    assert server.init == {
        "command": "INIT",
        "media_type": "video/mp4",
        "total_bytes": str(len(MP4)),
        "media_category": "tweet_video",
    }
    create = recorder.requests[-1]
    assert json.loads(create.content)["media"] == {"media_ids": ["1880028106020515840"]}
    progress = [e["sent"] for e in logs if e["event"] == "x_video_upload"]
    assert progress == [4096, 8192, len(MP4)]


def test_a_video_x_cannot_process_is_rejected_before_any_post(tmp_path: Path) -> None:
    (tmp_path / "clip.mp4").write_bytes(MP4)
    server = VideoServer("in_progress", "failed", error="Unsupported video format")
    recorder = RecordingHandler(server)
    with pytest.raises(Rejected, match="Unsupported video format"):
        run_adapter(
            ChunkyX,
            recorder,
            lambda a: a.publish(
                make_post(media=(str(tmp_path / "clip.mp4"),)), make_account(), "k"
            ),
        )
    assert "/2/tweets" not in [r.url.path for r in recorder.requests]


def test_a_video_still_processing_after_the_last_check_is_transient(tmp_path: Path) -> None:
    (tmp_path / "clip.mp4").write_bytes(MP4)
    server = VideoServer(*["in_progress"] * 10)
    with pytest.raises(Transient, match="still in_progress after 5 checks"):
        run_adapter(
            ChunkyX,
            RecordingHandler(server),
            lambda a: a.publish(
                make_post(media=(str(tmp_path / "clip.mp4"),)), make_account(), "k"
            ),
        )


def test_a_video_goes_alone(tmp_path: Path) -> None:
    adapter = offline_adapter(XAdapter)
    (tmp_path / "clip.mp4").write_bytes(MP4)
    issues = adapter.validate(
        make_post(media=(str(tmp_path / "clip.mp4"), png(tmp_path, "a.png"))), make_account()
    )
    assert [i.message for i in issues] == ["an X post takes one video and nothing else beside it"]
