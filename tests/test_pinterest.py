"""Pinterest adapter: Pin creation, title and description, errors, analytics, lookup."""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import smm_pinterest
from adapter_support import registered_adapters
from smm_pinterest import PinterestAdapter
from smm_pinterest.adapter import classify_error, reset_time, split_title

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
TOKEN = "pina_secret-pinterest-token"
BOARD = "549755885175"
PIN = "813744226420795884"
IMAGE = "https://cdn.example.com/recipes/soup.jpg"
DUE = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)
NOW = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)


def make_account(**options: Any) -> Account:
    return account_with_secrets(
        "brand-pin", "pinterest", {"board_id": BOARD, **options}, secrets={"access_token": TOKEN}
    )


def make_post(**changes: Any) -> OutgoingPost:
    post = OutgoingPost(
        key="pin1",
        account="brand-pin",
        content_type="instruction",
        text="Pumpkin soup in 20 minutes\nFive ingredients, one pot.",
        media=(IMAGE,),
        link="https://blog.example.com/pumpkin-soup",
        tags=("recipe",),
        idempotency_key="pin1-key",
        due_at=DUE,
    )
    return replace(post, **changes)


def pin_error(status: int, code: int, message: str, **headers: str) -> httpx.Response:
    return httpx.Response(status, json={"code": code, "message": message}, headers=headers)


class FakePinterest(RecordingHandler):
    """api.pinterest.com/v5 as Pinterest's API reference shows it."""

    def __init__(self) -> None:
        super().__init__()
        self.pins: list[dict[str, Any]] = []

    def answer(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/v5/")
        budget = {
            "x-ratelimit-limit": "1000",
            "x-ratelimit-remaining": "998",
            "x-ratelimit-reset": "42",
        }
        if request.method == "POST" and path == "pins":
            pin = json.loads(request.content)
            self.pins.append(pin)
            body = {"id": PIN, "created_at": "2030-01-07T09:00:02", **pin}
            return httpx.Response(201, json=body, headers=budget)
        if request.method == "GET" and path == f"pins/{PIN}/analytics":
            lifetime = {
                "IMPRESSION": 5120,
                "SAVE": 84,
                "PIN_CLICK": 230,
                "OUTBOUND_CLICK": 61,
                "REACTION": 12,
                "COMMENT": 3,
            }
            day = {"date": "2030-01-07", "data_status": "READY", "metrics": lifetime}
            body = {
                "all": {
                    "daily_metrics": [day],
                    "lifetime_metrics": lifetime,
                    "summary_metrics": lifetime,
                }
            }
            return httpx.Response(200, json=body, headers=budget)
        if request.method == "GET" and path == f"boards/{BOARD}/pins":
            items = [
                {
                    "id": PIN,
                    "created_at": "2030-01-07T09:00:02",
                    "board_id": BOARD,
                    "title": p.get("title"),
                    "description": p["description"],
                    "link": p.get("link"),
                }
                for p in self.pins
            ]
            return httpx.Response(200, json={"items": items, "bookmark": None}, headers=budget)
        return pin_error(404, 404, f"No route {request.method} {path}")


def run(handler: Handler, call: Callable[[PinterestAdapter], Awaitable[T]]) -> T:
    return run_adapter(PinterestAdapter, handler, call)


def publish(handler: Any, post: OutgoingPost | None = None) -> Any:
    post = post or make_post()
    return run(handler, lambda a: a.publish(post, make_account(), post.idempotency_key))


# --------------------------------------------------------------------------- contract


class TestPinterestContract(AdapterContract):
    adapter_class = PinterestAdapter
    lost_answer = OutcomeUnknown
    secret_values = (TOKEN,)

    def make_account(self) -> Account:
        return make_account()

    def make_post(self) -> OutgoingPost:
        return replace(super().make_post(), media=(IMAGE,))

    def make_handler(self, scenario: str) -> Handler:
        if scenario == "ok":
            return FakePinterest()
        answers: dict[str, Handler] = {
            "rate_limited": lambda request: pin_error(
                429,
                429,
                "You have exceeded your rate limit. Try again later.",
                **{
                    "x-ratelimit-limit": "1000",
                    "x-ratelimit-remaining": "0",
                    "x-ratelimit-reset": "37",
                },
            ),
            "server_error": lambda request: pin_error(500, 500, "Internal server error"),
            "auth_expired": lambda request: pin_error(401, 2, "Authentication failed."),
            "rejected": lambda request: pin_error(
                400, 1, "Invalid Pin: the image could not be downloaded from media_source.url"
            ),
        }
        return answers[scenario]


# --------------------------------------------------------------------------- publishing


def test_publish_creates_a_pin_with_title_description_link_and_image_url() -> None:
    fake = FakePinterest()
    result = publish(fake)
    (request,) = fake.requests
    assert str(request.url) == "https://api.pinterest.com/v5/pins"
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert fake.pins == [
        {
            "board_id": BOARD,
            "title": "Pumpkin soup in 20 minutes",
            "description": "Five ingredients, one pot.\n\n#recipe",
            "link": "https://blog.example.com/pumpkin-soup",
            "media_source": {"source_type": "image_url", "url": IMAGE},
        }
    ]
    assert result == Published(PIN, url=f"https://www.pinterest.com/pin/{PIN}/")


def test_a_local_image_is_sent_as_base64(tmp_path: Path) -> None:
    image = tmp_path / "soup.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\nsoup")
    fake = FakePinterest()
    publish(fake, make_post(media=(str(image),)))
    source = fake.pins[0]["media_source"]
    assert source["source_type"] == "image_base64"
    assert source["content_type"] == "image/png"
    assert base64.b64decode(source["data"]) == b"\x89PNG\r\n\x1a\nsoup"


