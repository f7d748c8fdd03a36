"""Turning X API v2 answers and transport faults into the core's error taxonomy.

X answers errors as RFC 7807 problems (``{"title", "detail", "type", "status"}``), sometimes
with an ``errors`` list of ``{"message"}`` or ``{"detail"}`` objects (parameter problems,
the legacy ``{"errors": [{"code": 88, "message": "Rate limit exceeded"}]}``). Rate-limit
state travels in ``x-rate-limit-*`` headers; reset times are epoch seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
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
    status_error,
)

__all__ = ["classify", "describe", "rate_limit_status", "retry_at", "transport_failure"]

# Problem types that say the app or token may not post at all (wrong access level, an app
# outside a project): every post would fail the same way, so the account is paused.
_ACCOUNT_PROBLEMS = ("client-forbidden", "unsupported-authentication", "oauth1-permissions")

# Windows X may report; the binding one is whichever is exhausted.
_WINDOWS = ("x-rate-limit", "x-user-limit-24hour", "x-app-limit-24hour")


def _json_object(response: httpx.Response) -> Mapping[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, Mapping) else {}


def describe(body: Mapping[str, Any], fallback: str) -> str:
    """One message from a problem body: its detail, then each listed error's own words."""
    parts: list[str] = []
    for key in ("detail", "title"):
        value = body.get(key)
        if isinstance(value, str) and value:
            parts.append(value)
            break
    errors = body.get("errors")
    if isinstance(errors, list):
        for error in errors:
            if isinstance(error, Mapping):
                text = error.get("message") or error.get("detail")
                if isinstance(text, str) and text and text not in parts:
                    parts.append(text)
    return "; ".join(parts) or fallback


def _int_header(headers: httpx.Headers, name: str) -> int | None:
    try:
        return int(headers[name])
    except (KeyError, ValueError):
        return None


def _epoch(value: int | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def rate_limit_status(headers: httpx.Headers) -> RateLimitStatus | None:
    """The 15-minute window's budget from ``x-rate-limit-*``, None without those headers."""
    remaining = _int_header(headers, "x-rate-limit-remaining")
    reset = _int_header(headers, "x-rate-limit-reset")
    if remaining is None and reset is None:
        return None
    return RateLimitStatus(
        remaining=remaining,
        reset_at=_epoch(reset),
        limit=_int_header(headers, "x-rate-limit-limit"),
    )


def retry_at(headers: httpx.Headers) -> datetime | None:
    """When a 429 ends: the latest reset among exhausted windows (the 24-hour ones included).

    Falls back to ``x-rate-limit-reset`` when no window says it is exhausted, and to None
    (the core's backoff) without any reset header.
    """
    exhausted = [
        _int_header(headers, f"{window}-reset")
        for window in _WINDOWS
        if _int_header(headers, f"{window}-remaining") == 0
    ]
    resets = [r for r in exhausted if r is not None]
    if resets:
        return _epoch(max(resets))
    return _epoch(_int_header(headers, "x-rate-limit-reset"))


def classify(response: httpx.Response, *, sends: bool) -> PublishError:
    """The error for a non-2xx answer. ``sends`` is True for the call that creates the post."""
    status = response.status_code
    body = _json_object(response)
    message = describe(body, f"HTTP {status} {response.reason_phrase}".strip())
    # "about:blank" is RFC 7807's "no type beyond the status": nothing worth keeping.
    problem = str(body.get("type", "")).replace("about:blank", "")
    if status == 429:
        return RateLimited(message, http_status=status, retry_at=retry_at(response.headers))
    if status == 401:
        return AuthExpired(message, http_status=status, code=problem or None)
    if status == 403:
        if "duplicate" in message.lower():
            return Rejected(message, http_status=status, code="duplicate")
        if any(problem.endswith(p) for p in _ACCOUNT_PROBLEMS):
            return AuthExpired(message, http_status=status, code=problem)
        return Rejected(message, http_status=status, code=problem or None)
    if 400 <= status < 500:
        return Rejected(message, http_status=status, code=problem or None)
    if status >= 500:
        # On the create, any 5xx may come after X made the post (a 504: the gateway stopped
        # waiting), and X takes no idempotency key: never resent blindly.
        return status_error(
            status, message, mutating=sends, idempotent=False, effect="the post may have been made"
        )
    return (OutcomeUnknown if sends else Transient)(message, http_status=status)


def transport_failure(
    exc: httpx.TransportError, what: str, *, sends: bool, secrets: tuple[str, ...]
) -> PublishError:
    """Classify a transport fault. Raise the result ``from None``: the cause may quote secrets.

    A refused connection or a connect/pool timeout never reached X. Anything later may have
    reached it after the post was created, so for the create call (``sends``) the outcome is
    unknown; for uploads and reads nothing was published, so they are simply transient.
    """
    detail = f"{what}: {type(exc).__name__}: {exc}"
    for secret in secrets:
        if secret:
            detail = detail.replace(secret, "<redacted>")
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return Transient(detail)
    return OutcomeUnknown(detail) if sends else Transient(detail)
