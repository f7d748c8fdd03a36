"""Publishing to a Telegram channel or group through the Bot API.

One post is one Bot API call: ``sendMessage`` for text, ``sendPhoto`` for one image,
``sendVideo`` for one video, ``sendMediaGroup`` for 2-10 images and videos (the caption rides
on the first), ``sendPoll`` for a post with a poll (its text the question). Media are sent by
URL when they are URLs, uploaded as multipart parts when they are local files (a video
streamed from disk, never held whole).
See docs/plugins/networks/telegram.md.
"""

from __future__ import annotations

import contextlib
import json
import mimetypes
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

import httpx
import structlog

from scheduler import media
from scheduler.account_settings import settings_issues
from scheduler.adapter import (
    Account,
    Adapter,
    AuthExpired,
    Capabilities,
    Issue,
    OutcomeUnknown,
    OutgoingPost,
    Poll,
    Published,
    RateLimitPolicy,
)
from scheduler.timeutil import utcnow

from .errors import ChatMigrated, classify, transport_failure
from .text import CAPTION_LIMIT, MESSAGE_LIMIT, utf16_length, visible_text

__all__ = ["TelegramAdapter"]

log = structlog.get_logger(__name__)

DEFAULT_API_BASE = "https://api.telegram.org"
MAX_MEDIA = 10
#: Photos uploaded as files may weigh up to 10 MB (by URL Telegram fetches up to 5 MB).
MAX_PHOTO_BYTES = 10 * 1024 * 1024
PHOTO_TYPES = ("image/jpeg", "image/png", "image/webp")
#: sendVideo: "Telegram clients support MPEG4 videos (other formats may be sent as Document)";
#: files uploaded by a bot may weigh up to 50 MB, by URL Telegram fetches up to 20 MB.
VIDEO_TYPES = ("video/mp4",)
MAX_VIDEO_BYTES = 50 * 1024 * 1024
#: sendPoll's limits (Bot API): the question, the options, each option's text, and the
#: open_period in seconds (a bot's poll closes by itself at most 10 minutes after it is sent).
POLL_QUESTION_LIMIT = 300
POLL_OPTIONS = (2, 10)
POLL_OPTION_LIMIT = 100
POLL_PERIOD = (5, 600)


def _is_url(media: str) -> bool:
    return media.startswith(("https://", "http://"))


@dataclass
class _Call:
    """One Bot API request: method, plain fields, and files to upload (multipart)."""

    method: str
    fields: dict[str, Any]
    #: Parts to upload: bytes read whole (photos) or an open file streamed (videos).
    files: dict[str, tuple[str, bytes | IO[bytes], str]] = field(default_factory=dict)

    def close(self) -> None:
        """Close the files opened for streaming."""
        for _name, content, _kind in self.files.values():
            if not isinstance(content, bytes):
                with contextlib.suppress(OSError):
                    content.close()


#: The account options this plugin reads (docs/plugins/networks/telegram.md).
ACCOUNT_OPTIONS = ("chat_id", "parse_mode", "disable_web_page_preview", "api_base")


