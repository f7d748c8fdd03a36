"""The Mastodon adapter: recorded server traffic replayed, failures classified case by case,
and length counted as Mastodon counts it."""

from __future__ import annotations

import json
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs

import httpx
import pytest
import smm_mastodon
import yaml
from adapter_support import network_page, options_read_by, registered_adapters, undocumented
from smm_mastodon import MastodonAdapter, register_platforms
from smm_mastodon.instance import InstanceLimits
from smm_mastodon.media import MediaUploader
from smm_mastodon.text import countable_text, status_length

from scheduler.adapter import (
    Account,
    AuthExpired,
    MediaMeta,
    OutcomeUnknown,
    OutgoingPost,
    Poll,
    PostOptions,
    Published,
    PublishError,
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
    fault_handler,
    offline_adapter,
    run_adapter,
)

# Media files come from each test's tmp_path; media URLs resolve to a public address.
pytestmark = pytest.mark.usefixtures("media_roots")

T = TypeVar("T")
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "mastodon"
INSTANCE = "http://localhost:3000"  # where the cassettes were recorded
TOKEN = "tok-mastodon-7c1e9b"
KEY = "post-42-key"


class FastMastodon(MastodonAdapter):
    """The adapter with media polling that does not sleep."""

    media_poll_interval = 0.0
    media_poll_attempts = 3


def make_account(**options: Any) -> Account:
    return account_with_secrets(
        "toots", "mastodon", {"instance": INSTANCE, **options}, secrets={"access_token": TOKEN}
    )


def make_post(text: str = "Toot!", **changes: Any) -> OutgoingPost:
    post = OutgoingPost(
        key="post-42",
        account="toots",
        content_type="laugh",
        text=text,
        idempotency_key=KEY,
        due_at=datetime(2026, 8, 1, 13, 0, tzinfo=UTC),
    )
    return replace(post, **changes)


def run(handler: Handler, call: Callable[[MastodonAdapter], Awaitable[T]]) -> T:
    return run_adapter(FastMastodon, handler, call)


def publish(handler: Handler, post: OutgoingPost | None = None, **options: Any) -> Published:
    return run(handler, lambda a: a.publish(post or make_post(), make_account(**options), KEY))


def write(directory: Path, name: str, data: bytes = b"\xff\xd8\xff\xe0") -> str:
    path = directory / name
    path.write_bytes(data)
    return str(path)


def form(request: httpx.Request) -> dict[str, list[str]]:
    return parse_qs(request.content.decode(), keep_blank_values=True)


# --------------------------------------------------------------------------- cassette replay


@dataclass(frozen=True)
class Interaction:
    """One recorded request and the answer the real server gave."""

    method: str
    path: str
    request_body: str | bytes | None
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def response(self) -> httpx.Response:
        return httpx.Response(self.status, headers=list(self.headers), content=self.body)

    def json(self) -> Any:
        return json.loads(self.body)

    def recorded_form(self) -> dict[str, list[str]]:
        """The form fields of the recorded (url-encoded) request."""
        assert isinstance(self.request_body, str), "not a url-encoded request"
        return parse_qs(self.request_body, keep_blank_values=True)


def cassette(name: str) -> list[Interaction]:
    """The interactions of the VCR cassette ``name`` (a file in tests/fixtures/mastodon)."""
    data = yaml.safe_load((FIXTURES / f"{name}.yaml").read_text(encoding="utf-8"))
    interactions = []
    for item in data["interactions"]:
        request, response = item["request"], item["response"]
        body = response["body"]["string"]
        headers = tuple(
            (key, value)
            for key, values in response["headers"].items()
            # The body is stored decoded, so its recorded length and encoding no longer apply.
            if key.lower() not in ("content-length", "content-encoding", "transfer-encoding")
            for value in values
        )
        interactions.append(
            Interaction(
                method=request["method"],
                path=httpx.URL(request["uri"]).path.rstrip("/"),
                request_body=request["body"],
                status=response["status"]["code"],
                headers=headers,
                body=body.encode() if isinstance(body, str) else body,
            )
        )
    return interactions


class Player(RecordingHandler):
    """A MockTransport handler that answers each request with the next recorded interaction
    of the same method and path, and keeps the requests for assertions."""

    def __init__(self, *interactions: Interaction) -> None:
        super().__init__()
        self.queues: dict[tuple[str, str], deque[Interaction]] = defaultdict(deque)
        for interaction in interactions:
            self.queues[interaction.method, interaction.path].append(interaction)

    def serve(self, method: str, path: str, interaction: Interaction) -> Player:
        """Answer ``method path`` with ``interaction`` (a recorded body used for another
        route, e.g. a status as it was after a favourite, for the metrics read)."""
        self.queues[method, path].append(interaction)
        return self

    def answer(self, request: httpx.Request) -> httpx.Response:
        queue = self.queues.get((request.method, request.url.path.rstrip("/")))
        if not queue:
            raise AssertionError(f"no recorded answer for {request.method} {request.url}")
        return queue.popleft().response()

    def sent(self, method: str, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == method and r.url.path == path]


