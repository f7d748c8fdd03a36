"""The ntfy adapter: the contract suite, ntfy's byte counting, its requests and its answers."""

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
from scheduler.adapter import Account, OutcomeUnknown, OutgoingPost, Published
from scheduler.testing import (
    AdapterContract,
    Handler,
    RecordingHandler,
    file_credential,
    mock_client,
)

from smm_ntfy import NtfyAdapter

T = TypeVar("T")

SERVER = "https://ntfy.example"
TOPIC = "shop-news"
TOKEN = "tk_AgQdq7mVBoFD37zQVN29RhuMzNIz2"
DUE = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)


class FakeNtfy:
    """An ntfy server in memory: ``POST /`` publishes, ``GET /<topic>/json?poll=1`` replays."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path == "/":
            sent = json.loads(request.content)
            message = {
                "id": f"msg{len(self.messages) + 1}",
                "time": int(datetime.now(UTC).timestamp()),
                "event": "message",
                "topic": sent["topic"],
                "message": sent["message"],
            }
            self.messages.append(message)
            return httpx.Response(200, json=message)
        if request.method == "GET" and request.url.path == f"/{TOPIC}/json":
            lines = [json.dumps(m) for m in self.messages]
            return httpx.Response(200, text="\n".join(lines) + "\n")
        return httpx.Response(404, json={"code": 40401, "http": 404, "error": "page not found"})


def ntfy_error(status: int, code: int, error: str) -> Handler:
    """Every request answered with ntfy's error JSON."""
    body = {"code": code, "http": status, "error": error}
    return lambda request: httpx.Response(status, json=body)


#: How ntfy answers in each scenario of the contract suite.
ANSWERS: dict[str, Handler] = {
    "rate_limited": ntfy_error(429, 42901, "limit reached: too many requests, please be nice"),
    "auth_expired": ntfy_error(401, 40101, "unauthorized"),
    "rejected": ntfy_error(400, 40009, "invalid request: topic invalid"),
    # What a reverse proxy answers while ntfy restarts: the request never reached ntfy.
    "server_error": lambda request: httpx.Response(
        503, headers={"content-type": "text/html"}, text="<h1>503 Service Unavailable</h1>"
    ),
}


def make_account(**options: Any) -> Account:
    return Account(
        name="alerts",
        platform="ntfy",
        timezone="UTC",
        options={"server": SERVER, "topic": TOPIC, **options},
        credentials={"token": file_credential(TOKEN)},
    )


def make_post(**changes: Any) -> OutgoingPost:
    post = OutgoingPost(
        key="launch",
        account="alerts",
        content_type="announcement",
        text="We launch today",
        link="https://shop.example/launch",
        due_at=DUE,
    )
    return replace(post, **changes)


def run(handler: Handler, call: Callable[[NtfyAdapter], Awaitable[T]]) -> T:
    async def main() -> T:
        async with mock_client(handler) as client:
            return await call(NtfyAdapter(client))

    return asyncio.run(main())


class TestNtfyContract(AdapterContract):
    adapter_class = NtfyAdapter
    secret_values = (TOKEN,)

    def make_account(self) -> Account:
        return make_account()

    def make_handler(self, scenario: str) -> Handler:
        return FakeNtfy() if scenario == "ok" else ANSWERS[scenario]


# --------------------------------------------------------------------------- counting


@pytest.mark.parametrize(
    ("text", "length"),
    [("a", 1), ("é", 2), ("漢", 3), ("👍", 4), ("👍🏽", 8), ("e\u0301", 3)],
)
def test_length_is_bytes_of_utf8(text: str, length: int) -> None:
    assert NtfyAdapter(mock_client(FakeNtfy())).text_length(text) == length


def test_validate_allows_4096_bytes_and_flags_one_more() -> None:
    adapter = NtfyAdapter(mock_client(FakeNtfy()))
    fits = make_post(text="漢" * 1365 + "a", link=None)  # 4,096 bytes
    assert adapter.validate(fits, make_account()) == []
    issues = adapter.validate(replace(fits, text=fits.text + "a"), make_account())
    assert [i.field for i in issues] == ["text"]


def test_validate_flags_media_that_is_not_a_url() -> None:
    adapter = NtfyAdapter(mock_client(FakeNtfy()))
    issues = adapter.validate(make_post(media=("photos/launch.png",)), make_account())
    assert [i.field for i in issues] == ["media"]
    assert adapter.validate(make_post(media=("https://cdn.example/a.png",)), make_account()) == []


# --------------------------------------------------------------------------- publishing


def test_publish_sends_the_message_as_json_to_the_server_root() -> None:
    recorder = RecordingHandler(FakeNtfy())
    post = make_post(media=("https://cdn.example/a.png",))

    published = run(recorder, lambda ntfy: ntfy.publish(post, make_account(), "key-1"))

    assert published == Published(remote_id="msg1")
    (request,) = recorder.requests
    assert (request.method, str(request.url)) == ("POST", f"{SERVER}/")
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert json.loads(request.content) == {
        "topic": TOPIC,
        "message": "We launch today\n\nhttps://shop.example/launch",
        "click": "https://shop.example/launch",
        "attach": "https://cdn.example/a.png",
    }


def test_publish_without_a_token_sends_no_authorization() -> None:
    recorder = RecordingHandler(FakeNtfy())
    account = replace(make_account(), credentials={})

    run(recorder, lambda ntfy: ntfy.publish(make_post(), account, "key-1"))

    assert "Authorization" not in recorder.requests[0].headers


@pytest.mark.parametrize("status", [500, 502, 504])
def test_a_5xx_after_the_request_reached_ntfy_is_outcome_unknown(status: int) -> None:
    # ntfy delivers before it stores: its 500 may follow a delivery, so no blind resend.
    handler = ntfy_error(status, 50001, "internal server error")
    with pytest.raises(OutcomeUnknown, match="internal server error"):
        run(handler, lambda ntfy: ntfy.publish(make_post(), make_account(), "key-1"))


# --------------------------------------------------------------------------- lookup


def test_lookup_finds_a_message_whose_answer_was_lost() -> None:
    server = FakeNtfy()
    run(server, lambda ntfy: ntfy.publish(make_post(), make_account(), "key-1"))
    recorder = RecordingHandler(server)

    found = run(recorder, lambda ntfy: ntfy.lookup(make_post(), make_account()))

    assert found == Published(remote_id="msg1")
    (request,) = recorder.requests
    assert request.url.path == f"/{TOPIC}/json"
    # A minute before the due time: every attempt came after it.
    assert request.url.params["since"] == str(int(DUE.timestamp()) - 60)


def test_lookup_of_a_message_not_in_the_cache_cannot_tell() -> None:
    with pytest.raises(OutcomeUnknown, match="a person must check"):
        run(FakeNtfy(), lambda ntfy: ntfy.lookup(make_post(), make_account()))


# --------------------------------------------------------------------------- discovery


@pytest.fixture
def only_ntfy(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("SMM_LOAD_PLUGINS", "ntfy")
    plugins.reset()
    yield
    plugins.reset()


@pytest.mark.usefixtures("only_ntfy")
def test_the_installed_entry_point_provides_the_ntfy_platform() -> None:
    (entry_point,) = importlib.metadata.entry_points(group="smm_scheduler", name="ntfy")
    assert entry_point.value == "smm_ntfy"
    assert plugins.adapter_class("ntfy") is NtfyAdapter
