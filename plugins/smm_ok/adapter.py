"""Odnoklassniki topics: ``mediatopic.post`` in a group (``GROUP_THEME``) or on the user's page.

A topic is one ``attachment`` JSON object, ``{"media": [...]}``: a ``text`` item, a ``link``
item (OK draws the preview) and a ``photo`` item listing uploaded photos by their upload
token. Photos are uploaded first: ``photosV2.getUploadUrl`` gives an upload URL and a photo
id, a multipart POST of the file answers ``{"photos": {<photo id>: {"token": ...}}}``, and the
token goes into the topic as is (a topic takes the upload token; ``photosV2.commit`` is for
album photos). An upload not attached to a topic is never shown, so repeating one is harmless.

OK has no idempotency key for ``mediatopic.post``: ``idempotent = False``, and a lost answer
is settled by ``lookup``, which reads the group's (or user's) latest topics.

OK's flood control (error 8, FLOOD_BLOCKED) refuses an account's calls past limits OK does not
publish. The adapter declares a budget of topics per rolling 24 hours (``topics_per_day``),
which ``smm plan validate`` plans within and ``publish`` spends before sending anything
(``scheduler.budgets``); FLOOD_BLOCKED itself remains the last word.
"""

from __future__ import annotations

import asyncio
import json
import mimetypes
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlparse

import httpx

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
    RateLimited,
    RateLimitPolicy,
    Rejected,
    Transient,
)
from scheduler.budgets import Budget, Ledger
from scheduler.media import load as load_media
from smm_ok.api import OKApi, session_secret, status_error, transport_error

__all__ = ["OKAdapter"]

DEFAULT_API_BASE = "https://api.ok.ru"
#: ``mediatopic.getByIds`` takes up to 100 topic ids a call.
_TOPICS_PER_READ = 100
#: How many recent topics ``lookup`` reads.
_LOOKUP_DEPTH = 50
_SKEW = timedelta(minutes=5)
_TOPIC_FIELDS = "media_topic.*"
#: OK publishes no figure for its flood control; this default is ours, to be set to what the
#: application's limits allow (``users.getCallsLeft`` tells them).
TOPICS_PER_DAY = 100
TOPICS_BUDGET = "ok-topics"


def _count(node: object, key: str = "count") -> int | None:
    if isinstance(node, dict):
        value = node.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return None


def _topic_text(topic: Mapping[str, Any]) -> str:
    """The text items of a topic's media, joined as they were posted."""
    media = topic.get("media")
    parts = [
        str(m.get("text", ""))
        for m in (media if isinstance(media, list) else [])
        if isinstance(m, dict) and m.get("type") == "text"
    ]
    return "\n".join(parts)