INSTANCE_INFO = cassette("test_instance")[0]


def test_every_recorded_cassette_is_replayed() -> None:
    source = Path(__file__).read_text(encoding="utf-8")
    recorded = {p.stem for p in FIXTURES.glob("*.yaml")}
    unused = sorted(name for name in recorded if f'"{name}"' not in source)
    assert recorded, f"no cassettes in {FIXTURES}"
    assert not unused, f"cassettes no test replays: {unused}"


def test_instance_limits_are_read_from_the_recorded_instance() -> None:
    player = Player(*cassette("test_instance"))
    limits = run(player, lambda a: a.limits.get(INSTANCE))
    assert limits.max_characters == 500
    assert limits.characters_reserved_per_url == 23
    assert limits.max_media_attachments == 4
    assert "image/png" in limits.supported_mime_types
    (request,) = player.requests
    assert request.url.path == "/api/v2/instance"
    assert "authorization" not in request.headers  # the instance document is public


def test_publish_sends_the_recorded_request_and_reads_the_status() -> None:
    recorded = cassette("test_status")
    player = Player(INSTANCE_INFO, *recorded)
    published = publish(player)
    assert published == Published(
        remote_id="117020583223442465",
        url="http://localhost:3000/@mastodonpy_test/117020583223442465",
        followers=0,
    )
    (create,) = player.sent("POST", "/api/v1/statuses")
    assert form(create) == recorded[0].recorded_form()  # status=Toot%21
    assert create.headers["idempotency-key"] == KEY
    assert create.headers["authorization"] == f"Bearer {TOKEN}"


def test_publish_records_the_rate_limit_headers_of_the_answer() -> None:
    player = Player(INSTANCE_INFO, *cassette("test_status"))

    async def call(adapter: MastodonAdapter) -> Any:
        await adapter.publish(make_post(), make_account(), KEY)
        return adapter.rate_limit_status["toots"]

    status = run(player, call)
    assert (status.limit, status.remaining) == (300, 227)
    assert status.reset_at == datetime(2026, 8, 1, 15, 0, 0, 409710, tzinfo=UTC)


def test_visibility_option_is_sent_as_recorded() -> None:
    recorded = cassette("test_status_post[None-public]")
    player = Player(INSTANCE_INFO, *recorded)
    published = publish(player, visibility="public")
    assert published.remote_id == "117020585924712638"
    (create,) = player.sent("POST", "/api/v1/statuses")
    assert form(create) == recorded[0].recorded_form()  # status=Toot%21&visibility=public


def test_metrics_read_the_recorded_status() -> None:
    recorded = cassette("test_status")
    player = Player(*recorded[1:2])  # GET /api/v1/statuses/117020583223442465
    post = make_post(remote_id="117020583223442465")
    metrics = run(player, lambda a: a.fetch_metrics([post], make_account()))
    m = metrics["117020583223442465"]
    assert (m.likes, m.comments, m.shares, m.followers) == (0, 0, 0, 0)
    assert (m.reach, m.impressions) == (None, None)  # Mastodon has no reach
    assert player.requests[0].url.path == "/api/v1/statuses/117020583223442465"


@pytest.mark.parametrize("name", ["test_status_fav_unfav", "test_status_favourited_by"])
def test_metrics_count_a_recorded_favourite_as_a_like(name: str) -> None:
    recorded = cassette(name)
    status_id = recorded[0].json()["id"]
    after_favourite = recorded[1]  # POST .../favourite answers the status as it now is
    player = Player().serve("GET", f"/api/v1/statuses/{status_id}", after_favourite)
    post = make_post(remote_id=status_id)
    metrics = run(player, lambda a: a.fetch_metrics([post], make_account()))
    assert metrics[status_id].likes == 1


def test_metrics_count_a_recorded_reblog_as_a_share() -> None:
    recorded = cassette("test_status_reblog_unreblog")
    status_id = recorded[0].json()["id"]
    # The reblog answer wraps the original status, counts updated, under "reblog".
    original = recorded[1].json()["reblog"]
    assert original["id"] == status_id
    after_reblog = replace(recorded[1], body=json.dumps(original).encode())
    player = Player().serve("GET", f"/api/v1/statuses/{status_id}", after_reblog)
    post = make_post(remote_id=status_id)
    metrics = run(player, lambda a: a.fetch_metrics([post], make_account()))
    assert metrics[status_id].shares == 1


