"""LinkedIn member and organization posts, through the versioned Posts API.

``POST /rest/posts`` answers 201 with the new post's URN in the ``x-restli-id`` header. Images
are uploaded first (``POST /rest/images?action=initializeUpload``, then a PUT of the bytes to
the returned address) and referenced by their ``urn:li:image:...``; a video through the Videos
API (``smm_linkedin.video``: parts, finalize, processing), as ``urn:li:video:...``. Uploaded
media are invisible until a post uses them. The commentary is sent in LinkedIn's "little" format
(``smm_linkedin.little``). LinkedIn has no idempotency key: a lost answer makes the post
``unconfirmed`` and ``lookup`` searches the author's recent posts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from scheduler import media, tokens
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
from scheduler.checkpoints import Checkpoints
from scheduler.media import load as load_media
from smm_linkedin.api import LinkedInApi, json_object
from smm_linkedin.little import escape
from smm_linkedin.video import VIDEO_LIMITS, VideoUpload

__all__ = ["LinkedInAdapter"]

DEFAULT_API_BASE = "https://api.linkedin.com/rest"
DEFAULT_VERSION = "202410"
_AUTHOR_PREFIXES = ("urn:li:person:", "urn:li:organization:")
#: How many recent posts ``lookup`` reads.
_LOOKUP_DEPTH = 20
#: Posts per organizationalEntityShareStatistics request.
_STATS_PER_READ = 20
_SKEW = timedelta(minutes=5)


def _urn(value: str) -> str:
    """A URN as a Rest.li 2.0 path segment or list item: every reserved character encoded."""
    return quote(value, safe="")


def _count(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


TOKEN_URL = "https://www.linkedin.com/oauth/v2/accessToken"
_IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif")
_IMAGES = Capabilities(text_limit=3000, media_types=_IMAGE_TYPES)


def _is_video(entry: str) -> bool:
    return media.guess_type(entry.split("?", 1)[0]) in ("video/mp4", "video/quicktime")


class LinkedInAdapter(Adapter):
    """Publishes as a LinkedIn member or organization (Company Page).

    Options: ``author`` (required: ``urn:li:person:<id>`` or ``urn:li:organization:<id>``),
    ``linkedin_version`` (``YYYYMM``, default 202410), ``api_base``. Credential:
    ``access_token`` (``w_member_social`` or ``w_organization_social``).
    """

    platform = "linkedin"
    capabilities = Capabilities(
        text_limit=3000,
        text_counting="characters",
        max_media=20,
        media_types=(*_IMAGE_TYPES, "video/mp4"),
        # Videos API: one MP4 of 75 KB to 500 MB lasting 3 s to 30 min, checked by the core.
        video=VIDEO_LIMITS,
        idempotent=False,
        metrics=frozenset({"likes", "comments", "shares", "clicks", "impressions", "reach"}),
        # Only organization posts have impressions and reach; member posts do not.
        has_reach=False,
        # A member may post 150 times a day; the limits reset at midnight UTC.
        rate_limit=RateLimitPolicy(requests=150, per=timedelta(days=1), concurrency=1),
        # Posts API content.media.altText / multiImage.images[].altText: up to 4,086 characters.
        alt_text_limit=4086,
    )
    #: Access tokens live 60 days: renewed a week ahead (scheduler.tokens).
    refresh_lead = timedelta(days=7)
    rotates_refresh_token = False
    #: Video processing: seconds between status checks, and how many per attempt.
    video_poll_interval: float = 5.0
    video_poll_attempts: int = 8

    def __init__(self, client: httpx.AsyncClient, checkpoints: Checkpoints | None = None) -> None:
        super().__init__(client)
        #: Where a video's upload is noted part by part, to resume it (smm_linkedin.video).
        self.checkpoints = checkpoints if checkpoints is not None else Checkpoints()

    async def refresh_token(self, account: Account) -> tokens.TokenSet:
        """LinkedIn's programmatic refresh: ``refresh_token``, ``client_id``, ``client_secret``."""
        return await tokens.oauth2_refresh(
            self.client,
            str(account.option("token_url", TOKEN_URL)),
            {
                "grant_type": "refresh_token",
                "refresh_token": account.secret("refresh_token"),
                "client_id": account.secret("client_id"),
                "client_secret": account.secret("client_secret"),
            },
            network="LinkedIn",
        )

    # -- offline ---------------------------------------------------------------------------

    @classmethod
    def check_account(cls, account: Account) -> list[Issue]:
        """The author (a person or organization URN) is required; an option this plugin does
        not read is a typo."""
        issues = settings_issues(
            account,
            known=("author", "api_base", "linkedin_version", "token_url"),
            required=[("author", "who posts", '"urn:li:organization:2414183"')],
            urls=["api_base", "token_url"],
        )
        author = account.option("author")
        if author and (not isinstance(author, str) or not author.startswith(_AUTHOR_PREFIXES)):
            issues.append(
                Issue(
                    "options.author",
                    f"option 'author' must be a person or organization URN, got {author!r}",
                    "e.g. urn:li:organization:2414183",
                )
            )
        return issues

    def validate(self, post: OutgoingPost, account: Account) -> list[Issue]:
        issues = super().validate(post, account)
        author = account.option("author")
        if not isinstance(author, str) or not author.startswith(_AUTHOR_PREFIXES):
            issues.append(
                Issue(
                    "account",
                    f"option 'author' must be a person or organization URN, got {author!r}",
                    "e.g. urn:li:organization:2414183",
                )
            )
        if not post.media and not self.compose_text(post).strip():
            issues.append(Issue("text", "a LinkedIn post needs text or an image"))
        videos = [entry for entry in post.media if _is_video(entry)]
        if videos and len(post.media) > 1:
            issues.append(Issue("media", "a LinkedIn video goes out alone, without images"))
        issues += [issue for entry in videos if (issue := _video_issue(entry)) is not None]
        return issues

    def media_meta_issues(self, post: OutgoingPost, account: Account) -> list[Issue]:
        """The core's alt-text checks; alt text goes with images only."""
        issues = super().media_meta_issues(post, account)
        for index, entry in enumerate(post.media):
            if _is_video(entry) and post.meta(index).alt:
                issues.append(
                    Issue(
                        "media",
                        f"media {index + 1} ({Path(entry).name}): LinkedIn takes alt text on "
                        "images only, not on videos",
                        "remove 'alt' from the video (describe it in the text)",
                    )
                )
        return issues

    # -- helpers ---------------------------------------------------------------------------

    def api(self, account: Account) -> LinkedInApi:
        base = str(account.option("api_base", DEFAULT_API_BASE)).rstrip("/")
        version = str(account.option("linkedin_version", DEFAULT_VERSION))
        return LinkedInApi(self.client, base, version, account.secret("access_token"))

    def author(self, account: Account) -> str:
        author = account.option("author")
        if not isinstance(author, str) or not author.startswith(_AUTHOR_PREFIXES):
            raise Rejected(f"account {account.name}: option 'author' is not a person/org URN")
        return author

    async def _image_bytes(self, media: str) -> tuple[bytes, str]:
        """The image's bytes and type: a local file or an http(s) URL, read or fetched through
        the core (confined to the media roots or public addresses, checked by content)."""
        image = await load_media(self.client, media, _IMAGES)
        return image.content, image.mime

    async def _upload_image(self, api: LinkedInApi, author: str, media: str) -> str:
        """Upload one image; its ``urn:li:image:...``."""
        # The image first: one that cannot be had costs LinkedIn no request.
        content, mime = await self._image_bytes(media)
        response = await api.request(
            "POST",
            "images?action=initializeUpload",
            json={"initializeUploadRequest": {"owner": author}},
        )
        value = (json_object(response) or {}).get("value")
        if not isinstance(value, dict) or not value.get("uploadUrl") or not value.get("image"):
            raise Transient("LinkedIn: initializeUpload answered without an upload address")
        await api.request(
            "PUT",
            str(value["uploadUrl"]),
            content=content,
            headers={**api.headers(), "Content-Type": mime},
        )
        return str(value["image"])

    # -- network calls ---------------------------------------------------------------------

    async def publish(
        self, post: OutgoingPost, account: Account, idempotency_key: str
    ) -> Published:
        await tokens.fresh(self, account)
        api = self.api(account)
        author = self.author(account)
        video = upload = None
        if len(post.media) == 1 and _is_video(post.media[0]):
            upload = self._video_upload(
                api, author, idempotency_key or post.idempotency_key or post.key
            )
            made, _ = await upload.made()
            if made is not None:
                return _published(made)  # an earlier attempt made it
            video = await upload.upload(post.media[0])
            post = replace(post, media=(), media_meta=())
        images = [await self._upload_image(api, author, m) for m in post.media]
        body: dict[str, Any] = {
            "author": author,
            "commentary": escape(self.compose_text(post)),
            "visibility": "PUBLIC",
            "distribution": {
                "feedDistribution": "MAIN_FEED",
                "targetEntities": [],
                "thirdPartyDistributionChannels": [],
            },
            "lifecycleState": "PUBLISHED",
            "isReshareDisabledByAuthor": False,
        }
        described = [_image(i, post.meta(n).alt) for n, i in enumerate(images)]
        if video is not None:
            body["content"] = {"media": {"id": video}}
        elif len(described) == 1:
            body["content"] = {"media": described[0]}
        elif described:
            body["content"] = {"multiImage": {"images": described}}
        response = await api.request("POST", "posts", json=body, mutating=True)
        urn = response.headers.get("x-restli-id") or (json_object(response) or {}).get("id")
        if not urn:
            raise OutcomeUnknown("LinkedIn: the post was accepted without an x-restli-id")
        if upload is not None:
            await upload.posted(str(urn))
        return _published(str(urn))

    def _video_upload(self, api: LinkedInApi, author: str, key: str) -> VideoUpload:
        return VideoUpload(
            api,
            author,
            self.checkpoints,
            key,
            poll_interval=self.video_poll_interval,
            poll_attempts=self.video_poll_attempts,
        )

    async def fetch_metrics(
        self, posts: Sequence[OutgoingPost], account: Account
    ) -> Mapping[str, Metrics]:
        api = self.api(account)
        urns = [p.remote_id for p in posts if p.remote_id]
        out: dict[str, Metrics] = {}
        author = self.author(account)
        if author.startswith("urn:li:organization:"):
            out.update(await self._organization_stats(api, author, urns))
        for urn in urns:
            if urn in out:
                continue
            try:
                body = await api.get_json(f"socialActions/{_urn(urn)}")
            except Rejected:
                continue  # deleted: left out
            likes = body.get("likesSummary")
            likes = likes if isinstance(likes, dict) else {}
            comments = body.get("commentsSummary")
            comments = comments if isinstance(comments, dict) else {}
            out[urn] = Metrics(
                remote_id=urn,
                likes=_count(likes.get("totalLikes")),
                comments=_count(comments.get("totalFirstLevelComments")),
            )
        return out

    async def _organization_stats(
        self, api: LinkedInApi, organization: str, urns: Sequence[str]
    ) -> dict[str, Metrics]:
        """Lifetime share statistics of an organization's posts; {} when not permitted
        (they need ``r_organization_social`` and an admin role), so counts still come."""
        out: dict[str, Metrics] = {}
        for start in range(0, len(urns), _STATS_PER_READ):
            chunk = urns[start : start + _STATS_PER_READ]
            query = [
                "q=organizationalEntity",
                f"organizationalEntity={_urn(organization)}",
            ]
            shares = [u for u in chunk if u.startswith("urn:li:share:")]
            ugc = [u for u in chunk if u.startswith("urn:li:ugcPost:")]
            if shares:
                query.append(f"shares=List({','.join(_urn(u) for u in shares)})")
            if ugc:
                query.append(f"ugcPosts=List({','.join(_urn(u) for u in ugc)})")
            if not (shares or ugc):
                continue
            try:
                body = await api.get_json("organizationalEntityShareStatistics?" + "&".join(query))
            except (Rejected, AuthExpired) as exc:
                if exc.http_status == 401:
                    raise
                return {}
            elements = body.get("elements")
            for element in elements if isinstance(elements, list) else []:
                if not isinstance(element, dict):
                    continue
                urn = element.get("share") or element.get("ugcPost")
                stats = element.get("totalShareStatistics")
                if not isinstance(urn, str) or not isinstance(stats, dict):
                    continue
                out[urn] = Metrics(
                    remote_id=urn,
                    likes=_count(stats.get("likeCount")),
                    comments=_count(stats.get("commentCount")),
                    shares=_count(stats.get("shareCount")),
                    clicks=_count(stats.get("clickCount")),
                    impressions=_count(stats.get("impressionCount")),
                    reach=_count(stats.get("uniqueImpressionsCount")),
                )
        return out

    async def lookup(self, post: OutgoingPost, account: Account) -> Published | None:
        """Find the post among the author's 20 most recent by its commentary (a video post:
        by the video it carries, ``content.media.id``, since its commentary may be empty or
        shared); None when they reach back past the due time without it. A video post noted
        as made is answered from the note. Reading member posts needs a permission LinkedIn
        grants to few apps: without it, ``OutcomeUnknown``."""
        api = self.api(account)
        author = self.author(account)
        text = self.compose_text(post)
        wanted = {escape(text).strip(), text.strip()}
        same = _commenting(wanted)
        if len(post.media) == 1 and _is_video(post.media[0]):
            made, video = await self._video_upload(
                api, author, post.idempotency_key or post.key
            ).made()
            if made is not None:
                return _published(made)
            if video is not None:
                same = _carrying(video)
        path = f"posts?author={_urn(author)}&q=author&count={_LOOKUP_DEPTH}&sortBy=CREATED"
        try:
            body = await api.get_json(path)
        except PublishError as exc:
            if isinstance(exc, AuthExpired) and exc.http_status == 401:
                raise
            raise OutcomeUnknown(f"LinkedIn: cannot look the post up: {exc.message}") from None
        elements = body.get("elements")
        items = elements if isinstance(elements, list) else []
        since = post.due_at - _SKEW if post.due_at else None
        oldest: datetime | None = None
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("createdAt"), int):
                continue
            when = datetime.fromtimestamp(item["createdAt"] / 1000, UTC)
            oldest = when if oldest is None else min(oldest, when)
            if same(item) and item.get("id") and (since is None or when >= since):
                return _published(str(item["id"]))
        if since is not None and (len(items) < _LOOKUP_DEPTH or (oldest and oldest < since)):
            return None
        raise OutcomeUnknown(
            f"LinkedIn: the post is not among the {len(items)} most recent ones, which do "
            "not reach back to when it was sent"
        )


