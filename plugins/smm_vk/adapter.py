"""VK (VKontakte) walls: a user's own wall or a community's, through ``wall.post``.

The idempotency key goes out as ``guid``: VK refuses to make a second post with the same
guid, so a retry after a lost answer cannot duplicate the post (``idempotent = True``).
Photos are uploaded first (``photos.getWallUploadServer``, a multipart POST to the upload
URL, ``photos.saveWallPhoto``) and attached as ``photo<owner>_<id>``; uploads are invisible
until attached, so repeating one is harmless. A link rides as a link attachment (VK draws a
snippet), not in the text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

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
    Rejected,
    Transient,
)
from scheduler.media import load as load_media
from smm_vk.api import VKApi, json_object, status_error, transport_error

__all__ = ["VKAdapter"]

DEFAULT_API_BASE = "https://api.vk.com/method"
DEFAULT_VERSION = "5.199"
#: ``wall.getById`` takes up to 100 posts a call.
_POSTS_PER_READ = 100
#: How many recent posts ``lookup`` reads with ``wall.get``.
_LOOKUP_DEPTH = 50
# Clocks differ: a post made a little "before" its due time still counts as ours.
_SKEW = timedelta(minutes=5)


def _count(node: object) -> int | None:
    if isinstance(node, dict):
        value = node.get("count")
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return None


#: The account options this plugin reads (docs/plugins/networks/vk.md).
ACCOUNT_OPTIONS = ("owner_id", "api_base", "api_version")


class VKAdapter(Adapter):
    """Publishes to a VK wall.

    Options: ``owner_id`` (required; negative for a community, e.g. ``-123456``),
    ``api_base`` (default ``https://api.vk.com/method``), ``api_version`` (default 5.199).
    Credential: ``access_token`` (a user token with the ``wall`` and ``photos`` rights; for a
    community, of an administrator of it).
    """

    platform = "vk"
    capabilities = Capabilities(
        text_limit=16384,
        text_counting="characters",
        max_media=10,
        media_types=("image/jpeg", "image/png", "image/gif"),
        # Wall photos up to 50 MB.
        max_media_bytes=50 * 1024 * 1024,
        idempotent=True,
        metrics=frozenset({"likes", "comments", "shares", "views"}),
        has_reach=True,
        # VK allows 3 requests a second per user token.
        rate_limit=RateLimitPolicy(requests=3, per=timedelta(seconds=1), concurrency=1),
        # VK does not say how long it remembers a guid; an hour is assumed, after which the
        # core settles an unconfirmed post with lookup instead of resending it.
        idempotency_window=timedelta(hours=1),
    )

    # -- offline ---------------------------------------------------------------------------

    @classmethod
    def check_account(cls, account: Account) -> list[Issue]:
        """The wall's owner and a reference to the access token are required;
        an option this plugin does not read is a typo."""
        return settings_issues(
            account,
            known=ACCOUNT_OPTIONS,
            required=[("owner_id", "whose wall to post on", "-12345678  # a community")],
            credentials=[("access_token", "the access token")],
            urls=["api_base"],
        )

    def compose_text(self, post: OutgoingPost) -> str:
        """Text and tags; the link is sent as an attachment, not in the text."""
        return super().compose_text(replace(post, link=None))

    def validate(self, post: OutgoingPost, account: Account) -> list[Issue]:
        issues = super().validate(post, account)
        try:
            self.owner_id(account)
        except Rejected as exc:
            issues.append(Issue("account", exc.message))
        if not post.media and not post.link and not self.compose_text(post).strip():
            issues.append(Issue("text", "a VK post needs text, a link or a photo"))
        return issues

    # -- helpers ---------------------------------------------------------------------------

    def api(self, account: Account) -> VKApi:
        base = str(account.option("api_base", DEFAULT_API_BASE)).rstrip("/")
        version = str(account.option("api_version", DEFAULT_VERSION))
        return VKApi(self.client, base, version, account.secret("access_token"))

    def owner_id(self, account: Account) -> int:
        raw = account.option("owner_id")
        try:
            owner = int(raw)
        except (TypeError, ValueError):
            raise Rejected(
                f"account {account.name}: option 'owner_id' must be a VK user id, or a "
                f"community id with a minus sign (got {raw!r})"
            ) from None
        if owner == 0:
            raise Rejected(f"account {account.name}: option 'owner_id' cannot be 0")
        return owner

    async def _media_bytes(self, media: str) -> tuple[str, bytes, str]:
        """(file name, content, MIME type) of a local file or an http(s) URL, read or fetched
        through the core: confined to the media roots or public addresses, checked by content."""
        image = await load_media(self.client, media, self.capabilities)
        return image.name or "photo.jpg", image.content, image.mime

    async def _upload_photo(self, api: VKApi, owner: int, media: str) -> str:
        """Upload one photo for the wall; returns its attachment, ``photo<owner>_<id>``."""
        # The image first: one that cannot be had costs VK no request.
        name, content, mime = await self._media_bytes(media)
        target = {"group_id": str(-owner)} if owner < 0 else {}
        server = await api.call("photos.getWallUploadServer", target)
        upload_url = server.get("upload_url") if isinstance(server, dict) else None
        if not upload_url:
            raise Transient("VK: photos.getWallUploadServer answered without an upload_url")
        try:
            response = await self.client.post(upload_url, files={"photo": (name, content, mime)})
        except httpx.HTTPError as exc:
            raise transport_error(exc, where="POST photo upload", mutating=False) from None
        if response.status_code != 200:
            raise status_error(response.status_code, where="POST photo upload", mutating=False)
        uploaded = json_object(response)
        # VK answers an unusable image with "photo": "[]" (or an "error" string).
        if not uploaded or uploaded.get("photo") in (None, "", "[]") or "error" in uploaded:
            reason = (uploaded or {}).get("error") or "the image was not accepted"
            raise Rejected(f"VK: photo upload of {name} failed: {reason}")
        saved = await api.call(
            "photos.saveWallPhoto",
            {
                **({"group_id": str(-owner)} if owner < 0 else {"user_id": str(owner)}),
                "photo": str(uploaded["photo"]),
                "server": str(uploaded.get("server", "")),
                "hash": str(uploaded.get("hash", "")),
            },
        )
        photo = saved[0] if isinstance(saved, list) and saved else None
        if not isinstance(photo, dict) or "id" not in photo or "owner_id" not in photo:
            raise Transient("VK: photos.saveWallPhoto answered without a photo")
        return f"photo{photo['owner_id']}_{photo['id']}"

    # -- network calls ---------------------------------------------------------------------

    async def publish(
        self, post: OutgoingPost, account: Account, idempotency_key: str
    ) -> Published:
        api = self.api(account)
        owner = self.owner_id(account)
        attachments = [await self._upload_photo(api, owner, m) for m in post.media]
        if post.link:
            attachments.append(post.link)
        params = {
            "owner_id": str(owner),
            "message": self.compose_text(post),
            # VK makes no second post with the same guid: the retry protection.
            "guid": idempotency_key or post.key,
        }
        if owner < 0:
            params["from_group"] = "1"
        if attachments:
            params["attachments"] = ",".join(attachments)
        response = await api.call("wall.post", params, mutating=True, idempotent=True)
        post_id = response.get("post_id") if isinstance(response, dict) else None
        if not post_id:
            raise OutcomeUnknown("VK: wall.post answered without a post_id")
        remote_id = f"{owner}_{post_id}"
        return Published(remote_id, url=f"https://vk.com/wall{remote_id}")

    async def fetch_metrics(
        self, posts: Sequence[OutgoingPost], account: Account
    ) -> Mapping[str, Metrics]:
        api = self.api(account)
        ids = [p.remote_id for p in posts if p.remote_id]
        out: dict[str, Metrics] = {}
        for start in range(0, len(ids), _POSTS_PER_READ):
            chunk = ids[start : start + _POSTS_PER_READ]
            response = await api.call("wall.getById", {"posts": ",".join(chunk)})
            # 5.199 answers {"items": [...]}; older versions a bare list.
            items = response.get("items") if isinstance(response, dict) else response
            for item in items if isinstance(items, list) else []:
                if not isinstance(item, dict):
                    continue
                remote_id = f"{item.get('owner_id')}_{item.get('id')}"
                out[remote_id] = Metrics(
                    remote_id=remote_id,
                    likes=_count(item.get("likes")),
                    comments=_count(item.get("comments")),
                    shares=_count(item.get("reposts")),
                    views=_count(item.get("views")),
                )
        return out

    async def lookup(self, post: OutgoingPost, account: Account) -> Published | None:
        """Find the post among the wall's 50 most recent by its text (the guid is not
        readable back); None when they reach back past the due time without it."""
        api = self.api(account)
        owner = self.owner_id(account)
        try:
            response = await api.call(
                "wall.get", {"owner_id": str(owner), "count": str(_LOOKUP_DEPTH)}
            )
        except (AuthExpired, OutcomeUnknown):
            raise
        except PublishError as exc:
            raise OutcomeUnknown(f"VK: cannot look the post up: {exc.message}") from None
        items: list[Any] = response.get("items", []) if isinstance(response, dict) else []
        wanted = self.compose_text(post).strip()
        since = post.due_at - _SKEW if post.due_at else None
        oldest: datetime | None = None
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("date"), int):
                continue
            when = datetime.fromtimestamp(item["date"], UTC)
            if not item.get("is_pinned"):  # a pinned post is listed first, however old
                oldest = when if oldest is None else min(oldest, when)
            if str(item.get("text", "")).strip() == wanted and (since is None or when >= since):
                remote_id = f"{item.get('owner_id', owner)}_{item.get('id')}"
                return Published(remote_id, url=f"https://vk.com/wall{remote_id}")
        if since is not None and (len(items) < _LOOKUP_DEPTH or (oldest and oldest < since)):
            return None
        raise OutcomeUnknown(
            f"VK: the post is not among the {len(items)} most recent ones, which do not "
            "reach back to when it was sent"
        )
