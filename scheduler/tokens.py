"""OAuth access tokens refreshed before they expire, and stored only where the operator allows.

Networks that issue refresh tokens (Google, TikTok, LinkedIn, X with OAuth 2, Threads and
Instagram long-lived tokens) hand out access tokens that die after an hour or a few weeks.
An adapter that can renew one implements ``TokenRefresher``: ``refresh_token(account)``
trades the account's refresh credentials for a new ``TokenSet``. This module decides *when*
(a daemon job every ``CHECK_EVERY``, and right before a publish through ``fresh``) and
*where the result goes*.

Where: **the credential file the token is read from**, and nowhere else. An account whose
``credentials.access_token`` is ``{ file = ... }`` has told the daemon where that token lives;
writing the new one there (atomically, mode 0600) is what a person renewing it by hand would
do, every reader (``Account.secret`` reads the file at each call, other daemons on the same
files) picks it up without a restart, and no second copy of a secret exists — not in the
database, not in a cache. A token given as an environment variable or a systemd credential is
read-only by nature: it is never refreshed, and ``smm status`` says so while there is still
time. When a network rotates refresh tokens (``rotates_refresh_token``), the refresh token
must be a writable file too, or a refresh would lose the only copy of the new one.

Beside the token file, ``<file>.state.json`` (0600, no secret in it) keeps when the token
expires, when it was refreshed, and the last failure; ``smm status`` reads it to warn hours
before a token whose refresh keeps failing dies (``WARN_BEFORE``). Every refresh, made or
failed, is a log event (``token_refreshed``, ``token_refresh_failed``) and a metric; no token
ever appears in either.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import httpx
import structlog
from sqlalchemy import Engine, update
from sqlalchemy.exc import SQLAlchemyError

from scheduler.adapter import (
    Account,
    AuthExpired,
    PublishError,
    RateLimited,
    Transient,
    json_object,
)
from scheduler.config import Config, CredentialRef
from scheduler.logging import register_secret
from scheduler.timeutil import utcnow

__all__ = [
    "CHECK_EVERY",
    "WARN_BEFORE",
    "TokenRefresher",
    "TokenSet",
    "TokenState",
    "fresh",
    "health",
    "oauth2_refresh",
    "refresh_all",
    "refresh_if_due",
    "refreshes",
    "self_refreshing",
    "wants_refresh",
    "why_not_refreshable",
]

log = structlog.get_logger("scheduler.tokens")

#: How often the daemon looks at every refreshable token.
CHECK_EVERY = timedelta(minutes=5)
#: How soon a failed refresh is tried again (the job, or the next publish).
RETRY_FAILED_AFTER = timedelta(minutes=1)
#: A token this close to expiry whose refresh failed needs a person (smm status).
WARN_BEFORE = timedelta(hours=6)


@dataclass(frozen=True)
class TokenSet:
    """What a refresh returned. ``refresh_token`` is set when the network rotated it."""

    access_token: str
    expires_at: datetime | None
    refresh_token: str | None = None


@runtime_checkable
class TokenRefresher(Protocol):
    """An adapter that can renew its account's access token."""

    #: Refresh when the token has less than this left (a fraction of its lifetime).
    refresh_lead: ClassVar[timedelta]
    #: True when every refresh returns a new refresh token that replaces the old one.
    rotates_refresh_token: ClassVar[bool]
    #: Optional: ``"access_token"`` for a long-lived token that renews itself (no refresh
    #: token); the default is ``"refresh_token"``.

    async def refresh_token(self, account: Account) -> TokenSet:
        """Trade the account's refresh credentials for a new access token.

        Raises ``AuthExpired`` when the refresh token itself is refused (a person must
        authorise again), another ``PublishError`` when it may work later.
        """
        ...


@dataclass
class TokenState:
    """The non-secret facts about one stored token (``<token file>.state.json``)."""

    expires_at: datetime | None = None
    refreshed_at: datetime | None = None
    failed_at: datetime | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in vars(self).items()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TokenState:
        def when(key: str) -> datetime | None:
            try:
                return datetime.fromisoformat(str(data[key])) if data.get(key) else None
            except ValueError:
                return None

        error = data.get("error")
        return cls(
            expires_at=when("expires_at"),
            refreshed_at=when("refreshed_at"),
            failed_at=when("failed_at"),
            error=str(error) if error else None,
        )