def test_a_one_line_text_is_all_description_and_no_title() -> None:
    fake = FakePinterest()
    publish(fake, make_post(text="Soup!", tags=(), link=None, media=(IMAGE,)))
    assert fake.pins[0] == {
        "board_id": BOARD,
        "description": "Soup!",
        "media_source": {"source_type": "image_url", "url": IMAGE},
    }


def test_the_board_section_is_sent_when_configured() -> None:
    fake = FakePinterest()
    post = make_post()
    run(fake, lambda a: a.publish(post, make_account(board_section_id="77"), "k"))
    assert fake.pins[0]["board_section_id"] == "77"


def test_rate_limit_headers_are_kept_for_the_dispatcher() -> None:
    fake = FakePinterest()
    status = run(fake, lambda a: _publish_and_status(a))
    assert (status.remaining, status.limit) == (998, 1000)
    assert status.reset_at is not None


async def _publish_and_status(adapter: PinterestAdapter) -> Any:
    post = make_post()
    await adapter.publish(post, make_account(), post.idempotency_key)
    return adapter.rate_limit_status["brand-pin"]


def test_a_lost_answer_to_the_pin_creation_leaves_the_outcome_open() -> None:
    with pytest.raises(OutcomeUnknown, match="may have been created"):
        publish(fault_handler("read_timeout"))


@pytest.mark.parametrize(
    ("text", "title", "description"),
    [
        ("Just one line", None, "Just one line"),
        ("Title\nBody", "Title", "Body"),
        ("  Title  \n\nBody\nmore  ", "Title", "Body\nmore"),
    ],
)
def test_split_title(text: str, title: str | None, description: str) -> None:
    assert split_title(text) == (title, description)


@pytest.mark.parametrize(
    ("post", "field", "words"),
    [
        (make_post(media=()), "media", "at least one media"),
        (make_post(media=(IMAGE, IMAGE)), "media", "at most 1"),
        (make_post(text="t" * 101 + "\nbody"), "text", "title (first line) has 101"),
        (make_post(text="title\n" + "d" * 500), "text", "over the limit of 500"),
    ],
)
def test_validate_flags_what_pinterest_refuses(post: OutgoingPost, field: str, words: str) -> None:
    issues = offline_adapter(PinterestAdapter).validate(post, make_account())
    assert any(i.field == field and words in i.message for i in issues), issues


def test_validate_flags_an_account_without_a_board() -> None:
    account = replace(make_account(), options={})
    issues = offline_adapter(PinterestAdapter).validate(make_post(), account)
    assert [i.field for i in issues] == ["account"]


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (429, 429, RateLimited),
        (401, 2, AuthExpired),
        (400, 1, Rejected),
        (403, 3, Rejected),
        (404, 50, Rejected),
        (409, 6, Rejected),
        # No idempotency key on the Pin creation: a 5xx may follow the Pin's creation.
        (500, 500, OutcomeUnknown),
        (503, 503, OutcomeUnknown),
        (504, 504, OutcomeUnknown),
    ],
)
def test_pinterest_errors_map_to_the_taxonomy(
    status: int, code: int, expected: type[PublishError]
) -> None:
    body = {"code": code, "message": "Pinterest's own words"}
    error = classify_error(status, body, httpx.Headers(), where="POST /v5/pins", mutating=True)
    assert type(error) is expected
    assert error.message.startswith("Pinterest: Pinterest's own words [HTTP")