class OKAdapter(Adapter):
    """Publishes topics to an OK group or to the user's own page.

    Options: ``group_id`` (a group's id: posts go to the group as the group; without it, to
    the token's user page), ``user_id`` (the user's id, for the topic URL of user posts),
    ``topics_per_day`` (the account's budget of topics in any 24 hours, default 100),
    ``api_base`` (default ``https://api.ok.ru``). Credentials: ``access_token``,
    ``application_key`` (the public key), and ``application_secret_key`` or
    ``session_secret_key`` (either signs the requests).
    """

    platform = "ok"
    capabilities = Capabilities(
        text_limit=16000,
        text_counting="characters",
        max_media=10,
        media_types=("image/jpeg", "image/png", "image/gif"),
        idempotent=False,
        metrics=frozenset({"likes", "comments", "shares", "views", "followers"}),
        # Views come only with some topics: ER is by followers (group members).
        has_reach=False,
        # OK documents no per-second figure; flood control (error 8) answers bursts.
        rate_limit=RateLimitPolicy(requests=3, per=timedelta(seconds=1), concurrency=1),
    )

    def __init__(self, client: httpx.AsyncClient, ledger: Ledger | None = None) -> None:
        super().__init__(client)
        #: How many topics each account made in the last 24 hours.
        self.ledger = ledger if ledger is not None else Ledger()

    def budgets(self, account: Account) -> list[Budget]:
        """The account's topics in any 24 hours (``topics_per_day``, default 100)."""
        return [
            Budget(
                TOPICS_BUDGET,
                "OK topics (flood control)",
                self.topics_per_day(account),
                timedelta(hours=24),
                scope=account.name,
            )
        ]

    def budget_cost(self, post: OutgoingPost, account: Account) -> dict[str, int]:
        """One topic."""
        return {TOPICS_BUDGET: 1}

    def topics_per_day(self, account: Account) -> int:
        """The ``topics_per_day`` option, checked."""
        raw = account.option("topics_per_day", TOPICS_PER_DAY)
        if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
            raise Rejected(
                f"account {account.name}: option 'topics_per_day' must be a whole number of "
                f"topics, 1 or more (got {raw!r})"
            )
        return raw

    async def _spend_budget(self, account: Account) -> None:
        """Count the topic against the account's budget, or wait without sending anything."""
        (budget,) = self.budgets(account)
        free_at = await asyncio.to_thread(self.ledger.spend, budget, 1, datetime.now(UTC))
        if free_at is not None:
            raise RateLimited(
                f"OK: {budget.limit} topics in 24 hours made already (topics_per_day); "
                f"waiting until {free_at:%Y-%m-%d %H:%M} UTC",
                retry_at=free_at,
                code="flood_budget",
            )

    # -- offline ---------------------------------------------------------------------------

    def compose_text(self, post: OutgoingPost) -> str:
        """Text and tags; the link is a link item of the topic, not part of the text."""
        return super().compose_text(replace(post, link=None))

    def validate(self, post: OutgoingPost, account: Account) -> list[Issue]:
        issues = super().validate(post, account)
        for check in (self.group_id, self.topics_per_day):
            try:
                check(account)
            except Rejected as exc:
                issues.append(Issue("account", exc.message))
        if not post.media and not post.link and not self.compose_text(post).strip():
            issues.append(Issue("text", "an OK topic needs text, a link or a photo"))
        for media in post.media:
            kind = mimetypes.guess_type(urlparse(media).path)[0]
            if kind is not None and kind not in self.capabilities.media_types:
                issues.append(
                    Issue("media", f"{media}: OK topics take JPEG, PNG or GIF photos, not {kind}")
                )
        return issues

    # -- helpers ---------------------------------------------------------------------------

    def group_id(self, account: Account) -> str | None:
        raw = account.option("group_id")
        if raw is None or raw == "":
            return None
        text = str(raw)
        if not text.isdigit() or int(text) == 0:
            raise Rejected(
                f"account {account.name}: option 'group_id' must be an OK group's numeric id "
                f"(got {raw!r})"
            )
        return text

    def api(self, account: Account) -> OKApi:
        base = str(account.option("api_base", DEFAULT_API_BASE)).rstrip("/")
        token = account.secret("access_token")
        if "session_secret_key" in account.credentials:
            secret = account.secret("session_secret_key")
        else:
            secret = session_secret(token, account.secret("application_secret_key"))
        return OKApi(self.client, base, account.secret("application_key"), token, secret)

    def _url(self, account: Account, topic_id: str) -> str | None:
        group = self.group_id(account)
        if group:
            return f"https://ok.ru/group/{group}/topic/{topic_id}"
        user = account.option("user_id")
        return f"https://ok.ru/profile/{user}/statuses/{topic_id}" if user else None

    async def _media_bytes(self, media: str) -> tuple[str, bytes, str]:
        """(file name, content, MIME type) of a local file or an http(s) URL, read or fetched
        through the core: confined to the media roots or public addresses, checked by content."""
        image = await load_media(self.client, media, self.capabilities)
        return image.name or "photo.jpg", image.content, image.mime

    async def _upload_photo(self, api: OKApi, group: str | None, media: str) -> str:
        """Upload one photo; returns its upload token for the topic's photo item."""
        # The image first: one that cannot be had costs OK no request.
        name, content, mime = await self._media_bytes(media)
        answer = await api.call("photosV2.getUploadUrl", {"count": "1", **_target(group)})
        upload_url = answer.get("upload_url") if isinstance(answer, dict) else None
        photo_ids = answer.get("photo_ids") if isinstance(answer, dict) else None
        if not upload_url or not isinstance(photo_ids, list) or not photo_ids:
            raise Transient("OK: photosV2.getUploadUrl answered without upload_url/photo_ids")
        try:
            response = await self.client.post(upload_url, files={"pic1": (name, content, mime)})
        except httpx.HTTPError as exc:
            raise transport_error(exc, where="POST photo upload", mutating=False) from None
        if response.status_code != 200:
            raise status_error(response.status_code, where="POST photo upload", mutating=False)
        try:
            uploaded: Any = response.json()
        except ValueError:
            uploaded = None
        if isinstance(uploaded, dict) and "error_code" in uploaded:
            raise Rejected(f"OK: photo upload of {name} failed: {uploaded.get('error_msg')}")
        photos = uploaded.get("photos") if isinstance(uploaded, dict) else None
        entry = photos.get(str(photo_ids[0])) if isinstance(photos, dict) else None
        token = entry.get("token") if isinstance(entry, dict) else None
        if not token:
            raise Transient(f"OK: the photo upload of {name} answered without a token")
        return str(token)

    # -- network calls ---------------------------------------------------------------------

    async def publish(
        self, post: OutgoingPost, account: Account, idempotency_key: str
    ) -> Published:
        api = self.api(account)
        group = self.group_id(account)
        await self._spend_budget(account)
        media: list[dict[str, Any]] = []
        text = self.compose_text(post)
        if text.strip():
            media.append({"type": "text", "text": text})
        if post.link:
            media.append({"type": "link", "url": post.link})
        if post.media:
            tokens = [await self._upload_photo(api, group, m) for m in post.media]
            media.append({"type": "photo", "list": [{"id": t} for t in tokens]})
        params = {
            "attachment": json.dumps({"media": media}, ensure_ascii=False),
            "type": "GROUP_THEME" if group else "USER",
            **_target(group),
        }
        answer = await api.call("mediatopic.post", params, mutating=True)
        # OK answers the new topic's id as a bare JSON string.
        if not isinstance(answer, str | int) or isinstance(answer, bool) or not str(answer):
            raise OutcomeUnknown("OK: mediatopic.post answered without a topic id")
        topic_id = str(answer)
        return Published(topic_id, url=self._url(account, topic_id))

    async def _followers(self, api: OKApi, group: str | None) -> int | None:
        if not group:
            return None
        answer = await api.call("group.getInfo", {"uids": group, "fields": "members_count"})
        first = answer[0] if isinstance(answer, list) and answer else None
        return _count(first, "members_count")

    async def fetch_metrics(
        self, posts: Sequence[OutgoingPost], account: Account
    ) -> Mapping[str, Metrics]:
        api = self.api(account)
        ids = [p.remote_id for p in posts if p.remote_id]
        if not ids:
            return {}
        followers = await self._followers(api, self.group_id(account))
        out: dict[str, Metrics] = {}
        for start in range(0, len(ids), _TOPICS_PER_READ):
            chunk = ids[start : start + _TOPICS_PER_READ]
            # media_limit (1 to 3) is required when several topics are asked for.
            params = {"topic_ids": ",".join(chunk), "fields": _TOPIC_FIELDS, "media_limit": "1"}
            answer = await api.call("mediatopic.getByIds", params)
            topics = answer.get("media_topics") if isinstance(answer, dict) else None
            for topic in topics if isinstance(topics, list) else []:
                if not isinstance(topic, dict) or topic.get("id") is None:
                    continue
                remote_id = str(topic["id"])
                out[remote_id] = Metrics(
                    remote_id=remote_id,
                    likes=_count(topic.get("like_summary")),
                    comments=_count(topic.get("discussion_summary"), "comments_count"),
                    shares=_count(topic.get("reshare_summary")),
                    views=_count(topic, "views_count"),
                    followers=followers,
                )
        return out

    async def lookup(self, post: OutgoingPost, account: Account) -> Published | None:
        """Find the topic among the latest ones by its text, made at or after the due time;
        None when those reach back past the due time without it."""
        api = self.api(account)
        group = self.group_id(account)
        params = {"count": str(_LOOKUP_DEPTH), "fields": _TOPIC_FIELDS, **_target(group)}
        try:
            answer = await api.call("mediatopic.getTopics", params)
        except (AuthExpired, OutcomeUnknown):
            raise
        except PublishError as exc:
            raise OutcomeUnknown(f"OK: cannot look the topic up: {exc.message}") from None
        topics = answer.get("media_topics") if isinstance(answer, dict) else None
        items = [t for t in topics if isinstance(t, dict)] if isinstance(topics, list) else []
        wanted = self.compose_text(post).strip()
        if not wanted:
            raise OutcomeUnknown("OK: a topic without text cannot be told apart from others")
        since = post.due_at - _SKEW if post.due_at else None
        oldest: datetime | None = None
        for topic in items:
            created = topic.get("created_ms")
            if not isinstance(created, int) or isinstance(created, bool):
                continue
            when = datetime.fromtimestamp(created / 1000, UTC)
            oldest = when if oldest is None else min(oldest, when)
            if _topic_text(topic).strip() == wanted and (since is None or when >= since):
                topic_id = str(topic.get("id"))
                return Published(topic_id, url=self._url(account, topic_id))
        if since is not None and (len(items) < _LOOKUP_DEPTH or (oldest and oldest < since)):
            return None
        raise OutcomeUnknown(
            f"OK: the topic is not among the {len(items)} latest ones, which do not reach "
            "back to when it was sent"
        )


def _target(group: str | None) -> dict[str, str]:
    return {"gid": group} if group else {}
