"""Facebook Page videos: the chunked, resumable upload of ``POST /{page-id}/videos``.

Three phases on the same edge (the Page Videos reference, and the Graph SDKs'
resumable uploaders)::

    upload_phase=start     file_size                    -> upload_session_id, video_id,
                                                            start_offset, end_offset
    upload_phase=transfer  upload_session_id, start_offset,
                           video_file_chunk (multipart)  -> start_offset, end_offset
    upload_phase=finish    upload_session_id, description -> {"success": true}

Facebook names each chunk it wants (``start_offset`` to ``end_offset``) until the two meet.
The session is noted (``scheduler.checkpoints``, under the post's idempotency key) after
``start`` and after every chunk, so a timeout, a crash or a kill -9 resumes at the last
chunk Facebook acknowledged; a chunk it already has is answered with error subcode 1363037
and the offsets it wants in ``error_data``, which the upload follows. Only ``finish``
publishes: it is noted before it is sent, and an attempt that finds it noted asks the video's
``status`` (``GET /{video-id}?fields=status``) instead of finishing again. Processing is
then followed (``video_status`` ``processing`` -> ``ready``, or ``error``) for a few checks.
A video given as a URL is one request (``file_url``): Facebook fetches it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import structlog

from scheduler import media
from scheduler.adapter import (
    Capabilities,
    OutcomeUnknown,
    PublishError,
    Rejected,
    Transient,
    VideoLimits,
)
from scheduler.checkpoints import Checkpoints
from smm_meta.graph import Graph, error_data

__all__ = ["MAX_VIDEO_BYTES", "MAX_VIDEO_SECONDS", "VIDEO_LIMITS", "VIDEO_TYPES", "VideoUpload"]

log = structlog.get_logger("smm_meta.fbvideo")

VIDEO_TYPES = ("video/mp4", "video/quicktime")
#: Page videos: up to 10 GB and 240 minutes (Meta's video specifications).
MAX_VIDEO_BYTES = 10 * 1024**3
MAX_VIDEO_SECONDS = 240 * 60
#: Checked by the core, by content, at plan validation and again before the upload.
VIDEO_LIMITS = VideoLimits(
    types=VIDEO_TYPES, max_bytes=MAX_VIDEO_BYTES, max_seconds=MAX_VIDEO_SECONDS
)
#: Graph's answer to a chunk sent at an offset it did not expect; ``error_data`` says which.
_WRONG_OFFSET = 1363037
#: ``video_status`` values once ``finish`` has gone through.
_FINISHED = ("processing", "ready")
_OCTETS = "application/octet-stream"


class VideoUpload:
    """One Page video, uploaded and published; resumable through ``checkpoints``."""

    def __init__(
        self,
        graph: Graph,
        page: str,
        checkpoints: Checkpoints,
        key: str,
        *,
        poll_interval: float,
        poll_attempts: int,
    ) -> None:
        self.graph = graph
        self.page = page
        self.checkpoints = checkpoints
        self.key = key
        self.poll_interval = poll_interval
        self.poll_attempts = poll_attempts

    async def publish(self, entry: str, description: str) -> str:
        """Upload ``entry`` (a local file or a URL) as a Page video; its video id."""
        if media.is_url(entry):
            body = await self.graph.post(
                f"{self.page}/videos", {"file_url": entry, "description": description}
            )
            video_id = _text(body.get("id"))
            if video_id is None:
                raise OutcomeUnknown("Facebook: the video was accepted without an id")
            await self._follow(video_id)
            return video_id
        caps = Capabilities(text_limit=0, media_types=VIDEO_TYPES, video=VIDEO_LIMITS)
        info = media.local_info(entry, caps)
        note = await self._load()
        if note is not None and note.get("size") != info.size:
            note = None  # another file under the same key: start again
        if note is not None and note.get("finishing"):
            settled = await self.settle(note)
            if settled is not None:
                return settled
            note = None
        resumed = note is not None
        if note is None:
            note = await self._start(info.size)
        try:
            await self._transfer(entry, note)
        except Rejected as exc:
            if not resumed:
                raise
            # A session noted at an earlier attempt that Facebook now refuses (expired after
            # an outage, withdrawn): nothing of it is visible before finish, so a new upload
            # cannot duplicate. A file Facebook refuses will be refused again, for good.
            await asyncio.to_thread(self.checkpoints.clear, "facebook", self.key)
            raise Transient(
                f"{exc.message}; the noted upload session is given up and the next attempt "
                "starts a new one"
            ) from None
        note["finishing"] = True
        await self._save(note)
        body = await self.graph.post(
            f"{self.page}/videos",
            {
                "upload_phase": "finish",
                "upload_session_id": str(note["session"]),
                "description": description,
                "title": Path(entry).stem,
            },
        )
        if body.get("success") is not True:
            raise OutcomeUnknown("Facebook: finishing the video upload did not answer success")
        video_id = str(note["video"])
        log.info("facebook_video_finished", video=video_id, bytes=info.size)
        await self._follow(video_id)
        return video_id

    async def settle(self, note: Mapping[str, Any] | None = None) -> str | None:
        """After an attempt that sent ``finish`` without an answer: the video id when it went
        through, None when the video is certainly not published (start again); raises
        ``OutcomeUnknown`` when Facebook cannot tell yet."""
        note = note if note is not None else await self._load()
        if not note or not note.get("finishing"):
            return None
        video_id = str(note["video"])
        status = await self._status(video_id)
        state = status.get("video_status")
        if state in _FINISHED or _phase(status, "publishing_phase") == "complete":
            return video_id
        if state in ("error", "expired"):
            await asyncio.to_thread(self.checkpoints.clear, "facebook", self.key)
            return None
        raise OutcomeUnknown(
            f"Facebook: video {video_id} is {state or 'in an unknown state'}; "
            "whether it was published cannot be told yet"
        )

    # -- phases ----------------------------------------------------------------------------

    async def _start(self, size: int) -> dict[str, Any]:
        body = await self.graph.post(
            f"{self.page}/videos",
            {"upload_phase": "start", "file_size": str(size)},
            mutating=False,  # a session is invisible; a lost answer only costs a new one
        )
        session, video = _text(body.get("upload_session_id")), _text(body.get("video_id"))
        start, end = _offset(body.get("start_offset")), _offset(body.get("end_offset"))
        if session is None or video is None or start is None or end is None:
            raise Transient("Facebook: the video upload session started without its offsets")
        note = {"session": session, "video": video, "start": start, "end": end, "size": size}
        await self._save(note)
        return note

    async def _transfer(self, entry: str, note: dict[str, Any]) -> None:
        size = int(note["size"])
        realigned = 0
        while int(note["start"]) < int(note["end"]):
            start, end = int(note["start"]), int(note["end"])
            chunk = await asyncio.to_thread(media.read_range, entry, start, end - start)
            try:
                body = await self.graph.post(
                    f"{self.page}/videos",
                    {
                        "upload_phase": "transfer",
                        "upload_session_id": str(note["session"]),
                        "start_offset": str(start),
                    },
                    files={
                        "video_file_chunk": (Path(entry).name, chunk, "application/octet-stream")
                    },
                    mutating=False,  # nothing is visible until finish
                )
            except PublishError as exc:
                data = error_data(exc)
                wanted = (_offset(data.get("start_offset")), _offset(data.get("end_offset")))
                new = wanted[0], wanted[1]
                if _wrong_offset(exc) and new[0] is not None and new[1] is not None:
                    realigned += 1
                    if realigned > 3:
                        raise
                    note["start"], note["end"] = new
                    await self._save(note)
                    continue
                raise
            new_start, new_end = _offset(body.get("start_offset")), _offset(body.get("end_offset"))
            if new_start is None or new_end is None or new_start < start:
                raise Transient("Facebook: a video chunk was answered without its next offsets")
            note["start"], note["end"] = new_start, new_end
            await self._save(note)
            log.info("facebook_video_upload", sent=new_start, total=size)

    async def _follow(self, video_id: str) -> None:
        """Follow processing for a few checks: ``error`` refuses the post; still processing
        after the checks, it is out and Facebook shows it once processed."""
        for check in range(self.poll_attempts):
            if check:
                await asyncio.sleep(self.poll_interval)
            try:
                status = await self._status(video_id)
            except PublishError:
                return  # the video is published; its status is only for the log
            state = status.get("video_status")
            log.info(
                "facebook_video_status",
                video=video_id,
                state=state,
                progress=status.get("processing_progress"),
            )
            if state == "ready":
                return
            if state == "error":
                raise Rejected(f"Facebook: video {video_id} could not be processed")
        log.info("facebook_video_processing", video=video_id)

    async def _status(self, video_id: str) -> Mapping[str, Any]:
        body = await self.graph.get(video_id, {"fields": "status"})
        status = body.get("status")
        return status if isinstance(status, Mapping) else {}

    # -- the note --------------------------------------------------------------------------

    async def _load(self) -> dict[str, Any] | None:
        note = await self.checkpoints.recall("facebook", self.key)
        if not note or not all(k in note for k in ("session", "video", "start", "end", "size")):
            return None
        return note

    async def _save(self, note: Mapping[str, Any]) -> None:
        try:
            await asyncio.to_thread(self.checkpoints.save, "facebook", self.key, note)
        except OSError as exc:
            raise Transient(
                f"Facebook: cannot note the video upload ({type(exc).__name__})"
            ) from None


def _wrong_offset(exc: PublishError) -> bool:
    """Whether Graph refused a chunk for its offset (``[code 6000/1363037, ...]``)."""
    return f"/{_WRONG_OFFSET}" in exc.message


def _phase(status: Mapping[str, Any], name: str) -> str | None:
    phase = status.get(name)
    return phase.get("status") if isinstance(phase, Mapping) else None


def _text(value: Any) -> str | None:
    return str(value) if isinstance(value, str | int) and str(value) else None


def _offset(value: Any) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number >= 0 else None
