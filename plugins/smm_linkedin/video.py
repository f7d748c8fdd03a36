"""LinkedIn video: the Videos API's multi-part upload, resumable, then processing followed.

1. ``POST /rest/videos?action=initializeUpload`` with ``{"initializeUploadRequest": {"owner",
   "fileSizeBytes", "uploadCaptions": false, "uploadThumbnail": false}}`` answers ``{"value":
   {"video": "urn:li:video:...", "uploadInstructions": [{"uploadUrl", "firstByte",
   "lastByte"}, ...], "uploadToken", "uploadUrlsExpireAt"}}``;
2. each part's bytes (``firstByte`` to ``lastByte``, inclusive) ``PUT`` to its ``uploadUrl``,
   answered with an ``ETag`` header;
3. ``POST /rest/videos?action=finalizeUpload`` with ``{"finalizeUploadRequest": {"video",
   "uploadToken", "uploadedPartIds": [<etags in order>]}}``;
4. ``GET /rest/videos/{urn}`` until ``status`` is ``AVAILABLE`` (``WAITING_UPLOAD``,
   ``PROCESSING``; ``PROCESSING_FAILED`` is a refusal).

(Microsoft Learn, LinkedIn Marketing, Community Management: Videos API.) Nothing is visible
until a post references the video, so every step is safe to repeat; the upload is noted
(``scheduler.checkpoints``) after each part, so an attempt after a failure, a timeout or a
restart sends only the parts LinkedIn has not acknowledged, while the upload addresses last
(``uploadUrlsExpireAt``); a video still processing after the checks is a transient failure
and the retry checks it again rather than uploading anew. An upload that can no longer be
completed (a part address answering 401, 403, 404 or 410: expired or withdrawn; a video
LinkedIn no longer knows) is forgotten and the next attempt starts a new one: the old one
was never visible. The post made with the video is noted too (``posted``), so no later
attempt of the same post makes another, and ``lookup`` can tell it by the video it carries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import structlog

from scheduler import media
from scheduler.adapter import AuthExpired, Capabilities, Rejected, Transient, VideoLimits
from scheduler.checkpoints import Checkpoints
from scheduler.timeutil import utcnow
from smm_linkedin.api import LinkedInApi, json_object

__all__ = [
    "MAX_VIDEO_BYTES",
    "MAX_VIDEO_SECONDS",
    "MIN_VIDEO_BYTES",
    "MIN_VIDEO_SECONDS",
    "VIDEO_CAPABILITIES",
    "VIDEO_LIMITS",
    "VideoUpload",
]

log = structlog.get_logger("smm_linkedin.video")

#: The Videos API's limits: MP4, 75 KB to 500 MB, 3 seconds to 30 minutes.
MIN_VIDEO_BYTES = 75 * 1024
MAX_VIDEO_BYTES = 500 * 1024 * 1024
MIN_VIDEO_SECONDS = 3
MAX_VIDEO_SECONDS = 30 * 60
#: Checked by the core, by content, at plan validation and again before the upload.
VIDEO_LIMITS = VideoLimits(
    types=("video/mp4",),
    min_bytes=MIN_VIDEO_BYTES,
    max_bytes=MAX_VIDEO_BYTES,
    min_seconds=MIN_VIDEO_SECONDS,
    max_seconds=MAX_VIDEO_SECONDS,
)
VIDEO_CAPABILITIES = Capabilities(text_limit=3000, media_types=("video/mp4",), video=VIDEO_LIMITS)
_PLATFORM = "linkedin"
#: What a pre-signed part address answers once it can no longer take the part: the token is
#: not at fault (it is not what the address checks), the address is.
_DEAD_ADDRESS = frozenset({401, 403, 404, 410})


class VideoUpload:
    """One video for ``author``, uploaded and processed; resumable through ``checkpoints``."""

    def __init__(
        self,
        api: LinkedInApi,
        author: str,
        checkpoints: Checkpoints,
        key: str,
        *,
        poll_interval: float,
        poll_attempts: int,
    ) -> None:
        self.api = api
        self.author = author
        self.checkpoints = checkpoints
        self.key = key
        self.poll_interval = poll_interval
        self.poll_attempts = poll_attempts

    async def upload(self, entry: str) -> str:
        """The ``urn:li:video:...`` of ``entry``, uploaded and available."""
        info = media.local_info(entry, VIDEO_CAPABILITIES)
        note = await self._load()
        if note is not None and (note.get("size") != info.size or _expired(note)):
            note = None  # another file under this key, or addresses no longer valid
        if note is None:
            note = await self._initialize(info.size)
        if not note.get("finalized"):
            await self._parts(entry, note)
            await self._finalize(note)
        await self._wait(note)
        return str(note["video"])

    async def _initialize(self, size: int) -> dict[str, Any]:
        response = await self.api.request(
            "POST",
            "videos?action=initializeUpload",
            json={
                "initializeUploadRequest": {
                    "owner": self.author,
                    "fileSizeBytes": size,
                    "uploadCaptions": False,
                    "uploadThumbnail": False,
                }
            },
        )
        value = (json_object(response) or {}).get("value")
        value = value if isinstance(value, Mapping) else {}
        parts = [
            {"url": p["uploadUrl"], "first": p["firstByte"], "last": p["lastByte"]}
            for p in value.get("uploadInstructions") or ()
            if isinstance(p, Mapping)
            and isinstance(p.get("uploadUrl"), str)
            and isinstance(p.get("firstByte"), int)
            and isinstance(p.get("lastByte"), int)
        ]
        video = value.get("video")
        if not isinstance(video, str) or not parts:
            raise Transient("LinkedIn: initializeUpload answered without a video or its parts")
        note = {
            "video": video,
            "token": str(value.get("uploadToken") or ""),
            "expires": value.get("uploadUrlsExpireAt"),
            "parts": parts,
            "etags": [None] * len(parts),
            "size": size,
            "finalized": False,
        }
        await self._save(note)
        return note

    async def _parts(self, entry: str, note: dict[str, Any]) -> None:
        parts, etags = note["parts"], note["etags"]
        for index, part in enumerate(parts):
            if etags[index]:
                continue  # acknowledged at an earlier attempt
            first, last = int(part["first"]), int(part["last"])
            chunk = await asyncio.to_thread(media.read_range, entry, first, last - first + 1)
            try:
                response = await self.api.request(
                    "PUT",
                    str(part["url"]),
                    content=chunk,
                    headers={"Content-Type": "application/octet-stream"},
                )
            except (AuthExpired, Rejected) as exc:
                if exc.http_status not in _DEAD_ADDRESS:
                    raise
                await self._forget()
                raise Transient(
                    f"LinkedIn: the upload address of video part {index + 1} answered HTTP "
                    f"{exc.http_status}; the next attempt starts a new upload"
                ) from None
            etag = response.headers.get("etag")
            if not etag:
                raise Transient(f"LinkedIn: video part {index + 1} was answered without an ETag")
            etags[index] = etag
            await self._save(note)
            log.info(
                "linkedin_video_upload",
                video=note["video"],
                part=index + 1,
                of=len(parts),
                sent=last + 1,
                total=note["size"],
            )

    async def _finalize(self, note: dict[str, Any]) -> None:
        if (
            note.get("finalizing")
            and (await self._state(str(note["video"])))["status"] != "WAITING_UPLOAD"
        ):
            note["finalized"] = True  # the earlier finalize went through
            await self._save(note)
            return
        note["finalizing"] = True
        await self._save(note)
        await self.api.request(
            "POST",
            "videos?action=finalizeUpload",
            json={
                "finalizeUploadRequest": {
                    "video": note["video"],
                    "uploadToken": note["token"],
                    "uploadedPartIds": list(note["etags"]),
                }
            },
        )
        note["finalized"] = True
        await self._save(note)

    async def _wait(self, note: Mapping[str, Any]) -> None:
        video = str(note["video"])
        for check in range(self.poll_attempts):
            if check:
                await asyncio.sleep(self.poll_interval)
            body = await self._state(video)
            state = body["status"]
            log.info("linkedin_video_status", video=video, state=state, check=check + 1)
            if state == "AVAILABLE":
                return
            if state == "PROCESSING_FAILED":
                await self._forget()
                reason = body.get("processingFailureReason")
                raise Rejected(
                    f"LinkedIn: video {video} could not be processed"
                    + (f": {reason}" if isinstance(reason, str) and reason else "")
                )
            if state is None:
                await self._forget()
                raise Transient(
                    f"LinkedIn no longer knows video {video}; the next attempt uploads it again"
                )
        raise Transient(
            f"LinkedIn: video {video} was still processing after {self.poll_attempts} checks"
        )

    async def _state(self, video: str) -> dict[str, Any]:
        """The video as ``GET /rest/videos/{urn}`` answers it; ``status`` None when LinkedIn
        no longer knows it (404, 410)."""
        try:
            body = await self.api.get_json(f"videos/{quote(video, safe='')}")
        except Rejected as exc:
            if exc.http_status not in (404, 410):
                raise
            return {"status": None}
        state = body.get("status")
        return {**body, "status": state if isinstance(state, str) else "UNKNOWN"}

    async def _forget(self) -> None:
        await asyncio.to_thread(self.checkpoints.clear, _PLATFORM, self.key)

    async def made(self) -> tuple[str | None, str | None]:
        """(the post noted as made with this video, the noted video): either None."""
        note = await self.checkpoints.recall(_PLATFORM, self.key) or {}
        post, video = note.get("post"), note.get("video")
        return (
            post if isinstance(post, str) else None,
            video if isinstance(video, str) else None,
        )

    async def posted(self, urn: str) -> None:
        """Note the post made with the video: no later attempt of this post makes another.
        Best effort: the post is made whatever the disk says."""
        try:
            note = await asyncio.to_thread(self.checkpoints.load, _PLATFORM, self.key) or {}
            await asyncio.to_thread(
                self.checkpoints.save, _PLATFORM, self.key, {**note, "post": urn}
            )
        except OSError as exc:
            log.warning("linkedin_checkpoint_failed", error=type(exc).__name__)

    async def _load(self) -> dict[str, Any] | None:
        note = await self.checkpoints.recall(_PLATFORM, self.key)
        if not note or not isinstance(note.get("parts"), list) or "video" not in note:
            return None
        etags = note.get("etags")
        if not isinstance(etags, list) or len(etags) != len(note["parts"]):
            return None
        return note

    async def _save(self, note: Mapping[str, Any]) -> None:
        try:
            await asyncio.to_thread(self.checkpoints.save, _PLATFORM, self.key, note)
        except OSError as exc:
            message = f"LinkedIn: cannot note the video upload ({type(exc).__name__})"
            raise Transient(message) from None


def _expired(note: Mapping[str, Any]) -> bool:
    """Whether the upload addresses are about to expire (a minute's margin)."""
    expires = note.get("expires")
    if not isinstance(expires, int) or isinstance(expires, bool):
        return False
    return utcnow().timestamp() * 1000 > expires - 60_000
