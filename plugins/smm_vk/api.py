"""The VK API as the adapter uses it: one form POST per method, errors inside HTTP 200.

Every method is ``POST {api_base}/{method}`` with form fields, ``v`` and ``access_token`` among
them, so the token never appears in a URL. VK answers ``{"response": ...}`` or, still with
HTTP 200, ``{"error": {"error_code": 6, "error_msg": "...", "request_params": [...]}}``.

How error codes are classified (docs/plugins/networks/vk.md):

* 6 (too many requests per second): ``RateLimited``, retry in 1 second;
* 9 (flood control: too many identical actions): ``RateLimited``, retry in 10 minutes;
* 14 (captcha needed, VK's anti-flood): ``RateLimited``, retry in 15 minutes;
* 29 (the method's daily quota is spent): ``RateLimited``, retry in 1 hour;
* 5, 27, 28 (user, group, application authorization failed), 17 (validation required),
  7, 15 (permission or access denied: the token lacks rights to this wall), 18, 37 (account
  deleted or banned): ``AuthExpired``, a person must fix the token or the account;
* 1, 10, 13 (unknown, internal, runtime error): ``Transient``;
* 36 (execution interrupted by a timeout): ``OutcomeUnknown`` for ``wall.post`` (the guid
  makes resending safe), ``Transient`` for reads;
* 100, 113, 214, 219, 220, 222, 224, 225 and every other code: ``Rejected``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx

from scheduler.adapter import (
    AuthExpired,
    OutcomeUnknown,
    PublishError,
    RateLimited,
    Rejected,
    Transient,
    json_object,
)
from scheduler.adapter import status_error as core_status_error
from scheduler.adapter import transport_error as _transport_error
from scheduler.timeutil import utcnow

__all__ = ["VKApi", "classify_error", "transport_error"]

NETWORK = "VK"

_RATE_LIMITS = {
    6: timedelta(seconds=1),
    9: timedelta(minutes=10),
    14: timedelta(minutes=15),
    29: timedelta(hours=1),
}
_AUTH_CODES = frozenset({5, 7, 15, 17, 18, 27, 28, 37})
_TRANSIENT_CODES = frozenset({1, 10, 13})
_TIMEOUT_CODE = 36


def _scrub(text: str, secret: str) -> str:
    return text.replace(secret, "[redacted]") if secret else text


def classify_error(
    error: Mapping[str, Any], *, method: str, mutating: bool, secret: str = ""
) -> PublishError:
    """The ``PublishError`` for VK's ``error`` object (see the module docstring)."""
    code = error.get("error_code")
    message = _scrub(
        f"VK: {error.get('error_msg') or 'no message'} [error {code} in {method}]", secret
    )
    if code in _RATE_LIMITS:
        return RateLimited(message, retry_at=utcnow() + _RATE_LIMITS[code], code=code)
    if code in _AUTH_CODES:
        return AuthExpired(message, code=code)
    if code in _TRANSIENT_CODES:
        return Transient(message, code=code)
    if code == _TIMEOUT_CODE:
        cls = OutcomeUnknown if mutating else Transient
        return cls(message, code=code)
    return Rejected(message, code=code)


def status_error(
    status: int, *, where: str, mutating: bool, idempotent: bool = False
) -> PublishError:
    """A non-200 answer: VK itself answers errors with 200, so this is the front end.
    ``idempotent``: the request carries a ``guid`` (VK makes no second post with it)."""
    message = f"VK: HTTP {status} on {where}"
    if status == 401:  # VK's own auth errors come as error codes with HTTP 200
        return Rejected(message, http_status=status)
    return core_status_error(
        status,
        message,
        mutating=mutating,
        idempotent=idempotent,
        effect="the post may have been made",
    )


@dataclass
class VKApi:
    """Calls VK methods for one token on the core's client."""

    client: httpx.AsyncClient
    base: str  # "https://api.vk.com/method"
    version: str  # "5.199"
    token: str

    async def call(
        self,
        method: str,
        params: Mapping[str, str],
        *,
        mutating: bool = False,
        idempotent: bool = False,
    ) -> Any:
        """``response`` of ``method``; ``mutating`` for calls a lost answer leaves open,
        ``idempotent`` for those among them that carry a ``guid``."""
        where = f"POST {method}"
        form = {**params, "v": self.version, "access_token": self.token}
        try:
            response = await self.client.post(f"{self.base}/{method}", data=form)
        except httpx.HTTPError as exc:
            raise transport_error(exc, where=where, mutating=mutating) from None
        if response.status_code != 200:
            raise status_error(
                response.status_code, where=where, mutating=mutating, idempotent=idempotent
            )
        body = json_object(response)
        if body is not None and isinstance(body.get("error"), dict):
            raise classify_error(body["error"], method=method, mutating=mutating, secret=self.token)
        if body is None or "response" not in body:
            message = f"VK: HTTP 200 without a response object on {where}"
            raise OutcomeUnknown(message) if mutating else Transient(message)
        return body["response"]


def transport_error(exc: httpx.HTTPError, *, where: str, mutating: bool) -> PublishError:
    """An httpx failure on a VK request, classified by ``scheduler.adapter.transport_error``."""
    return _transport_error(exc, network=NETWORK, where=where, mutating=mutating)
