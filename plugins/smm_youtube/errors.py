"""Google API errors as the core's taxonomy.

Google answers ``{"error": {"code": 403, "message": "...", "errors": [{"domain":
"youtube.quota", "reason": "quotaExceeded", "message": "..."}], "status": "..."}}``. The
``reason`` decides (docs/plugins/networks/youtube.md):

* ``quotaExceeded``, ``dailyLimitExceeded``, ``uploadLimitExceeded``: ``RateLimited`` until
  the project's quota resets, at midnight Pacific time;
* ``rateLimitExceeded``, ``userRateLimitExceeded`` and HTTP 429: ``RateLimited``, after
  ``Retry-After`` when given, else the daemon's backoff;
* HTTP 401, ``authError``, ``invalidCredentials``, and the 403s that say the token or channel
  cannot do this at all (``forbidden``, ``insufficientPermissions``, ``youtubeSignupRequired``,
  ``accessNotConfigured``...): ``AuthExpired``;
* HTTP 5xx: ``Transient`` (no request this module classifies creates a video; the upload
  settles its own ends by asking the session);
* every other 4xx (``invalidTitle``, ``invalidDescription``, ``invalidTags``,
  ``invalidCategoryId``, ``mediaBodyRequired``...): ``Rejected``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from scheduler.adapter import (
    AuthExpired,
    PublishError,
    RateLimited,
    json_object,
    status_error,
)
from scheduler.adapter import transport_error as _transport_error
from scheduler.timeutil import utcnow

__all__ = ["google_error", "quota_reset", "transport_error"]

NETWORK = "YouTube"
_PACIFIC = ZoneInfo("America/Los_Angeles")
_QUOTA = frozenset({"quotaExceeded", "dailyLimitExceeded", "uploadLimitExceeded"})
_RATE = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})
_AUTH = frozenset(
    {
        "authError",
        "invalidCredentials",
        "unauthorized",
        "forbidden",
        "insufficientPermissions",
        "youtubeSignupRequired",
        "accessNotConfigured",
        "channelClosed",
        "channelSuspended",
    }
)


def quota_reset(now: datetime | None = None) -> datetime:
    """The next midnight in Pacific time, when YouTube's daily quotas start again (UTC)."""
    local = (now or utcnow()).astimezone(_PACIFIC)
    midnight = (local + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight.astimezone(ZoneInfo("UTC"))


def _retry_after(response: httpx.Response) -> datetime | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    if value.strip().isdigit():
        return utcnow() + timedelta(seconds=int(value))
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None


def _scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text


def google_error(
    response: httpx.Response, *, where: str, secrets: Iterable[str] = ()
) -> PublishError:
    """The ``PublishError`` for a Google API error answer (see the module docstring)."""
    status = response.status_code
    body: dict[str, Any] = json_object(response) or {}
    error = body.get("error") if isinstance(body.get("error"), dict) else {}
    assert isinstance(error, dict)
    details = error.get("errors")
    first = details[0] if isinstance(details, list) and details else {}
    reason = first.get("reason") if isinstance(first, dict) else None
    text = error.get("message") or (first.get("message") if isinstance(first, dict) else None)
    message = _scrub(
        f"YouTube: {text or f'HTTP {status}'} [{reason or status} on {where}]", secrets
    )
    code = reason or status
    if reason in _QUOTA:
        return RateLimited(message, http_status=status, retry_at=quota_reset(), code=code)
    if reason in _RATE or status == 429:
        return RateLimited(message, http_status=status, retry_at=_retry_after(response), code=code)
    if reason in _AUTH:
        return AuthExpired(message, http_status=status, code=code)
    # No request classified here creates a video (the upload settles its own ends).
    return status_error(status, message, mutating=False, code=code)


def transport_error(exc: httpx.HTTPError, *, where: str, mutating: bool) -> PublishError:
    """An httpx failure on a YouTube request, by ``scheduler.adapter.transport_error``."""
    return _transport_error(exc, network=NETWORK, where=where, mutating=mutating)