class TelegramAdapter(Adapter):
    """Telegram channels and groups, posting as a bot that is an administrator there.

    Options: ``chat_id`` (``"@channel"`` or ``-100...``), ``parse_mode`` (``HTML``,
    ``MarkdownV2``...), ``disable_web_page_preview``, ``api_base``. Credential: ``bot_token``.
    """

    platform = "telegram"
    capabilities = Capabilities(
        text_limit=MESSAGE_LIMIT,
        text_counting="utf16",
        max_media=MAX_MEDIA,
        media_types=PHOTO_TYPES + VIDEO_TYPES,
        # The largest upload, a video's (a photo's 10 MB is checked by validate).
        max_media_bytes=MAX_VIDEO_BYTES,
        # The Bot API has no idempotency key: a resend after a timeout could post twice.
        idempotent=False,
        # Bots cannot read view counts or reactions of channel posts.
        metrics=frozenset(),
        has_reach=False,
        # Telegram asks bots to stay under 20 messages a minute in one group or channel.
        rate_limit=RateLimitPolicy(requests=20, per=timedelta(minutes=1), concurrency=1),
        # A poll is the post itself (sendPoll, one call): nothing can go out twice.
        post_options=frozenset({"poll"}),
    )

    def __init__(self, client: httpx.AsyncClient) -> None:
        super().__init__(client)
        #: account name -> chat id Telegram told us to use instead of the configured one.
        self.migrated_chats: dict[str, str] = {}

    # -- offline checks -------------------------------------------------------------------

    @classmethod
    def check_account(cls, account: Account) -> list[Issue]:
        """The chat and a reference to the bot token are required;
        an option this plugin does not read is a typo."""
        return settings_issues(
            account,
            known=ACCOUNT_OPTIONS,
            required=[("chat_id", "the channel or chat to post to", '"@yourchannel"')],
            credentials=[("bot_token", "the bot's token")],
            urls=["api_base"],
        )

    def text_length(self, text: str) -> int:
        """UTF-16 code units, Telegram's unit for message and caption limits."""
        return utf16_length(text)

    def validate(self, post: OutgoingPost, account: Account) -> list[Issue]:
        """Length (message or caption limit, after HTML parsing), media count, type and size;
        a post with a poll: the poll's limits instead."""
        if post.options.poll is not None:
            return _poll_issues(self.compose_text(post), post)
        issues: list[Issue] = []
        text = visible_text(self.compose_text(post), account.option("parse_mode"))
        length = utf16_length(text)
        limit, kind = (CAPTION_LIMIT, "caption") if post.media else (MESSAGE_LIMIT, "message")
        if length > limit:
            issues.append(
                Issue(
                    "text",
                    f"{length} UTF-16 code units, over Telegram's {kind} limit of {limit}",
                    f"shorten it by {length - limit}"
                    + (" or post the text without images" if post.media else ""),
                )
            )
        if not text.strip() and not post.media:
            issues.append(Issue("text", "Telegram does not send an empty message"))
        if len(post.media) > MAX_MEDIA:
            issues.append(
                Issue(
                    "media",
                    f"{len(post.media)} media files, Telegram takes at most {MAX_MEDIA}",
                )
            )
        for item in post.media:
            issue = _media_issue(item)
            if issue:
                issues.append(issue)
        return issues

    # -- publishing -----------------------------------------------------------------------

    async def publish(
        self, post: OutgoingPost, account: Account, idempotency_key: str
    ) -> Published:
        """Send the post in one Bot API call; follow a group-to-supergroup migration once."""
        token = account.secret("bot_token")
        chat_id = self.migrated_chats.get(account.name) or _configured_chat(account)
        text = self.compose_text(post)
        try:
            result = await self._send(token, account, post, text, chat_id)
        except ChatMigrated as moved:
            log.warning(
                "telegram_chat_migrated",
                account=account.name,
                old_chat_id=chat_id,
                new_chat_id=moved.new_chat_id,
                hint=f'set chat_id = "{moved.new_chat_id}" in the account config',
            )
            self.migrated_chats[account.name] = chat_id = moved.new_chat_id
            result = await self._send(token, account, post, text, chat_id)
        return _published(result, chat_id)

    async def _send(
        self, token: str, account: Account, post: OutgoingPost, text: str, chat_id: str
    ) -> Any:
        call = await _build_call(post, text, chat_id, account)
        try:
            videos = [f for f in call.files.values() if f[2] in VIDEO_TYPES]
            for filename, _content, _kind in videos:
                log.info(
                    "telegram_video_upload",
                    account=account.name,
                    file=filename,
                    bytes=_size(post, filename),
                )
            result = await self._call(token, account, call)
            if videos:
                log.info("telegram_video_sent", account=account.name, files=len(videos))
            return result
        finally:
            call.close()

    async def _call(self, token: str, account: Account, call: _Call) -> Any:
        base = str(account.option("api_base", DEFAULT_API_BASE)).rstrip("/")
        url = f"{base}/bot{token}/{call.method}"
        try:
            if call.files:
                fields = {k: _form_value(v) for k, v in call.fields.items()}
                response = await self.client.post(url, data=fields, files=call.files)
            else:
                response = await self.client.post(url, json=call.fields)
        except httpx.TransportError as exc:
            raise transport_failure(
                exc, f"telegram {call.method}", sends=True, secrets=(token,)
            ) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, Mapping):
            body = None
        if body is not None and body.get("ok") is True and "result" in body:
            return body["result"]
        if response.is_success:
            # A 2xx that is not a Bot API answer (a proxy's page): the message may be out.
            raise OutcomeUnknown(
                f"telegram {call.method}: HTTP {response.status_code} without a Bot API answer",
                http_status=response.status_code,
            )
        raise classify(response.status_code, body, now=utcnow(), sends=True)