def test_metrics_leave_out_a_status_the_server_no_longer_has() -> None:
    player = Player(*cassette("test_status_missing"))  # GET /api/v1/statuses/0 -> 404
    metrics = run(player, lambda a: a.fetch_metrics([make_post(remote_id="0")], make_account()))
    assert metrics == {}
    assert player.requests[0].url.path == "/api/v1/statuses/0"


def test_recorded_validation_failure_is_rejected_with_the_servers_message() -> None:
    player = Player(INSTANCE_INFO, *cassette("test_status_empty"))
    with pytest.raises(Rejected) as info:
        publish(player, make_post(""))
    assert info.value.message == "バリデーションに失敗しました: Textを入力してください"
    assert info.value.http_status == 422


def test_publish_uploads_media_and_attaches_it_as_recorded(tmp_path: Path) -> None:
    recorded = cassette("test_status_delete_media")
    upload, create = recorded[1], recorded[2]
    player = Player(INSTANCE_INFO, upload, create)
    photo = write(tmp_path, "photo.jpg")
    published = publish(player, make_post("Status with media", media=(photo,)))
    assert published.remote_id == "117020606035908211"
    (sent_upload,) = player.sent("POST", "/api/v2/media")
    assert b'name="file"' in sent_upload.content
    assert b"Content-Type: image/jpeg" in sent_upload.content
    (sent_create,) = player.sent("POST", "/api/v1/statuses")
    # status=Status+with+media&media_ids%5B%5D=117020606032533890
    assert form(sent_create) == create.recorded_form()


def test_recorded_rejection_of_gone_media_is_rejected(tmp_path: Path) -> None:
    recorded = cassette("test_status_delete_media")
    upload, refused = recorded[1], recorded[6]
    player = Player(INSTANCE_INFO, upload, refused)
    photo = write(tmp_path, "photo.jpg")
    with pytest.raises(Rejected) as info:
        publish(player, make_post("Trying to repost deleted media", media=(photo,)))
    assert "117020606032533890" in info.value.message
    (sent_create,) = player.sent("POST", "/api/v1/statuses")
    assert form(sent_create) == refused.recorded_form()


def test_media_upload_returns_the_recorded_media_id(tmp_path: Path) -> None:
    player = Player(*cassette("test_media_post_file"))
    photo = write(tmp_path, "photo.jpg")

    async def call(adapter: MastodonAdapter) -> str:
        uploader = MediaUploader(adapter.client, INSTANCE, {}, observe=lambda r: None)
        return await uploader.upload(photo, adapter.capabilities)

    assert run(player, call) == "117020576894251992"


def test_recorded_invalid_token_answer_is_auth_expired() -> None:
    invalid = cassette("test_unauthed_home_tl_throws")[1]  # 401 on a timeline read
    player = Player(INSTANCE_INFO).serve("POST", "/api/v1/statuses", invalid)
    with pytest.raises(AuthExpired) as info:
        publish(player)
    assert info.value.message == "The access token is invalid"


def test_recorded_publish_before_the_invalid_token_succeeds() -> None:
    player = Player(INSTANCE_INFO, *cassette("test_unauthed_home_tl_throws")[:1])
    assert publish(player).remote_id == "117020593455747405"


def test_a_scheduled_status_answer_is_not_taken_for_a_publication() -> None:
    scheduled = cassette("test_scheduled_status")[0]  # ScheduledStatus, id "1"
    player = Player(INSTANCE_INFO).serve("POST", "/api/v1/statuses", scheduled)
    with pytest.raises(OutcomeUnknown, match="scheduled"):
        publish(player)
    (create,) = player.sent("POST", "/api/v1/statuses")
    assert "scheduled_at" not in form(create)  # the daemon schedules, not Mastodon


# --------------------------------------------------------------------------- failures


def status_json(status_id: str = "111") -> dict[str, Any]:
    return {
        "id": status_id,
        "url": f"https://social.example/@me/{status_id}",
        "favourites_count": 3,
        "replies_count": 1,
        "reblogs_count": 2,
        "quotes_count": 1,
        "account": {"followers_count": 250},
    }


