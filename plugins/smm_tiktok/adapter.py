"""TikTok direct posts of one video, through the Content Posting API.

``creator_info/query`` first (which privacy levels the creator has, the longest video they may
post, whether comments, duets and stitches are off), then ``video/init`` with the caption and
the settings, then the file: ``FILE_UPLOAD`` in chunks (``PUT upload_url`` with
``Content-Range``), or ``PULL_FROM_URL`` for a video on the operator's verified domain.
TikTok processes the video and posts it; ``status/fetch`` is polled until
``PUBLISH_COMPLETE``.

The ``publish_id`` and upload URL are noted (``scheduler.checkpoints``) before the first chunk:
a later attempt of the same post asks ``status/fetch`` how many bytes TikTok has
(``uploaded_bytes``) and sends the rest, instead of a second video. An upload that never
completes never becomes a post, so starting over once TikTok has let go of it (its upload
URL lives an hour) cannot duplicate.
"""

from __future__ import annotations

import asyncio
import mimetypes
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import structlog

from scheduler import media as media_files
from scheduler import tokens
from scheduler.account_settings import settings_issues
from scheduler.adapter import (
    NOT_SENT,
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
from scheduler.mp4 import duration_seconds
from smm_tiktok.api import api_error, transport_error

__all__ = ["TikTokAdapter", "chunking"]

log = structlog.get_logger(__name__)

DEFAULT_API_BASE = "https://open.tiktokapis.com"
TOKEN_URL = "https://open.tiktokapis.com/v2/oauth/token/"
PRIVACY = ("PUBLIC_TO_EVERYONE", "MUTUAL_FOLLOW_FRIENDS", "FOLLOWER_OF_CREATOR", "SELF_ONLY")
#: The options this plugin reads.
ACCOUNT_OPTIONS = (
    "api_base",
    "brand_content",
    "brand_organic",
    "chunk_mib",
    "daily_post_cap",
    "disable_comment",
    "disable_duet",
    "disable_stitch",
    "is_aigc",
    "privacy_level",
    "processing_checks",
    "processing_interval",
    "token_url",
    "video_cover_timestamp_ms",
)
VIDEO_TYPES = ("video/mp4", "video/quicktime", "video/webm")
MB = 1024 * 1024
MIN_CHUNK = 5 * MB
MAX_CHUNK = 64 * MB
#: TikTok's upload URL is valid for an hour after ``video/init``.
UPLOAD_URL_LIFETIME = timedelta(hours=1)
#: ``video/query`` takes up to 20 ids a call.
_IDS_PER_READ = 20
_LOOKUP_DEPTH = 20
_SKEW = timedelta(minutes=5)
#: How many posts a creator may make through the API in 24 hours (TikTok: "around 15").
DAILY_POST_CAP = 15
POST_CAP = "tiktok-posts"
_DONE = "PUBLISH_COMPLETE"
_FAILED = "FAILED"


def chunking(size: int, preferred: int) -> tuple[int, int]:
    """(chunk_size, total_chunk_count) as TikTok wants them: a file under 5 MB goes whole;
    otherwise chunks of 5-64 MB, the last one taking the remainder (so up to 128 MB)."""
    if size < MIN_CHUNK:
        return size, 1
    chunk = min(max(preferred, MIN_CHUNK), MAX_CHUNK, size)
    return chunk, max(1, size // chunk)


def _count(node: object, key: str) -> int | None:
    value = node.get(key) if isinstance(node, dict) else None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


class TikTokAdapter(Adapter):
    """Posts videos to the TikTok account of the token.

    Options: ``privacy_level`` (required: one the creator has), ``brand_content`` (a paid
    partnership), ``brand_organic`` (promotes the creator's own business), ``disable_comment``,
    ``disable_duet``, ``disable_stitch``, ``is_aigc`` (all false by default),
    ``video_cover_timestamp_ms``, ``chunk_mib`` (default 10), ``processing_checks`` and
    ``processing_interval``, ``api_base`` (default ``https://open.tiktokapis.com``).
    Credential: ``access_token`` (scopes ``video.publish``, ``video.list``,
    ``user.info.stats``).
    """

    platform = "tiktok"
    capabilities = Capabilities(
        text_limit=2200,
        text_counting="utf16",
        max_media=1,
        media_types=VIDEO_TYPES,
        idempotent=False,
        metrics=frozenset({"likes", "comments", "shares", "views", "followers"}),
        has_reach=True,
        # video/init allows 6 requests a minute per user token.
        rate_limit=RateLimitPolicy(requests=6, per=timedelta(minutes=1), concurrency=1),
        requires_media=True,
    )
    #: TikTok's access tokens live a day: renew them with two hours to spare.
    refresh_lead = timedelta(hours=2)
    #: TikTok may hand out a new refresh token at every refresh.
    rotates_refresh_token = True

    def __init__(
        self,
        client: httpx.AsyncClient,
        checkpoints: Checkpoints | None = None,
        ledger: Ledger | None = None,
    ) -> None:
        super().__init__(client)
        #: Where publish ids and upload URLs are remembered between attempts.
        self.checkpoints = checkpoints if checkpoints is not None else Checkpoints()
        #: How many posts each creator made in the last 24 hours.
        self.ledger = ledger if ledger is not None else Ledger()

    def budgets(self, account: Account) -> list[Budget]:
        """The creator's cap on API posts in 24 hours (``daily_post_cap``, default 15)."""
        return [
            Budget(
                POST_CAP,
                "TikTok posts through the API",
                int(account.option("daily_post_cap", DAILY_POST_CAP)),
                timedelta(hours=24),
                scope=account.name,
            )
        ]

    def budget_cost(self, post: OutgoingPost, account: Account) -> dict[str, int]:
        """One post."""
        return {POST_CAP: 1}

    async def _spend_cap(self, account: Account) -> None:
        """Count the post against the creator's cap, or wait without sending anything."""
        (budget,) = self.budgets(account)
        free_at = await asyncio.to_thread(self.ledger.spend, budget, 1, datetime.now(UTC))
        if free_at is not None:
            raise RateLimited(
                f"TikTok: {budget.limit} posts in 24 hours made already; waiting until "
                f"{free_at:%Y-%m-%d %H:%M} UTC",
                retry_at=free_at,
                code="post_cap_budget",
            )

    async def refresh_token(self, account: Account) -> tokens.TokenSet:
        """TikTok's OAuth 2 refresh: ``refresh_token``, ``client_key``, ``client_secret``."""
        return await tokens.oauth2_refresh(
            self.client,
            str(account.option("token_url", TOKEN_URL)),
            {
                "grant_type": "refresh_token",
                "refresh_token": account.secret("refresh_token"),
                "client_key": account.secret("client_key"),
                "client_secret": account.secret("client_secret"),
            },
            network="TikTok",
        )

    # -- offline ---------------------------------------------------------------------------

    def text_length(self, text: str) -> int:
        """UTF-16 code units, as TikTok counts its 2,200."""
        return len(text.encode("utf-16-le")) // 2

    @classmethod
    def check_account(cls, account: Account) -> list[Issue]:
        """The privacy level is required (TikTok wants the creator's explicit choice), and
        an option this plugin does not read is a typo."""
        issues = settings_issues(
            account,
            known=ACCOUNT_OPTIONS,
            required=[("privacy_level", "who may see the posts", '"SELF_ONLY"')],
            urls=["api_base", "token_url"],
        )
        privacy = account.option("privacy_level")
        if privacy and privacy not in PRIVACY:
            issues.append(
                Issue(
                    "options.privacy_level",
                    f"option 'privacy_level' must be one of {', '.join(PRIVACY)}, got {privacy!r}",
                )
            )
        return issues

    def validate(self, post: OutgoingPost, account: Account) -> list[Issue]:
        issues = super().validate(post, account)
        for media in post.media:
            parsed = urlparse(media)
            kind = mimetypes.guess_type(parsed.path)[0]
            if kind not in VIDEO_TYPES:
                issues.append(Issue("media", f"{media}: TikTok posts one MP4, MOV or WebM video"))
            elif parsed.scheme and parsed.scheme != "https":
                issues.append(Issue("media", f"{media}: TikTok pulls videos over https only"))
        try:
            self.settings(account)
        except Rejected as exc:
            issues.append(Issue("account", exc.message))
        return issues

    def settings(self, account: Account) -> dict[str, Any]:
        """The account's post settings, checked against TikTok's rules."""
        privacy = account.option("privacy_level")
        if privacy not in PRIVACY:
            raise Rejected(
                f"account {account.name}: option 'privacy_level' must be chosen, one of "
                f"{', '.join(PRIVACY)} (TikTok wants the creator's explicit choice)"
            )
        flags = {
            "brand_content": account.option("brand_content", False),
            "brand_organic": account.option("brand_organic", False),
            "disable_comment": account.option("disable_comment", False),
            "disable_duet": account.option("disable_duet", False),
            "disable_stitch": account.option("disable_stitch", False),
            "is_aigc": account.option("is_aigc", False),
        }
        bad = sorted(name for name, value in flags.items() if not isinstance(value, bool))
        if bad:
            raise Rejected(f"account {account.name}: options {bad} are true or false")
        if flags["brand_content"] and privacy == "SELF_ONLY":
            raise Rejected(
                f"account {account.name}: branded content (brand_content) cannot be private "
                "(SELF_ONLY): TikTok requires it to be visible"
            )
        numbers = {
            "chunk_mib": account.option("chunk_mib", 10),
            "processing_checks": account.option("processing_checks", 10),
            "processing_interval": account.option("processing_interval", 3),
            "video_cover_timestamp_ms": account.option("video_cover_timestamp_ms", 1000),
        }
        if not all(
            isinstance(v, int | float) and not isinstance(v, bool) and v >= 0
            for v in numbers.values()
        ):
            raise Rejected(f"account {account.name}: options {sorted(numbers)} are numbers >= 0")
        return {"privacy": privacy, **flags, **numbers}

    # -- requests --------------------------------------------------------------------------

    def _base(self, account: Account) -> str:
        return str(account.option("api_base", DEFAULT_API_BASE)).rstrip("/")

    async def _call(
        self,
        account: Account,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        params: Mapping[str, str] | None = None,
        mutating: bool = False,
        method: str = "POST",
    ) -> dict[str, Any]:
        token = account.secret("access_token")
        where = f"{method} {path}"
        try:
            response = await self.client.request(
                method,
                f"{self._base(account)}{path}",
                params=params,
                json=body if method == "POST" else None,
                headers={
                    "Authorization": f"Bearer {token}",
                    "Content-Type": "application/json; charset=UTF-8",
                },
            )
        except httpx.HTTPError as exc:
            raise transport_error(exc, where=where, mutating=mutating) from None
        error = api_error(response, where=where, mutating=mutating, secret=token)
        if error is not None:
            raise error
        data = (json_object(response) or {}).get("data")
        return data if isinstance(data, dict) else {}

    async def _status(self, account: Account, publish_id: str) -> dict[str, Any]:
        return await self._call(
            account, "/v2/post/publish/status/fetch/", {"publish_id": publish_id}
        )

    # -- publish ---------------------------------------------------------------------------

    async def publish(
        self, post: OutgoingPost, account: Account, idempotency_key: str
    ) -> Published:
        settings = self.settings(account)
        await tokens.fresh(self, account)
        key = idempotency_key or post.key
        if len(post.media) != 1:
            raise Rejected("TikTok: a post is one video")
        media = post.media[0]
        note = await self.checkpoints.recall(self.platform, key)
        if note and isinstance(note.get("publish_id"), str):
            resumed = await self._resume(account, key, note, media, settings)
            if resumed is not None:
                return resumed
        creator = await self._call(account, "/v2/post/publish/creator_info/query/")
        post_info = self._post_info(post, settings, creator, media)
        await self._spend_cap(account)
        if urlparse(media).scheme == "https":
            pull: dict[str, Any] = {"source": "PULL_FROM_URL", "video_url": media}
            # TikTok starts pulling, then posting, as soon as it accepts this request.
            data = await self._init(account, post_info, pull, mutating=True)
            publish_id = self._publish_id(data)
            await self._note(key, {"publish_id": publish_id, "pull": True, "at": time.time()})
            return await self._follow(account, key, publish_id, settings)
        path = Path(media)
        size = self._size(path)
        chunk, count = chunking(size, int(settings["chunk_mib"] * MB))
        source: dict[str, Any] = {
            "source": "FILE_UPLOAD",
            "video_size": size,
            "chunk_size": chunk,
            "total_chunk_count": count,
        }
        data = await self._init(account, post_info, source, mutating=False)
        publish_id = self._publish_id(data)
        upload_url = data.get("upload_url")
        if not isinstance(upload_url, str) or not upload_url.startswith("https://"):
            raise Transient("TikTok: video/init answered without an upload_url")
        note = {
            "publish_id": publish_id,
            "upload_url": upload_url,
            "size": size,
            "chunk": chunk,
            "count": count,
            "at": time.time(),
        }
        try:
            await asyncio.to_thread(self.checkpoints.save, self.platform, key, note)
        except OSError as exc:
            # Nothing is sent without the note; the unused upload expires within the hour.
            raise Transient(f"TikTok: cannot write the upload checkpoint: {exc.strerror}") from None
        await self._upload(account, note, path, 0)
        return await self._follow(account, key, publish_id, settings)

    def _post_info(
        self,
        post: OutgoingPost,
        settings: Mapping[str, Any],
        creator: Mapping[str, Any],
        media: str,
    ) -> dict[str, Any]:
        options = creator.get("privacy_level_options")
        if isinstance(options, list) and settings["privacy"] not in options:
            raise Rejected(
                f"TikTok: this creator cannot post as {settings['privacy']}; their privacy "
                f"levels are {', '.join(map(str, options))}"
            )
        longest = creator.get("max_video_post_duration_sec")
        if isinstance(longest, int) and not urlparse(media).scheme:
            with media_files.open_local(media) as video:
                duration = duration_seconds(video)
            if duration is not None and duration > longest:
                raise Rejected(
                    f"TikTok: the video lasts {duration:.0f} s, this creator may post at "
                    f"most {longest} s"
                )
        return {
            "title": self.compose_text(post),
            "privacy_level": settings["privacy"],
            # A setting the creator turned off in the app stays off.
            "disable_comment": settings["disable_comment"]
            or creator.get("comment_disabled") is True,
            "disable_duet": settings["disable_duet"] or creator.get("duet_disabled") is True,
            "disable_stitch": settings["disable_stitch"] or creator.get("stitch_disabled") is True,
            "video_cover_timestamp_ms": int(settings["video_cover_timestamp_ms"]),
            "brand_content_toggle": settings["brand_content"],
            "brand_organic_toggle": settings["brand_organic"],
            "is_aigc": settings["is_aigc"],
        }

    async def _init(
        self, account: Account, post_info: Any, source: Any, *, mutating: bool
    ) -> dict[str, Any]:
        return await self._call(
            account,
            "/v2/post/publish/video/init/",
            {"post_info": post_info, "source_info": source},
            mutating=mutating,
        )

    @staticmethod
    def _publish_id(data: Mapping[str, Any]) -> str:
        publish_id = data.get("publish_id")
        if not isinstance(publish_id, str) or not publish_id:
            raise OutcomeUnknown("TikTok: video/init answered without a publish_id")
        return publish_id

    def _size(self, path: Path) -> int:
        # Through the core: confined to the media roots, a video by its content.
        size = media_files.local_info(str(path), self.capabilities).size
        if size == 0:
            raise Rejected(f"TikTok: {path} is empty")
        return size

    async def _note(self, key: str, note: Mapping[str, Any]) -> None:
        try:
            await asyncio.to_thread(self.checkpoints.save, self.platform, key, note)
        except OSError as exc:
            # The request is sent already; lookup still searches the account's videos.
            log.warning("tiktok_checkpoint_failed", error=exc.strerror)

    async def _resume(
        self,
        account: Account,
        key: str,
        note: Mapping[str, Any],
        media: str,
        settings: Mapping[str, Any],
    ) -> Published | None:
        """Go on with an earlier attempt's publish id: its post, or None to start over (its
        upload never completed and can no longer complete)."""
        publish_id = str(note["publish_id"])
        state = await self._status(account, publish_id)
        status = state.get("status")
        size = note.get("size")
        uploaded = _count(state, "uploaded_bytes") or 0
        complete = note.get("pull") is True or (isinstance(size, int) and uploaded >= size)
        if status == _DONE:
            return self._published(publish_id, state)
        if status == _FAILED and not complete:
            await asyncio.to_thread(self.checkpoints.clear, self.platform, key)
            return None
        if status == _FAILED:
            await asyncio.to_thread(self.checkpoints.clear, self.platform, key)
            raise Rejected(f"TikTok could not post the video: {state.get('fail_reason')}")
        if not complete:
            age = time.time() - float(note.get("at", 0))
            if age >= UPLOAD_URL_LIFETIME.total_seconds() or not isinstance(size, int):
                await asyncio.to_thread(self.checkpoints.clear, self.platform, key)
                return None  # the upload URL is dead: this upload can never complete
            await self._upload(account, note, Path(media), uploaded)
        return await self._follow(account, key, publish_id, settings)

    async def _upload(
        self, account: Account, note: Mapping[str, Any], path: Path, uploaded: int
    ) -> None:
        """PUT the chunks from the one holding byte ``uploaded`` on, in order."""
        size, chunk, count = int(note["size"]), int(note["chunk"]), int(note["count"])
        url = str(note["upload_url"])
        kind = mimetypes.guess_type(path.name)[0] or "video/mp4"
        for index in range(min(uploaded // chunk, count - 1) if uploaded else 0, count):
            first = index * chunk
            last = size - 1 if index == count - 1 else first + chunk - 1
            data = await asyncio.to_thread(_read, path, first, last - first + 1)
            if len(data) != last - first + 1:
                raise Transient(f"TikTok: {path.name} changed while it was being uploaded")
            headers = {
                "Content-Type": kind,
                "Content-Range": f"bytes {first}-{last}/{size}",
            }
            try:
                response = await self.client.put(url, content=data, headers=headers)
            except httpx.HTTPError as exc:
                if isinstance(exc, NOT_SENT):
                    raise transport_error(exc, where="upload", mutating=False) from None
                # The chunk may be in; the next attempt asks TikTok how far it got.
                raise OutcomeUnknown(
                    f"TikTok: no answer ({type(exc).__name__}) to chunk {index + 1} of {count}; "
                    "the next attempt resumes from what TikTok has"
                ) from None
            if response.status_code not in (200, 201, 206):
                last_chunk = index == count - 1
                error = api_error(response, where="upload", mutating=last_chunk)
                raise error or Transient(f"TikTok: HTTP {response.status_code} on upload")

    async def _follow(
        self, account: Account, key: str, publish_id: str, settings: Mapping[str, Any]
    ) -> Published:
        """Poll ``status/fetch`` until the post is complete, failed, or the checks run out."""
        for check in range(max(1, int(settings["processing_checks"]))):
            if check:
                await asyncio.sleep(settings["processing_interval"])
            try:
                state = await self._status(account, publish_id)
            except (AuthExpired, OutcomeUnknown):
                raise
            except PublishError as exc:
                raise OutcomeUnknown(
                    f"TikTok: the video is uploaded; its status is unknown ({exc.message})"
                ) from None
            if state.get("status") == _DONE:
                return self._published(publish_id, state)
            if state.get("status") == _FAILED:
                await asyncio.to_thread(self.checkpoints.clear, self.platform, key)
                raise Rejected(f"TikTok could not post the video: {state.get('fail_reason')}")
        raise OutcomeUnknown(
            f"TikTok is still processing {publish_id}; the post is settled when it is done"
        )

    @staticmethod
    def _published(publish_id: str, state: Mapping[str, Any]) -> Published:
        # Public posts get an id (and a URL); others are known by their publish id only.
        ids = state.get("publicaly_available_post_id")
        if isinstance(ids, list) and ids and isinstance(ids[0], int | str):
            return Published(str(ids[0]))
        return Published(publish_id)

    # -- after publishing ------------------------------------------------------------------

    async def fetch_metrics(
        self, posts: Sequence[OutgoingPost], account: Account
    ) -> Mapping[str, Metrics]:
        # Posts known only by their publish id (not public) have no counters to read.
        ids = [p.remote_id for p in posts if p.remote_id and p.remote_id.isdigit()]
        if not ids:
            return {}
        await tokens.fresh(self, account)
        user = await self._call(
            account, "/v2/user/info/", params={"fields": "follower_count"}, method="GET"
        )
        followers = _count(user.get("user"), "follower_count")
        out: dict[str, Metrics] = {}
        for start in range(0, len(ids), _IDS_PER_READ):
            chunk = ids[start : start + _IDS_PER_READ]
            data = await self._call(
                account,
                "/v2/video/query/",
                {"filters": {"video_ids": chunk}},
                params={"fields": "id,like_count,comment_count,share_count,view_count"},
            )
            videos = data.get("videos")
            for video in videos if isinstance(videos, list) else []:
                if not isinstance(video, dict) or video.get("id") is None:
                    continue
                remote_id = str(video["id"])
                out[remote_id] = Metrics(
                    remote_id=remote_id,
                    likes=_count(video, "like_count"),
                    comments=_count(video, "comment_count"),
                    shares=_count(video, "share_count"),
                    views=_count(video, "view_count"),
                    followers=followers,
                )
        return out

    async def lookup(self, post: OutgoingPost, account: Account) -> Published | None:
        """Settle an unknown outcome by the noted publish id's status, else by the account's
        latest videos (the caption, created at or after the due time)."""
        key = post.idempotency_key or post.key
        note = await asyncio.to_thread(self.checkpoints.load, self.platform, key)
        if note and isinstance(note.get("publish_id"), str):
            return await self._lookup_status(account, note)
        try:
            data = await self._call(
                account,
                "/v2/video/list/",
                {"max_count": _LOOKUP_DEPTH},
                params={"fields": "id,title,video_description,create_time"},
            )
        except (AuthExpired, OutcomeUnknown):
            raise
        except PublishError as exc:
            raise OutcomeUnknown(f"TikTok: cannot list the videos: {exc.message}") from None
        videos = data.get("videos")
        items = [v for v in videos if isinstance(v, dict)] if isinstance(videos, list) else []
        wanted = self.compose_text(post).strip()
        since = post.due_at - _SKEW if post.due_at else None
        oldest: datetime | None = None
        for video in items:
            created = _count(video, "create_time")
            if created is None:
                continue
            when = datetime.fromtimestamp(created, UTC)
            oldest = when if oldest is None else min(oldest, when)
            caption = str(video.get("video_description") or video.get("title") or "").strip()
            if caption == wanted and (since is None or when >= since):
                return Published(str(video.get("id")))
        if since is not None and (len(items) < _LOOKUP_DEPTH or (oldest and oldest < since)):
            return None
        raise OutcomeUnknown("TikTok: the latest videos do not reach back to the due time")

    async def _lookup_status(self, account: Account, note: Mapping[str, Any]) -> Published | None:
        publish_id = str(note["publish_id"])
        state = await self._status(account, publish_id)
        status = state.get("status")
        if status == _DONE:
            return self._published(publish_id, state)
        if status == _FAILED:
            return None  # nothing was posted; the next attempt reads why, or starts over
        size = note.get("size")
        uploaded = _count(state, "uploaded_bytes") or 0
        if note.get("pull") is not True and isinstance(size, int) and uploaded < size:
            return None  # an incomplete upload is not a post; the next attempt resumes it
        raise OutcomeUnknown(f"TikTok is still processing {publish_id}")


def _read(path: Path, offset: int, length: int) -> bytes:
    # Through the core: each chunk is read from a descriptor checked against the media roots.
    return media_files.read_range(str(path), offset, length)
