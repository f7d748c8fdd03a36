"""Mastodon's REST API: answers, rate-limit headers, and how failures map to the taxonomy.

Mastodon reports failures as an HTTP status and ``{"error": "<message>"}``, the message in
the instance's language (a Japanese server answers in Japanese). Rate limits come as
``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and ``X-RateLimit-Reset`` on every
authenticated answer, the reset as an ISO 8601 instant; a 429 has no ``Retry-After``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from scheduler.adapter import (
    AuthExpired,
    OutcomeUnknown,
    PublishError,
    RateLimited,
    RateLimitStatus,
    Rejected,
    Transient,
)

__all__ = [
    "error_for",
    "error_message",
    "json_body",
    "rate_limit_status",
    "redact",
    "transport_error",
]

# Gateways answer these when Mastodon itself never handled the request.
_GATEWAY_STATUSES = frozenset({502, 503, 504})


def json_body(response: httpx.Response) -> Any:
    """The decoded JSON body, or None when it is not JSON."""
    try:
        return json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return None


def error_message(response: httpx.Response) -> str:
    """Mastodon's own words for a failure, or the status line when it gave none."""
    body = json_body(response)
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, str) and error.strip():
            return error
    return f"HTTP {response.status_code} {response.reason_phrase}".strip()


def _parse_instant(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        instant = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return instant if instant.tzinfo else instant.replace(tzinfo=UTC)


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def rate_limit_status(headers: httpx.Headers) -> RateLimitStatus | None:
    """The budget the ``X-RateLimit-*`` headers announce; None when they are absent."""
    remaining = _int(headers.get("x-ratelimit-remaining"))
    reset_at = _parse_instant(headers.get("x-ratelimit-reset"))
    if remaining is None and reset_at is None:
        return None
    return RateLimitStatus(
        remaining=remaining, reset_at=reset_at, limit=_int(headers.get("x-ratelimit-limit"))
    )


def _retry_at(response: httpx.Response) -> datetime | None:
    # Mastodon itself sends no Retry-After; a proxy in front of it might.
    retry_after = _int(response.headers.get("retry-after"))
    if retry_after is not None:
        return datetime.now(UTC) + timedelta(seconds=retry_after)
    return _parse_instant(response.headers.get("x-ratelimit-reset"))


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret replaced by ``[redacted]``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text


def error_for(
    response: httpx.Response, *, creating: bool = False, secrets: Iterable[str] = ()
) -> PublishError:
    """The taxonomy class of a failed answer.

    ``creating`` marks the call that creates the status: a 500 there may come after the
    status was saved, so its outcome is unknown; everywhere else nothing is at stake.
    """
    status = response.status_code
    message = redact(error_message(response), secrets)
    if status == 429:
        return RateLimited(message, http_status=status, retry_at=_retry_at(response))
    if status in (401, 403):
        return AuthExpired(message, http_status=status)
    if status >= 500:
        if creating and status not in _GATEWAY_STATUSES:
            return OutcomeUnknown(message, http_status=status)
        return Transient(message, http_status=status)
    if status == 408:
        return Transient(message, http_status=status)
    if status == 404 and creating:
        return Rejected(
            f"{message} (is the account's instance a Mastodon server?)", http_status=status
        )
    return Rejected(message, http_status=status)


def transport_error(exc: httpx.HTTPError, *, creating: bool = False) -> PublishError:
    """The taxonomy class of a transport failure.

    A refused connection or a wait for a pooled connection never sent the request; anything
    later (a timeout, a dropped connection) may have reached Mastodon, which matters only
    for the call that creates the status.
    """
    message = f"{type(exc).__name__} talking to Mastodon: {exc}"
    never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
    if creating and not never_sent:
        return OutcomeUnknown(message)
    return Transient(message)
