"""What a Mastodon instance allows, read from ``GET /api/v2/instance`` and kept for a day.

Instances raise or lower the defaults (500 characters, 4 attachments), so the limits are
read from the server, once per instance: ``configuration.statuses.max_characters``,
``characters_reserved_per_url`` and ``max_media_attachments``, the accepted media types and
the longest media description (``media_attachments.description_limit``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from smm_mastodon import api
from smm_mastodon.text import DEFAULT_URL_LENGTH

__all__ = ["InstanceLimits", "LimitsCache"]

#: How long limits read from an instance are trusted before they are read again.
TTL_SECONDS = 24 * 3600


@dataclass(frozen=True)
class InstanceLimits:
    """One instance's limits on statuses (Mastodon's defaults until it says otherwise)."""

    max_characters: int = 500
    characters_reserved_per_url: int = DEFAULT_URL_LENGTH
    max_media_attachments: int = 4
    #: Empty when unknown: then any type the adapter declares is tried.
    supported_mime_types: tuple[str, ...] = ()
    #: The longest media description (alt text); Mastodon's default is 1,500.
    description_limit: int = 1500
    #: ``configuration.polls``: options per poll, characters per option, and the shortest
    #: and longest time a poll may stay open, in seconds (Mastodon's defaults).
    poll_max_options: int = 4
    poll_max_characters: int = 50
    poll_min_expiration: int = 300
    poll_max_expiration: int = 2629746

    @classmethod
    def from_instance(cls, body: Any) -> InstanceLimits:
        """Read the limits from a ``/api/v2/instance`` answer; missing values keep defaults."""
        default = cls()
        config = body.get("configuration") if isinstance(body, Mapping) else None
        if not isinstance(config, Mapping):
            return default
        statuses = config.get("statuses")
        statuses = statuses if isinstance(statuses, Mapping) else {}
        media = config.get("media_attachments")
        media = media if isinstance(media, Mapping) else {}
        polls = config.get("polls")
        polls = polls if isinstance(polls, Mapping) else {}

        def positive(section: Mapping[str, Any], key: str, fallback: int) -> int:
            value = section.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
            return fallback

        types = media.get("supported_mime_types")
        return cls(
            max_characters=positive(statuses, "max_characters", default.max_characters),
            characters_reserved_per_url=positive(
                statuses, "characters_reserved_per_url", default.characters_reserved_per_url
            ),
            max_media_attachments=positive(
                statuses, "max_media_attachments", default.max_media_attachments
            ),
            description_limit=positive(media, "description_limit", default.description_limit),
            poll_max_options=positive(polls, "max_options", default.poll_max_options),
            poll_max_characters=positive(
                polls, "max_characters_per_option", default.poll_max_characters
            ),
            poll_min_expiration=positive(polls, "min_expiration", default.poll_min_expiration),
            poll_max_expiration=positive(polls, "max_expiration", default.poll_max_expiration),
            supported_mime_types=tuple(t for t in types if isinstance(t, str))
            if isinstance(types, list)
            else (),
        )


class LimitsCache:
    """Limits per instance base URL, fetched on first use and refreshed after a day."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client
        self._entries: dict[str, tuple[InstanceLimits, float]] = {}

    def known(self, base_url: str) -> InstanceLimits | None:
        """The limits last read from ``base_url``, however old; None if never read."""
        entry = self._entries.get(base_url)
        return entry[0] if entry else None

    async def get(self, base_url: str) -> InstanceLimits:
        """The instance's limits. Never fails: when the instance cannot be asked (old
        server, outage), the last known limits or the defaults are used, and it is asked
        again next time; the status call that follows reports any real problem."""
        entry = self._entries.get(base_url)
        if entry is not None and time.monotonic() - entry[1] < TTL_SECONDS:
            return entry[0]
        try:
            # Public and unauthenticated: no token goes to it.
            response = await self._client.get(f"{base_url}/api/v2/instance")
        except httpx.HTTPError:
            return entry[0] if entry else InstanceLimits()
        body = api.json_body(response)
        if not response.is_success or not isinstance(body, Mapping):
            return entry[0] if entry else InstanceLimits()
        limits = InstanceLimits.from_instance(body)
        self._entries[base_url] = (limits, time.monotonic())
        return limits
