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
and the retry checks it again rather than uploading anew.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import structlog

from scheduler import media
from scheduler.adapter import Capabilities, Rejected, Transient
from scheduler.checkpoints import Checkpoints
from scheduler.timeutil import utcnow
from smm_linkedin.api import LinkedInApi, json_object

__all__ = [
    "MAX_VIDEO_BYTES",
    "MAX_VIDEO_SECONDS",
    "MIN_VIDEO_BYTES",
    "MIN_VIDEO_SECONDS",
    "VideoUpload",
]

log = structlog.get_logger("smm_linkedin.video")

#: The Videos API's limits: MP4, 75 KB to 500 MB, 3 seconds to 30 minutes.
MIN_VIDEO_BYTES = 75 * 1024
MAX_VIDEO_BYTES = 500 * 1024 * 1024
MIN_VIDEO_SECONDS = 3
MAX_VIDEO_SECONDS = 30 * 60
VIDEO_CAPABILITIES = Capabilities(
    text_limit=3000, media_types=("video/mp4",), max_media_bytes=MAX_VIDEO_BYTES
)
_PLATFORM = "linkedin"


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
            response = await self.api.request(
                "PUT",
                str(part["url"]),
                content=chunk,
                headers={"Content-Type": "application/octet-stream"},
            )
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
        if note.get("finalizing") and await self._state(str(note["video"])) != "WAITING_UPLOAD":
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
            state = await self._state(video)
            log.info("linkedin_video_status", video=video, state=state, check=check + 1)
            if state == "AVAILABLE":
                return
            if state == "PROCESSING_FAILED":
                await asyncio.to_thread(self.checkpoints.clear, _PLATFORM, self.key)
                raise Rejected(f"LinkedIn: video {video} could not be processed")
        raise Transient(
            f"LinkedIn: video {video} was still processing after {self.poll_attempts} checks"
        )

    async def _state(self, video: str) -> str | None:
        try:
            body = await self.api.get_json(f"videos/{quote(video, safe='')}")
        except Rejected:
            return None
        state = body.get("status")
        return state if isinstance(state, str) else None

    async def _load(self) -> dict[str, Any] | None:
        note = await asyncio.to_thread(self.checkpoints.load, _PLATFORM, self.key)
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