# --------------------------------------------------------------------------- helpers


def _configured_chat(account: Account) -> str:
    chat_id = account.option("chat_id")
    if chat_id is None or str(chat_id).strip() == "":
        # Every post of the account would fail the same way: pause it for a person to fix.
        raise AuthExpired(f"account {account.name}: option chat_id is not set")
    return str(chat_id).strip()


def _form_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _media_issue(item: str) -> Issue | None:
    kind, _ = mimetypes.guess_type(item)
    if _is_url(item):
        if kind is not None and kind not in PHOTO_TYPES + VIDEO_TYPES:
            return Issue(
                "media",
                f"{item}: {kind} is not a photo (JPEG/PNG/WebP) or video (MP4) Telegram accepts",
            )
        return None
    path = Path(item).expanduser()
    if not path.is_file():
        return Issue("media", f"{item}: no such file", "give a path that exists or an https URL")
    if kind in VIDEO_TYPES:
        if path.stat().st_size > MAX_VIDEO_BYTES:
            return Issue(
                "media",
                f"{item}: {path.stat().st_size} bytes, larger than the 50 MB a bot may upload",
                "give it as an https URL (Telegram fetches up to 20 MB) or compress it",
            )
        return None
    if kind not in PHOTO_TYPES:
        return Issue("media", f"{item}: not a JPEG, PNG or WebP image, or an MP4 video")
    if path.stat().st_size > MAX_PHOTO_BYTES:
        return Issue("media", f"{item}: larger than Telegram's 10 MB photo limit")
    return None


def _is_video(item: str) -> bool:
    return media.guess_type(item) in VIDEO_TYPES


_PHOTOS = Capabilities(
    text_limit=MESSAGE_LIMIT, media_types=PHOTO_TYPES, max_media_bytes=MAX_PHOTO_BYTES
)
_VIDEOS = Capabilities(
    text_limit=MESSAGE_LIMIT, media_types=VIDEO_TYPES, max_media_bytes=MAX_VIDEO_BYTES
)


async def _read_media(item: str) -> tuple[str, bytes | IO[bytes], str]:
    """A local photo read whole, or a local video opened to be streamed; both only through
    the core: confined to the media roots, checked by content and size."""
    if _is_video(item):
        info = media.local_info(item, _VIDEOS)
        return Path(item).name, media.open_local(item), info.mime
    photo = await media.read(item, _PHOTOS)
    return photo.name, photo.content, photo.mime


def _size(post: OutgoingPost, filename: str) -> int | None:
    for item in post.media:
        if Path(item).name == filename and not _is_url(item):
            with contextlib.suppress(OSError):
                return Path(item).stat().st_size
    return None


def _poll_issues(text: str, post: OutgoingPost) -> list[Issue]:
    """A poll against sendPoll's limits; the post's text is its question (plain text: the
    Bot API parses no HTML or Markdown in a question)."""
    poll = post.options.poll
    assert poll is not None
    issues = []
    length = utf16_length(text)
    if not text.strip():
        issues.append(Issue("poll", "a Telegram poll needs its question: the post's text"))
    elif length > POLL_QUESTION_LIMIT:
        issues.append(
            Issue(
                "poll",
                f"{length} characters, over Telegram's poll question limit of "
                f"{POLL_QUESTION_LIMIT} (the post's text is the question)",
                f"shorten the text by {length - POLL_QUESTION_LIMIT}",
            )
        )
    low, high = POLL_OPTIONS
    if not low <= len(poll.options) <= high:
        issues.append(Issue("poll", f"{len(poll.options)} options; Telegram takes {low}-{high}"))
    for number, option in enumerate(poll.options, 1):
        size = utf16_length(option)
        if not 1 <= size <= POLL_OPTION_LIMIT:
            issues.append(
                Issue(
                    "poll",
                    f"option {number} is {size} characters; Telegram takes 1-{POLL_OPTION_LIMIT}",
                )
            )
    seconds = int(poll.duration.total_seconds())
    if not POLL_PERIOD[0] <= seconds <= POLL_PERIOD[1]:
        issues.append(
            Issue(
                "poll",
                f"a duration of {seconds} s: Telegram closes a poll at most 10 minutes "
                f"({POLL_PERIOD[1]} s) after it is sent, and at least {POLL_PERIOD[0]} s",
                "give the poll a duration of 10m or less",
            )
        )
    if post.media:
        issues.append(Issue("poll", "a Telegram poll carries no images: post them separately"))
    return issues


