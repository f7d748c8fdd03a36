"""XRPC, the HTTP API of the AT Protocol, and how its failures map to the core's taxonomy.

Every call is ``GET`` (queries) or ``POST`` (procedures) to ``<service>/xrpc/<method id>``.
A failure is an HTTP status with a JSON body ``{"error": "<Name>", "message": "..."}``;
the name, not the status, says what went wrong (an expired token is a 400 ``ExpiredToken``).
Rate limits come back as ``RateLimit-Limit``, ``RateLimit-Remaining`` and ``RateLimit-Reset``
headers, the reset in Unix seconds, on every answer, and as a 429 when exceeded.
"""

from __future__ import annotations

import json as jsonlib
from collections.abc import Callable, Iterable, Mapping
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
)

__all__ = [
    "AUTH_ERRORS",
    "BadResponse",
    "XrpcError",
    "call",
    "classify",
    "classify_transport",
    "rate_limit_status",
    "redact",
]

#: Error names that mean the session (access token) is no longer good.
AUTH_ERRORS = frozenset({"ExpiredToken", "InvalidToken", "AuthenticationRequired"})
#: Error names that mean the account itself cannot post: a person has to act.
_ACCOUNT_ERRORS = frozenset(
    {"AccountTakedown", "AccountDeactivated", "AccountSuspended", "AuthFactorTokenRequired"}
)
_RATE_LIMIT_ERRORS = frozenset({"RateLimitExceeded"})

Observer = Callable[[httpx.Response], None]


class XrpcError(Exception):
    """A non-2xx answer, with the error name and message the server gave."""

    def __init__(self, status: int, error: str, message: str, headers: httpx.Headers) -> None:
        super().__init__(f"{status} {error}: {message}" if message else f"{status} {error}")
        self.status = status
        self.error = error
        self.message = message
        self.headers = headers

    @property
    def auth_problem(self) -> bool:
        """True when renewing the session might fix it."""
        return self.status == 401 or self.error in AUTH_ERRORS


class BadResponse(Exception):
    """A 2xx answer whose body is not the JSON object the method returns."""


async def call(
    client: httpx.AsyncClient,
    service: str,
    nsid: str,
    *,
    token: str | None = None,
    params: Mapping[str, Any] | None = None,
    json: Any = None,
    content: bytes | None = None,
    content_type: str | None = None,
    procedure: bool = False,
    observe: Observer | None = None,
) -> dict[str, Any]:
    """Call ``nsid`` on ``service``: a POST for a ``procedure`` or when there is a body, else
    a GET. Raises XrpcError for a non-2xx answer, BadResponse for an unreadable 2xx, and
    httpx errors as they come."""
    headers: dict[str, str] = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if content_type:
        headers["Content-Type"] = content_type
    url = f"{service.rstrip('/')}/xrpc/{nsid}"
    if procedure or json is not None or content is not None:
        response = await client.post(
            url, headers=headers, params=params, json=json, content=content
        )
    else:
        response = await client.get(url, headers=headers, params=params)
    if observe is not None:
        observe(response)
    body = _json(response)
    if not response.is_success:
        error = body.get("error") if isinstance(body, dict) else None
        message = body.get("message") if isinstance(body, dict) else None
        raise XrpcError(
            response.status_code,
            error if isinstance(error, str) else response.reason_phrase or "HTTPError",
            message if isinstance(message, str) else "",
            response.headers,
        )
    if not isinstance(body, dict):
        got = response.headers.get("content-type", "no content type")
        raise BadResponse(f"{nsid} answered {response.status_code} with {got}, not JSON")
    return body


def _json(response: httpx.Response) -> Any:
    try:
        return jsonlib.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return None


def rate_limit_status(headers: httpx.Headers) -> RateLimitStatus | None:
    """The budget the ``RateLimit-*`` headers announce; None when they are absent."""
    remaining = _int(headers.get("ratelimit-remaining"))
    reset = _int(headers.get("ratelimit-reset"))
    if remaining is None and reset is None:
        return None
    return RateLimitStatus(
        remaining=remaining,
        reset_at=datetime.fromtimestamp(reset, UTC) if reset is not None else None,
        limit=_int(headers.get("ratelimit-limit")),
    )


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret replaced by ``[redacted]``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text


def classify(exc: XrpcError, *, secrets: Iterable[str] = ()) -> PublishError:
    """The taxonomy class of an XRPC error answer (the request did not take effect)."""
    message = redact(exc.message or exc.error, secrets)
    kwargs: dict[str, Any] = {"http_status": exc.status, "code": exc.error}
    if exc.status == 429 or exc.error in _RATE_LIMIT_ERRORS:
        status = rate_limit_status(exc.headers)
        return RateLimited(message, retry_at=status.reset_at if status else None, **kwargs)
    if exc.auth_problem or exc.error in _ACCOUNT_ERRORS:
        return AuthExpired(message, **kwargs)
    if exc.status >= 500:
        return Transient(message, **kwargs)
    return Rejected(message, **kwargs)


def classify_transport(exc: httpx.HTTPError, *, may_have_taken_effect: bool) -> PublishError:
    """The taxonomy class of a transport failure.

    A refused connection or a wait for a pooled connection never sent the request. Anything
    later (a read timeout, a dropped connection) may have reached the server: for a write
    that is ``OutcomeUnknown``, for a read it is simply worth retrying.
    """
    message = f"{type(exc).__name__} talking to Bluesky: {exc}"
    never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
    if may_have_taken_effect and not never_sent:
        return OutcomeUnknown(message)
    return Transient(message)
