"""Google's resumable upload protocol, as YouTube's ``videos.insert`` speaks it.

1. ``POST .../upload/youtube/v3/videos?uploadType=resumable&part=snippet,status`` with the
   video resource as JSON and ``X-Upload-Content-Length``/``X-Upload-Content-Type``: the
   answer's ``Location`` is the session URI. Nothing is published yet.
2. ``PUT <session>`` with one chunk and ``Content-Range: bytes FIRST-LAST/TOTAL``: 308
   (Resume Incomplete) with ``Range: bytes=0-N`` while bytes are missing, 200 or 201 with
   the new video resource once the last byte is in.
3. After an interruption, ``PUT <session>`` with an empty body and ``Content-Range: bytes
   */TOTAL`` asks where the session is: 308 and its ``Range`` (no ``Range``: nothing
   received), or 200/201 with the video when it is complete, or 404/410 when the session
   expired. The upload goes on from the server's offset; it is never restarted.

Only the last PUT can create the video, and the session itself answers whether it did: any
doubt about a PUT is settled by asking (3), never by sending the video again.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from scheduler import media
from scheduler.adapter import NOT_SENT, OutcomeUnknown, Transient, json_object
from smm_youtube.errors import google_error, transport_error

__all__ = ["Complete", "ResumableUpload", "SessionGone"]

#: Google wants chunks in multiples of 256 KiB (all but the last).
CHUNK_UNIT = 256 * 1024
#: Server errors answered to a PUT that are retried at once (after asking the offset).
_RETRIES = 3


class SessionGone(Exception):
    """The session answered 404 or 410: it expired or never existed."""


@dataclass(frozen=True)
class Complete:
    """The upload is complete: YouTube's video resource."""

    video: dict[str, Any]


def _offset(response: httpx.Response) -> int:
    """The next byte to send, from a 308's ``Range: bytes=0-N`` (none: 0)."""
    value = response.headers.get("Range", "")
    if value.startswith("bytes=0-"):
        try:
            return int(value.removeprefix("bytes=0-")) + 1
        except ValueError:
            pass
    return 0


def _read(path: Path, offset: int, length: int) -> bytes:
    # Through the core: each chunk is read from a descriptor checked against the media roots.
    return media.read_range(str(path), offset, length)


@dataclass
class ResumableUpload:
    """One session: its URI, the file and the request headers (the bearer token)."""

    client: httpx.AsyncClient
    session: str
    path: Path
    size: int
    headers: dict[str, str]
    chunk_size: int = 8 * 1024 * 1024
    secrets: tuple[str, ...] = ()

    async def status(self) -> int | Complete:
        """Ask the session where it is: the next byte to send, or the finished video.

        Raises ``SessionGone`` (404/410), ``OutcomeUnknown`` when the question gets no answer
        (the upload may be complete), or a classified error.
        """
        headers = {**self.headers, "Content-Range": f"bytes */{self.size}"}
        try:
            response = await self.client.put(self.session, headers=headers, content=b"")
        except httpx.HTTPError as exc:
            raise OutcomeUnknown(
                f"YouTube: no answer ({type(exc).__name__}) asking the upload session where it "
                "is; the video may be complete"
            ) from None
        return self._settle(response, where="upload status")

    def _settle(self, response: httpx.Response, *, where: str) -> int | Complete:
        status = response.status_code
        if status == 308:
            return _offset(response)
        if status in (200, 201):
            video = json_object(response)
            if video is None or not isinstance(video.get("id"), str):
                raise OutcomeUnknown(f"YouTube: HTTP {status} without a video on {where}")
            return Complete(video)
        if status in (404, 410):
            raise SessionGone(f"HTTP {status}")
        raise google_error(response, where=where, secrets=self.secrets)

    async def send_from(self, offset: int) -> Complete:
        """Send the file from ``offset`` to its end; the finished video."""
        retries = 0
        while True:
            length = min(self.chunk_size, self.size - offset)
            data = await asyncio.to_thread(_read, self.path, offset, length)
            if len(data) != length:
                raise Transient(f"YouTube: {self.path.name} changed while it was being uploaded")
            last = offset + length - 1
            headers = {**self.headers, "Content-Range": f"bytes {offset}-{last}/{self.size}"}
            try:
                response = await self.client.put(self.session, headers=headers, content=data)
            except httpx.HTTPError as exc:
                if isinstance(exc, NOT_SENT):
                    raise transport_error(exc, where="upload", mutating=False) from None
                state = await self.status()  # the chunk may be in, even the last one
            else:
                if response.status_code >= 500:
                    retries += 1
                    if retries > _RETRIES:
                        raise google_error(response, where="upload", secrets=self.secrets)
                    state = await self.status()
                else:
                    state = self._settle(response, where="upload")
            if isinstance(state, Complete):
                return state
            if state <= offset:
                retries += 1
                if retries > _RETRIES:
                    raise Transient(f"YouTube: the upload session stays at byte {state}")
            offset = state
            if offset >= self.size:
                # Every byte is in but the session says incomplete: ask once more.
                final = await self.status()
                if isinstance(final, Complete):
                    return final
                raise OutcomeUnknown("YouTube: the upload has every byte but no video yet")