# --------------------------------------------------------------------------- storage


def _writable_file(ref: CredentialRef | None) -> Path | None:
    if ref is None or ref.kind != "file":
        return None
    return Path(ref.name).expanduser()


def refreshes(adapter: object) -> bool:
    """True when ``adapter`` (an adapter or its class) implements ``TokenRefresher``."""
    return callable(getattr(adapter, "refresh_token", None)) and isinstance(
        getattr(adapter, "refresh_lead", None), timedelta
    )


def self_refreshing(adapter: object) -> bool:
    """True for networks whose long-lived access token renews itself (no refresh token):
    Threads, Instagram. Their accounts opt in with ``options.auto_refresh = true``."""
    return getattr(adapter, "refresh_credential", "refresh_token") == "access_token"


def wants_refresh(
    adapter: object, options: Mapping[str, Any], credentials: Mapping[str, Any]
) -> bool:
    """True when the account asked for its token to be refreshed: it has a refresh token, or
    (a self-refreshing network) ``options.auto_refresh = true``."""
    if self_refreshing(adapter):
        return options.get("auto_refresh") is True
    return "refresh_token" in credentials


def why_not_refreshable(adapter: object, account: Account) -> str | None:
    """Why this account's token cannot be refreshed and stored, or None when it can.
    ``adapter`` is the account's adapter or its class."""
    if not refreshes(adapter):
        return f"the {account.platform} plugin cannot refresh tokens"
    if not wants_refresh(adapter, account.options, account.credentials):
        if self_refreshing(adapter):
            return "options.auto_refresh is not true"
        return "no credentials.refresh_token configured"
    if _writable_file(account.credentials.get("access_token")) is None:
        return (
            "credentials.access_token is not a file: a refreshed token could not be stored "
            "(point it at a file the daemon may write)"
        )
    rotates = getattr(adapter, "rotates_refresh_token", False)
    if rotates and _writable_file(account.credentials.get("refresh_token")) is None:
        return (
            f"{account.platform} replaces the refresh token at every refresh: "
            "credentials.refresh_token must be a file the daemon may write"
        )
    return None


def _state_path(token_file: Path) -> Path:
    return token_file.with_name(token_file.name + ".state.json")


def read_state(account: Account) -> TokenState | None:
    """The stored state of the account's access token, or None when there is none."""
    token_file = _writable_file(account.credentials.get("access_token"))
    if token_file is None:
        return None
    try:
        return TokenState.from_json(json.loads(_state_path(token_file).read_bytes()))
    except (OSError, ValueError, TypeError):
        return None


