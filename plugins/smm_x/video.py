"""Video for X: the chunked upload (INIT, APPEND, FINALIZE, then STATUS while X processes it).

``POST /2/media/upload`` with ``command=INIT`` (type, size, ``media_category=tweet_video``)
answers the media id; each ``APPEND`` sends one segment of the file, read from disk as it
goes (a video is never held whole); ``FINALIZE`` closes it, and when its answer carries
``processing_info`` the video is not usable until ``GET /2/media/upload?command=STATUS``
says ``succeeded`` (the states go pending, in_progress, then failed or succeeded, each
answer saying how long to wait: ``check_after_secs``). Shapes: docs.x.com/x-api/media/
quickstart/media-upload-chunked and the STATUS reference. Nothing here creates a post, so
every failure is retryable (a new upload next attempt) or final, never of unknown outcome.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import structlog

from scheduler import media
from scheduler.adapter import Capabilities, Rejected, Transient

__all__ = ["MAX_VIDEO_BYTES", "VIDEO_TYPES", "upload_video"]

log = structlog.get_logger(__name__)

VIDEO_TYPES = ("video/mp4", "video/quicktime")
#: X takes videos up to 512 MB.
MAX_VIDEO_BYTES = 512 * 1024 * 1024

#: ``request(method, path, **httpx kwargs)``: the adapter's authenticated call, answering the
#: decoded JSON object (an empty object for an empty answer).
Request = Callable[..., Awaitable[Mapping[str, Any]]]


def _data(body: Mapping[str, Any]) -> Mapping[str, Any]:
    data = body.get("data")
    return data if isinstance(data, Mapping) else {}


async def upload_video(
    request: Request,
    entry: str,
    capabilities: Capabilities,
    *,
    chunk_bytes: int,
    max_wait: float,
    max_checks: int,
) -> str:
    """Upload the local video ``entry``; its media id once X has processed it."""
    info = media.local_info(entry, capabilities)
    init = await request(
        "POST",
        "/2/media/upload",
        data={
            "command": "INIT",
            "media_type": info.mime,
            "total_bytes": str(info.size),
            "media_category": "tweet_video",
        },
    )
    media_id = _data(init).get("id")
    if not isinstance(media_id, str) or not media_id:
        raise Transient("x: the INIT answer has no data.id")
    sent = 0
    segment = 0
    while sent < info.size:
        chunk = await asyncio.to_thread(media.read_range, entry, sent, chunk_bytes)
        if not chunk:
            raise Rejected(f"x: {entry} ended at {sent} of {info.size} bytes while uploading")
        await request(
            "POST",
            "/2/media/upload",
            data={"command": "APPEND", "media_id": media_id, "segment_index": str(segment)},
            files={"media": ("chunk", chunk, "application/octet-stream")},
            empty_ok=True,
        )
        sent += len(chunk)
        segment += 1
        log.info("x_video_upload", media_id=media_id, sent=sent, total=info.size)
    final = await request(
        "POST", "/2/media/upload", data={"command": "FINALIZE", "media_id": media_id}
    )
    processing = _data(final).get("processing_info")
    checks = 0
    while isinstance(processing, Mapping):
        state = processing.get("state")
        if state == "succeeded":
            break
        if state == "failed":
            error = processing.get("error")
            reason = error.get("message") if isinstance(error, Mapping) else None
            raise Rejected(f"x: the video could not be processed: {reason or 'no reason given'}")
        if checks >= max_checks:
            raise Transient(f"x: the video was still {state} after {checks} checks")
        wait = processing.get("check_after_secs")
        await asyncio.sleep(min(float(wait) if isinstance(wait, int | float) else 1.0, max_wait))
        checks += 1
        status = await request(
            "GET", "/2/media/upload", params={"command": "STATUS", "media_id": media_id}
        )
        processing = _data(status).get("processing_info")
        log.info("x_video_processing", media_id=media_id, state=state)
    return media_id
