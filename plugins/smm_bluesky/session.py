"""Bluesky sessions: log in once per account with the app password, refresh when expired.

``createSession`` trades the handle and app password for a short-lived access token and a
long-lived refresh token. Sessions are cached per account, because Bluesky limits logins
(30 per 5 minutes, 300 a day). When the access token expires, ``refreshSession`` (with the
refresh token) gives a new pair; when that fails too, one fresh login is tried before the
account is declared unusable.

Logins and refreshes go to the configured service (``pds`` option, https://bsky.social by
default), which may be an entryway in front of the account's real PDS; the other calls go
to the PDS named in the DID document the login returns, as the official clients do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from scheduler.adapter import Account, AuthExpired
from smm_bluesky import xrpc

__all__ = ["DEFAULT_SERVICE", "Session", "SessionStore"]

DEFAULT_SERVICE = "https://bsky.social"


@dataclass(frozen=True)
class Session:
    """A logged-in account: who it is and the tokens to act as it."""

    did: str
    handle: str
    access_jwt: str
    refresh_jwt: str
    #: Where the account's repository lives; every call but login and refresh goes there.
    pds: str


def service_of(account: Account) -> str:
    """The service an account logs in at."""
    return str(account.option("pds") or DEFAULT_SERVICE).rstrip("/")


def _pds_from_did_doc(did_doc: Any) -> str | None:
    if not isinstance(did_doc, dict):
        return None
    for service in did_doc.get("service") or ():
        if (
            isinstance(service, dict)
            and str(service.get("id", "")).endswith("#atproto_pds")
            and service.get("type") == "AtprotoPersonalDataServer"
        ):
            endpoint = service.get("serviceEndpoint")
            if isinstance(endpoint, str) and endpoint.startswith(("https://", "http://")):
                return endpoint.rstrip("/")
    return None


def _session(body: dict[str, Any], service: str) -> Session:
    try:
        return Session(
            did=str(body["did"]),
            handle=str(body["handle"]),
            access_jwt=str(body["accessJwt"]),
            refresh_jwt=str(body["refreshJwt"]),
            pds=_pds_from_did_doc(body.get("didDoc")) or service,
        )
    except KeyError as exc:
        raise xrpc.BadResponse(f"the session Bluesky returned has no {exc.args[0]}") from None


class SessionStore:
    """The live session of each account, created and renewed on demand.

    One lock per account, so that concurrent publishes of one account log in once and a
    token that expires under several of them is refreshed once.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        observe: Callable[[Account, httpx.Response], None] | None = None,
    ) -> None:
        self._client = client
        self._observe = observe
        self._sessions: dict[str, Session] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def _lock(self, account: Account) -> asyncio.Lock:
        return self._locks.setdefault(account.name, asyncio.Lock())

    async def get(self, account: Account) -> Session:
        """The account's session, logging in if there is none yet."""
        async with self._lock(account):
            session = self._sessions.get(account.name)
            if session is None:
                session = await self._login(account)
                self._sessions[account.name] = session
            return session

    async def renew(self, account: Account, stale: Session) -> Session:
        """A session to replace ``stale``, whose access token was refused.

        If another call already renewed it, that session is returned. Otherwise the refresh
        token is tried, then a fresh login; AuthExpired when the login is refused.
        """
        async with self._lock(account):
            current = self._sessions.get(account.name)
            if current is not None and current != stale:
                return current
            self._sessions.pop(account.name, None)
            try:
                session = await self._refresh(account, stale)
            except xrpc.XrpcError as exc:
                if not exc.auth_problem:
                    raise
                session = await self._login(account)
            self._sessions[account.name] = session
            return session

    def _observer(self, account: Account) -> xrpc.Observer | None:
        observe = self._observe
        if observe is None:
            return None
        return lambda response: observe(account, response)

    def cached(self, account: Account) -> Session | None:
        """The account's session if one is live, without logging in."""
        return self._sessions.get(account.name)

    def forget(self, account: Account) -> None:
        """Drop the cached session (the next call logs in again)."""
        self._sessions.pop(account.name, None)

    async def _login(self, account: Account) -> Session:
        handle = account.option("handle")
        if not handle:
            raise AuthExpired(f"account {account.name}: option 'handle' is not set")
        service = service_of(account)
        try:
            body = await xrpc.call(
                self._client,
                service,
                "com.atproto.server.createSession",
                json={"identifier": handle, "password": account.secret("app_password")},
                observe=self._observer(account),
            )
        except xrpc.XrpcError as exc:
            if exc.auth_problem:
                # Wrong handle or revoked app password: only a person can fix it.
                raise AuthExpired(
                    f"Bluesky refused the login of {handle}: {exc.message or exc.error}",
                    http_status=exc.status,
                    code=exc.error,
                ) from None
            raise
        return _session(body, service)

    async def _refresh(self, account: Account, stale: Session) -> Session:
        service = service_of(account)
        body = await xrpc.call(
            self._client,
            service,
            "com.atproto.server.refreshSession",
            token=stale.refresh_jwt,
            procedure=True,  # with no body: the server refuses one it does not expect
            observe=self._observer(account),
        )
        return _session(body, service)
