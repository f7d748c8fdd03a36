"""Publishing by POSTing each post, as JSON, to a URL of the operator's choosing.

The receiver (a CMS, a chat bridge, a network this project has no plugin for) gets every
field of the post and an idempotency key it must deduplicate on. Requests can be signed
with HMAC-SHA256. See docs/plugins/networks/webhook.md.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from scheduler.account_settings import settings_issues
from scheduler.adapter import (
    OPTION_NAMES,
    Account,
    Adapter,
    AuthExpired,
    Capabilities,
    Issue,
    MediaMeta,
    OutcomeUnknown,
    OutgoingPost,
    Published,
    PublishError,
    RateLimited,
    RateLimitPolicy,
    Rejected,
    Transient,
)
from scheduler.config import CredentialError
from scheduler.timeutil import format_utc, utcnow

from .signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

__all__ = ["WebhookAdapter", "payload"]

#: Code points. Receivers decide their own limits; this one stops runaway text (and an
#: accidental 100,000-character paste) at validation.
TEXT_LIMIT = 65_536
MAX_MEDIA = 20
#: Code points of one alt text: runaway text stops at validation, as for ``TEXT_LIMIT``.
ALT_LIMIT = 10_000
#: Bytes of a signing secret, at least: HMAC-SHA256's own block of strength.
MIN_HMAC_SECRET = 32
_SECRET_HINT = "make one with: openssl rand -hex 32"
#: The options this plugin reads.
ACCOUNT_OPTIONS = ("url", "headers")
#: How much of a refusal's body goes into the error message.
BODY_EXCERPT = 500


def payload(post: OutgoingPost, idempotency_key: str) -> dict[str, Any]:
    """The JSON object the receiver gets for ``post`` (docs/plugins/networks/webhook.md).

    The first nine fields are those of the first version, unchanged; the others were added
    beside them (a receiver that ignores fields it does not know keeps working), and are
    always present: empty or null when the plan gives nothing."""
    options = post.options
    poll = options.poll
    return {
        "id": post.key,
        "account": post.account,
        "type": post.content_type,
        "text": post.text,
        "media": list(post.media),
        "link": post.link,
        "tags": list(post.tags),
        "due_at": format_utc(post.due_at),
        "idempotency_key": idempotency_key,
        "media_items": _media_items(post.media, post.media_meta),
        "options": {
            "content_warning": options.content_warning,
            "sensitive": options.sensitive,
            "visibility": options.visibility,
            "language": options.language,
            "reply_to": options.reply_to,
            "poll": None
            if poll is None
            else {
                "options": list(poll.options),
                "duration_seconds": int(poll.duration.total_seconds()),
                "multiple": poll.multiple,
            },
        },
        "thread": [
            {
                "text": part.text,
                "media": list(part.media),
                "media_items": _media_items(part.media, part.media_meta),
            }
            for part in options.thread
        ],
        "first_comment": options.first_comment,
    }


def _media_items(media: tuple[str, ...], meta: tuple[MediaMeta, ...]) -> list[dict[str, Any]]:
    """Each media file with its alt text and focal point, in the order of ``media``."""
    items = []
    for index, path in enumerate(media):
        m = meta[index] if index < len(meta) else MediaMeta()
        focus = None if m.focus is None else {"x": m.focus[0], "y": m.focus[1]}
        items.append({"path": path, "alt": m.alt, "focus": focus})
    return items


class WebhookAdapter(Adapter):
    """POST each post to ``url``. Options: ``url``, ``headers``. Credentials (both optional):
    ``hmac_secret`` (sign requests), ``bearer_token`` (``Authorization: Bearer``)."""

    platform = "webhook"
    capabilities = Capabilities(
        text_limit=TEXT_LIMIT,
        text_counting="characters",
        max_media=MAX_MEDIA,
        media_types=(),
        # Receivers must deduplicate on Idempotency-Key, so a resend cannot post twice.
        idempotent=True,
        rate_limit=RateLimitPolicy(requests=60, per=timedelta(minutes=1), concurrency=4),
        # All of it travels in the request, for the receiver to use as it can.
        alt_text_limit=ALT_LIMIT,
        media_focus=True,
        post_options=frozenset(OPTION_NAMES),
        comment_limit=TEXT_LIMIT,
    )

    @classmethod
    def check_account(cls, account: Account) -> list[Issue]:
        """The receiver's http(s) URL is required, an option this plugin does not read is a
        typo, and a signing secret shorter than :data:`MIN_HMAC_SECRET` bytes is refused."""
        issues = settings_issues(
            account,
            known=ACCOUNT_OPTIONS,
            required=[("url", "the receiver's address", '"https://hooks.example.com/smm"')],
            urls=["url"],
        )
        ref = account.credentials.get("hmac_secret")
        if ref is None or not ref.available():
            return issues
        problem = _short_secret(ref.resolve())
        return (
            [*issues, Issue("credentials.hmac_secret", problem, _SECRET_HINT)]
            if problem
            else issues
        )

    def compose_text(self, post: OutgoingPost) -> str:
        """The text field alone: link and tags travel as fields of their own."""
        return post.text

    def tag_issues(self, post: OutgoingPost, account: Account) -> list[Issue]:
        """Tags travel as a JSON field of their own: the receiver makes of them what it will."""
        return []

    async def publish_comment(self, post: OutgoingPost, account: Account, text: str) -> Published:
        """Nothing to send: the first comment went to the receiver in the post's own request
        (``first_comment``), which it may post as it likes. Sending it again, alone, would
        be a request no receiver of the first version expects."""
        return Published(remote_id=post.remote_id or post.idempotency_key, url=post.remote_url)

    async def publish(
        self, post: OutgoingPost, account: Account, idempotency_key: str
    ) -> Published:
        """POST the post; the receiver's JSON ``id`` (or the idempotency key) is the remote id."""
        url = account.option("url")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            # Every post of the account would fail alike: pause it until the config is fixed.
            raise AuthExpired(f"account {account.name}: option url must be an http(s) URL")
        secrets = _optional_secrets(account)
        body = json.dumps(
            payload(post, idempotency_key), ensure_ascii=False, separators=(",", ":")
        ).encode()
        extra = account.option("headers") or {}
        if not isinstance(extra, Mapping):
            raise AuthExpired(f"account {account.name}: option headers must be a table")
        headers = {str(k): str(v) for k, v in extra.items()}
        headers.update({"Content-Type": "application/json", "Idempotency-Key": idempotency_key})
        if "hmac_secret" in secrets:
            short = _short_secret(secrets["hmac_secret"])
            if short:
                raise AuthExpired(f"account {account.name}: {short} ({_SECRET_HINT})")
            timestamp = int(time.time())
            headers[TIMESTAMP_HEADER] = str(timestamp)
            headers[SIGNATURE_HEADER] = sign(secrets["hmac_secret"], timestamp, body)
        if "bearer_token" in secrets:
            headers["Authorization"] = f"Bearer {secrets['bearer_token']}"
        hidden = tuple(secrets.values())

        try:
            response = await self.client.post(url, content=body, headers=headers)
        except httpx.TransportError as exc:
            detail = _redact(f"webhook POST: {type(exc).__name__}: {exc}", hidden)
            if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
                raise Transient(detail) from None
            raise OutcomeUnknown(detail) from None
        if response.is_success:
            return _published(response, idempotency_key)
        raise _classify(response, hidden)