@pytest.mark.parametrize("status", [500, 502, 503])
def test_a_5xx_on_a_read_is_transient(status: int) -> None:
    error = classify_error(status, None, httpx.Headers(), where="GET /v5/pins", mutating=False)
    assert type(error) is Transient


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "30"}, NOW + timedelta(seconds=30)),
        ({"X-RateLimit-Reset": "45"}, NOW + timedelta(seconds=45)),
        (
            {"X-RateLimit-Reset": str(int((NOW + timedelta(minutes=2)).timestamp()))},
            NOW + timedelta(minutes=2),
        ),
        ({}, None),
    ],
)
def test_rate_limit_reset_from_headers(headers: dict[str, str], expected: datetime | None) -> None:
    assert reset_time(httpx.Headers(headers), NOW) == expected


def test_a_429_carries_its_retry_time() -> None:
    error = classify_error(
        429,
        {"code": 429, "message": "slow down"},
        httpx.Headers({"X-RateLimit-Reset": "60"}),
        where="POST /v5/pins",
        mutating=True,
        now=NOW,
    )
    assert error.retry_at == NOW + timedelta(seconds=60)


# --------------------------------------------------------------------------- metrics, lookup


def test_fetch_metrics_reads_lifetime_analytics_since_the_pin_was_published() -> None:
    fake = FakePinterest()
    published = datetime.now(UTC) - timedelta(days=2)
    post = make_post(remote_id=PIN, published_at=published)
    metrics = run(fake, lambda a: a.fetch_metrics([post], make_account()))
    params = fake.requests[0].url.params
    assert params["start_date"] == published.date().isoformat()
    assert params["end_date"] == datetime.now(UTC).date().isoformat()
    assert params["metric_types"] == "IMPRESSION,SAVE,PIN_CLICK,OUTBOUND_CLICK,REACTION,COMMENT"
    m = metrics[PIN]
    assert (m.impressions, m.saves, m.clicks, m.likes, m.comments) == (5120, 84, 291, 12, 3)


def test_fetch_metrics_asks_no_further_back_than_pinterest_keeps() -> None:
    fake = FakePinterest()
    post = make_post(remote_id=PIN, published_at=datetime.now(UTC) - timedelta(days=400))
    run(fake, lambda a: a.fetch_metrics([post], make_account()))
    start = datetime.fromisoformat(fake.requests[0].url.params["start_date"]).date()
    assert start == datetime.now(UTC).date() - timedelta(days=89)


def test_fetch_metrics_adds_up_days_when_no_totals_are_given() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        days = [
            {
                "date": f"2030-01-0{d}",
                "data_status": "READY",
                "metrics": {"IMPRESSION": 100 * d, "SAVE": d},
            }
            for d in (1, 2, 3)
        ]
        return httpx.Response(200, json={"all": {"daily_metrics": days}})

    metrics = run(handler, lambda a: a.fetch_metrics([make_post(remote_id=PIN)], make_account()))
    assert (metrics[PIN].impressions, metrics[PIN].saves, metrics[PIN].clicks) == (600, 6, None)


def test_fetch_metrics_leaves_out_a_deleted_pin() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return pin_error(404, 50, "Pin not found.")

    metrics = run(handler, lambda a: a.fetch_metrics([make_post(remote_id=PIN)], make_account()))
    assert metrics == {}


def test_lookup_finds_the_pin_by_description_and_link() -> None:
    fake = FakePinterest()
    publish(fake)
    found = run(fake, lambda a: a.lookup(make_post(), make_account()))
    assert found == Published(PIN, url=f"https://www.pinterest.com/pin/{PIN}/")


def test_lookup_says_not_created_when_the_whole_board_lacks_it() -> None:
    assert run(FakePinterest(), lambda a: a.lookup(make_post(), make_account())) is None


def test_lookup_cannot_tell_when_more_pages_hide_the_due_time() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        items = [
            {"id": str(i), "created_at": "2030-01-08T10:00:00", "description": "other"}
            for i in range(25)
        ]
        return httpx.Response(200, json={"items": items, "bookmark": "Y2JVSG81"})

    with pytest.raises(OutcomeUnknown, match="do not reach back"):
        run(handler, lambda a: a.lookup(make_post(), make_account()))


def test_the_plugin_registers_the_pinterest_platform() -> None:
    assert registered_adapters(smm_pinterest.register_platforms) == [PinterestAdapter]
    assert PinterestAdapter.platform == "pinterest"


def test_alt_text_is_the_pins_alt_text() -> None:
    # POST /v5/pins: alt_text (developers.pinterest.com, Pins create), at most 500 characters.
    fake = FakePinterest()
    publish(fake, make_post(media_meta=(MediaMeta("A bowl of orange soup"),)))
    assert fake.pins[0]["alt_text"] == "A bowl of orange soup"