def _write_private(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically, mode 0600, durably."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _write_state(token_file: Path, state: TokenState) -> None:
    _write_private(_state_path(token_file), json.dumps(state.to_json()).encode())


# --------------------------------------------------------------------------- refreshing

_locks: dict[str, asyncio.Lock] = {}


def _due(adapter: TokenRefresher, state: TokenState | None, now: datetime) -> bool:
    # A refresh that just failed is not tried again at every publish: once a minute at most.
    if (
        state is not None
        and state.failed_at is not None
        and timedelta(0) <= now - state.failed_at < RETRY_FAILED_AFTER
    ):
        return False
    # A token never refreshed here has an unknown expiry: refresh it to learn it.
    if state is None or state.expires_at is None:
        return True
    return state.expires_at - now <= adapter.refresh_lead


async def refresh_if_due(
    adapter: object, account: Account, now: datetime | None = None, *, force: bool = False
) -> TokenState | None:
    """Refresh the account's token when it is within its lead time of expiry (or ``force``).

    Returns the token's state afterwards; None when the account's token is not refreshable
    (see ``why_not_refreshable``). A failed refresh is recorded and logged, not raised.
    """
    if why_not_refreshable(adapter, account) is not None:
        return None
    assert isinstance(adapter, TokenRefresher)
    token_file = _writable_file(account.credentials["access_token"])
    assert token_file is not None
    lock = _locks.setdefault(str(token_file), asyncio.Lock())
    async with lock:
        now = now or utcnow()
        state = read_state(account)
        if not force and not _due(adapter, state, now):
            return state
        # One refresh at a time per token across processes too: a rotated refresh token
        # may be used only once.
        fd = os.open(token_file.with_name(token_file.name + ".lock"), os.O_CREAT | os.O_RDWR, 0o600)
        try:
            await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
            state = read_state(account)  # another daemon may have refreshed it meanwhile
            if not force and not _due(adapter, state, now):
                return state
            return await _refresh(adapter, account, token_file, state, now)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


async def _refresh(
    adapter: TokenRefresher,
    account: Account,
    token_file: Path,
    state: TokenState | None,
    now: datetime,
) -> TokenState:
    from scheduler import observability

    previous = state or TokenState()
    try:
        tokens = await adapter.refresh_token(account)
    except PublishError as exc:
        failed = TokenState(previous.expires_at, previous.refreshed_at, now, exc.message[:500])
        _write_state(token_file, failed)
        log.error(
            "token_refresh_failed",
            account=account.name,
            platform=account.platform,
            error_class=str(exc.error_class),
            error=exc.message,
            expires_at=previous.expires_at,
        )
        observability.record_token(account, previous.expires_at, failed=True)
        return failed
    # Under the files' names: each keeps its latest few tokens masked, not every token the
    # daemon ever refreshed (see ``scheduler.redaction.KEPT_PER_SOURCE``).
    access_ref = account.credentials["access_token"]
    refresh_ref = account.credentials.get("refresh_token")
    register_secret(tokens.access_token, access_ref.source)
    _write_private(token_file, tokens.access_token.encode() + b"\n")
    if tokens.refresh_token:
        register_secret(
            tokens.refresh_token,
            refresh_ref.source if refresh_ref is not None else f"{access_ref.source}#refresh",
        )
        refresh_file = _writable_file(refresh_ref)
        if refresh_file is not None:
            _write_private(refresh_file, tokens.refresh_token.encode() + b"\n")
    fresh_state = TokenState(expires_at=tokens.expires_at, refreshed_at=now)
    _write_state(token_file, fresh_state)
    log.info(
        "token_refreshed",
        account=account.name,
        platform=account.platform,
        expires_at=tokens.expires_at,
    )
    observability.record_token(account, tokens.expires_at, failed=False)
    return fresh_state


async def fresh(adapter: object, account: Account) -> None:
    """Make sure the account's token is not about to expire before a request is sent.

    Adapters call it at the start of ``publish``: a token that expired while the daemon ran
    is refreshed here, before the request, instead of failing it. Does nothing for a token
    that cannot be refreshed (the request then tells).
    """
    await refresh_if_due(adapter, account)


async def refresh_all(
    config: Config, adapters: Mapping[str, object], engine: Engine | None = None
) -> None:
    """The daemon job: refresh every configured token that is within its lead time, and
    write each token's expiry to its account's row (``accounts.token_expires_at``, no secret:
    ``smm accounts list`` and the ``smm_account_token_expires_in_seconds`` metric read it)."""
    from scheduler.outgoing import account_view

    expiries: dict[str, datetime] = {}
    for cfg in config.accounts.values():
        adapter = adapters.get(cfg.platform)
        if adapter is None or not wants_refresh(adapter, cfg.options, cfg.credentials):
            continue
        account = account_view(cfg)
        reason = why_not_refreshable(adapter, account)
        if reason is not None:
            log.warning("token_not_refreshable", account=cfg.name, reason=reason)
            continue
        state = await refresh_if_due(adapter, account)
        if state is not None and state.expires_at is not None:
            expiries[cfg.name] = state.expires_at
    if engine is not None and expiries:
        try:
            await asyncio.to_thread(_record_expiries, engine, expiries)
        except SQLAlchemyError as exc:  # the database is away: next time
            log.warning("token_expiry_not_recorded", error=type(exc).__name__)


def _record_expiries(engine: Engine, expiries: Mapping[str, datetime]) -> None:
    from scheduler.queue import accounts_t

    with engine.begin() as conn:
        for name, expires_at in expiries.items():
            conn.execute(
                update(accounts_t)
                .where(accounts_t.c.name == name)
                .values(token_expires_at=expires_at)
            )


# --------------------------------------------------------------------------- OAuth 2

#: RFC 6749 errors that mean the refresh credentials themselves are refused.
_REFUSED = frozenset(
    {"invalid_grant", "invalid_client", "unauthorized_client", "access_denied", "invalid_request"}
)


async def oauth2_refresh(
    client: httpx.AsyncClient,
    url: str,
    form: Mapping[str, str],
    *,
    network: str,
    now: datetime | None = None,
    method: str = "POST",
    basic: tuple[str, str] | None = None,
) -> TokenSet:
    """The standard OAuth 2 refresh (RFC 6749, section 6): POST ``form`` (with
    ``grant_type=refresh_token``) to ``url``, with HTTP Basic client authentication when
    ``basic`` is (client id, secret); the answer's ``access_token``, ``expires_in`` and, when
    the network rotates it, ``refresh_token``. ``method="GET"`` sends ``form`` as the query
    instead (the long-lived token exchanges of Threads and Instagram).

    A refused grant or client is ``AuthExpired``; 429 or ``slow_down`` ``RateLimited``;
    anything else ``Transient`` (the next check tries again). No error quotes a secret.
    """
    secrets = [
        v for k, v in form.items() if k in ("refresh_token", "client_secret", "access_token")
    ]
    if basic is not None:
        secrets.append(basic[1])
    try:
        if method == "GET":  # Threads and Instagram take the token in the query
            response = await client.get(url, params=dict(form))
        else:
            headers = {}
            if basic is not None:  # HTTP Basic client authentication (RFC 6749, 2.3.1)
                pair = base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
                headers["Authorization"] = f"Basic {pair}"
            response = await client.post(url, data=dict(form), headers=headers)
    except httpx.HTTPError as exc:
        raise Transient(f"{network}: token refresh got no answer ({type(exc).__name__})") from None
    body = json_object(response) or {}
    error = body.get("error")
    if isinstance(error, dict):  # some networks nest it
        error = error.get("code")
    if response.status_code == 200 and not error and isinstance(body.get("access_token"), str):
        expires_in = body.get("expires_in")
        expires_at = (
            (now or utcnow()) + timedelta(seconds=int(expires_in))
            if isinstance(expires_in, int | str) and str(expires_in).isdigit()
            else None
        )
        rotated = body.get("refresh_token")
        return TokenSet(
            body["access_token"],
            expires_at,
            rotated if isinstance(rotated, str) and rotated else None,
        )
    described = body.get("error_description") or error or f"HTTP {response.status_code}"
    message = f"{network}: token refresh refused: {described}"
    for secret in secrets:
        message = message.replace(secret, "[redacted]")
    if response.status_code == 429 or error in ("slow_down", "rate_limit_exceeded"):
        raise RateLimited(message, http_status=response.status_code)
    if error in _REFUSED or response.status_code in (400, 401, 403):
        raise AuthExpired(message, http_status=response.status_code, code=str(error or ""))
    raise Transient(message, http_status=response.status_code)


# --------------------------------------------------------------------------- status


def health(
    config: Config, adapter_classes: Mapping[str, type], now: datetime
) -> list[dict[str, Any]]:
    """One entry per account with a refresh token: its expiry, last refresh, and ``problem``
    (a sentence for ``smm status``) when a person should act now."""
    from scheduler.outgoing import account_view

    out = []
    for cfg in sorted(config.accounts.values(), key=lambda a: a.name):
        cls = adapter_classes.get(cfg.platform)
        if not wants_refresh(cls, cfg.options, cfg.credentials):
            continue
        account = account_view(cfg)
        reason = why_not_refreshable(cls, account)
        state = read_state(account)
        problem = None
        if reason is not None:
            problem = f"token of {cfg.name} cannot be refreshed: {reason}"
        elif state is not None and state.error:
            left = state.expires_at - now if state.expires_at else None
            if left is None or left <= WARN_BEFORE:
                until = (
                    "it has expired"
                    if left is not None and left <= timedelta(0)
                    else f"it expires at {state.expires_at:%Y-%m-%d %H:%M} UTC"
                    if state.expires_at
                    else "its expiry is unknown"
                )
                problem = (
                    f"token refresh of {cfg.name} failing since "
                    f"{state.failed_at:%Y-%m-%d %H:%M} UTC ({state.error}); {until}: "
                    "authorise the account again"
                )
        out.append(
            {
                "account": cfg.name,
                "platform": cfg.platform,
                "expires_at": state.expires_at if state else None,
                "refreshed_at": state.refreshed_at if state else None,
                "failed_at": state.failed_at if state else None,
                "error": state.error if state else None,
                "problem": problem,
            }
        )
    return out
