"""The webhook adapter: the request a receiver gets, its signature, and answer classification."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
import pytest
from adapter_support import adapter_from_entry_point, network_page
from smm_webhook import WebhookAdapter, sign, verify

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
    Rejected,
    ThreadPart,
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

T = TypeVar("T")
SECRET = "whsec_4f1c9a2b7d0e5f6a7b8c9d0e1f2a3b4c"
BEARER = "cms-token-5e6f7a8b"
URL = "https://cms.example.com/hooks/smm"


def make_account(*, signed: bool = True, **options: Any) -> Account:
    secrets = {"bearer_token": BEARER}
    if signed:
        secrets["hmac_secret"] = SECRET
    return account_with_secrets("cms", "webhook", {"url": URL, **options}, secrets=secrets)


def make_post(**changes: Any) -> OutgoingPost:
    post = OutgoingPost(
        key="plan-42",
        account="cms",
        content_type="instruction",
        text="Five checklists for launch day",
        media=("https://cdn.example.com/a.png",),
        link="https://example.com/launch",
        tags=("smm", "launch"),
        due_at=datetime(2026, 1, 7, 9, 0, tzinfo=UTC),
    )
    return replace(post, **changes)


def run(handler: Handler, call: Callable[[WebhookAdapter], Awaitable[T]]) -> T:
    return run_adapter(WebhookAdapter, handler, call)


def publish(
    handler: Handler,
    account: Account | None = None,
    post: OutgoingPost | None = None,
) -> Published:
    return run(
        handler, lambda a: a.publish(post or make_post(), account or make_account(), "key-42")
    )


def accepted(request: httpx.Request) -> httpx.Response:
    return httpx.Response(202, json={"id": "cms-981", "url": "https://cms.example.com/p/981"})


# --------------------------------------------------------------------------- contract


class TestWebhookContract(AdapterContract):
    adapter_class = WebhookAdapter
    lost_answer = OutcomeUnknown
    secret_values = (SECRET, BEARER)

    def make_account(self) -> Account:
        return make_account()

    def make_handler(self, scenario: str) -> Handler:
        def handler(request: httpx.Request) -> httpx.Response:
            if scenario == "rate_limited":
                return httpx.Response(429, headers={"Retry-After": "120"}, text="slow down")
            if scenario == "server_error":
                return httpx.Response(503, text="maintenance")
            if scenario == "auth_expired":
                return httpx.Response(401, json={"error": "invalid bearer token"})
            if scenario == "rejected":
                return httpx.Response(422, json={"error": "text: must not contain links"})
            return accepted(request)

        return handler


# --------------------------------------------------------------------------- the request


def test_the_receiver_gets_every_field_and_the_idempotency_key() -> None:
    recorder = RecordingHandler(accepted)
    publish(recorder)
    (request,) = recorder.requests
    assert (request.method, str(request.url)) == ("POST", URL)
    assert request.headers["content-type"] == "application/json"
    assert request.headers["idempotency-key"] == "key-42"
    assert request.headers["authorization"] == f"Bearer {BEARER}"
    assert json.loads(request.content) == {
        "id": "plan-42",
        "account": "cms",
        "type": "instruction",
        "text": "Five checklists for launch day",
        "media": ["https://cdn.example.com/a.png"],
        "link": "https://example.com/launch",
        "tags": ["smm", "launch"],
        "due_at": "2026-01-07T09:00:00Z",
        "idempotency_key": "key-42",
        # Added beside the first version's fields, always present, empty when unused.
        "media_items": [{"path": "https://cdn.example.com/a.png", "alt": None, "focus": None}],
        "options": {
            "content_warning": None,
            "sensitive": False,
            "visibility": None,
            "language": None,
            "reply_to": None,
            "poll": None,
        },
        "thread": [],
        "first_comment": None,
    }


#: The first version's fields: a receiver written for them must keep working.
FIRST_FIELDS = ("id", "account", "type", "text", "link", "tags", "due_at", "idempotency_key")


def test_alt_text_options_thread_and_first_comment_reach_the_receiver() -> None:
    post = make_post(
        media=("https://cdn.example.com/a.png", "/srv/media/b.jpg"),
        media_meta=(MediaMeta(alt="A red bike", focus=(0.25, -0.5)), MediaMeta()),
        options=PostOptions(
            content_warning="Spoilers",
            sensitive=True,
            visibility="unlisted",
            language="lv",
            reply_to="cms-17",
            poll=Poll(("Tea", "Coffee"), timedelta(days=1), multiple=True),
            first_comment="More in the comments",
            thread=(
                ThreadPart("Part two", ("https://cdn.example.com/c.png",), (MediaMeta("C"),)),
                ThreadPart("Part three"),
            ),
        ),
    )
    recorder = RecordingHandler(accepted)
    publish(recorder, post=post)
    (request,) = recorder.requests
    body = json.loads(request.content)
    assert body["media"] == ["https://cdn.example.com/a.png", "/srv/media/b.jpg"]  # unchanged
    assert body["media_items"] == [
        {
            "path": "https://cdn.example.com/a.png",
            "alt": "A red bike",
            "focus": {"x": 0.25, "y": -0.5},
        },
        {"path": "/srv/media/b.jpg", "alt": None, "focus": None},
    ]
    assert body["options"] == {
        "content_warning": "Spoilers",
        "sensitive": True,
        "visibility": "unlisted",
        "language": "lv",
        "reply_to": "cms-17",
        "poll": {"options": ["Tea", "Coffee"], "duration_seconds": 86_400, "multiple": True},
    }
    assert body["thread"] == [
        {
            "text": "Part two",
            "media": ["https://cdn.example.com/c.png"],
            "media_items": [{"path": "https://cdn.example.com/c.png", "alt": "C", "focus": None}],
        },
        {"text": "Part three", "media": [], "media_items": []},
    ]
    assert body["first_comment"] == "More in the comments"
    # The first version's fields are as they were, and the signature covers the whole body.
    assert {k: body[k] for k in FIRST_FIELDS} == {
        "id": "plan-42",
        "account": "cms",
        "type": "instruction",
        "text": "Five checklists for launch day",
        "link": "https://example.com/launch",
        "tags": ["smm", "launch"],
        "due_at": "2026-01-07T09:00:00Z",
        "idempotency_key": "key-42",
    }
    timestamp = int(request.headers["x-smm-timestamp"])
    assert request.headers["x-smm-signature"] == sign(SECRET, timestamp, request.content)


def test_the_webhook_takes_alt_text_options_thread_and_first_comment_at_validation() -> None:
    # Refused before, for want of a field to carry them: now checked as any network's are.
    from scheduler import outgoing

    adapter = offline_adapter(WebhookAdapter)
    account = make_account()
    post = make_post(
        media_meta=(MediaMeta(alt="A red bike", focus=(0.0, 0.5)),),
        options=PostOptions(
            visibility="followers",
            poll=Poll(("a", "b"), timedelta(hours=6)),
            first_comment="More",
            thread=(ThreadPart("Part two"),),
        ),
    )
    assert adapter.validate(post, account) == []
    assert adapter.media_meta_issues(post, account) == []
    assert adapter.option_issues(post, account) == []
    assert outgoing._thread_issues(adapter, post, account) == []
    long_alt = make_post(media_meta=(MediaMeta(alt="a" * 10_001),))
    (issue,) = adapter.media_meta_issues(long_alt, account)
    assert issue.code == "alt_too_long"


def test_a_first_comment_is_not_sent_again_after_the_post() -> None:
    # It reached the receiver in the post's request: the core's comment step sends nothing.
    recorder = RecordingHandler(accepted)
    done = run(
        recorder,
        lambda adapter: adapter.publish_comment(
            make_post(remote_id="cms-981", remote_url="https://cms.example.com/p/981"),
            make_account(),
            "More in the comments",
        ),
    )
    assert recorder.requests == []
    assert (done.remote_id, done.url) == ("cms-981", "https://cms.example.com/p/981")


def test_non_ascii_text_is_sent_as_utf8_json() -> None:
    recorder = RecordingHandler(accepted)
    publish(recorder, post=make_post(text="Привет 👋 漢字", due_at=None))
    body = recorder.requests[0].content
    assert "Привет 👋 漢字".encode() in body
    assert json.loads(body)["due_at"] is None


def test_configured_headers_are_sent_but_cannot_override_the_protocol_ones() -> None:
    recorder = RecordingHandler(accepted)
    headers = {"X-Tenant": "shop-1", "Idempotency-Key": "spoofed"}
    publish(recorder, make_account(headers=headers))
    request = recorder.requests[0]
    assert request.headers["x-tenant"] == "shop-1"
    assert request.headers["idempotency-key"] == "key-42"


def test_the_signature_covers_timestamp_and_raw_body() -> None:
    recorder = RecordingHandler(accepted)
    before = int(time.time())
    publish(recorder)
    request = recorder.requests[0]
    timestamp = request.headers["x-smm-timestamp"]
    assert before <= int(timestamp) <= int(time.time())
    mac = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + request.content, hashlib.sha256)
    assert request.headers["x-smm-signature"] == f"sha256={mac.hexdigest()}"


def test_without_a_secret_nothing_is_signed() -> None:
    recorder = RecordingHandler(accepted)
    publish(recorder, make_account(signed=False))
    assert "x-smm-signature" not in recorder.requests[0].headers
    assert "x-smm-timestamp" not in recorder.requests[0].headers


def test_verify_accepts_a_fresh_signature_and_refuses_tampering_and_replays() -> None:
    body = b'{"id":"plan-42"}'
    signature = sign(SECRET, 1767776400, body)
    assert verify(SECRET, "1767776400", body, signature, now=1767776460)
    assert not verify(SECRET, "1767776400", body + b" ", signature, now=1767776460)
    assert not verify("other", "1767776400", body, signature, now=1767776460)
    assert not verify(SECRET, "1767776401", body, signature, now=1767776460)
    assert not verify(SECRET, "1767776400", body, signature, now=1767776400 + 301)
    assert not verify(SECRET, "soon", body, signature, now=1767776460)


def test_the_receiver_snippet_in_the_docs_verifies_a_real_request() -> None:
    code = re.search(r"```python\n(.*?)```", network_page("webhook"), re.S)
    assert code is not None
    namespace: dict[str, Any] = {}
    exec(code.group(1), namespace)
    verify_smm_request = namespace["verify_smm_request"]

    recorder = RecordingHandler(accepted)
    publish(recorder)
    request = recorder.requests[0]
    assert verify_smm_request(SECRET.encode(), request.headers, request.content)
    assert not verify_smm_request(SECRET.encode(), request.headers, request.content + b"x")
    assert not verify_smm_request(b"wrong", request.headers, request.content)


# --------------------------------------------------------------------------- 2xx answers


def test_the_receivers_id_and_url_become_the_remote_id_and_url() -> None:
    assert publish(accepted) == Published("cms-981", "https://cms.example.com/p/981")


@pytest.mark.parametrize(
    "answer",
    [
        {"id": "r1", "url": "javascript:alert(1)"},
        {"id": "r1", "url": "data:text/html,<script>alert(1)</script>"},
        {"id": "r1", "url": "https://cms.example.com/" + "p" * 5000},
        {"id": "r1", "url": "https://cms.example.com/a b"},
    ],
)
def test_a_url_no_browser_should_follow_is_not_kept(answer: dict[str, str]) -> None:
    """The receiver's url is shown as a link by the web app and the report: only a bounded
    http(s) address is kept."""
    assert publish(lambda r: httpx.Response(200, json=answer)) == Published("r1", None)


def test_an_id_no_network_would_give_is_not_kept() -> None:
    """A receiver's id is stored and shown: a huge one or one with control characters is
    replaced by the idempotency key, which identifies the delivery as well."""
    for bad in ("9" * 5000, "r1\x1b[2J"):
        published = publish(lambda r, bad=bad: httpx.Response(200, json={"id": bad}))
        assert published.remote_id != bad
        assert published.remote_id.isprintable()
        assert len(published.remote_id) < 100


def test_a_numeric_id_is_kept_as_text() -> None:
    assert publish(lambda r: httpx.Response(201, json={"id": 981})).remote_id == "981"


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(204),
        httpx.Response(200, text=""),
        httpx.Response(200, json={"status": "queued"}),
        httpx.Response(200, json=["queued"]),
    ],
)
def test_without_an_id_the_idempotency_key_is_the_remote_id(response: httpx.Response) -> None:
    assert publish(lambda r: response) == Published("key-42")


def test_a_2xx_page_that_is_not_json_is_not_taken_as_delivered() -> None:
    page = httpx.Response(200, text="<html>Sign in</html>", headers={"content-type": "text/html"})
    with pytest.raises(OutcomeUnknown, match="not JSON"):
        publish(lambda r: page)


# --------------------------------------------------------------------------- errors


def test_429_with_retry_after_seconds() -> None:
    start = datetime.now(UTC)
    with pytest.raises(RateLimited) as caught:
        publish(lambda r: httpx.Response(429, headers={"Retry-After": "120"}))
    assert caught.value.retry_at is not None
    assert start + timedelta(seconds=120) <= caught.value.retry_at
    assert caught.value.retry_at <= datetime.now(UTC) + timedelta(seconds=120)


def test_429_with_retry_after_as_an_http_date() -> None:
    headers = {"Retry-After": "Wed, 07 Jan 2026 09:30:00 GMT"}
    with pytest.raises(RateLimited) as caught:
        publish(lambda r: httpx.Response(429, headers=headers))
    assert caught.value.retry_at == datetime(2026, 1, 7, 9, 30, tzinfo=UTC)


@pytest.mark.parametrize("header", [None, "whenever"])
def test_429_without_a_usable_retry_after_leaves_the_wait_to_backoff(header: str | None) -> None:
    headers = {"Retry-After": header} if header else {}
    with pytest.raises(RateLimited) as caught:
        publish(lambda r: httpx.Response(429, headers=headers))
    assert caught.value.retry_at is None


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_pause_the_account(status: int) -> None:
    with pytest.raises(AuthExpired) as caught:
        publish(lambda r: httpx.Response(status, text="bad token"))
    assert caught.value.http_status == status


@pytest.mark.parametrize("status", [400, 404, 409, 413, 422])
def test_other_client_errors_are_rejected_with_the_body(status: int) -> None:
    with pytest.raises(Rejected) as caught:
        publish(lambda r: httpx.Response(status, json={"error": "no such channel"}))
    assert caught.value.message.startswith(f"HTTP {status} ")
    assert caught.value.message.endswith('{"error":"no such channel"}')


def test_a_long_refusal_body_is_truncated() -> None:
    with pytest.raises(Rejected) as caught:
        publish(lambda r: httpx.Response(400, text="x" * 5000))
    assert caught.value.message == "HTTP 400 Bad Request: " + "x" * 500 + "…"


def test_a_receiver_echoing_a_secret_does_not_leak_it() -> None:
    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, text=f"bad request, headers: {dict(request.headers)}")

    with pytest.raises(Rejected) as caught:
        publish(echo)
    assert BEARER not in caught.value.message
    assert "<redacted>" in caught.value.message


def test_a_redirect_is_not_followed_and_fails_the_post() -> None:
    with pytest.raises(Rejected, match="HTTP 301"):
        publish(lambda r: httpx.Response(301, headers={"Location": "https://elsewhere.example"}))


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_are_transient(status: int) -> None:
    with pytest.raises(Transient):
        publish(lambda r: httpx.Response(status))


@pytest.mark.parametrize(
    ("options", "match"),
    [({"url": None}, "url"), ({"url": "ftp://x"}, "url"), ({"headers": "X: 1"}, "headers")],
)
def test_a_misconfigured_account_is_paused(options: dict[str, Any], match: str) -> None:
    recorder = RecordingHandler(accepted)
    with pytest.raises(AuthExpired, match=match):
        publish(recorder, make_account(**options))
    assert recorder.requests == []


# --------------------------------------------------------------------------- declared


def test_the_webhook_is_idempotent_and_has_no_metrics() -> None:
    caps = WebhookAdapter.capabilities
    assert caps.idempotent is True
    assert caps.metrics == frozenset()


def test_text_limit_is_65536_code_points_without_link_and_tags() -> None:
    adapter = offline_adapter(WebhookAdapter)
    assert adapter.validate(make_post(text="👋" * 65_536), make_account()) == []
    issues = adapter.validate(make_post(text="a" * 65_537), make_account())
    assert [i.field for i in issues] == ["text"]


def test_the_entry_point_registers_the_webhook_platform(monkeypatch: pytest.MonkeyPatch) -> None:
    assert adapter_from_entry_point(monkeypatch, "webhook") is WebhookAdapter


def test_a_signing_secret_shorter_than_32_bytes_is_refused_at_check_and_at_publish() -> None:
    account = account_with_secrets(
        "cms", "webhook", {"url": URL}, secrets={"hmac_secret": "whsec_short_31_bytes_xxxxxxxxxx"}
    )
    (issue,) = WebhookAdapter.check_account(account)
    assert issue.field == "credentials.hmac_secret"
    assert "31 bytes; at least 32" in issue.message
    assert "whsec_short" not in issue.message + issue.hint

    with pytest.raises(AuthExpired, match="at least 32"):
        run(accepted, lambda adapter: adapter.publish(make_post(), account, "key-1"))
    assert WebhookAdapter.check_account(make_account()) == []
