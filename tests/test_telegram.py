"""The Telegram adapter: UTF-16 counting, request shapes, error classification, migration."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from adapter_support import adapter_from_entry_point, png
from smm_telegram import TelegramAdapter
from smm_telegram.text import utf16_length, visible_text
from structlog.testing import capture_logs

from scheduler.adapter import (
    Account,
    AuthExpired,
    OutcomeUnknown,
    OutgoingPost,
    Poll,
    PostOptions,
    Published,
    RateLimited,
    Rejected,
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
TOKEN = "123456:ABC-DEF1234ghIkl-zyx57W2v1u123ew11"
CHANNEL = {"id": -1001234567890, "title": "SMM Test", "username": "smmtest", "type": "channel"}


def make_account(**options: Any) -> Account:
    return account_with_secrets(
        "tg", "telegram", {"chat_id": "@smmtest", **options}, secrets={"bot_token": TOKEN}
    )


def make_post(**changes: Any) -> OutgoingPost:
    post = OutgoingPost(key="p1", account="tg", content_type="laugh", text="Hello, channel")
    return replace(post, **changes)


def message(message_id: int = 42, chat: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "message_id": message_id,
        "sender_chat": chat or CHANNEL,
        "chat": chat or CHANNEL,
        "date": 1767772800,
        "text": "Hello, channel",
    }


def ok(result: Any) -> httpx.Response:
    return httpx.Response(200, json={"ok": True, "result": result})


def api_error(code: int, description: str, **parameters: Any) -> httpx.Response:
    body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if parameters:
        body["parameters"] = parameters
    return httpx.Response(code, json=body)


def run(handler: Handler, call: Callable[[TelegramAdapter], Awaitable[T]]) -> T:
    return run_adapter(TelegramAdapter, handler, call)


def publish(
    handler: Handler, post: OutgoingPost | None = None, account: Account | None = None
) -> Published:
    return run(
        handler, lambda a: a.publish(post or make_post(), account or make_account(), "key-1")
    )


def method_of(request: httpx.Request) -> str:
    return request.url.path.rsplit("/", 1)[-1]


# --------------------------------------------------------------------------- contract


class TestTelegramContract(AdapterContract):
    adapter_class = TelegramAdapter
    lost_answer = OutcomeUnknown
    secret_values = (TOKEN,)

    def make_account(self) -> Account:
        return make_account()

    def make_handler(self, scenario: str) -> Handler:
        def handler(request: httpx.Request) -> httpx.Response:
            if scenario == "ok":
                return ok(message())
            if scenario == "rate_limited":
                return api_error(429, "Too Many Requests: retry after 35", retry_after=35)
            if scenario == "server_error":
                return api_error(500, "Internal Server Error")
            if scenario == "auth_expired":
                return api_error(401, "Unauthorized")
            return api_error(400, "Bad Request: message is too long")

        return handler


# --------------------------------------------------------------------------- counting


@pytest.mark.parametrize(
    ("text", "units"),
    [
        ("hello", 5),
        ("привет", 6),  # Cyrillic: one unit each
        ("漢字かな", 4),  # CJK in the Basic Multilingual Plane: one unit each
        ("𠀀", 2),  # CJK Extension B lies outside the BMP: a surrogate pair
        ("😀", 2),
        ("👍🏽", 4),  # emoji plus skin-tone modifier: two surrogate pairs
        ("👨‍👩‍👧", 8),  # three emoji joined by two zero-width joiners
        ("🇺🇦", 4),  # a flag is two regional indicators
        ("e\u0301", 2),  # a combining accent is its own code unit
        ("❤️", 2),  # BMP heart plus variation selector
    ],
)
def test_utf16_length_counts_code_units(text: str, units: int) -> None:
    assert utf16_length(text) == units


def test_html_markup_does_not_count_towards_the_length() -> None:
    text = '<b>Bold</b> &amp; <a href="https://example.com/very/long">link</a>'
    assert visible_text(text, "HTML") == "Bold & link"
    assert visible_text(text, "MarkdownV2") == text


def test_a_message_of_exactly_4096_units_is_valid_and_4097_is_not() -> None:
    adapter = offline_adapter(TelegramAdapter)
    assert adapter.validate(make_post(text="a" * 4096), make_account()) == []
    issues = adapter.validate(make_post(text="a" * 4097), make_account())
    assert [i.field for i in issues] == ["text"]
    assert "4097" in issues[0].message


def test_emoji_count_twice_against_the_limit() -> None:
    adapter = offline_adapter(TelegramAdapter)
    assert adapter.validate(make_post(text="😀" * 2048), make_account()) == []
    assert adapter.validate(make_post(text="😀" * 2049), make_account())


def test_a_caption_is_limited_to_1024_units(tmp_path: Path) -> None:
    adapter = offline_adapter(TelegramAdapter)
    photo = png(tmp_path, "a.png")
    assert adapter.validate(make_post(text="a" * 1024, media=(photo,)), make_account()) == []
    issues = adapter.validate(make_post(text="a" * 1025, media=(photo,)), make_account())
    assert [i.field for i in issues] == ["text"]
    assert "caption" in issues[0].message


def test_html_parse_mode_measures_the_visible_text() -> None:
    adapter = offline_adapter(TelegramAdapter)
    text = "<b>" + "a" * 4096 + "</b>"
    assert adapter.validate(make_post(text=text), make_account(parse_mode="HTML")) == []
    assert adapter.validate(make_post(text=text), make_account())


def test_validate_flags_missing_files_and_non_photos(tmp_path: Path) -> None:
    adapter = offline_adapter(TelegramAdapter)
    (tmp_path / "clip.webm").write_bytes(b"\0")
    media = (str(tmp_path / "missing.png"), str(tmp_path / "clip.webm"))
    issues = adapter.validate(make_post(media=media), make_account())
    assert [i.field for i in issues] == ["media", "media"]
    assert "no such file" in issues[0].message


def test_validate_flags_an_empty_message() -> None:
    adapter = offline_adapter(TelegramAdapter)
    assert [i.field for i in adapter.validate(make_post(text="  "), make_account())] == ["text"]


# --------------------------------------------------------------------------- requests


def test_text_goes_out_as_send_message_with_formatting_options() -> None:
    recorder = RecordingHandler(lambda r: ok(message()))
    account = make_account(parse_mode="HTML", disable_web_page_preview=True)
    publish(recorder, make_post(link="https://example.com/a", tags=("smm",)), account)
    (request,) = recorder.requests
    assert request.url == f"https://api.telegram.org/bot{TOKEN}/sendMessage"
    assert json.loads(request.content) == {
        "chat_id": "@smmtest",
        "text": "Hello, channel\n\nhttps://example.com/a\n\n#smm",
        "parse_mode": "HTML",
        "link_preview_options": {"is_disabled": True},
    }


def poll_post(
    text: str = "Which day?", *options: str, seconds: int = 600, **kw: Any
) -> OutgoingPost:
    poll = Poll(options or ("Monday", "Friday"), timedelta(seconds=seconds), **kw)
    return make_post(text=text, options=PostOptions(poll=poll))


def poll_message() -> dict[str, Any]:
    """sendPoll's answer: the Message with its Poll, as documented at
    https://core.telegram.org/bots/api#sendpoll and #poll (no recording: bots' polls in a
    test channel were not captured)."""
    return {
        **{k: v for k, v in message(43).items() if k != "text"},
        "poll": {
            "id": "5440066411370348545",
            "question": "Which day?",
            "options": [
                {"text": "Monday", "voter_count": 0},
                {"text": "Friday", "voter_count": 0},
            ],
            "total_voter_count": 0,
            "is_closed": False,
            "is_anonymous": True,
            "type": "regular",
            "allows_multiple_answers": True,
            "open_period": 600,
        },
    }


def test_a_post_with_a_poll_goes_out_as_send_poll_its_text_the_question() -> None:
    recorder = RecordingHandler(lambda r: ok(poll_message()))
    published = publish(recorder, poll_post(multiple=True), make_account(parse_mode="HTML"))
    (request,) = recorder.requests
    assert method_of(request) == "sendPoll"
    assert json.loads(request.content) == {
        "chat_id": "@smmtest",
        "question": "Which day?",
        "options": [{"text": "Monday"}, {"text": "Friday"}],
        "is_anonymous": True,
        "allows_multiple_answers": True,
        "open_period": 600,
    }
    assert published == Published(remote_id="43", url="https://t.me/smmtest/43")


@pytest.mark.parametrize(
    ("post", "message"),
    [
        (poll_post("q" * 301), "301 characters, over Telegram's poll question limit of 300"),
        (poll_post(" "), "a Telegram poll needs its question"),
        (poll_post("Q", "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"), "11 options"),
        (poll_post("Q", "a", "x" * 101), "option 2 is 101 characters"),
        (poll_post(seconds=601), "closes a poll at most 10 minutes"),
        (poll_post(seconds=4), "closes a poll at most 10 minutes"),
    ],
)
def test_validate_holds_a_poll_to_telegrams_limits(post: OutgoingPost, message: str) -> None:
    adapter = offline_adapter(TelegramAdapter)
    issues = adapter.validate(post, make_account())
    assert [i.field for i in issues] == ["poll"]
    assert message in issues[0].message


def test_a_poll_within_the_limits_is_valid_and_carries_no_images() -> None:
    adapter = offline_adapter(TelegramAdapter)
    assert adapter.validate(poll_post("q" * 300, "a", "x" * 100, seconds=5), make_account()) == []
    with_image = replace(poll_post(), media=("https://example.com/a.png",))
    issues = adapter.validate(with_image, make_account())
    assert [(i.field, i.message) for i in issues] == [
        ("poll", "a Telegram poll carries no images: post them separately")
    ]


def test_api_base_option_replaces_the_bot_api_host() -> None:
    recorder = RecordingHandler(lambda r: ok(message()))
    publish(recorder, account=make_account(api_base="http://127.0.0.1:8081/"))
    assert str(recorder.requests[0].url).startswith(f"http://127.0.0.1:8081/bot{TOKEN}/")


def test_one_image_url_goes_out_as_send_photo_with_caption() -> None:
    recorder = RecordingHandler(lambda r: ok(message()))
    publish(recorder, make_post(media=("https://cdn.example.com/cat.jpg",)))
    (request,) = recorder.requests
    assert method_of(request) == "sendPhoto"
    assert json.loads(request.content) == {
        "chat_id": "@smmtest",
        "photo": "https://cdn.example.com/cat.jpg",
        "caption": "Hello, channel",
    }


def test_one_local_image_is_uploaded_as_multipart(tmp_path: Path) -> None:
    recorder = RecordingHandler(lambda r: ok(message()))
    publish(recorder, make_post(media=(png(tmp_path, "cat.png"),)))
    (request,) = recorder.requests
    assert method_of(request) == "sendPhoto"
    assert request.headers["content-type"].startswith("multipart/form-data")
    body = request.content
    assert b'name="photo"; filename="cat.png"' in body
    assert b"Content-Type: image/png" in body
    assert b'name="caption"\r\n\r\nHello, channel' in body


def test_several_images_go_out_as_a_media_group_captioned_on_the_first(tmp_path: Path) -> None:
    recorder = RecordingHandler(lambda r: ok([message(42), message(43)]))
    media = ("https://cdn.example.com/1.jpg", png(tmp_path, "2.png"))
    published = publish(recorder, make_post(media=media))
    (request,) = recorder.requests
    assert method_of(request) == "sendMediaGroup"
    form = request.content.split(b'name="media"\r\n\r\n', 1)[1].split(b"\r\n--", 1)[0]
    assert json.loads(form) == [
        {"type": "photo", "media": "https://cdn.example.com/1.jpg", "caption": "Hello, channel"},
        {"type": "photo", "media": "attach://photo1"},
    ]
    assert b'name="photo1"; filename="2.png"' in request.content
    assert published.remote_id == "42"


#: The start of an MP4 file (an ftyp box), then filler.
MP4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes(range(256)) * 8


def test_one_local_video_is_streamed_to_send_video(tmp_path: Path) -> None:
    # sendVideo (core.telegram.org/bots/api#sendvideo): chat_id, video (an upload as
    # multipart/form-data or a URL), caption, supports_streaming; answers the Message.
    (tmp_path / "clip.mp4").write_bytes(MP4)
    recorder = RecordingHandler(lambda r: ok({**message(), "video": {"file_id": "BAAC"}}))
    with capture_logs() as logs:
        publish(recorder, make_post(media=(str(tmp_path / "clip.mp4"),)))
    (request,) = recorder.requests
    assert method_of(request) == "sendVideo"
    body = request.content
    assert b'name="video"; filename="clip.mp4"' in body
    assert b"Content-Type: video/mp4" in body
    assert MP4 in body
    assert b'name="supports_streaming"\r\n\r\ntrue' in body
    assert b'name="caption"\r\n\r\nHello, channel' in body
    upload = next(e for e in logs if e["event"] == "telegram_video_upload")
    assert (upload["file"], upload["bytes"]) == ("clip.mp4", len(MP4))
    assert any(e["event"] == "telegram_video_sent" for e in logs)


def test_a_video_url_goes_out_as_send_video() -> None:
    recorder = RecordingHandler(lambda r: ok(message()))
    publish(recorder, make_post(media=("https://cdn.example.com/clip.mp4",)))
    (request,) = recorder.requests
    assert json.loads(request.content) == {
        "chat_id": "@smmtest",
        "video": "https://cdn.example.com/clip.mp4",
        "caption": "Hello, channel",
        "supports_streaming": True,
    }


def test_photos_and_videos_share_a_media_group(tmp_path: Path) -> None:
    (tmp_path / "clip.mp4").write_bytes(MP4)
    recorder = RecordingHandler(lambda r: ok([message(42), message(43)]))
    publish(recorder, make_post(media=(png(tmp_path, "1.png"), str(tmp_path / "clip.mp4"))))
    (request,) = recorder.requests
    form = request.content.split(b'name="media"\r\n\r\n', 1)[1].split(b"\r\n--", 1)[0]
    assert json.loads(form) == [
        {"type": "photo", "media": "attach://photo0", "caption": "Hello, channel"},
        {"type": "video", "media": "attach://video1", "supports_streaming": True},
    ]
    assert b'name="video1"; filename="clip.mp4"' in request.content


def test_video_limits_are_checked_at_validation(tmp_path: Path) -> None:
    adapter = offline_adapter(TelegramAdapter)
    big = tmp_path / "big.mp4"
    with big.open("wb") as f:
        f.write(MP4)
        f.truncate(50 * 1024 * 1024 + 1)  # sparse: one byte over what a bot may upload
    (issue,) = adapter.validate(make_post(media=(str(big),)), make_account())
    assert "larger than the 50 MB a bot may upload" in issue.message
    (tmp_path / "clip.mov").write_bytes(MP4)
    (issue,) = adapter.validate(make_post(media=(str(tmp_path / "clip.mov"),)), make_account())
    assert "or an MP4 video" in issue.message
    (tmp_path / "ok.mp4").write_bytes(MP4)
    assert adapter.validate(make_post(media=(str(tmp_path / "ok.mp4"),)), make_account()) == []


def test_a_missing_media_file_is_rejected_before_any_request(tmp_path: Path) -> None:
    recorder = RecordingHandler(lambda r: ok(message()))
    with pytest.raises(Rejected, match="cannot read media file"):
        publish(recorder, make_post(media=(str(tmp_path / "gone.png"),)))
    assert recorder.requests == []


def test_a_missing_chat_id_pauses_the_account() -> None:
    account = replace(make_account(), options={})
    with pytest.raises(AuthExpired, match="chat_id"):
        publish(lambda r: ok(message()), account=account)


# --------------------------------------------------------------------------- published


def test_published_links_to_the_public_channel_post() -> None:
    published = publish(lambda r: ok(message(42)))
    assert published == Published(remote_id="42", url="https://t.me/smmtest/42")


def test_a_private_channel_gets_a_members_only_link() -> None:
    private = {"id": -1009876543210, "title": "Private", "type": "channel"}
    published = publish(
        lambda r: ok(message(7, private)), account=make_account(chat_id="-1009876543210")
    )
    assert published.url == "https://t.me/c/9876543210/7"


def test_a_private_group_gets_no_link() -> None:
    group = {"id": -4012345678, "title": "Group", "type": "group"}
    account = make_account(chat_id="-4012345678")
    published = publish(lambda r: ok(message(7, group)), account=account)
    assert published.url is None


def test_an_ok_answer_without_a_message_id_has_an_unknown_outcome() -> None:
    with pytest.raises(OutcomeUnknown):
        publish(lambda r: ok({"date": 1}))


# --------------------------------------------------------------------------- errors


def test_429_is_rate_limited_until_retry_after() -> None:
    before = datetime.now(UTC)
    with pytest.raises(RateLimited) as caught:
        publish(lambda r: api_error(429, "Too Many Requests: retry after 35", retry_after=35))
    assert caught.value.message == "Too Many Requests: retry after 35"
    assert caught.value.retry_at is not None
    assert before + timedelta(seconds=35) <= caught.value.retry_at
    assert caught.value.retry_at <= datetime.now(UTC) + timedelta(seconds=35)


@pytest.mark.parametrize(
    ("code", "description"),
    [
        (401, "Unauthorized"),
        (403, "Forbidden: bot was kicked from the channel chat"),
        (403, "Forbidden: bot is not a member of the channel chat"),
        (400, "Bad Request: not enough rights to send text messages to the chat"),
        (400, "Bad Request: need administrator rights in the channel chat"),
    ],
)
def test_token_and_membership_problems_pause_the_account(code: int, description: str) -> None:
    with pytest.raises(AuthExpired) as caught:
        publish(lambda r: api_error(code, description))
    assert caught.value.message == description
    assert caught.value.http_status == code


def test_404_means_telegram_does_not_know_the_token() -> None:
    with pytest.raises(AuthExpired, match="does not recognise the bot token"):
        publish(lambda r: api_error(404, "Not Found"))


@pytest.mark.parametrize(
    "description",
    [
        "Bad Request: message is too long",
        "Bad Request: chat not found",
        'Bad Request: can\'t parse entities: Unsupported start tag "foo" at byte offset 0',
        "Bad Request: wrong file identifier/HTTP URL specified",
    ],
)
def test_bad_requests_are_rejected_with_telegrams_description(description: str) -> None:
    with pytest.raises(Rejected) as caught:
        publish(lambda r: api_error(400, description))
    assert caught.value.message == description


@pytest.mark.parametrize("status", [500, 502, 503])
def test_a_server_error_on_a_send_has_an_unknown_outcome(status: int) -> None:
    # The Bot API takes no idempotency key: the message may have gone out before the 5xx.
    with pytest.raises(OutcomeUnknown):
        publish(lambda r: httpx.Response(status, text="<html>Bad Gateway</html>"))


def test_a_gateway_timeout_has_an_unknown_outcome() -> None:
    with pytest.raises(OutcomeUnknown):
        publish(lambda r: httpx.Response(504, text="<html>Gateway Time-out</html>"))


def test_a_read_timeout_on_send_has_an_unknown_outcome() -> None:
    with pytest.raises(OutcomeUnknown) as caught:
        publish(fault_handler("read_timeout"))
    assert TOKEN not in str(caught.value)
    assert "<redacted>" in caught.value.message
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


# --------------------------------------------------------------------------- migration


def test_a_migrated_group_is_retried_once_on_the_new_chat_and_logged() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if json.loads(request.content)["chat_id"] == "-1001234567890":
            return ok(message(9, {"id": -1001234567890, "title": "G", "type": "supergroup"}))
        return api_error(
            400,
            "Bad Request: group chat was upgraded to a supergroup chat",
            migrate_to_chat_id=-1001234567890,
        )

    recorder = RecordingHandler(handler)
    account = make_account(chat_id="-123456789")

    async def twice(adapter: TelegramAdapter) -> list[Published]:
        first = await adapter.publish(make_post(), account, "k1")
        second = await adapter.publish(make_post(key="p2"), account, "k2")
        return [first, second]

    with capture_logs() as logs:
        results = run(recorder, twice)

    assert [r.remote_id for r in results] == ["9", "9"]
    sent_to = [json.loads(r.content)["chat_id"] for r in recorder.requests]
    # The second post goes straight to the new chat: the adapter remembers the migration.
    assert sent_to == ["-123456789", "-1001234567890", "-1001234567890"]
    (event,) = [e for e in logs if e["event"] == "telegram_chat_migrated"]
    assert event["old_chat_id"] == "-123456789"
    assert event["new_chat_id"] == "-1001234567890"
    assert event["account"] == "tg"


def test_a_second_migration_in_a_row_is_rejected() -> None:
    recorder = RecordingHandler(
        lambda r: api_error(400, "Bad Request: group chat was upgraded", migrate_to_chat_id=-100555)
    )
    with pytest.raises(Rejected, match="upgraded"):
        publish(recorder, account=make_account(chat_id="-1"))
    assert len(recorder.requests) == 2


# --------------------------------------------------------------------------- after publishing


def test_no_metrics_are_declared_or_fetched() -> None:
    recorder = RecordingHandler(lambda r: ok(message()))
    post = make_post(remote_id="42")
    assert run(recorder, lambda a: a.fetch_metrics([post], make_account())) == {}
    assert TelegramAdapter.capabilities.metrics == frozenset()
    assert recorder.requests == []


def test_lookup_cannot_tell_and_says_so() -> None:
    with pytest.raises(OutcomeUnknown, match="cannot look posts up"):
        run(lambda r: ok(message()), lambda a: a.lookup(make_post(), make_account()))


def test_the_entry_point_registers_the_telegram_platform(monkeypatch: pytest.MonkeyPatch) -> None:
    assert adapter_from_entry_point(monkeypatch, "telegram") is TelegramAdapter
