"""TikTok's API v2 answers as the core's taxonomy.

Every answer carries ``{"data": {...}, "error": {"code": "ok", "message": "", "log_id":
"..."}}``; a failure has a ``code`` other than ``ok`` and an HTTP status
(https://developers.tiktok.com/doc/tiktok-api-v2-error-handling). How codes are classified
(docs/plugins/networks/tiktok.md):

* ``rate_limit_exceeded`` (429): ``RateLimited`` in a minute (TikTok's windows are a minute);
* ``spam_risk_too_many_posts``, ``reached_active_user_cap`` (403): ``RateLimited`` for a day
  (the creator's daily post cap, the client's daily user cap);
* ``access_token_invalid``, ``scope_not_authorized``, ``scope_permission_missed``,
  ``spam_risk_user_banned_from_posting``, ``unaudited_client_can_only_post_to_private_accounts``
  (401/403): ``AuthExpired``, nothing this account sends can go out until a person acts;
* ``internal_error`` and other 5xx: ``Transient``, but on a request that may publish
  ``OutcomeUnknown`` (TikTok takes no idempotency key, so the video may be posted), by the
  rule every network shares (``scheduler.adapter.status_error``);
* every other code (``invalid_param``, ``privacy_level_option_mismatch``,
  ``duration_check_failed``, ``file_format_check_failed``, ``url_ownership_unverified``...):
  ``Rejected``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx

from scheduler.adapter import (
    AuthExpired,
    OutcomeUnknown,
    PublishError,
    RateLimited,
    Transient,
    json_object,
    status_error,
)
from scheduler.adapter import transport_error as _transport_error
from scheduler.timeutil import utcnow

__all__ = ["api_error", "transport_error"]

NETWORK = "TikTok"
_DAILY = frozenset({"spam_risk_too_many_posts", "reached_active_user_cap"})
_AUTH = frozenset(
    {
        "access_token_invalid",
        "scope_not_authorized",
        "scope_permission_missed",
        "spam_risk_user_banned_from_posting",
        "unaudited_client_can_only_post_to_private_accounts",
    }
)


def api_error(
    response: httpx.Response, *, where: str, mutating: bool, secret: str = ""
) -> PublishError | None:
    """The error a TikTok answer carries, or None when it is a success."""
    body: dict[str, Any] = json_object(response) or {}
    error = body.get("error") if isinstance(body.get("error"), dict) else {}
    assert isinstance(error, dict)
    code = error.get("code")
    status = response.status_code
    if code == "ok" and status < 300:
        return None
    text = error.get("message") or f"HTTP {status}"
    message = f"TikTok: {text} [{code or status} on {where}]"
    if secret:
        message = message.replace(secret, "[redacted]")
    label = code or status
    if code == "rate_limit_exceeded" or status == 429:
        return RateLimited(
            message, http_status=status, code=label, retry_at=utcnow() + timedelta(minutes=1)
        )
    if code in _DAILY:
        return RateLimited(
            message, http_status=status, code=label, retry_at=utcnow() + timedelta(days=1)
        )
    if code in _AUTH:
        return AuthExpired(message, http_status=status, code=label)
    if code == "internal_error" and status < 500:
        return Transient(message, http_status=status, code=label)
    if not code and status < 300:
        return (OutcomeUnknown if mutating else Transient)(
            f"TikTok: HTTP {status} without TikTok's answer on {where}", http_status=status
        )
    # TikTok takes no idempotency key: a 5xx on a request that may publish is an unknown.
    return status_error(
        status,
        message,
        mutating=mutating,
        idempotent=False,
        code=label,
        effect="the video may be posted",
    )


def transport_error(exc: httpx.HTTPError, *, where: str, mutating: bool) -> PublishError:
    """An httpx failure on a TikTok request, by ``scheduler.adapter.transport_error``."""
    return _transport_error(exc, network=NETWORK, where=where, mutating=mutating)
