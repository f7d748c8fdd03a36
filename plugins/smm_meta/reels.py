"""Instagram Reels from a local file: the resumable upload to ``rupload.facebook.com``.

``POST /{ig-user-id}/media`` with ``media_type=REELS``, ``upload_type=resumable`` and the
caption creates the container (``{"id", "uri"}``); the file's bytes then go to
``https://rupload.facebook.com/ig-api-upload/{version}/{container}`` with the headers
``Authorization: OAuth <token>``, ``offset`` and ``file_size``, answered ``{"success": true,
"message": "Upload successful."}``. The container is then processed and published as any
other (``smm_meta.containers``). The upload address is built here from the container id,
never taken from the answer, so the token only ever goes to Meta's upload host. The file is
read from disk a segment at a time as it is sent, never held whole, and each segment logged.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import structlog

from scheduler import media
from scheduler.adapter import (
    Capabilities,
    Transient,
    VideoLimits,
    status_error,
    transport_error,
)
from scheduler.adapter import json_object as _json_object
from smm_meta.graph import Graph

__all__ = [
    "MAX_REEL_BYTES",
    "MAX_REEL_SECONDS",
    "MIN_REEL_SECONDS",
    "REEL_LIMITS",
    "UPLOAD_HOST",
    "upload_reel",
]

log = structlog.get_logger("smm_meta.reels")

UPLOAD_HOST = "https://rupload.facebook.com"
#: Reels through the API: MP4 or MOV, up to 300 MB, 3 seconds to 15 minutes (Meta's Reels
#: specifications for the Instagram Graph API).
MAX_REEL_BYTES = 300 * 1024 * 1024
MIN_REEL_SECONDS = 3
MAX_REEL_SECONDS = 15 * 60
#: Checked by the core, by content, at plan validation and again before the upload (the
#: length read from the file's container).
REEL_LIMITS = VideoLimits(
    types=("video/mp4", "video/quicktime"),
    max_bytes=MAX_REEL_BYTES,
    min_seconds=MIN_REEL_SECONDS,
    max_seconds=MAX_REEL_SECONDS,
)
REEL_CAPABILITIES = Capabilities(
    text_limit=2200, media_types=("video/mp4", "video/quicktime"), video=REEL_LIMITS
)
_SEGMENT = 4 * 1024 * 1024


async def upload_reel(
    client: httpx.AsyncClient,
    graph: Graph,
    user: str,
    entry: str,
    caption: str,
    *,
    upload_host: str,
    version: str,
) -> str:
    """Create a resumable Reels container for the local ``entry`` and send its bytes; the
    container id (to be waited on and published)."""
    info = media.local_info(entry, REEL_CAPABILITIES)
    body = await graph.post(
        f"{user}/media",
        {"media_type": "REELS", "upload_type": "resumable", "caption": caption},
        mutating=False,  # an unpublished container is invisible
    )
    container = body.get("id")
    if not container:
        raise Transient("Instagram: the Reels container was created without an id")
    url = f"{upload_host.rstrip('/')}/ig-api-upload/{version}/{container}"

    async def segments() -> AsyncIterator[bytes]:
        sent = 0
        while sent < info.size:
            chunk = await asyncio.to_thread(media.read_range, entry, sent, _SEGMENT)
            if not chunk:
                break
            sent += len(chunk)
            yield chunk
            log.info("instagram_reel_upload", container=str(container), sent=sent, total=info.size)

    headers = {
        "Authorization": f"OAuth {graph.token}",
        "offset": "0",
        "file_size": str(info.size),
        "Content-Type": "application/octet-stream",
        "Content-Length": str(info.size),
    }
    where = "POST ig-api-upload"
    try:
        response = await client.post(url, headers=headers, content=segments())
    except httpx.HTTPError as exc:
        # Nothing is published by an upload: any failure is safe to retry.
        raise transport_error(exc, network="Instagram", where=where, mutating=False) from None
    answer = _json_object(response) or {}
    if response.is_success and answer.get("success") is True:
        return str(container)
    debug = answer.get("debug_info")
    said = debug.get("message") if isinstance(debug, dict) else answer.get("message")
    message = str(said or f"HTTP {response.status_code}").replace(graph.token, "[redacted]")
    # A 2xx that is not a success is Meta's word that the bytes were not taken: retry.
    status = response.status_code if not response.is_success else 503
    raise status_error(status, f"Instagram: the Reel upload failed: {message}", mutating=False)
