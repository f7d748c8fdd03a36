"""The Graph API plumbing the Facebook, Instagram and Threads adapters share (smm_meta.graph)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from smm_meta.graph import (
    Graph,
    classify_error,
    insight_values,
    regain_access_at,
    scrub,
)

from scheduler.adapter import (
    AuthExpired,
    OutcomeUnknown,
    PublishError,
    RateLimited,
    Rejected,
    Transient,
)

TOKEN = "EAAB-secret-graph-token"
NOW = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)


def error_body(code: int, message: str = "Graph says no", **extra: Any) -> dict[str, Any]:
    return {"error": {"message": message, "type": "OAuthException", "code": code, **extra}}


def classify(
    status: int,
    body: dict[str, Any] | None,
    headers: dict[str, str] | None = None,
    *,
    mutating: bool = True,
) -> PublishError:
    return classify_error(
        status,
        body,
        httpx.Headers(headers or {}),
        network="Facebook",
        where="POST /123/feed",
        mutating=mutating,
        secrets=(TOKEN,),
    )


# --------------------------------------------------------------------------- classification


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        # Throttling: application, user, page, custom-rate and business-use-case limits.
        (400, error_body(4, "Application request limit reached", is_transient=True), RateLimited),
        (400, error_body(17, "User request limit reached"), RateLimited),
        (400, error_body(32, "Page request limit reached"), RateLimited),
        (400, error_body(613, "Calls to this api have exceeded the rate limit."), RateLimited),
        (
            400,
            error_body(80001, "There have been too many calls to this Page account."),
            RateLimited,
        ),
        (400, error_body(80014, "Too many calls to this ad-account."), RateLimited),
        # Instagram's posts-per-day cap.
        (
            400,
            error_body(9, "You reached maximum number of posts", error_subcode=2207042),
            RateLimited,
        ),
        # Tokens: expired, invalid, session key, password changed.
        (
            400,
            error_body(
                190, "Error validating access token: Session has expired", error_subcode=463
            ),
            AuthExpired,
        ),
        (
            400,
            error_body(190, "Invalid OAuth access token - Cannot parse access token"),
            AuthExpired,
        ),
        (400, error_body(102, "Session key invalid or no longer valid"), AuthExpired),
        (400, error_body(100, "Error validating access token", error_subcode=467), AuthExpired),
        # Meta's "try again".
        (500, error_body(1, "An unknown error occurred", is_transient=True), Transient),
        (503, error_body(2, "Service temporarily unavailable", is_transient=True), Transient),
        (
            400,
            error_body(-2, "It takes too long to download the media.", error_subcode=2207003),
            Transient,
        ),
        (400, error_body(100, "Something odd", is_transient=True), Transient),
        # Permanent refusals.
        (400, error_body(100, "Invalid parameter"), Rejected),
        (403, error_body(200, "Permissions error"), Rejected),
        (403, error_body(10, "Application does not have permission for this action"), Rejected),
        (400, error_body(368, "The action attempted has been deemed abusive"), Rejected),
        (400, error_body(506, "Duplicate status message"), Rejected),
        (
            400,
            error_body(
                4, "We restrict certain activity to protect our community.", error_subcode=2207051
            ),
            Rejected,
        ),
        (
            400,
            error_body(
                9004, "Only photo or video can be accepted as media type.", error_subcode=2207052
            ),
            Rejected,
        ),
        # No Graph error body: the HTTP status decides.
        (429, None, RateLimited),
        (401, None, AuthExpired),
        (502, None, OutcomeUnknown),  # a create without an idempotency key: may exist
        (404, None, Rejected),
    ],
)
def test_graph_errors_map_to_the_taxonomy(
    status: int, body: dict[str, Any] | None, expected: type[PublishError]
) -> None:
    error = classify(status, body)
    assert type(error) is expected
    assert error.http_status == status


@pytest.mark.parametrize("status", [500, 502, 503])
def test_a_5xx_without_a_graph_body_is_transient_on_a_step_nobody_sees(status: int) -> None:
    # An upload or a container creates nothing anyone sees: trying again is safe.
    assert type(classify(status, None, mutating=False)) is Transient


def test_rejection_keeps_metas_message_user_message_and_trace_id() -> None:
    body = error_body(
        9004,
        "Only photo or video can be accepted as media type.",
        error_subcode=2207052,
        error_user_msg="The media could not be fetched from this URI.",
        fbtrace_id="A6LJylpZRKw2xKLFsAP",
    )
    error = classify(400, body)
    assert error.message == (
        "Facebook: Only photo or video can be accepted as media type. "
        "(The media could not be fetched from this URI.) "
        "[code 9004/2207052, fbtrace_id A6LJylpZRKw2xKLFsAP]"
    )
    assert error.code == 9004


def test_a_gateway_timeout_on_a_post_leaves_the_outcome_open() -> None:
    assert isinstance(classify(504, None, mutating=True), OutcomeUnknown)
    assert isinstance(classify(504, None, mutating=False), Transient)


def test_rate_limit_retry_time_comes_from_business_use_case_usage() -> None:
    usage = {
        "1234": [
            {
                "type": "pages",
                "call_count": 100,
                "total_cputime": 10,
                "total_time": 12,
                "estimated_time_to_regain_access": 7,
            },
            {"type": "instagram", "call_count": 40, "estimated_time_to_regain_access": 0},
        ]
    }
    headers = httpx.Headers({"X-Business-Use-Case-Usage": json.dumps(usage)})
    assert regain_access_at(headers, NOW) == NOW + timedelta(minutes=7)


def test_rate_limit_retry_time_takes_the_longest_wait_of_all_headers() -> None:
    headers = httpx.Headers(
        {
            "X-App-Usage": json.dumps({"call_count": 100, "total_time": 20, "total_cputime": 5}),
            "X-Page-Usage": json.dumps(
                {"call_count": 100, "total_time": 3, "estimated_time_to_regain_access": 30}
            ),
            "Retry-After": "120",
        }
    )
    assert regain_access_at(headers, NOW) == NOW + timedelta(minutes=30)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-App-Usage": json.dumps({"call_count": 100, "total_time": 20, "total_cputime": 5})},
        {"X-Business-Use-Case-Usage": "not json"},
    ],
)
def test_rate_limit_without_an_estimate_leaves_the_retry_time_to_backoff(
    headers: dict[str, str],
) -> None:
    assert regain_access_at(httpx.Headers(headers), NOW) is None


def test_rate_limited_error_carries_the_estimated_retry_time() -> None:
    usage = {"42": [{"type": "pages", "call_count": 100, "estimated_time_to_regain_access": 15}]}
    error = classify(400, error_body(32), {"X-Business-Use-Case-Usage": json.dumps(usage)})
    assert isinstance(error, RateLimited)
    assert error.retry_at is not None
    assert timedelta(minutes=14) < error.retry_at - datetime.now(UTC) <= timedelta(minutes=15)


def test_a_token_quoted_by_the_network_is_redacted() -> None:
    body = error_body(100, f"Bad request https://graph.facebook.com/x?access_token={TOKEN}&a=1")
    error = classify(400, body)
    assert TOKEN not in error.message
    assert "access_token=[redacted]&a=1" in error.message


def test_scrub_redacts_secrets_and_access_token_query_values() -> None:
    text = f"GET /me?fields=id&access_token=abc123 failed for {TOKEN}"
    assert scrub(text, TOKEN) == "GET /me?fields=id&access_token=[redacted] failed for [redacted]"


# --------------------------------------------------------------------------- requests


def call_graph(handler: Any, method: str = "POST", *, mutating: bool = True) -> Any:
    async def main() -> Any:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            graph = Graph(client, "https://graph.facebook.com/v21.0", TOKEN, "Facebook")
            if method == "GET":
                return await graph.get("123/feed", {"fields": "id"})
            return await graph.post("123/feed", {"message": "hi"}, mutating=mutating)

    return asyncio.run(main())


def raising(exc_type: type[httpx.HTTPError]) -> Any:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc_type(f"failed: {request.url}", request=request)

    return handler


def test_a_refused_connection_is_transient_and_quotes_no_url() -> None:
    with pytest.raises(Transient) as caught:
        call_graph(raising(httpx.ConnectError))
    assert caught.value.message == (
        "Facebook: could not reach the server (ConnectError) on POST /123/feed"
    )
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


@pytest.mark.parametrize(
    "exc_type", [httpx.ReadTimeout, httpx.RemoteProtocolError, httpx.ReadError]
)
def test_a_lost_answer_to_a_post_leaves_the_outcome_open(exc_type: type[httpx.HTTPError]) -> None:
    with pytest.raises(OutcomeUnknown, match="may have taken effect"):
        call_graph(raising(exc_type))


def test_a_lost_answer_to_an_invisible_step_is_transient() -> None:
    with pytest.raises(Transient, match="no answer"):
        call_graph(raising(httpx.ReadTimeout), mutating=False)


def test_a_lost_answer_to_a_read_is_transient() -> None:
    with pytest.raises(Transient):
        call_graph(raising(httpx.ReadTimeout), "GET")


def test_a_read_sends_the_token_as_a_query_parameter() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"data": []})

    call_graph(handler, "GET")
    assert seen[0].url.params["access_token"] == TOKEN
    assert seen[0].url.params["fields"] == "id"


def test_a_post_sends_the_token_in_the_form_body() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"id": "1_2"})

    assert call_graph(handler) == {"id": "1_2"}
    assert "access_token" not in seen[0].url.params
    assert f"access_token={TOKEN}" in seen[0].content.decode()


def test_graph_json_served_as_javascript_is_read() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, content=b'{"id": "1_2"}', headers={"content-type": "text/javascript"}
        )

    assert call_graph(handler) == {"id": "1_2"}


def test_html_in_answer_to_a_post_leaves_the_outcome_open() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="<html>502 Bad Gateway</html>")

    with pytest.raises(OutcomeUnknown, match="no JSON object"):
        call_graph(handler)
    with pytest.raises(Transient, match="no JSON object"):
        call_graph(handler, "GET")


# --------------------------------------------------------------------------- insights


def test_insight_values_reads_lifetime_values_and_total_values() -> None:
    body = {
        "data": [
            {"name": "reach", "period": "lifetime", "values": [{"value": 120}]},
            {"name": "likes", "period": "lifetime", "total_value": {"value": 7}},
            {"name": "views", "values": []},
            {"name": "shares", "values": [{"value": -1}]},
            {"name": "saved", "values": [{"value": True}]},
            "junk",
        ]
    }
    assert insight_values(body) == {"reach": 120, "likes": 7}


# --------------------------------------------------------------------------- registration


def test_the_meta_plugin_registers_facebook_instagram_and_threads() -> None:
    import smm_meta

    registered: list[type] = []
    smm_meta.register_platforms(register=registered.append)
    assert [(cls.__name__, cls.platform) for cls in registered] == [
        ("FacebookAdapter", "facebook"),
        ("InstagramAdapter", "instagram"),
        ("ThreadsAdapter", "threads"),
    ]
