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
    ("status", "mutating", "cls"),
    [
        (429, True, RateLimited),
        (401, False, AuthExpired),
        (504, True, OutcomeUnknown),
        (504, False, Transient),
        (502, True, Transient),
        (500, True, Transient),
        (400, True, Rejected),
        (404, False, Rejected),
    ],
)
def test_status_error_applies_the_shared_rule(status: int, mutating: bool, cls: type) -> None:
    error = status_error(status, "Net: boom", mutating=mutating, code="c1")
    assert type(error) is cls
    assert (error.http_status, error.code) == (status, "c1")


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
