"""Pinterest: one Pin per post on a board, through API v5.

``POST /v5/pins`` with ``board_id``, ``title``, ``description``, ``link`` and a
``media_source``: ``image_url`` for a URL, ``image_base64`` for a local file. Pinterest has
no idempotency key: a lost answer makes the post ``unconfirmed`` and ``lookup`` searches the
board's newest Pins.

A post's text becomes the Pin: when it has several lines the first is the title (100
characters at most) and the rest the description (500), otherwise it is all description.
The post's link is the Pin's destination link, not part of the description.

Errors are JSON ``{"code": <int>, "message": "..."}``: 429 is ``RateLimited`` (at
``Retry-After`` or ``X-RateLimit-Reset`` when sent), 401 ``AuthExpired``, other 4xx
``Rejected``, 5xx ``Transient`` (on the Pin creation ``OutcomeUnknown``: the Pin may have
been made).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlparse

import httpx

from scheduler.account_settings import settings_issues
from scheduler.adapter import (
    Account,
    Adapter,
    AuthExpired,
    Capabilities,
    Issue,
    Metrics,
    OutcomeUnknown,
    OutgoingPost,
    Published,
    PublishError,
    RateLimitPolicy,
    RateLimitStatus,
    Rejected,
    Transient,
    status_error,
)
from scheduler.adapter import json_object as _json_object
from scheduler.media import read as read_media
from scheduler.timeutil import utcnow

__all__ = ["PinterestAdapter", "classify_error", "reset_time", "split_title"]

DEFAULT_API_BASE = "https://api.pinterest.com/v5"
TITLE_LIMIT = 100
#: Pin analytics reach back 90 days at most.
_ANALYTICS_DAYS = 89
_METRIC_TYPES = "IMPRESSION,SAVE,PIN_CLICK,OUTBOUND_CLICK,REACTION,COMMENT"
_LOOKUP_DEPTH = 25
_SKEW = timedelta(minutes=5)
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)
# X-RateLimit-Reset is read as a Unix time when this large, else as seconds from now.
_EPOCH_THRESHOLD = 1_000_000_000


def split_title(text: str) -> tuple[str | None, str]:
    """``(title, description)``: the first line is the title when there are several lines."""
    first, newline, rest = text.strip().partition("\n")
    if not newline:
        return None, first
    return first.strip(), rest.strip()


def reset_time(headers: Mapping[str, str], now: datetime) -> datetime | None:
    """When the rate limit resets: ``Retry-After`` seconds, else ``X-RateLimit-Reset``."""
    for name in ("retry-after", "x-ratelimit-reset"):
        raw = headers.get(name, "").strip()
        if raw.isdigit():
            value = int(raw)
            if value >= _EPOCH_THRESHOLD:
                return datetime.fromtimestamp(value, UTC)
            return now + timedelta(seconds=value)
    return None


def classify_error(
    status: int,
    body: Mapping[str, Any] | None,
    headers: Mapping[str, str],
    *,
    where: str,
    mutating: bool,
    now: datetime | None = None,
) -> PublishError:
    """The ``PublishError`` for a failed Pinterest answer (see the module docstring)."""
    body = body or {}
    detail = body.get("message") or f"HTTP {status} on {where}"
    code = body.get("code")
    message = f"Pinterest: {detail} [HTTP {status}" + (
        f", code {code}]" if code is not None else "]"
    )
    retry_at = reset_time(headers, now or utcnow()) if status == 429 else None
    return status_error(
        status,
        message,
        mutating=mutating,
        idempotent=False,  # Pinterest takes no idempotency key
        retry_at=retry_at,
        code=code,
        effect="the Pin may have been created",
    )


def _sum_days(days: object) -> dict[str, int]:
    """Totals of ``daily_metrics`` entries, for answers that carry no lifetime totals."""
    totals: dict[str, int] = {}
    for day in days if isinstance(days, list) else []:
        metrics = day.get("metrics") if isinstance(day, dict) else None
        for name, value in metrics.items() if isinstance(metrics, dict) else ():
            if _count(value) is not None:
                totals[name] = totals.get(name, 0) + int(value)
    return totals


def _count(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return None
    return int(value)


class PinterestAdapter(Adapter):
    """Creates Pins on a Pinterest board.

    Options: ``board_id`` (required), ``board_section_id``, ``api_base`` (default
    ``https://api.pinterest.com/v5``). Credential: ``access_token`` (scopes ``pins:write``,
    ``boards:read``, ``pins:read``).
    """

    platform = "pinterest"
    capabilities = Capabilities(
        text_limit=500,
        text_counting="characters",
        max_media=1,
        media_types=("image/jpeg", "image/png"),
        # Pin images up to 20 MB.
        max_media_bytes=20 * 1024 * 1024,
        idempotent=False,
        metrics=frozenset({"impressions", "saves", "clicks", "likes", "comments"}),
        has_reach=True,
        rate_limit=RateLimitPolicy(requests=100, per=timedelta(minutes=1), concurrency=1),
        requires_media=True,
        # POST /v5/pins: alt_text, up to 500 characters.
        alt_text_limit=500,
    )

    # -- offline ---------------------------------------------------------------------------

    def compose_text(self, post: OutgoingPost) -> str:
        """The description: the text after the title line, then the tags; no link."""
        _, description = split_title(post.text)
        return super().compose_text(replace(post, text=description, link=None))

    @classmethod
    def check_account(cls, account: Account) -> list[Issue]:
        """The board and a reference to the access token are required; an option this
        plugin does not read is a typo."""
        return settings_issues(
            account,
            known=("board_id", "board_section_id", "api_base"),
            required=[("board_id", "the board Pins go to", '"549755885175"')],
            credentials=[("access_token", "the access token")],
            urls=["api_base"],
        )

    def validate(self, post: OutgoingPost, account: Account) -> list[Issue]:
        issues = super().validate(post, account)
        title, _ = split_title(post.text)
        if title is not None and len(title) > TITLE_LIMIT:
            issues.append(
                Issue(
                    "text",
                    f"the title (first line) has {len(title)} characters, Pinterest takes "
                    f"{TITLE_LIMIT}",
                )
            )
        if not account.option("board_id"):
            issues.append(Issue("account", "option 'board_id' is not set"))
        return issues

    # -- helpers ---------------------------------------------------------------------------

    async def _send(
        self, account: Account, method: str, path: str, *, mutating: bool = False, **kw: Any
    ) -> dict[str, Any]:
        base = str(account.option("api_base", DEFAULT_API_BASE)).rstrip("/")
        token = account.secret("access_token")
        where = f"{method} /v5/{path.split('?')[0]}"
        try:
            response = await self.client.request(
                method, f"{base}/{path}", headers={"Authorization": f"Bearer {token}"}, **kw
            )
        except httpx.HTTPError as exc:
            kind = type(exc).__name__
            if isinstance(exc, _NOT_SENT):
                raise Transient(
                    f"Pinterest: could not reach the server ({kind}) on {where}"
                ) from None
            if mutating:
                raise OutcomeUnknown(
                    f"Pinterest: no answer ({kind}) on {where}; the Pin may have been created"
                ) from None
            raise Transient(f"Pinterest: no answer ({kind}) on {where}") from None
        self._note_budget(account, response.headers)
        body = _json_object(response)
        if not response.is_success:
            raise classify_error(
                response.status_code, body, response.headers, where=where, mutating=mutating
            )
        if body is None:
            message = f"Pinterest: HTTP {response.status_code} without a JSON object on {where}"
            raise OutcomeUnknown(message) if mutating else Transient(message)
        return body

    def _note_budget(self, account: Account, headers: Mapping[str, str]) -> None:
        """Keep what the rate-limit headers say, for the dispatcher to pace by."""
        remaining = headers.get("x-ratelimit-remaining", "")
        if remaining.isdigit():
            limit = headers.get("x-ratelimit-limit", "").split(",")[0].strip()
            self.rate_limit_status[account.name] = RateLimitStatus(
                remaining=int(remaining),
                reset_at=reset_time(headers, utcnow()),
                limit=int(limit) if limit.isdigit() else None,
            )

    async def _media_source(self, media: str) -> dict[str, str]:
        if urlparse(media).scheme in ("http", "https"):
            # Pinterest fetches the image itself.
            return {"source_type": "image_url", "url": media}
        # Only through the core: confined to the media roots, checked by content.
        image = await read_media(media, self.capabilities)
        return {
            "source_type": "image_base64",
            "content_type": image.mime,
            "data": base64.b64encode(image.content).decode("ascii"),
        }

    # -- network calls ---------------------------------------------------------------------

    async def publish(
        self, post: OutgoingPost, account: Account, idempotency_key: str
    ) -> Published:
        board = account.option("board_id")
        if not board:
            raise Rejected(f"account {account.name}: option 'board_id' is not set")
        if not post.media:
            raise Rejected("Pinterest: a Pin needs an image")
        title, _ = split_title(post.text)
        pin: dict[str, Any] = {
            "board_id": str(board),
            "description": self.compose_text(post),
            "media_source": await self._media_source(post.media[0]),
        }
        if title:
            pin["title"] = title
        if post.meta(0).alt:
            pin["alt_text"] = post.meta(0).alt
        if post.link:
            pin["link"] = post.link
        if account.option("board_section_id"):
            pin["board_section_id"] = str(account.option("board_section_id"))
        body = await self._send(account, "POST", "pins", json=pin, mutating=True)
        pin_id = body.get("id")
        if not pin_id:
            raise OutcomeUnknown("Pinterest: the Pin was created without an id")
        return Published(str(pin_id), url=f"https://www.pinterest.com/pin/{pin_id}/")

    async def fetch_metrics(
        self, posts: Sequence[OutgoingPost], account: Account
    ) -> Mapping[str, Metrics]:
        today = utcnow().date()
        earliest = today - timedelta(days=_ANALYTICS_DAYS)
        out: dict[str, Metrics] = {}
        for post in posts:
            if not post.remote_id:
                continue
            published = post.published_at.astimezone(UTC).date() if post.published_at else earliest
            start = min(max(published, earliest), today)
            query = (
                f"pins/{post.remote_id}/analytics?start_date={start.isoformat()}"
                f"&end_date={today.isoformat()}&metric_types={_METRIC_TYPES}"
            )
            try:
                body = await self._send(account, "GET", query)
            except Rejected:
                continue  # deleted Pin: left out
            out[post.remote_id] = self._metrics(post.remote_id, body)
        return out

    @staticmethod
    def _metrics(pin_id: str, body: Mapping[str, Any]) -> Metrics:
        scope = body.get("all")
        scope = scope if isinstance(scope, dict) else {}
        totals = scope.get("lifetime_metrics") or scope.get("summary_metrics")
        if not isinstance(totals, dict):
            totals = _sum_days(scope.get("daily_metrics"))

        def metric(name: str) -> int | None:
            return _count(totals.get(name))

        pin_clicks, outbound = metric("PIN_CLICK"), metric("OUTBOUND_CLICK")
        clicks = (
            None if pin_clicks is None and outbound is None else (pin_clicks or 0) + (outbound or 0)
        )
        return Metrics(
            remote_id=pin_id,
            impressions=metric("IMPRESSION"),
            saves=metric("SAVE"),
            clicks=clicks,
            likes=metric("REACTION"),
            comments=metric("COMMENT"),
        )

    async def lookup(self, post: OutgoingPost, account: Account) -> Published | None:
        """Find the Pin among the board's 25 newest by description and link; None when they
        reach back past the due time without it."""
        board = account.option("board_id")
        try:
            body = await self._send(
                account, "GET", f"boards/{board}/pins?page_size={_LOOKUP_DEPTH}"
            )
        except PublishError as exc:
            if isinstance(exc, AuthExpired):
                raise
            raise OutcomeUnknown(f"Pinterest: cannot look the Pin up: {exc.message}") from None
        listed = body.get("items")
        items: list[Any] = listed if isinstance(listed, list) else []
        wanted = (self.compose_text(post).strip(), post.link or None)
        since = post.due_at - _SKEW if post.due_at else None
        oldest: datetime | None = None
        for item in items:
            if not isinstance(item, dict):
                continue
            try:
                when = datetime.fromisoformat(str(item.get("created_at")))
            except ValueError:
                continue
            when = when if when.tzinfo else when.replace(tzinfo=UTC)  # Pinterest omits the zone
            oldest = when if oldest is None else min(oldest, when)
            found = (str(item.get("description") or "").strip(), item.get("link") or None)
            if found == wanted and item.get("id") and (since is None or when >= since):
                return Published(
                    str(item["id"]), url=f"https://www.pinterest.com/pin/{item['id']}/"
                )
        complete = not body.get("bookmark")
        if since is not None and (complete or (oldest is not None and oldest < since)):
            return None
        raise OutcomeUnknown(
            f"Pinterest: the Pin is not among the board's {len(items)} newest, which do not "
            "reach back to when it was sent"
        )
