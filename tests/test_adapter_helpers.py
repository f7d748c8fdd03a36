"""The helpers scheduler.adapter gives every adapter: status_error and scrub_url_secrets."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from scheduler.adapter import (
    Account,
    Adapter,
    AuthExpired,
    Capabilities,
    OutcomeUnknown,
    OutgoingPost,
    RateLimited,
    Rejected,
    Transient,
    scrub_url_secrets,
    status_error,
)


@pytest.mark.parametrize(
    ("status", "mutating", "idempotent", "cls"),
    [
        (429, True, False, RateLimited),
        (401, False, False, AuthExpired),
        (400, True, False, Rejected),
        (404, False, False, Rejected),
        # A read, or a create the network recognises when resent under its key: try again.
        (504, False, False, Transient),
        (500, False, False, Transient),
        (500, True, True, Transient),
        (502, True, True, Transient),
        (503, True, True, Transient),
        # A gateway that gave up waiting: the origin may still have made the post.
        (504, True, True, OutcomeUnknown),
        # A create without an honoured key: any 5xx may follow the body's acceptance.
        (500, True, False, OutcomeUnknown),
        (502, True, False, OutcomeUnknown),
        (503, True, False, OutcomeUnknown),
        (504, True, False, OutcomeUnknown),
    ],
)
def test_status_error_applies_the_shared_rule(
    status: int, mutating: bool, idempotent: bool, cls: type
) -> None:
    error = status_error(status, "Net: boom", mutating=mutating, idempotent=idempotent, code="c1")
    assert type(error) is cls
    assert (error.http_status, error.code) == (status, "c1")


@pytest.mark.parametrize("status", [500, 502, 503, 504, 599])
def test_a_5xx_on_a_create_is_not_retried_blindly_unless_the_key_is_honoured(
    status: int,
) -> None:
    # The safe side by default: a caller that does not say its key is honoured gets an
    # unknown outcome (settled by lookup), never a Transient that would resend the post.
    assert isinstance(status_error(status, "Net: boom", mutating=True), OutcomeUnknown)


def test_a_504_on_a_create_says_what_may_have_happened() -> None:
    error = status_error(504, "Pinterest: timeout", mutating=True, effect="the Pin may exist")
    assert error.message == "Pinterest: timeout; the Pin may exist"
    at = datetime(2030, 1, 1, tzinfo=UTC)
    assert status_error(429, "slow down", mutating=True, retry_at=at).retry_at == at


@pytest.mark.parametrize(
    ("text", "leak"),
    [
        ("GET https://graph.facebook.com/v21.0/me?fields=id&access_token=EAAB9x", "EAAB9x"),
        ("https://api.telegram.org/bot123456:AAH-secret_x/sendMessage: timeout", "AAH-secret_x"),
        ("https://ok.ru/fb.do?method=a&sig=0f9e8d&session_key=-s-1", "0f9e8d"),
        ("https://ok.ru/fb.do?method=a&sig=0f9e8d&session_key=-s-1", "-s-1"),
        ("proxy https://bob:hunter2@proxy.example:3128 refused", "hunter2"),
        ("url%3Faccess_token%3DEAAB9x%26x", "EAAB9x"),
    ],
)
def test_url_borne_tokens_are_scrubbed(text: str, leak: str) -> None:
    scrubbed = scrub_url_secrets(text)
    assert leak not in scrubbed
    assert "[redacted]" in scrubbed


def test_named_secrets_are_scrubbed_raw_and_url_encoded() -> None:
    text = "https://x.example/cb?state=a/b+c and a%2Fb%2Bc and a/b+c"
    assert "a/b+c" not in scrub_url_secrets(text, secrets=["a/b+c"])
    assert "a%2Fb%2Bc" not in scrub_url_secrets(text, secrets=["a/b+c"])


def test_status_error_scrubs_its_message() -> None:
    error = status_error(
        500, "POST https://api.example/v1/posts?access_token=tok123", mutating=True
    )
    assert "tok123" not in error.message


class TieredNet(Adapter):
    """A network whose paid accounts may post longer texts and get their posts deduplicated."""

    platform = "tiered"
    capabilities = Capabilities(text_limit=280)

    def capabilities_for(self, account: Account) -> Capabilities:
        if account.option("tier") == "premium":
            return dataclasses.replace(self.capabilities, text_limit=4000, idempotent=True)
        return self.capabilities

    async def publish(self, post: OutgoingPost, account: Account, idempotency_key: str) -> Any:
        raise AssertionError("offline")


def test_capabilities_can_differ_per_account() -> None:
    adapter = TieredNet(httpx.AsyncClient())
    free = Account("free", "tiered", "UTC")
    premium = Account("paid", "tiered", "UTC", options={"tier": "premium"})
    post = OutgoingPost(key="k", account="free", content_type="t", text="x" * 1000)
    assert [i.field for i in adapter.validate(post, free)] == ["text"]
    assert adapter.validate(post, premium) == []
    assert adapter.text_limit(premium) == 4000
    assert adapter.capabilities_for(premium).idempotent is True
    assert TieredNet.capabilities.idempotent is False
