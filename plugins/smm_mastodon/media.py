"""Media attachments: upload each file, wait until Mastodon has processed it.

``POST /api/v2/media`` answers 200 when the file is ready and 202 when it is still being
processed (videos, large images); then ``GET /api/v1/media/:id`` answers 206 until it is
done and 200 after. A status may only attach processed media. Nothing here can publish a
status, so every failure is retryable or final, never of unknown outcome; an upload left
unattached by a failure is deleted by Mastodon after a day.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import httpx

from scheduler.adapter import Capabilities, MediaMeta, Transient
from scheduler.media import read as read_media
from smm_mastodon import api

__all__ = ["MediaUploader"]


@dataclass
class MediaUploader:
    """Uploads for one publish call: ``client``, the instance, the token, the polling pace."""

    client: httpx.AsyncClient
    base_url: str
    headers: dict[str, str]
    observe: Callable[[httpx.Response], None]
    secrets: Iterable[str] = ()
    #: Seconds between two checks of a file still being processed.
    poll_interval: float = 1.0
    #: Checks before giving up (a retry later uploads the file again).
    poll_attempts: int = 60

    async def upload(
        self, path: str, capabilities: Capabilities, meta: MediaMeta | None = None
    ) -> str:
        """Upload the file at ``path`` (read through the core: confined to the media roots,
        of a type ``capabilities`` take by its content) with its alt text (``description``)
        and focal point (``focus``, "x,y"); its media id once processed."""
        file = await read_media(path, capabilities)
        fields: dict[str, str] = {}
        if meta is not None and meta.alt:
            fields["description"] = meta.alt
        if meta is not None and meta.focus is not None:
            fields["focus"] = f"{meta.focus[0]:g},{meta.focus[1]:g}"
        response = await self._send(
            "POST",
            "/api/v2/media",
            files={"file": (file.name, file.content, file.mime)},
            data=fields or None,
        )
        media_id = self._media_id(response)
        if response.status_code == 200:
            return media_id
        for _ in range(self.poll_attempts):
            await asyncio.sleep(self.poll_interval)
            response = await self._send("GET", f"/api/v1/media/{media_id}")
            if response.status_code == 200:
                return media_id
        raise Transient(
            f"Mastodon was still processing {Path(path).name} after {self.poll_attempts} checks"
        )

    async def _send(
        self,
        method: str,
        path: str,
        files: dict[str, tuple[str, bytes, str]] | None = None,
        data: dict[str, str] | None = None,
    ) -> httpx.Response:
        try:
            response = await self.client.request(
                method, f"{self.base_url}{path}", headers=self.headers, files=files, data=data
            )
        except httpx.HTTPError as exc:
            raise api.transport_error(exc) from exc
        self.observe(response)
        if response.status_code not in (200, 202, 206):
            raise api.error_for(response, secrets=self.secrets)
        return response

    @staticmethod
    def _media_id(response: httpx.Response) -> str:
        body = api.json_body(response)
        media_id = body.get("id") if isinstance(body, dict) else None
        if not isinstance(media_id, str | int) or isinstance(media_id, bool):
            raise Transient(
                f"Mastodon's answer to a media upload has no id ({response.status_code})"
            )
        return str(media_id)
