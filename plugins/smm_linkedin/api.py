"""LinkedIn's versioned REST API (``/rest``) as the adapter uses it, and its error mapping.

Every request carries ``Authorization: Bearer``, ``LinkedIn-Version: YYYYMM`` and
``X-Restli-Protocol-Version: 2.0.0``. Errors are JSON::

    {"status": 422, "serviceErrorCode": 100, "code": "UNPROCESSABLE_ENTITY",
     "message": "Content is a duplicate of urn:li:share:7199..."}

Classification (docs/plugins/networks/linkedin.md):

* 429: ``RateLimited``; LinkedIn's limits are daily and reset at midnight UTC, so ``retry_at``
  is ``Retry-After`` when sent, else the next midnight UTC;
* 401: ``AuthExpired`` (expired or revoked token);
* 403: ``AuthExpired`` too: the token lacks a permission the account needs
  (``w_member_social``, ``w_organization_social``), which only a person can grant;
* 400, 404, 409, 422 and other 4xx: ``Rejected`` with LinkedIn's message (a duplicate post
  is a 422 "Content is a duplicate of urn:li:share:...");
* 5xx: ``Transient``, except on a request that creates a post: ``OutcomeUnknown`` (no
  idempotency key: the post may have been made).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

import httpx

from scheduler.adapter import (
    AuthExpired,
    PublishError,
    RateLimited,
    Transient,
    json_object,
    status_error,
)
from scheduler.adapter import transport_error as _transport_error
from scheduler.timeutil import utcnow

__all__ = ["LinkedInApi", "classify_error", "next_midnight_utc"]


def next_midnight_utc(now: datetime) -> datetime:
    """The next 00:00 UTC after ``now``, when LinkedIn's daily limits reset."""
    return datetime.combine(now.astimezone(UTC).date() + timedelta(days=1), time(0), UTC)


def classify_error(
    status: int,
    body: Mapping[str, Any] | None,
    headers: Mapping[str, str],
    *,
    where: str,
    mutating: bool,
    now: datetime | None = None,
    secret: str = "",
) -> PublishError:
    """The ``PublishError`` for a failed LinkedIn answer (see the module docstring)."""
    body = body or {}
    detail = str(body.get("message") or f"HTTP {status} on {where}")
    ids = ", ".join(str(body[k]) for k in ("code", "serviceErrorCode") if body.get(k) is not None)
    message = f"LinkedIn: {detail} [HTTP {status}{', ' + ids if ids else ''}]"
    if secret:
        message = message.replace(secret, "[redacted]")
    code = body.get("serviceErrorCode")
    if status == 429:
        now = now or utcnow()
        retry_after = headers.get("retry-after", "")
        retry_at = (
            now + timedelta(seconds=int(retry_after))
            if retry_after.isdigit()
            else next_midnight_utc(now)
        )
        return RateLimited(message, http_status=status, retry_at=retry_at, code=code)
    if status == 403:  # LinkedIn answers a revoked or under-scoped token with 403
        return AuthExpired(message, http_status=status, code=code)
    # The Posts API takes no idempotency key: a 5xx on a create is an unknown outcome.
    return status_error(
        status,
        message,
        mutating=mutating,
        idempotent=False,
        code=code,
        effect="the post may have been published",
    )


@dataclass
class LinkedInApi:
    """Requests to ``https://api.linkedin.com/rest`` for one token and API version."""

    client: httpx.AsyncClient
    base: str  # "https://api.linkedin.com/rest"
    version: str  # "202410"
    token: str

    def headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.token}",
            "LinkedIn-Version": self.version,
            "X-Restli-Protocol-Version": "2.0.0",
        }

    async def request(
        self,
        method: str,
        path_or_url: str,
        *,
        mutating: bool = False,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send one request; return the successful response or raise a ``PublishError``.

        ``path_or_url`` is relative to ``base`` (its query, if any, already encoded the
        Rest.li way), or a full URL for upload addresses LinkedIn hands out.
        """
        if "://" in path_or_url:
            url, where = path_or_url, f"{method} upload"
        else:
            url, where = f"{self.base}/{path_or_url}", f"{method} /{path_or_url.split('?')[0]}"
        try:
            response = await self.client.request(
                method, url, headers={**self.headers(), **(headers or {})}, **kwargs
            )
        except httpx.HTTPError as exc:
            raise transport_error(exc, where=where, mutating=mutating) from None
        if response.is_success:
            return response
        raise classify_error(
            response.status_code,
            json_object(response),
            response.headers,
            where=where,
            mutating=mutating,
            secret=self.token,
        )

    async def get_json(self, path: str) -> dict[str, Any]:
        """GET ``path`` and return its JSON object (a read: a lost answer is ``Transient``)."""
        response = await self.request("GET", path)
        body = json_object(response)
        if body is None:
            raise Transient(f"LinkedIn: HTTP {response.status_code} without JSON on GET {path}")
        return body


def transport_error(exc: httpx.HTTPError, *, where: str, mutating: bool) -> PublishError:
    """An httpx failure on a LinkedIn request (``scheduler.adapter.transport_error``)."""
    return _transport_error(exc, network="LinkedIn", where=where, mutating=mutating)
