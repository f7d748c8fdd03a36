"""The {{ cookiecutter.network_title }} adapter: the contract suite, its requests and its answers.

``FakeNetwork`` plays the network in memory. PLACEHOLDER: once the adapter speaks the real API,
make the fake answer as the network does (better: from recorded real responses) and add a test
for every rule of the network the adapter knows about.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
import pytest
from scheduler import plugins
from scheduler.adapter import (
    Account,
    AuthExpired,
    OutcomeUnknown,
    OutgoingPost,
    Published,
    RateLimited,
)
from scheduler.testing import (
    AdapterContract,
    Handler,
    RecordingHandler,
    file_credential,
    mock_client,
)

from {{ cookiecutter.__package }} import {{ cookiecutter.__adapter }}

T = TypeVar("T")

PLATFORM = "{{ cookiecutter.network }}"
API = "https://api.test.example"
TOKEN = "tok_9f3Kq2LmXz81RvB7"


class FakeNetwork:
    """The placeholder API in memory: publish, then read each post's counters."""

    def __init__(self) -> None:
        self.posts: dict[str, dict[str, Any]] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return httpx.Response(401, json={"error": "invalid token"})
        path = request.url.path
        if request.method == "POST" and path == "/v1/posts":
            post_id = f"p{len(self.posts) + 1}"
            self.posts[post_id] = json.loads(request.content)
            return httpx.Response(200, json={"id": post_id, "url": f"{API}/p/{post_id}"})
        if request.method == "GET" and path.startswith("/v1/posts/") and path.endswith("/metrics"):
            post_id = path.split("/")[3]
            if post_id not in self.posts:
                return httpx.Response(404, json={"error": "no such post"})
            return httpx.Response(200, json={"likes": 12, "comments": 3, "shares": 1})
        return httpx.Response(404, json={"error": "not found"})


def error(status: int, message: str, headers: dict[str, str] | None = None) -> Handler:
    """Every request answered with the network's error JSON."""
    return lambda request: httpx.Response(status, headers=headers, json={"error": message})


#: How the network answers in each scenario of the contract suite.
ANSWERS: dict[str, Handler] = {
    "rate_limited": error(429, "slow down", {"Retry-After": "30"}),
    "auth_expired": error(401, "token expired"),
    "rejected": error(422, "text is too long"),
    "server_error": error(503, "down for maintenance"),
}


def make_account(**options: Any) -> Account:
    return Account(
        name="main",
        platform=PLATFORM,
        timezone="UTC",
        options={"api_base": API, **options},
        credentials={"token": file_credential(TOKEN)},
    )


def make_post(**changes: Any) -> OutgoingPost:
    post = OutgoingPost(
        key="launch",
        account="main",
        content_type="announcement",
        text="We launch today",
        link="https://shop.example/launch",
        due_at=datetime(2030, 1, 7, 9, 0, tzinfo=UTC),
    )
    return replace(post, **changes)


NetworkAdapter = {{ cookiecutter.__adapter }}


def run(handler: Handler, call: Callable[[NetworkAdapter], Awaitable[T]]) -> T:
    async def main() -> T:
        async with mock_client(handler) as client:
            return await call(NetworkAdapter(client))

    return asyncio.run(main())


class Test{{ cookiecutter.__adapter.removesuffix("Adapter") }}Contract(AdapterContract):
    adapter_class = {{ cookiecutter.__adapter }}
    secret_values = (TOKEN,)

    def make_account(self) -> Account:
        return make_account()

    def make_handler(self, scenario: str) -> Handler:
        return FakeNetwork() if scenario == "ok" else ANSWERS[scenario]


# --------------------------------------------------------------------------- publishing


def test_publish_sends_the_text_with_the_token_and_the_idempotency_key() -> None:
    recorder = RecordingHandler(FakeNetwork())

    published = run(recorder, lambda adapter: adapter.publish(make_post(), make_account(), "k-1"))

    assert published == Published(remote_id="p1", url=f"{API}/p/p1")
    (request,) = recorder.requests
    assert (request.method, str(request.url)) == ("POST", f"{API}/v1/posts")
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Idempotency-Key"] == "k-1"
    assert json.loads(request.content) == {"text": "We launch today\n\nhttps://shop.example/launch"}


def test_a_429_says_when_to_retry() -> None:
    with pytest.raises(RateLimited) as caught:
        run(ANSWERS["rate_limited"], lambda a: a.publish(make_post(), make_account(), "k"))

    assert caught.value.retry_at is not None
    assert caught.value.retry_at > datetime.now(UTC)


@pytest.mark.parametrize("status", [500, 504])
def test_a_5xx_that_may_follow_acceptance_is_outcome_unknown(status: int) -> None:
    with pytest.raises(OutcomeUnknown, match="internal"):
        run(error(status, "internal error"), lambda a: a.publish(make_post(), make_account(), "k"))


def test_a_missing_token_pauses_the_account() -> None:
    account = replace(make_account(), credentials={})

    with pytest.raises(AuthExpired, match="token"):
        run(FakeNetwork(), lambda adapter: adapter.publish(make_post(), account, "k"))


# --------------------------------------------------------------------------- metrics


def test_fetch_metrics_reads_the_counters_of_published_posts() -> None:
    server = FakeNetwork()
    published = run(server, lambda adapter: adapter.publish(make_post(), make_account(), "k"))
    post = replace(make_post(), remote_id=published.remote_id)

    metrics = run(server, lambda adapter: adapter.fetch_metrics([post], make_account()))

    assert metrics[published.remote_id].likes == 12
    assert metrics[published.remote_id].comments == 3


def test_fetch_metrics_leaves_out_posts_the_network_no_longer_knows() -> None:
    post = replace(make_post(), remote_id="deleted")

    assert run(FakeNetwork(), lambda adapter: adapter.fetch_metrics([post], make_account())) == {}


# --------------------------------------------------------------------------- discovery


@pytest.fixture
def only_this_plugin(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("SMM_LOAD_PLUGINS", PLATFORM)
    plugins.reset()
    yield
    plugins.reset()


@pytest.mark.usefixtures("only_this_plugin")
def test_the_installed_entry_point_provides_the_platform() -> None:
    (entry_point,) = importlib.metadata.entry_points(group="smm_scheduler", name=PLATFORM)
    assert entry_point.value == {{ cookiecutter.__adapter }}.__module__.split(".")[0]
    assert plugins.adapter_class(PLATFORM) is {{ cookiecutter.__adapter }}