# --------------------------------------------------------------------------- helpers


def _optional_secrets(account: Account) -> dict[str, str]:
    found = {}
    for key in ("hmac_secret", "bearer_token"):
        ref = account.credentials.get(key)
        if ref is None:
            continue
        try:
            found[key] = ref.resolve()
        except CredentialError as exc:
            raise AuthExpired(f"account {account.name}: {exc}") from None
    return found


def _short_secret(secret: str) -> str | None:
    """Why ``secret`` is too weak to sign with, or None."""
    size = len(secret.encode())
    if size >= MIN_HMAC_SECRET:
        return None
    return f"the signing secret has {size} bytes; at least {MIN_HMAC_SECRET} are needed"


def _redact(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    return text


def _published(response: httpx.Response, idempotency_key: str) -> Published:
    if not response.content.strip():
        return Published(remote_id=idempotency_key)
    try:
        body = response.json()
    except ValueError:
        # A 2xx page that is not JSON is rarely the receiver (a login page, a captive
        # portal): the post may not have arrived. The key makes the resend safe.
        raise OutcomeUnknown(
            f"webhook: HTTP {response.status_code} with a body that is not JSON "
            f"({response.headers.get('content-type', 'no content type')})",
            http_status=response.status_code,
        ) from None
    remote_id, url = idempotency_key, None
    if isinstance(body, Mapping):
        if isinstance(body.get("id"), str | int) and not isinstance(body.get("id"), bool):
            given = str(body["id"])
            remote_id = given if _plain(given, _MAX_ID) else idempotency_key
        found = body.get("url")
        # The web app and the report show it as a link: only a bounded http(s) address.
        if (
            isinstance(found, str)
            and _plain(found, _MAX_URL)
            and found.lower().startswith(("https://", "http://"))
        ):
            url = found
    return Published(remote_id=remote_id, url=url)


#: Longest id and url kept from a receiver's answer (they are stored and shown).
_MAX_ID = 500
_MAX_URL = 2000


def _plain(value: str, limit: int) -> bool:
    """One word of printable characters, at most ``limit`` long."""
    return 0 < len(value) <= limit and value.isprintable() and not any(c.isspace() for c in value)


def _retry_at(value: str | None, now: datetime) -> datetime | None:
    """``Retry-After`` as delta-seconds or an HTTP date (RFC 9110), None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return now + timedelta(seconds=int(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _classify(response: httpx.Response, secrets: tuple[str, ...]) -> PublishError:
    status = response.status_code
    text = _redact(response.text.strip(), secrets)
    if len(text) > BODY_EXCERPT:
        text = text[:BODY_EXCERPT] + "…"
    message = f"HTTP {status} {response.reason_phrase}".strip() + (f": {text}" if text else "")
    if status == 429:
        retry_at = _retry_at(response.headers.get("retry-after"), utcnow())
        return RateLimited(message, http_status=status, retry_at=retry_at)
    if status in (401, 403):
        return AuthExpired(message, http_status=status)
    if 400 <= status < 500:
        return Rejected(message, http_status=status)
    if status >= 500:
        return Transient(message, http_status=status)
    # 1xx/3xx (redirects are not followed): a misconfigured URL, the post did not arrive.
    return Rejected(message, http_status=status)
