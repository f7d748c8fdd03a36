"""Turning Bot API answers and transport faults into the core's error taxonomy.

Every Bot API answer is a JSON object ``{"ok": false, "error_code": N, "description": "..."}``
with an optional ``parameters`` object (``retry_after``, ``migrate_to_chat_id``); the HTTP
status repeats ``error_code``. The token is part of every request URL, so no message built
here may quote a URL or an httpx exception unredacted.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import httpx

from scheduler.adapter import (
    AuthExpired,
    OutcomeUnknown,
    PublishError,
    RateLimited,
    Rejected,
    Transient,
    status_error,
)

__all__ = ["ChatMigrated", "classify", "redact", "transport_failure"]

# Descriptions that mean the bot lacks a right in the chat: every post would fail the same
# way until an administrator fixes it, so the account is paused rather than each post failed.
_MISSING_RIGHTS = (
    "not enough rights",
    "need administrator rights",
    "have no rights to send",
    "chat_write_forbidden",
    "chat_admin_required",
)


class ChatMigrated(Rejected):
    """The group became a supergroup; the same call must go to ``new_chat_id``.

    A ``Rejected`` so that, should it escape the one retry the adapter makes, it still fails
    the post with Telegram's own description.
    """

    def __init__(self, message: str, new_chat_id: str, *, http_status: int | None) -> None:
        super().__init__(message, http_status=http_status, code=400)
        self.new_chat_id = new_chat_id


def redact(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with every secret replaced by a marker."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    return text


def transport_failure(
    exc: httpx.TransportError, what: str, *, sends: bool, secrets: tuple[str, ...]
) -> PublishError:
    """Classify a transport fault. Raise the result ``from None``: the cause quotes the URL.

    A refused connection or a connect/pool timeout never reached Telegram. Anything later
    (read timeout, dropped connection) may have reached it after the message was accepted,
    so a call that sends a message (``sends``) then has an unknown outcome.
    """
    detail = redact(f"{what}: {type(exc).__name__}: {exc}", secrets)
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return Transient(detail)
    if sends:
        return OutcomeUnknown(detail)
    return Transient(detail)


def classify(
    status: int, body: Mapping[str, Any] | None, *, now: datetime, sends: bool
) -> PublishError:
    """The error for a Bot API answer that is not ``{"ok": true}``.

    ``body`` is the decoded JSON object, or None when the answer was not one (a proxy's HTML
    page). ``sends`` says whether the call would have sent a message, which decides how a
    gateway timeout is read.
    """
    body = body or {}
    code = body.get("error_code")
    if not isinstance(code, int):
        code = status
    description = body.get("description")
    if not isinstance(description, str) or not description:
        description = f"HTTP {status} {httpx.codes.get_reason_phrase(status)}".strip()
    parameters = body.get("parameters")
    if not isinstance(parameters, Mapping):
        parameters = {}

    new_chat = parameters.get("migrate_to_chat_id")
    if isinstance(new_chat, int) and not isinstance(new_chat, bool):
        return ChatMigrated(description, str(new_chat), http_status=status)
    if code == 429:
        retry_after = parameters.get("retry_after")
        retry_at = None
        if isinstance(retry_after, int | float) and retry_after >= 0:
            retry_at = now + timedelta(seconds=retry_after)
        return RateLimited(description, http_status=status, retry_at=retry_at, code=code)
    if code in (401, 403):
        return AuthExpired(description, http_status=status, code=code)
    if code == 404:
        # The only URLs we call are Bot API methods: a 404 means Telegram does not recognise
        # the token in the path (malformed or deleted bot).
        return AuthExpired(
            f"{description} (Telegram does not recognise the bot token)",
            http_status=status,
            code=code,
        )
    if any(phrase in description.lower() for phrase in _MISSING_RIGHTS):
        return AuthExpired(description, http_status=status, code=code)
    if 400 <= code < 500:
        return Rejected(description, http_status=status, code=code)
    if code >= 500:
        # On a send, any 5xx may come after the Bot API took the message (a 504: the gateway
        # gave up waiting), and the Bot API takes no idempotency key: never resent blindly.
        return status_error(
            code,
            description,
            mutating=sends,
            idempotent=False,
            code=code,
            effect="the message may have been sent",
        )
    if sends:
        return OutcomeUnknown(description, http_status=status, code=code)
    return Transient(description, http_status=status, code=code)