def _poll_call(poll: Poll, question: str, chat_id: str) -> _Call:
    return _Call(
        "sendPoll",
        {
            "chat_id": chat_id,
            "question": question,
            # InputPollOption objects (Bot API 7.3 and later).
            "options": [{"text": option} for option in poll.options],
            # Channels take anonymous polls only.
            "is_anonymous": True,
            "allows_multiple_answers": poll.multiple,
            "open_period": int(poll.duration.total_seconds()),
        },
    )


async def _build_call(post: OutgoingPost, text: str, chat_id: str, account: Account) -> _Call:
    if post.options.poll is not None:
        return _poll_call(post.options.poll, text, chat_id)
    parse_mode = account.option("parse_mode")
    formatting: dict[str, Any] = {"parse_mode": parse_mode} if parse_mode else {}
    if not post.media:
        fields: dict[str, Any] = {"chat_id": chat_id, "text": text, **formatting}
        if account.option("disable_web_page_preview", False):
            fields["link_preview_options"] = {"is_disabled": True}
        return _Call("sendMessage", fields)

    caption = {"caption": text, **formatting} if text else {}
    if len(post.media) == 1:
        item = post.media[0]
        kind = "video" if _is_video(item) else "photo"
        method = "sendVideo" if kind == "video" else "sendPhoto"
        fields = {"chat_id": chat_id, **caption}
        if kind == "video":
            fields["supports_streaming"] = True
        if _is_url(item):
            return _Call(method, {**fields, kind: item})
        return _Call(method, fields, {kind: await _read_media(item)})

    entries: list[dict[str, Any]] = []
    files: dict[str, tuple[str, bytes | IO[bytes], str]] = {}
    call = _Call("sendMediaGroup", {"chat_id": chat_id, "media": entries}, files)
    try:
        for index, item in enumerate(post.media):
            kind = "video" if _is_video(item) else "photo"
            entry: dict[str, Any] = {"type": kind, "media": item}
            if kind == "video":
                entry["supports_streaming"] = True
            if not _is_url(item):
                name = f"{kind}{index}"
                files[name] = await _read_media(item)
                entry["media"] = f"attach://{name}"
            if index == 0:
                entry.update(caption)
            entries.append(entry)
    except BaseException:
        call.close()
        raise
    return call


def _published(result: Any, chat_id: str) -> Published:
    # sendMediaGroup answers with the list of messages; the first one carries the caption.
    message = result[0] if isinstance(result, list) and result else result
    if not isinstance(message, Mapping) or not isinstance(message.get("message_id"), int):
        raise OutcomeUnknown("telegram answered ok without a message_id")
    message_id = message["message_id"]
    chat = message.get("chat")
    return Published(
        remote_id=str(message_id),
        url=_post_url(chat if isinstance(chat, Mapping) else {}, chat_id, message_id),
    )


def _post_url(chat: Mapping[str, Any], chat_id: str, message_id: int) -> str | None:
    """The t.me link: public for a chat with a username, members-only for a private one."""
    username = chat.get("username")
    if not isinstance(username, str) or not username:
        username = chat_id[1:] if chat_id.startswith("@") else None
    if username:
        return f"https://t.me/{username}/{message_id}"
    numeric = str(chat.get("id", chat_id))
    if numeric.startswith("-100"):
        return f"https://t.me/c/{numeric[4:]}/{message_id}"
    return None