def answer_create(respond: Handler) -> Handler:
    """A server that answers the instance document normally and ``respond``s to the rest."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v2/instance":
            return INSTANCE_INFO.response()
        return respond(request)

    return handler


def test_429_is_rate_limited_until_the_reset_header() -> None:
    headers = {
        "X-RateLimit-Limit": "300",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": "2026-08-01T15:00:00.000Z",
    }
    handler = answer_create(
        lambda r: httpx.Response(429, headers=headers, json={"error": "Too many requests"})
    )

    async def call(adapter: MastodonAdapter) -> Any:
        with pytest.raises(RateLimited) as info:
            await adapter.publish(make_post(), make_account(), KEY)
        return info.value, adapter.rate_limit_status["toots"]

    error, status = run(handler, call)
    assert error.retry_at == datetime(2026, 8, 1, 15, 0, tzinfo=UTC)
    assert error.message == "Too many requests"
    assert status.remaining == 0


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (401, {"error": "The access token is invalid"}, AuthExpired),
        (403, {"error": "This action is outside the authorized scopes"}, AuthExpired),
        (422, {"error": "Validation failed: Text character limit of 500 exceeded"}, Rejected),
        (404, {"error": "Record not found"}, Rejected),
        (500, {"error": "We're sorry, but something went wrong"}, OutcomeUnknown),
        (502, {"error": "Bad Gateway"}, Transient),
        (503, {"error": "Service Unavailable"}, Transient),
        (504, {"error": "Gateway Timeout"}, Transient),
    ],
)
def test_an_answer_to_the_create_call_is_classified(
    status: int, body: dict[str, str], expected: type[PublishError]
) -> None:
    handler = answer_create(lambda r: httpx.Response(status, json=body))
    with pytest.raises(expected) as info:
        publish(handler)
    assert type(info.value) is expected
    assert body["error"] in info.value.message
    assert info.value.http_status == status


@pytest.mark.parametrize(
    ("fault", "expected"),
    # A refused connection, a read timeout and a dropped connection are the contract suite's
    # (TestMastodonContract); a connect timeout is not among its faults.
    [(httpx.ConnectTimeout("no route"), Transient)],
)
def test_a_transport_failure_of_the_create_call_is_classified(
    fault: httpx.HTTPError, expected: type[PublishError]
) -> None:
    def respond(request: httpx.Request) -> httpx.Response:
        raise fault

    with pytest.raises(expected):
        publish(answer_create(respond))


def test_a_timeout_while_uploading_media_is_transient_as_no_status_exists_yet(
    tmp_path: Path,
) -> None:
    with pytest.raises(Transient):
        publish(
            answer_create(fault_handler("read_timeout")),
            make_post(media=(write(tmp_path, "a.png"),)),
        )


def test_a_500_while_reading_metrics_is_transient() -> None:
    handler = answer_create(lambda r: httpx.Response(500, json={"error": "oops"}))
    with pytest.raises(Transient):
        run(handler, lambda a: a.fetch_metrics([make_post(remote_id="1")], make_account()))


def test_html_instead_of_a_status_is_an_unknown_outcome() -> None:
    handler = answer_create(lambda r: httpx.Response(200, html="<h1>Welcome to nginx</h1>"))
    with pytest.raises(OutcomeUnknown):
        publish(handler)


def test_a_resend_with_the_same_key_returns_the_original_status() -> None:
    """Mastodon answers a repeated Idempotency-Key with the status it first created."""
    created: dict[str, dict[str, Any]] = {}

    def respond(request: httpx.Request) -> httpx.Response:
        key = request.headers["idempotency-key"]
        created.setdefault(key, status_json(str(100 + len(created))))
        return httpx.Response(200, json=created[key])

    first = publish(answer_create(respond))
    again = publish(answer_create(respond))
    assert first == again
    assert len(created) == 1


def test_lookup_cannot_tell_and_says_how_to_settle() -> None:
    with pytest.raises(OutcomeUnknown, match="same key"):
        run(
            answer_create(lambda r: httpx.Response(500)),
            lambda a: a.lookup(make_post(), make_account()),
        )


def test_an_overlong_post_is_rejected_before_anything_is_sent() -> None:
    sent: list[httpx.Request] = []

    def respond(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json=status_json())

    with pytest.raises(Rejected, match="over the limit of 500"):
        publish(answer_create(respond), make_post("a" * 501))
    assert sent == []


def test_the_instances_own_limit_replaces_the_default() -> None:
    roomy = json.loads(INSTANCE_INFO.body)
    roomy["configuration"]["statuses"]["max_characters"] = 1000

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v2/instance":
            return httpx.Response(200, json=roomy)
        return httpx.Response(200, json=status_json())

    async def call(adapter: MastodonAdapter) -> Any:
        published = await adapter.publish(make_post("a" * 900), make_account(), KEY)
        return published, adapter.text_limit(make_account())

    published, limit = run(handler, call)
    assert published.remote_id == "111"
    assert limit == 1000


def test_the_max_characters_option_overrides_the_instance() -> None:
    with pytest.raises(Rejected, match="over the limit of 100"):
        publish(
            answer_create(lambda r: httpx.Response(200, json=status_json())),
            make_post("a" * 101),
            max_characters=100,
        )


def test_an_unreachable_instance_document_leaves_the_defaults() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v2/instance":
            raise httpx.ConnectError("refused")
        return httpx.Response(200, json=status_json())

    assert publish(handler).remote_id == "111"


def test_media_still_processing_is_polled_until_ready(tmp_path: Path) -> None:
    polls: list[int] = []

    def respond(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v2/media":
            return httpx.Response(202, json={"id": "9", "url": None})
        if request.url.path == "/api/v1/media/9":
            polls.append(1)
            ready = len(polls) == 2
            return httpx.Response(
                200 if ready else 206, json={"id": "9", "url": "u" if ready else None}
            )
        assert form(request)["media_ids[]"] == ["9"]
        return httpx.Response(200, json=status_json())

    assert (
        publish(answer_create(respond), make_post(media=(write(tmp_path, "clip.mp4"),))).remote_id
        == "111"
    )
    assert len(polls) == 2


def test_media_that_never_finishes_processing_is_transient(tmp_path: Path) -> None:
    def respond(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v2/media":
            return httpx.Response(202, json={"id": "9", "url": None})
        if request.url.path == "/api/v1/media/9":
            return httpx.Response(206, json={"id": "9", "url": None})
        raise AssertionError("the status must not be created with unprocessed media")

    with pytest.raises(Transient, match="still processing"):
        publish(answer_create(respond), make_post(media=(write(tmp_path, "clip.mp4"),)))


def test_a_missing_media_file_is_rejected() -> None:
    handler = answer_create(lambda r: httpx.Response(200, json=status_json()))
    with pytest.raises(Rejected, match="cannot read media file"):
        publish(handler, make_post(media=("/nonexistent/photo.png",)))


def test_an_account_without_instance_is_paused() -> None:
    account = replace(make_account(), options={})
    with pytest.raises(AuthExpired, match="instance"):
        run(
            answer_create(lambda r: httpx.Response(200)),
            lambda a: a.publish(make_post(), account, KEY),
        )


def test_metrics_add_quotes_to_reblogs_and_carry_followers() -> None:
    handler = answer_create(lambda r: httpx.Response(200, json=status_json("7")))
    metrics = run(handler, lambda a: a.fetch_metrics([make_post(remote_id="7")], make_account()))
    m = metrics["7"]
    assert (m.likes, m.comments, m.shares, m.followers) == (3, 1, 3, 250)


# --------------------------------------------------------------------------- length counting


@pytest.mark.parametrize(
    ("text", "length"),
    [
        ("hello", 5),
        ("https://example.com/a/very/long/path/that/goes/on?and=on&on=1", 23),
        ("http://a.co", 23),  # a short URL still counts as 23
        ("see https://example.com.", 4 + 23 + 1),  # the full stop is not part of the URL
        ("(https://example.com/x)", 1 + 23 + 1),
        ("example.com", 11),  # no scheme: plain text
        ("@alice@mastodon.example", 6),  # the domain of a mention is free
        ("hi @bob", 7),
        ("mail me: bob@example.com", 24),  # an address is not a mention
        ("👨‍👩‍👧‍👦", 1),  # ZWJ family: seven code points, one character
        ("🇺🇦🇫🇷", 2),  # two flags
        ("👍🏽", 1),  # skin tone modifier
        ("e\u0301", 1),  # combining accent
        ("한국어", 3),
        ("\u1100\u1161\u11a8", 1),  # conjoining jamo
        ("漢字かな", 4),
        ("🇺🇦 https://example.com/ukraine 👨‍👩‍👧", 1 + 1 + 23 + 1 + 1),
    ],
)
def test_length_is_counted_as_mastodon_counts_it(text: str, length: int) -> None:
    assert status_length(text) == length
    assert offline_adapter(MastodonAdapter).text_length(text) == length


def test_the_instances_url_length_is_used_for_links() -> None:
    assert countable_text("go https://example.com", 30) == "go " + "x" * 30
    assert status_length("go https://example.com", 30) == 33


def test_validate_counts_emoji_sequences_as_one_character_each() -> None:
    adapter = offline_adapter(MastodonAdapter)
    family = "👨‍👩‍👧‍👦"
    assert adapter.validate(make_post(family * 500), make_account()) == []
    (issue,) = adapter.validate(make_post(family * 501), make_account())
    assert issue.field == "text"
    assert "501 characters" in issue.message


def test_validate_flags_media_mastodon_does_not_take() -> None:
    adapter = offline_adapter(MastodonAdapter)
    issues = adapter.validate(make_post(media=("slides.pdf",)), make_account())
    assert [i.field for i in issues] == ["media"]


def test_instance_limits_tolerate_a_partial_document() -> None:
    assert InstanceLimits.from_instance({"configuration": {"statuses": {}}}) == InstanceLimits()
    assert InstanceLimits.from_instance("not a document") == InstanceLimits()


def test_the_plugin_registers_the_adapter() -> None:
    assert registered_adapters(register_platforms) == [MastodonAdapter]
    assert MastodonAdapter.platform == "mastodon"


def test_every_option_the_adapter_reads_is_documented() -> None:
    options = options_read_by(smm_mastodon)
    assert options
    assert undocumented(options, network_page("mastodon")) == []


def test_config_check_names_a_missing_server_token_or_a_mistyped_option() -> None:
    from smm_mastodon.adapter import ACCOUNT_OPTIONS

    # Every option the adapter reads is one config check accepts, and no other.
    assert set(ACCOUNT_OPTIONS) == options_read_by(smm_mastodon)
    assert MastodonAdapter.check_account(make_account(visibility="public")) == []
    bare = Account(name="toots", platform="mastodon", timezone="UTC", options={})
    assert [i.field for i in MastodonAdapter.check_account(bare)] == [
        "options.instance",
        "credentials.access_token",
    ]
    typo = account_with_secrets(
        "toots", "mastodon", {"instanse": INSTANCE}, secrets={"access_token": TOKEN}
    )
    issues = {i.field: i for i in MastodonAdapter.check_account(typo)}
    assert set(issues) == {"options.instanse", "options.instance"}
    assert issues["options.instanse"].hint == "did you mean 'instance'?"
    assert TOKEN not in repr(issues)


def test_smm_config_check_fails_on_an_account_without_its_server(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from scheduler.cli import cli

    config = tmp_path / "config.toml"
    config.write_text(
        '[accounts.toots]\nplatform = "mastodon"\ntimezone = "UTC"\n'
        'slots.weekdays = ["09:00"]\noptions.instanse = "https://mastodon.social"\n'
        'credentials.access_token = { env = "SMM_TEST_UNSET_TOKEN" }\n',
        encoding="utf-8",
    )
    result = CliRunner().invoke(cli, ["--config", str(config), "config", "check"])
    assert result.exit_code == 1
    assert "line 5, field 'accounts.toots.options.instanse': unknown option" in result.output
    assert "field 'accounts.toots.options.instance': missing" in result.output


# --------------------------------------------------------------------------- the contract


def _contract_handler(scenario: str) -> Handler:
    failures: dict[str, httpx.Response] = {
        "rate_limited": httpx.Response(
            429,
            headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "2030-01-07T09:05:00Z"},
            json={"error": "Too many requests"},
        ),
        "server_error": httpx.Response(503, json={"error": "Service Unavailable"}),
        "auth_expired": httpx.Response(401, json={"error": "The access token is invalid"}),
        "rejected": httpx.Response(
            422, json={"error": "Validation failed: Text character limit of 500 exceeded"}
        ),
    }
    recorded_status = cassette("test_status")[0]

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v2/instance":
            return INSTANCE_INFO.response()
        if scenario in failures:
            return failures[scenario]
        return recorded_status.response()  # the create, and the status read for metrics

    return handler


class TestMastodonContract(AdapterContract):
    adapter_class = MastodonAdapter
    lost_answer = OutcomeUnknown
    secret_values = (TOKEN,)

    def make_account(self) -> Account:
        return make_account()

    def make_handler(self, scenario: str) -> Handler:
        return _contract_handler(scenario)


def _described(upload: Interaction, description: str, x: float, y: float) -> Interaction:
    """The recorded upload answer as Mastodon gives it for a file sent with a description
    and a focus (the MediaAttachment entity of docs.joinmastodon.org: ``description`` and
    ``meta.focus`` {"x", "y"})."""
    body = upload.json()
    body["description"] = description
    body["meta"]["focus"] = {"x": x, "y": y}
    return replace(upload, body=json.dumps(body).encode())


def test_alt_text_and_focus_are_sent_with_the_upload(tmp_path: Path) -> None:
    recorded = cassette("test_status_delete_media")
    upload, create = recorded[1], recorded[2]
    player = Player(INSTANCE_INFO, _described(upload, "A red bike", 0.2, -0.1), create)
    photo = write(tmp_path, "photo.jpg")
    meta = (MediaMeta("A red bike", (0.2, -0.1)),)
    published = publish(player, make_post("Status with media", media=(photo,), media_meta=meta))
    assert published.remote_id == "117020606035908211"
    (sent,) = player.sent("POST", "/api/v2/media")
    assert b'name="description"\r\n\r\nA red bike\r\n' in sent.content
    assert b'name="focus"\r\n\r\n0.2,-0.1\r\n' in sent.content
    (sent_create,) = player.sent("POST", "/api/v1/statuses")
    assert form(sent_create) == create.recorded_form()  # the status itself is unchanged


def test_an_upload_without_alt_text_sends_no_description(tmp_path: Path) -> None:
    recorded = cassette("test_status_delete_media")
    player = Player(INSTANCE_INFO, recorded[1], recorded[2])
    publish(player, make_post("Status with media", media=(write(tmp_path, "photo.jpg"),)))
    (sent,) = player.sent("POST", "/api/v2/media")
    assert b'name="description"' not in sent.content
    assert b'name="focus"' not in sent.content


def test_the_instances_description_limit_bounds_alt_text() -> None:
    adapter = offline_adapter(MastodonAdapter)
    long_alt = (MediaMeta("x" * 2000),)
    post = make_post(media=("photo.jpg",), media_meta=long_alt)
    (issue,) = adapter.media_meta_issues(post, make_account())
    assert "over mastodon's limit of 1500" in issue.message  # the default, before reading
    player = Player(INSTANCE_INFO)

    async def call(a: MastodonAdapter) -> list[Any]:
        await a.limits.get(INSTANCE)  # the recorded instance says description_limit 10000
        return a.media_meta_issues(post, make_account())

    assert run(player, call) == []


def test_per_post_options_are_sent_as_status_fields() -> None:
    # POST /api/v1/statuses form fields (docs.joinmastodon.org/methods/statuses/#create):
    # spoiler_text, sensitive, visibility, language, in_reply_to_id, poll[options][],
    # poll[expires_in], poll[multiple]; the recorded create carries status and visibility.
    recorded = cassette("test_status_post[None-public]")
    player = Player(INSTANCE_INFO, *recorded)
    options = PostOptions(
        content_warning="Spoilers",
        sensitive=True,
        visibility="followers",
        language="lv",
        reply_to="117020583223442465",
        poll=Poll(("Yes", "No"), timedelta(hours=6), multiple=True),
    )
    publish(player, make_post(options=options), visibility="public")
    (create,) = player.sent("POST", "/api/v1/statuses")
    assert form(create) == {
        "status": ["Toot!"],
        "visibility": ["private"],  # the post's own visibility wins over the account's
        "spoiler_text": ["Spoilers"],
        "sensitive": ["true"],
        "language": ["lv"],
        "in_reply_to_id": ["117020583223442465"],
        "poll[options][]": ["Yes", "No"],
        "poll[expires_in]": ["21600"],
        "poll[multiple]": ["true"],
    }


def test_poll_limits_come_from_the_recorded_instance() -> None:
    limits = InstanceLimits.from_instance(INSTANCE_INFO.json())
    assert (limits.poll_max_options, limits.poll_max_characters) == (4, 50)
    assert (limits.poll_min_expiration, limits.poll_max_expiration) == (300, 2629746)


def test_an_exhausted_create_window_is_not_forgotten_after_a_read() -> None:
    # Mastodon's headers (X-RateLimit-*, reset as ISO 8601) on a create that used up the
    # status window, then on a metrics read with plenty left in the general window.
    spent = {
        "X-RateLimit-Limit": "300",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": "2026-08-01T15:00:00.000Z",
    }
    plenty = {**spent, "X-RateLimit-Remaining": "299"}

    def respond(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(200, headers=spent, json=status_json())
        return httpx.Response(200, headers=plenty, json=status_json())

    async def call(adapter: MastodonAdapter) -> Any:
        await adapter.publish(make_post(), make_account(), KEY)
        await adapter.fetch_metrics([make_post(remote_id="111")], make_account())
        return adapter.rate_limit_status["toots"], adapter.rate_limit_windows["toots"]

    status, windows = run(answer_create(respond), call)
    assert status.remaining == 0  # the create's window, still
    assert windows["statuses"].remaining == 0
    assert windows["requests"].remaining == 299


def test_mastodon_declares_its_windows_and_what_a_publish_costs() -> None:
    adapter = offline_adapter(MastodonAdapter)
    windows = {w.name: (w.requests, w.per) for w in adapter.capabilities.rate_limit.windows}
    assert windows == {
        "requests": (300, timedelta(minutes=5)),
        "statuses": (300, timedelta(hours=3)),
        "media": (30, timedelta(minutes=30)),
    }
    post = make_post(media=("a.png", "b.png"))
    assert adapter.publish_cost(post, make_account()) == {"requests": 5, "statuses": 1, "media": 2}


class ThreadServer:
    """A Mastodon that keeps each Idempotency-Key (as the real one does for an hour: a
    repeated key answers the status it created) and refuses the creation of the statuses
    whose texts are in ``fail_once`` the first time, with a 503."""

    def __init__(self, *fail_once: str) -> None:
        self.fail_once = set(fail_once)
        self.by_key: dict[str, dict[str, Any]] = {}
        self.created: list[dict[str, list[str]]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v2/instance":
            return INSTANCE_INFO.response()
        key = request.headers["idempotency-key"]
        if key in self.by_key:
            return httpx.Response(200, json=self.by_key[key])
        fields = form(request)
        if fields["status"][0] in self.fail_once:
            self.fail_once.discard(fields["status"][0])
            return httpx.Response(503, json={"error": "Service Unavailable"})
        status = status_json(str(200 + len(self.created)))
        self.created.append(fields)
        self.by_key[key] = status
        return httpx.Response(200, json=status)


THREAD = PostOptions(thread=("Part two", "Part three"), visibility="unlisted")


def test_a_thread_is_a_reply_chain_with_a_key_per_part() -> None:
    server = ThreadServer()
    published = publish(server, make_post("Part one", options=THREAD))
    assert published.remote_id == "200"  # metrics attach to the first part
    assert server.created == [
        {"status": ["Part one"], "visibility": ["unlisted"]},
        {"status": ["Part two"], "in_reply_to_id": ["200"], "visibility": ["unlisted"]},
        {"status": ["Part three"], "in_reply_to_id": ["201"], "visibility": ["unlisted"]},
    ]
    assert list(server.by_key) == [KEY, f"{KEY}-part2", f"{KEY}-part3"]


def test_a_thread_failing_at_part_2_of_3_resumes_without_reposting() -> None:
    server = ThreadServer("Part two")
    with pytest.raises(Transient, match="thread part 2 of 3: Service Unavailable"):
        publish(server, make_post("Part one", options=THREAD))
    assert [f["status"] for f in server.created] == [["Part one"]]
    # The daemon's retry sends the same post with the same key: the first part is answered
    # from Mastodon's memory of the key, the chain goes on from part 2.
    published = publish(server, make_post("Part one", options=THREAD))
    assert published.remote_id == "200"
    assert [f["status"] for f in server.created] == [["Part one"], ["Part two"], ["Part three"]]
    assert server.created[1]["in_reply_to_id"] == ["200"]
    assert server.created[2]["in_reply_to_id"] == ["201"]


def test_a_threads_parts_carry_their_own_media_and_alt_text(tmp_path: Path) -> None:
    # POST /api/v2/media (description = alt text, focus "x,y"), then the part's status with
    # media_ids[] (docs.joinmastodon.org/methods/media, /methods/statuses).
    server = ThreadServer()
    uploads: list[bytes] = []

    def respond(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v2/media":
            uploads.append(request.read())
            media_id = f"9{len(uploads)}"
            url = f"https://files.mastodon.example/{media_id}.jpg"
            return httpx.Response(200, json={"id": media_id, "type": "image", "url": url})
        return server(request)

    part = ThreadPart("Part two", (write(tmp_path, "cup.jpg"),), (MediaMeta("A cup", (0.5, 0)),))
    options = PostOptions(thread=(part, ThreadPart("Part three")), sensitive=True)
    publish(respond, make_post("Part one", options=options))
    (upload,) = uploads  # the part's one file; the first part and part three have none
    assert b'name="description"\r\n\r\nA cup\r\n' in upload
    assert b'name="focus"\r\n\r\n0.5,0\r\n' in upload
    _, two, three = server.created
    assert (two["media_ids[]"], two["sensitive"]) == (["91"], ["true"])
    assert "media_ids[]" not in three


def test_a_thread_costs_a_status_per_part() -> None:
    adapter = offline_adapter(MastodonAdapter)
    cost = adapter.publish_cost(make_post(options=THREAD), make_account())
    assert cost == {"requests": 3, "statuses": 3, "media": 0}