def _published(urn: str) -> Published:
    return Published(urn, url=f"https://www.linkedin.com/feed/update/{urn}")


def _commenting(wanted: set[str]) -> Callable[[Mapping[str, Any]], bool]:
    """Whether a listed post's commentary is one of ``wanted``."""
    return lambda item: str(item.get("commentary", "")).strip() in wanted


def _carrying(video: str) -> Callable[[Mapping[str, Any]], bool]:
    """Whether a listed post carries ``video`` (``content.media.id``)."""

    def match(item: Mapping[str, Any]) -> bool:
        content = item.get("content")
        found = content.get("media") if isinstance(content, dict) else None
        return isinstance(found, dict) and found.get("id") == video

    return match


def _image(urn: str, alt: str | None) -> dict[str, str]:
    """An image of a post's content, with its alt text (``altText``) when the plan gives one."""
    return {"id": urn, "altText": alt} if alt else {"id": urn}


def _video_issue(entry: str) -> Issue | None:
    """A video the Videos API refuses by its name: not a local MP4. Its size (75 KB to
    500 MB) and length (3 seconds to 30 minutes) are the core's to check, by content
    (``capabilities.video``)."""
    if media.is_url(entry):
        return Issue(
            "media",
            f"{entry}: LinkedIn videos are uploaded from local files",
            "download the video and give its path",
        )
    if media.guess_type(entry) != "video/mp4":
        return Issue("media", f"{entry}: LinkedIn takes MP4 videos")
    return None
