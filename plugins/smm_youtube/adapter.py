"""YouTube videos through the Data API v3: resumable upload, thumbnail, processing, metrics.

A post is one video: its first line is the title, the rest of the text (and the link) the
description, its tags the video's tags; its media are the video file and, optionally, a
JPEG or PNG thumbnail. The upload is a resumable session (``smm_youtube.upload``) whose URI
is written to a checkpoint (``scheduler.checkpoints``) before the first byte goes out: any
later attempt of the same post, after a timeout, a crash or a kill -9, asks that session
where it is and goes on from there. A session can only ever make one video, so resuming it
cannot publish twice.
"""

from __future__ import annotations

import asyncio
import mimetypes
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import structlog

from scheduler import media as media_files
from scheduler import tokens
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
    json_object,
)
from scheduler.budgets import Budget, Ledger
from scheduler.checkpoints import Checkpoints
from smm_youtube.errors import google_error, transport_error
from smm_youtube.upload import CHUNK_UNIT, Complete, ResumableUpload, SessionGone

__all__ = ["YouTubeAdapter"]

log = structlog.get_logger(__name__)

DEFAULT_API_BASE = "https://www.googleapis.com"
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"
VIDEO_TYPES = (
    "video/mp4",
    "video/quicktime",
    "video/webm",
    "video/x-msvideo",
    "video/x-matroska",
    "video/mpeg",
    "video/3gpp",
)
THUMBNAIL_TYPES = ("image/jpeg", "image/png")
TITLE_LIMIT = 100
DESCRIPTION_LIMIT = 5000  # bytes of UTF-8
TAGS_LIMIT = 500
THUMBNAIL_LIMIT = 2 * 1024 * 1024
PRIVACY = ("public", "unlisted", "private")
#: A Google Cloud project's default daily quota, and what this adapter's calls cost of it
#: (https://developers.google.com/youtube/v3/determine_quota_cost).
DAILY_UNITS = 10_000
INSERT_UNITS = 1600
THUMBNAIL_UNITS = 50
LIST_UNITS = 1
COMMENT_UNITS = 50  # commentThreads.insert
QUOTA = "youtube-units"
#: How often a first comment looks whether its video is live before it gives up, and the
#: longest wait between looks (the core allows a comment 30 seconds).
COMMENT_CHECKS = 3
COMMENT_INTERVAL_CAP = 8.0
#: ``videos.list`` takes up to 50 ids a call.
_IDS_PER_READ = 50
_SKEW = timedelta(minutes=5)
_LOOKUP_DEPTH = 50


def _kind(media: str) -> str | None:
    return mimetypes.guess_type(urlparse(media).path)[0]


def _number(node: object, key: str) -> int | None:
    """A counter YouTube sends as a decimal string (``"viewCount": "1042"``)."""
    value = node.get(key) if isinstance(node, dict) else None
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def tags_length(tags: Sequence[str]) -> int:
    """The tags' length as YouTube counts it: commas between, quotes around tags with spaces."""
    return sum(len(t) + (2 if " " in t else 0) for t in tags) + max(0, len(tags) - 1)


