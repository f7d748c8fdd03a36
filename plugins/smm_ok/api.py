"""The OK REST API as the adapter uses it: signed form POSTs to ``fb.do``, errors in HTTP 200.

Every method is ``POST {api_base}/fb.do`` with form fields ``application_key``, ``method``,
``format=json``, the method's parameters, ``access_token`` and ``sig``. The signature is the
one OK defines for OAuth sessions::

    secret = md5(access_token + application_secret_key)       # lowercase hex
    sig    = md5("".join(f"{k}={v}" for k, v in sorted(params)) + secret)

over every parameter except ``access_token`` and ``session_key`` (and ``sig`` itself). An
application may instead hand out a ``session_secret_key``; it then replaces ``secret``.
Nothing secret goes in a URL.

OK answers errors with HTTP 200 and ``{"error_code": 102, "error_msg":
"PARAM_SESSION_EXPIRED : Session expired", "error_data": null}``. How codes are classified
(codes and names from OK's error list, https://apiok.ru/en/dev/errors;
docs/plugins/networks/ok.md):

* 7 (ACTION_BLOCKED), 8 (FLOOD_BLOCKED), 9 (IP_BLOCKED), 11 (LIMIT_REACHED), 26
  (TOTAL_LIMIT_REACHED): ``RateLimited``;
* 10 (PERMISSION_DENIED), 50 (NOT_ADMIN), 101 (PARAM_API_KEY), 102 (PARAM_SESSION_EXPIRED),
  103 (PARAM_SESSION_KEY), 104 (PARAM_SIGNATURE), 105 (PARAM_RESIGNATURE), 200-299
  (permission and application errors): ``AuthExpired``, a person must fix the token, keys or
  rights;
* 1 (UNKNOWN), 2 (SERVICE): ``Transient``; 9999 (SYSTEM): ``OutcomeUnknown`` on a call that
  creates something, else ``Transient``;
* 100 (PARAM), 300 (NOT_FOUND) and every other code: ``Rejected``.
"""

from __future__ import annotations

import hashlib
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
)
from scheduler.adapter import status_error as _status_error
from scheduler.adapter import transport_error as _transport_error
from scheduler.timeutil import utcnow

__all__ = ["OKApi", "classify_error", "signature", "status_error", "transport_error"]

NETWORK = "OK"

# OK gives no reset time with its limits; these waits are ours: long enough not to hammer.
_RATE_LIMITS = {
    7: timedelta(minutes=15),  # ACTION_BLOCKED: OK wants a person (captcha) for a while
    8: timedelta(minutes=10),  # FLOOD_BLOCKED
    9: timedelta(hours=1),  # IP_BLOCKED: suspicious activity from this address
    11: timedelta(hours=1),  # LIMIT_REACHED
    26: timedelta(hours=1),  # TOTAL_LIMIT_REACHED
}
_AUTH_CODES = frozenset({10, 50, 101, 102, 103, 104, 105})
_TRANSIENT_CODES = frozenset({1, 2})
_SYSTEM_CODE = 9999
#: Parameters the signature leaves out.
_UNSIGNED = frozenset({"access_token", "session_key", "sig"})


def signature(params: Mapping[str, str], secret: str) -> str:
    """``sig`` for ``params``: md5 of the sorted ``k=v`` pairs then ``secret``, lowercase hex.

    ``secret`` is ``session_secret(access_token, application_secret_key)`` or a
    ``session_secret_key`` the application was given.
    """
    pairs = "".join(f"{k}={params[k]}" for k in sorted(params) if k not in _UNSIGNED)
    return hashlib.md5((pairs + secret).encode("utf-8")).hexdigest()


def session_secret(access_token: str, application_secret_key: str) -> str:
    """The signing secret of an OAuth session: md5(access_token + application secret)."""
    return hashlib.md5((access_token + application_secret_key).encode("utf-8")).hexdigest()


def _scrub(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text


def classify_error(
    body: Mapping[str, Any], *, method: str, mutating: bool, secrets: tuple[str, ...] = ()
) -> PublishError:
    """The ``PublishError`` for OK's error answer (see the module docstring)."""
    code = body.get("error_code")
    text = body.get("error_msg") or "no message"
    message = _scrub(f"OK: {text} [error {code} in {method}]", secrets)
    if code in _RATE_LIMITS:
        return RateLimited(message, retry_at=utcnow() + _RATE_LIMITS[code], code=code)
    if code in _AUTH_CODES or (isinstance(code, int) and 200 <= code < 300):
        return AuthExpired(message, code=code)
    if code in _TRANSIENT_CODES:
        return Transient(message, code=code)
    if code == _SYSTEM_CODE:
        return (OutcomeUnknown if mutating else Transient)(message, code=code)
    return Rejected(message, code=code)


def status_error(status: int, *, where: str, mutating: bool) -> PublishError:
    """A non-200 answer: OK answers its own errors with 200, so this is the front end, and
    the rule every network shares applies (``scheduler.adapter.status_error``)."""
    return _status_error(
        status,
        f"OK: HTTP {status} on {where}",
        mutating=mutating,
        idempotent=False,  # mediatopic.post takes no idempotency key
        effect="the topic may have been made",
    )


def transport_error(exc: httpx.HTTPError, *, where: str, mutating: bool) -> PublishError:
    """An httpx failure on an OK request, classified by ``scheduler.adapter.transport_error``."""
    return _transport_error(exc, network=NETWORK, where=where, mutating=mutating)


@dataclass
class OKApi:
    """Calls OK methods for one account on the core's client."""

    client: httpx.AsyncClient
    base: str  # "https://api.ok.ru"
    application_key: str
    access_token: str
    #: md5(access_token + application_secret_key), or the session_secret_key.
    secret: str

    async def call(self, method: str, params: Mapping[str, str], *, mutating: bool = False) -> Any:
        """The answer of ``method``; ``mutating`` for calls a lost answer leaves open."""
        where = f"POST {method}"
        form = {
            **params,
            "application_key": self.application_key,
            "method": method,
            "format": "json",
        }
        form["sig"] = signature(form, self.secret)
        form["access_token"] = self.access_token
        try:
            response = await self.client.post(f"{self.base}/fb.do", data=form)
        except httpx.HTTPError as exc:
            raise transport_error(exc, where=where, mutating=mutating) from None
        if response.status_code != 200:
            raise status_error(response.status_code, where=where, mutating=mutating)
        try:
            body: Any = response.json()
        except ValueError:
            message = f"OK: HTTP 200 without a JSON answer on {where}"
            raise (OutcomeUnknown if mutating else Transient)(message) from None
        if isinstance(body, dict) and "error_code" in body:
            raise classify_error(
                body,
                method=method,
                mutating=mutating,
                secrets=(self.access_token, self.secret),
            )
        return body