class YouTubeAdapter(Adapter):
    """Uploads videos to the channel of the token.

    Options: ``privacy`` (``public``, ``unlisted`` or ``private``; default ``public``),
    ``category_id`` (default ``22``, People & Blogs), ``made_for_kids`` (default false),
    ``notify_subscribers`` (default true), ``chunk_mib`` (upload chunk, MiB, default 8),
    ``processing_checks`` and ``processing_interval`` (how long publish follows processing),
    ``api_base`` (default ``https://www.googleapis.com``). Credential: ``access_token`` (an
    OAuth 2 token with the ``youtube.upload`` and ``youtube.readonly`` scopes, or
    ``youtube``; first comments need ``youtube.force-ssl``).
    """

    platform = "youtube"
    capabilities = Capabilities(
        text_limit=DESCRIPTION_LIMIT,
        text_counting="utf8_bytes",
        max_media=2,
        media_types=(*VIDEO_TYPES, *THUMBNAIL_TYPES),
        idempotent=False,
        metrics=frozenset({"likes", "comments", "views", "followers"}),
        has_reach=True,
        rate_limit=RateLimitPolicy(requests=10, per=timedelta(seconds=1), concurrency=1),
        requires_media=True,
        post_options=frozenset({"first_comment"}),
        # commentThreads.insert refuses a longer textOriginal (commentTextTooLong) without
        # giving the number in its reference; 10,000 characters is YouTube's comment limit.
        comment_limit=10_000,
    )
    #: Google's access tokens live an hour: renew them with ten minutes to spare.
    refresh_lead = timedelta(minutes=10)
    rotates_refresh_token = False

    def __init__(
        self,
        client: httpx.AsyncClient,
        checkpoints: Checkpoints | None = None,
        ledger: Ledger | None = None,
    ) -> None:
        super().__init__(client)
        #: Where upload sessions are remembered between attempts.
        self.checkpoints = checkpoints if checkpoints is not None else Checkpoints()
        #: What each quota project has spent today.
        self.ledger = ledger if ledger is not None else Ledger()

    def budgets(self, account: Account) -> list[Budget]:
        """The project's daily quota (``daily_quota``, default 10,000 units), shared by the
        accounts that name the same ``quota_project``; the day is Pacific time."""
        return [
            Budget(
                QUOTA,
                "YouTube Data API quota units",
                int(account.option("daily_quota", DAILY_UNITS)),
                "day",
                "America/Los_Angeles",
                scope=str(account.option("quota_project", account.name)),
            )
        ]

    def budget_cost(self, post: OutgoingPost, account: Account) -> dict[str, int]:
        """An upload, its thumbnail, the processing checks that follow it, and the first
        comment with the checks before it: all taken from the quota when the upload starts,
        so a video goes out only when its comment can follow."""
        thumbnail = any(_kind(m) in THUMBNAIL_TYPES for m in post.media)
        checks = self.settings(account)["checks"]
        units = INSERT_UNITS + (THUMBNAIL_UNITS if thumbnail else 0) + checks * LIST_UNITS
        if post.options.first_comment:
            units += COMMENT_UNITS + COMMENT_CHECKS * LIST_UNITS
        return {QUOTA: units}

    async def refresh_token(self, account: Account) -> tokens.TokenSet:
        """Google's OAuth 2 refresh: ``refresh_token``, ``client_id``, ``client_secret``."""
        return await tokens.oauth2_refresh(
            self.client,
            str(account.option("token_url", GOOGLE_TOKEN_URL)),
            {
                "grant_type": "refresh_token",
                "refresh_token": account.secret("refresh_token"),
                "client_id": account.secret("client_id"),
                "client_secret": account.secret("client_secret"),
            },
            network="Google",
        )

    # -- offline ---------------------------------------------------------------------------

    @staticmethod
    def title(post: OutgoingPost) -> str:
        """The video's title: the text's first line."""
        return post.text.strip().split("\n", 1)[0].strip()

    def compose_text(self, post: OutgoingPost) -> str:
        """The description: the text after its first line, then the link. Tags are the
        video's own tags, not hashtags in the description."""
        rest = post.text.strip().split("\n", 1)
        body = rest[1].strip() if len(rest) > 1 else ""
        return super().compose_text(replace(post, text=body, tags=()))

    def text_length(self, text: str) -> int:
        return len(text.encode("utf-8"))

    def tag_issues(self, post: OutgoingPost, account: Account) -> list[Issue]:
        """Tags are the video's own tags (which may hold spaces), not hashtags in the text."""
        return []

    def validate(self, post: OutgoingPost, account: Account) -> list[Issue]:
        issues = super().validate(post, account)
        title = self.title(post)
        if not title:
            issues.append(Issue("text", "a YouTube video needs a title: the text's first line"))
        elif len(title) > TITLE_LIMIT:
            issues.append(
                Issue(
                    "text",
                    f"the title (first line) has {len(title)} characters, YouTube takes "
                    f"{TITLE_LIMIT}",
                    "put a line break after a shorter title",
                )
            )
        if "<" in post.text or ">" in post.text:
            issues.append(Issue("text", "YouTube refuses '<' and '>' in titles and descriptions"))
        if tags_length(post.tags) > TAGS_LIMIT:
            issues.append(
                Issue("tags", f"the tags take {tags_length(post.tags)} characters, over 500")
            )
        videos = [m for m in post.media if _kind(m) in VIDEO_TYPES]
        images = [m for m in post.media if _kind(m) in THUMBNAIL_TYPES]
        if len(videos) != 1:
            issues.append(
                Issue("media", f"a YouTube post has exactly one video, not {len(videos)}")
            )
        for media in post.media:
            if media not in videos and media not in images:
                issues.append(Issue("media", f"{media}: not a video or a JPEG/PNG thumbnail"))
            elif urlparse(media).scheme:
                issues.append(Issue("media", f"{media}: YouTube uploads read local files"))
        if len(images) > 1:
            issues.append(Issue("media", "one thumbnail at most"))
        for image in images:
            path = Path(image)
            if path.is_file() and path.stat().st_size > THUMBNAIL_LIMIT:
                issues.append(Issue("media", f"{image}: a thumbnail is at most 2 MB"))
        try:
            self.settings(account)
        except Rejected as exc:
            issues.append(Issue("account", exc.message))
        return issues

    def settings(self, account: Account) -> dict[str, Any]:
        """The account's upload options, checked."""
        privacy = account.option("privacy", "public")
        if privacy not in PRIVACY:
            raise Rejected(f"account {account.name}: option 'privacy' must be one of {PRIVACY}")
        category = str(account.option("category_id", "22"))
        if not category.isdigit():
            raise Rejected(f"account {account.name}: option 'category_id' must be a number")
        kids = account.option("made_for_kids", False)
        notify = account.option("notify_subscribers", True)
        if not isinstance(kids, bool) or not isinstance(notify, bool):
            raise Rejected(
                f"account {account.name}: options 'made_for_kids' and 'notify_subscribers' "
                "are true or false"
            )
        chunk = account.option("chunk_mib", 8)
        checks = account.option("processing_checks", 6)
        interval = account.option("processing_interval", 5)
        if not all(isinstance(v, int | float) and v >= 0 for v in (chunk, checks, interval)):
            raise Rejected(
                f"account {account.name}: options 'chunk_mib', 'processing_checks' and "
                "'processing_interval' are non-negative numbers"
            )
        return {
            "privacy": privacy,
            "category": category,
            "kids": kids,
            "notify": notify,
            # Google wants whole 256 KiB units.
            "chunk": max(CHUNK_UNIT, int(chunk * 1024 * 1024) // CHUNK_UNIT * CHUNK_UNIT),
            "checks": int(checks),
            "interval": float(interval),
        }

    # -- helpers ---------------------------------------------------------------------------

    def _base(self, account: Account) -> str:
        return str(account.option("api_base", DEFAULT_API_BASE)).rstrip("/")

    def _headers(self, account: Account) -> dict[str, str]:
        return {"Authorization": f"Bearer {account.secret('access_token')}"}

    def _secrets(self, account: Account) -> tuple[str, ...]:
        return (account.secret("access_token"),)

    async def _get(self, account: Account, path: str, params: dict[str, str]) -> dict[str, Any]:
        where = f"GET {path}"
        headers = self._headers(account)
        try:
            response = await self.client.get(
                f"{self._base(account)}/youtube/v3/{path}", params=params, headers=headers
            )
        except httpx.HTTPError as exc:
            raise transport_error(exc, where=where, mutating=False) from None
        if response.status_code != 200:
            raise google_error(response, where=where, secrets=self._secrets(account))
        body = json_object(response)
        if body is None:
            raise Transient(f"YouTube: HTTP 200 without JSON on {where}")
        return body

    def _resource(self, post: OutgoingPost, settings: Mapping[str, Any]) -> dict[str, Any]:
        snippet: dict[str, Any] = {
            "title": self.title(post),
            "description": self.compose_text(post),
            "categoryId": settings["category"],
        }
        if post.tags:
            snippet["tags"] = [t.lstrip("#") for t in post.tags]
        return {
            "snippet": snippet,
            "status": {
                "privacyStatus": settings["privacy"],
                "selfDeclaredMadeForKids": settings["kids"],
                "embeddable": True,
            },
        }

    async def _open_session(
        self, account: Account, post: OutgoingPost, video: Path, size: int, settings: Any
    ) -> str:
        """Start a resumable session; its URI. Nothing is published by this request."""
        kind = mimetypes.guess_type(video.name)[0] or "video/*"
        headers = {
            **self._headers(account),
            "X-Upload-Content-Length": str(size),
            "X-Upload-Content-Type": kind,
        }
        params = {
            "uploadType": "resumable",
            "part": "snippet,status",
            "notifySubscribers": "true" if settings["notify"] else "false",
        }
        where = "POST videos.insert (resumable session)"
        try:
            response = await self.client.post(
                f"{self._base(account)}/upload/youtube/v3/videos",
                params=params,
                headers=headers,
                json=self._resource(post, settings),
            )
        except httpx.HTTPError as exc:
            raise transport_error(exc, where=where, mutating=False) from None
        if response.status_code != 200:
            raise google_error(response, where=where, secrets=self._secrets(account))
        session = response.headers.get("Location")
        if not session or not session.startswith(("https://", "http://")):
            raise Transient(f"YouTube: {where} answered without a session URI")
        return session

    # -- network calls ---------------------------------------------------------------------

    async def publish(
        self, post: OutgoingPost, account: Account, idempotency_key: str
    ) -> Published:
        settings = self.settings(account)
        await tokens.fresh(self, account)
        key = idempotency_key or post.key
        video_path = next((Path(m) for m in post.media if _kind(m) in VIDEO_TYPES), None)
        if video_path is None:
            raise Rejected("YouTube: the post has no video file")
        # Through the core: confined to the media roots, a video by its content.
        video_types = replace(self.capabilities, media_types=VIDEO_TYPES)
        size = media_files.local_info(str(video_path), video_types).size
        if size == 0:
            raise Rejected(f"YouTube: {video_path} is empty")
        headers = self._headers(account)
        note = await self.checkpoints.recall(self.platform, key)
        video: dict[str, Any] | None = None
        if note and isinstance(note.get("video_id"), str):
            video = {"id": note["video_id"]}  # uploaded by an attempt that did not report it
        elif note and isinstance(note.get("session"), str) and isinstance(note.get("size"), int):
            video = await self._resume(note, key, video_path, size, headers, settings)
        if video is None:
            video = await self._upload_new(account, post, key, video_path, size, settings)
        video_id = str(video["id"])
        await self._remember_video(key, video_id)
        await self._thumbnail(account, post, video_id)
        await self._follow_processing(account, video_id, settings, key)
        return Published(video_id, url=f"https://www.youtube.com/watch?v={video_id}")

    async def _spend_quota(self, post: OutgoingPost, account: Account) -> None:
        """Take the upload's units from today's quota, or wait without sending anything
        when earlier posts have spent it (YouTube would answer quotaExceeded)."""
        (budget,) = self.budgets(account)
        units = self.budget_cost(post, account)[QUOTA]
        now = datetime.now(UTC)
        reset = await asyncio.to_thread(self.ledger.spend, budget, units, now)
        if reset is not None:
            raise RateLimited(
                f"YouTube: today's quota of {budget.limit:,} units (project "
                f"{budget.scope}) is spent by earlier posts; this upload needs {units:,}; "
                f"waiting until it resets at {reset:%Y-%m-%d %H:%M} UTC",
                retry_at=reset,
                code="quota_budget",
            )

    async def _remember_video(self, key: str, video_id: str) -> None:
        """Note that the video exists, for a later attempt or lookup of the same post. The
        video is made: failing to note it is logged, not raised (the uploads search still
        finds it)."""
        try:
            await asyncio.to_thread(
                self.checkpoints.save, self.platform, key, {"video_id": video_id}
            )
        except OSError as exc:
            log.warning("youtube_checkpoint_failed", video=video_id, error=exc.strerror)

    async def _resume(
        self,
        note: Mapping[str, Any],
        key: str,
        path: Path,
        size: int,
        headers: dict[str, str],
        settings: Any,
    ) -> dict[str, Any] | None:
        """Go on with an earlier attempt's session: its video, or None when the file changed
        since (the old session is incomplete and can never become a video)."""
        upload = self._upload(note["session"], path, note["size"], headers, settings)
        try:
            state = await upload.status()
        except SessionGone:
            await asyncio.to_thread(self.checkpoints.clear, self.platform, key)
            raise OutcomeUnknown(
                "YouTube: the upload session of an earlier attempt has expired; the channel "
                "is searched before the video is sent again"
            ) from None
        if isinstance(state, Complete):
            return state.video
        if note["size"] != size:
            return None
        return (await upload.send_from(state)).video

    async def _upload_new(
        self,
        account: Account,
        post: OutgoingPost,
        key: str,
        path: Path,
        size: int,
        settings: Any,
    ) -> dict[str, Any]:
        """Open a session, remember it durably, then send the whole file."""
        await self._spend_quota(post, account)
        session = await self._open_session(account, post, path, size, settings)
        note = {"session": session, "size": size, "title": self.title(post)}
        try:
            await asyncio.to_thread(self.checkpoints.save, self.platform, key, note)
        except OSError as exc:
            # Without the note a crash could not resume: send nothing (the session is left
            # unused and expires).
            raise Transient(
                f"YouTube: cannot write the upload checkpoint: {exc.strerror}"
            ) from None
        upload = self._upload(session, path, size, self._headers(account), settings)
        return (await upload.send_from(0)).video

    def _upload(
        self, session: str, path: Path, size: int, headers: dict[str, str], settings: Any
    ) -> ResumableUpload:
        return ResumableUpload(
            self.client,
            session,
            path,
            size,
            headers,
            chunk_size=settings["chunk"],
            secrets=(headers["Authorization"].removeprefix("Bearer "),),
        )

    async def _thumbnail(self, account: Account, post: OutgoingPost, video_id: str) -> None:
        """``thumbnails.set``; the video exists already, so a failure is logged, not raised."""
        image = next((m for m in post.media if _kind(m) in THUMBNAIL_TYPES), None)
        if image is None:
            return
        thumbnails = replace(
            self.capabilities, media_types=THUMBNAIL_TYPES, max_media_bytes=THUMBNAIL_LIMIT
        )
        try:
            # Through the core: confined to the media roots, an image by its content.
            thumbnail = await media_files.read(image, thumbnails)
            response = await self.client.post(
                f"{self._base(account)}/upload/youtube/v3/thumbnails/set",
                params={"videoId": video_id},
                headers={**self._headers(account), "Content-Type": thumbnail.mime},
                content=thumbnail.content,
            )
        except (Rejected, httpx.HTTPError) as exc:
            log.warning("youtube_thumbnail_failed", video=video_id, error=type(exc).__name__)
            return
        if response.status_code != 200:
            error = google_error(response, where="thumbnails.set", secrets=self._secrets(account))
            log.warning("youtube_thumbnail_failed", video=video_id, error=error.message)

    async def _follow_processing(
        self, account: Account, video_id: str, settings: Mapping[str, Any], key: str
    ) -> None:
        """Poll ``videos.list part=status,processingDetails`` until the video is processed;
        a video YouTube failed or rejected is ``Rejected``. Still processing after the
        checks: published (YouTube goes on processing it)."""
        for check in range(settings["checks"]):
            if check:
                await asyncio.sleep(settings["interval"])
            try:
                body = await self._get(
                    account, "videos", {"part": "status,processingDetails", "id": video_id}
                )
            except PublishError:
                return  # the video exists; its state is only news
            items = body.get("items")
            item = items[0] if isinstance(items, list) and items else {}
            status = item.get("status") if isinstance(item, dict) else None
            upload_status = status.get("uploadStatus") if isinstance(status, dict) else None
            if upload_status in ("failed", "rejected"):
                reason = status.get("failureReason") or status.get("rejectionReason")  # type: ignore[union-attr]
                # A retry a person asks for uploads the (fixed) file again.
                await asyncio.to_thread(self.checkpoints.clear, self.platform, key)
                raise Rejected(f"YouTube {upload_status} video {video_id}: {reason}", code=reason)
            if upload_status == "processed":
                return

    async def publish_comment(self, post: OutgoingPost, account: Account, text: str) -> Published:
        """A top-level comment thread on the video (``commentThreads.insert``, 50 units,
        counted with the upload), once the video is live."""
        video_id = post.remote_id
        if not video_id:
            raise Rejected("YouTube: the post has no video to comment on")
        settings = self.settings(account)
        await tokens.fresh(self, account)
        channel = await self._live_channel(account, video_id, settings)
        resource = {
            "snippet": {
                "channelId": channel,
                "videoId": video_id,
                "topLevelComment": {"snippet": {"textOriginal": text}},
            }
        }
        where = "POST commentThreads.insert"
        try:
            response = await self.client.post(
                f"{self._base(account)}/youtube/v3/commentThreads",
                params={"part": "snippet"},
                headers=self._headers(account),
                json=resource,
            )
        except httpx.HTTPError as exc:
            raise transport_error(exc, where=where, mutating=True) from None
        if response.status_code != 200:
            error = google_error(response, where=where, secrets=self._secrets(account))
            if isinstance(error, Transient):  # a 5xx: the comment may have been made
                raise OutcomeUnknown(
                    f"{error.message}; the comment may be on the video",
                    http_status=error.http_status,
                    code=error.code,
                )
            raise error
        body = json_object(response) or {}
        thread_id = body.get("id")
        if not isinstance(thread_id, str) or not thread_id:
            raise OutcomeUnknown("YouTube: commentThreads.insert answered without an id")
        snippet = body.get("snippet")
        top = snippet.get("topLevelComment") if isinstance(snippet, dict) else None
        comment_id = top.get("id") if isinstance(top, dict) else None
        anchor = comment_id if isinstance(comment_id, str) and comment_id else thread_id
        return Published(thread_id, url=f"https://www.youtube.com/watch?v={video_id}&lc={anchor}")

    async def _live_channel(
        self, account: Account, video_id: str, settings: Mapping[str, Any]
    ) -> str:
        """The video's channel id once YouTube has processed the video (``videos.list
        part=snippet,status``, 1 unit a look); ``Rejected`` for a video YouTube failed,
        rejected or no longer has, ``Transient`` while it is still processing."""
        for check in range(COMMENT_CHECKS):
            if check:
                await asyncio.sleep(min(settings["interval"], COMMENT_INTERVAL_CAP))
            body = await self._get(account, "videos", {"part": "snippet,status", "id": video_id})
            items = body.get("items")
            item = items[0] if isinstance(items, list) and items else None
            if not isinstance(item, dict):
                raise Rejected(f"YouTube: video {video_id} is not on the channel")
            status = item.get("status")
            upload = status.get("uploadStatus") if isinstance(status, dict) else None
            if upload in ("failed", "rejected", "deleted"):
                raise Rejected(f"YouTube: video {video_id} is {upload}", code=upload)
            if upload == "processed":
                snippet = item.get("snippet")
                channel = snippet.get("channelId") if isinstance(snippet, dict) else None
                if not isinstance(channel, str) or not channel:
                    raise Transient(f"YouTube: video {video_id} came without its channelId")
                return channel
        raise Transient(f"YouTube: video {video_id} is still processing, not live yet")

    async def fetch_metrics(
        self, posts: Sequence[OutgoingPost], account: Account
    ) -> Mapping[str, Metrics]:
        ids = [p.remote_id for p in posts if p.remote_id]
        if not ids:
            return {}
        await tokens.fresh(self, account)
        channels = await self._get(account, "channels", {"part": "statistics", "mine": "true"})
        items = channels.get("items")
        stats = items[0].get("statistics") if isinstance(items, list) and items else None
        hidden = isinstance(stats, dict) and stats.get("hiddenSubscriberCount") is True
        followers = None if hidden else _number(stats, "subscriberCount")
        out: dict[str, Metrics] = {}
        for start in range(0, len(ids), _IDS_PER_READ):
            chunk = ids[start : start + _IDS_PER_READ]
            body = await self._get(account, "videos", {"part": "statistics", "id": ",".join(chunk)})
            videos = body.get("items")
            for video in videos if isinstance(videos, list) else []:
                if not isinstance(video, dict) or not isinstance(video.get("id"), str):
                    continue
                statistics = video.get("statistics")
                out[video["id"]] = Metrics(
                    remote_id=video["id"],
                    likes=_number(statistics, "likeCount"),
                    comments=_number(statistics, "commentCount"),
                    views=_number(statistics, "viewCount"),
                    followers=followers,
                )
        return out

    async def lookup(self, post: OutgoingPost, account: Account) -> Published | None:
        """Settle an unknown outcome: ask the upload session when one is remembered (308:
        not a video yet, and the next attempt resumes it), else search the channel's uploads
        for the title after the due time."""
        key = post.idempotency_key or post.key
        note = await asyncio.to_thread(self.checkpoints.load, self.platform, key)
        if note and isinstance(note.get("video_id"), str):
            video_id = note["video_id"]
            return Published(video_id, url=f"https://www.youtube.com/watch?v={video_id}")
        if note and isinstance(note.get("session"), str) and isinstance(note.get("size"), int):
            upload = ResumableUpload(
                self.client,
                note["session"],
                Path(),
                note["size"],
                self._headers(account),
                secrets=self._secrets(account),
            )
            try:
                state = await upload.status()
            except SessionGone:
                state = None
            except (AuthExpired, OutcomeUnknown):
                raise
            except PublishError as exc:
                raise OutcomeUnknown(f"YouTube: cannot ask the upload session: {exc}") from None
            if isinstance(state, Complete):
                video_id = str(state.video["id"])
                await self._remember_video(key, video_id)
                return Published(video_id, url=f"https://www.youtube.com/watch?v={video_id}")
            if isinstance(state, int):
                return None  # incomplete: no video; the next attempt resumes the session
        return await self._search_uploads(post, account)

    async def _search_uploads(self, post: OutgoingPost, account: Account) -> Published | None:
        try:
            channels = await self._get(
                account, "channels", {"part": "contentDetails", "mine": "true"}
            )
            items = channels.get("items")
            details = (
                items[0].get("contentDetails", {}) if isinstance(items, list) and items else {}
            )
            uploads = details.get("relatedPlaylists", {}).get("uploads")
            if not uploads:
                raise OutcomeUnknown("YouTube: the channel lists no uploads playlist")
            body = await self._get(
                account,
                "playlistItems",
                {"part": "snippet", "playlistId": uploads, "maxResults": str(_LOOKUP_DEPTH)},
            )
        except (AuthExpired, OutcomeUnknown):
            raise
        except PublishError as exc:
            raise OutcomeUnknown(f"YouTube: cannot search the uploads: {exc.message}") from None
        entries = body.get("items")
        listed = (
            [e.get("snippet") for e in entries if isinstance(e, dict)]
            if isinstance(entries, list)
            else []
        )
        since = post.due_at - _SKEW if post.due_at else None
        title = self.title(post)
        oldest: datetime | None = None
        for snippet in listed:
            if not isinstance(snippet, dict):
                continue
            try:
                when = datetime.fromisoformat(str(snippet.get("publishedAt")))
            except ValueError:
                continue
            oldest = when if oldest is None else min(oldest, when)
            video_id = (snippet.get("resourceId") or {}).get("videoId")
            if snippet.get("title") == title and video_id and (since is None or when >= since):
                return Published(video_id, url=f"https://www.youtube.com/watch?v={video_id}")
        if since is not None and (len(listed) < _LOOKUP_DEPTH or (oldest and oldest < since)):
            return None
        raise OutcomeUnknown("YouTube: the latest uploads do not reach back to the due time")
