"""Meta's Graph API as the Facebook, Instagram and Threads adapters share it.

One place for what the three networks have in common: how a request is sent (the token goes in
the form body of a POST and the query of a GET, and no URL ever reaches an error message), how
Graph errors map onto the core's taxonomy, how the usage headers say when throttling ends,
how insights read, and how a post is found again in a recent listing when an answer was lost.

Graph errors look alike on all three hosts::

    {"error": {"message": "...", "type": "OAuthException", "code": 190,
               "error_subcode": 463, "is_transient": false, "fbtrace_id": "..."}}

Classification, by ``code`` first and HTTP status last (docs/plugins/networks/facebook.md):

* 4, 17, 32, 613, 80000-80014 (application, user, page and business-use-case throttling):
  ``RateLimited``, ``retry_at`` from ``estimated_time_to_regain_access`` in the usage headers;
* 9 with subcode 2207042 (Instagram's posts-per-day cap): ``RateLimited`` for an hour;
* 190, 102, and subcodes 458-467/492 (expired, revoked or invalid tokens): ``AuthExpired``;
* ``is_transient: true``, 1, 2, -1, -2 (Meta's "try again"): ``Transient``;
* 368 (blocked for a policy), 506 (duplicate post), 100 and the 200-299 permission codes, and
  anything else: ``Rejected`` with Meta's own message.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx

from scheduler.adapter import (
    AuthExpired,
    OutcomeUnknown,
    Published,
    PublishError,
    RateLimited,
    Rejected,
    Transient,
    status_error,
    transport_error,
)
from scheduler.adapter import json_object as _json_object
from scheduler.timeutil import utcnow

__all__ = [
    "Graph",
    "Listing",
    "classify_error",
    "count",
    "error_data",
    "find_recent",
    "insight_values",
    "parse_time",
    "regain_access_at",
    "scrub",
    "transport_error",
]

_RATE_LIMIT_CODES = frozenset({4, 17, 32, 613})
_BUSINESS_RATE_LIMIT = range(80000, 80015)
_AUTH_CODES = frozenset({102, 190})
_AUTH_SUBCODES = frozenset({458, 459, 460, 463, 464, 467, 492})
_TRANSIENT_CODES = frozenset({-2, -1, 1, 2})
# Instagram: "You reached maximum number of posts that is allowed to be published by this
# account in 24 hours". The quota check before publishing normally prevents it.
_IG_DAILY_CAP = (9, 2207042)
# Instagram: "We restrict certain activity to protect our community" (a spam verdict, code 4):
# not throttling, waiting will not change the answer for this post.
_IG_SPAM_SUBCODE = 2207051
_DAILY_CAP_WAIT = timedelta(hours=1)
_USAGE_HEADERS = ("x-business-use-case-usage", "x-app-usage", "x-page-usage", "x-ad-account-usage")
# Requests whose loss of answer leaves the outcome open; connecting never reached the server.
_TOKEN_IN_QUERY = re.compile(r"(access_token=)[^&\s\"']+")


def scrub(text: str, *secrets: str) -> str:
    """``text`` with every secret and every ``access_token=...`` query value redacted."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return _TOKEN_IN_QUERY.sub(r"\1[redacted]", text)


def count(value: object) -> int | None:
    """A counter as ``Metrics`` wants it: a non-negative int, or None when absent or odd."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def parse_time(value: object) -> datetime | None:
    """A Graph timestamp (``2024-05-16T23:34:40+0000``) as an aware datetime, else None."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def regain_access_at(headers: Mapping[str, str], now: datetime | None = None) -> datetime | None:
    """When throttling ends, from ``Retry-After`` or the Graph usage headers; None if unsaid.

    ``X-Business-Use-Case-Usage`` maps business ids to lists of usage records; ``X-App-Usage``
    and ``X-Page-Usage`` are flat records. ``estimated_time_to_regain_access`` is in minutes.
    """
    now = now or utcnow()
    waits: list[timedelta] = []
    retry_after = headers.get("retry-after", "")
    if retry_after.isdigit():
        waits.append(timedelta(seconds=int(retry_after)))
    for name in _USAGE_HEADERS:
        raw = headers.get(name)
        if not raw:
            continue
        try:
            data = json.loads(raw)
        except ValueError:
            continue
        records: list[Any] = [data]
        if isinstance(data, dict):
            for value in data.values():
                if isinstance(value, list):
                    records.extend(value)
        for record in records:
            if not isinstance(record, dict):
                continue
            minutes = count(record.get("estimated_time_to_regain_access"))
            if minutes:
                waits.append(timedelta(minutes=minutes))
    return now + max(waits) if waits else None


def error_data(exc: PublishError) -> Mapping[str, Any]:
    """The ``error_data`` of the Graph error ``exc`` was made from (empty when none): where
    Meta puts details such as the offsets a resumable upload expects."""
    data = getattr(exc, "graph_error_data", None)
    return data if isinstance(data, Mapping) else {}


def classify_error(
    status: int,
    body: Mapping[str, Any] | None,
    headers: Mapping[str, str],
    *,
    network: str,
    where: str,
    mutating: bool,
    secrets: tuple[str, ...] = (),
) -> PublishError:
    """The ``PublishError`` for a failed Graph response (see the module docstring)."""
    error = body.get("error") if body else None
    if not isinstance(error, dict):
        return _classify_status(status, network=network, where=where, mutating=mutating)
    exc = _classify(
        status, error, headers, network=network, where=where, mutating=mutating, secrets=secrets
    )
    exc.graph_error_data = error.get("error_data")  # type: ignore[attr-defined]
    return exc


def _classify(
    status: int,
    error: Mapping[str, Any],
    headers: Mapping[str, str],
    *,
    network: str,
    where: str,
    mutating: bool,
    secrets: tuple[str, ...],
) -> PublishError:
    code = error.get("code")
    subcode = error.get("error_subcode")
    detail = str(error.get("message") or "no message")
    user_msg = error.get("error_user_msg")
    if user_msg and user_msg not in detail:
        detail = f"{detail} ({user_msg})"
    ids = f"code {code}" + (f"/{subcode}" if subcode is not None else "")
    if error.get("fbtrace_id"):
        ids += f", fbtrace_id {error['fbtrace_id']}"
    message = scrub(f"{network}: {detail} [{ids}]", *secrets)
    kwargs: dict[str, Any] = {"http_status": status, "code": code}

    if (code, subcode) == _IG_DAILY_CAP:
        return RateLimited(message, retry_at=utcnow() + _DAILY_CAP_WAIT, **kwargs)
    if (code in _RATE_LIMIT_CODES or code in _BUSINESS_RATE_LIMIT) and subcode != _IG_SPAM_SUBCODE:
        return RateLimited(message, retry_at=regain_access_at(headers), **kwargs)
    if code in _AUTH_CODES or subcode in _AUTH_SUBCODES:
        return AuthExpired(message, **kwargs)
    if error.get("is_transient") is True or code in _TRANSIENT_CODES:
        return Transient(message, **kwargs)
    if status >= 500 and not isinstance(code, int):
        return _classify_status(status, network=network, where=where, mutating=mutating)
    return Rejected(message, **kwargs)


def _classify_status(status: int, *, network: str, where: str, mutating: bool) -> PublishError:
    """A failure without a Graph error body (a proxy's page, an empty 5xx)."""
    message = f"{network}: HTTP {status} without a Graph error on {where}"
    # The Graph API takes no idempotency key: a 5xx on a create is an unknown outcome.
    return status_error(
        status,
        message,
        mutating=mutating,
        idempotent=False,
        effect="the post may have been published",
    )


@dataclass
class Graph:
    """A token-bearing view of one Graph host and version, on the core's ``httpx`` client."""

    client: httpx.AsyncClient
    base: str  # e.g. "https://graph.facebook.com/v21.0"
    token: str
    network: str  # "Facebook", "Instagram", "Threads": how messages name the network

    async def get(self, path: str, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        """GET ``path`` (reads never change anything: a lost answer is ``Transient``)."""
        query = {**(params or {}), "access_token": self.token}
        return await self._call("GET", path, mutating=False, params=query)

    async def post(
        self,
        path: str,
        data: Mapping[str, str],
        *,
        files: Mapping[str, tuple[str, bytes, str]] | None = None,
        mutating: bool = True,
    ) -> dict[str, Any]:
        """POST form ``data`` to ``path``; ``mutating=False`` for steps nobody can see
        (unpublished uploads, containers), whose lost answer is safe to retry."""
        form = {**data, "access_token": self.token}
        return await self._call("POST", path, mutating=mutating, data=form, files=files)

    async def _call(
        self, method: str, path: str, *, mutating: bool, **kwargs: Any
    ) -> dict[str, Any]:
        path = path.strip("/")
        where = f"{method} /{path}"
        try:
            response = await self.client.request(method, f"{self.base}/{path}", **kwargs)
        except httpx.HTTPError as exc:
            raise transport_error(
                exc, network=self.network, where=where, mutating=mutating
            ) from None
        body = _json_object(response)
        if response.is_success and body is not None and "error" not in body:
            return body
        if response.is_success:
            message = f"{self.network}: HTTP {response.status_code} but no JSON object on {where}"
            if mutating:
                raise OutcomeUnknown(message + "; the post may have been published")
            raise Transient(message)
        raise classify_error(
            response.status_code,
            body,
            response.headers,
            network=self.network,
            where=where,
            mutating=mutating,
            secrets=(self.token,),
        )


def insight_values(body: Mapping[str, Any]) -> dict[str, int]:
    """``{"data": [{"name": "reach", "values": [{"value": 12}]}, ...]}`` -> ``{"reach": 12}``.

    Newer Graph versions put the number in ``total_value.value``; both forms are read.
    """
    out: dict[str, int] = {}
    data = body.get("data")
    for item in data if isinstance(data, list) else []:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            continue
        value = None
        total = item.get("total_value")
        if isinstance(total, dict):
            value = count(total.get("value"))
        values = item.get("values")
        if value is None and isinstance(values, list) and values and isinstance(values[-1], dict):
            value = count(values[-1].get("value"))
        if value is not None:
            out[item["name"]] = value
    return out


@dataclass(frozen=True)
class Listing:
    """Where a network lists an account's recent posts, and what its fields are called."""

    edge: str  # e.g. "{user}/media"
    text_field: str
    time_field: str
    url_field: str
    page_size: int = 50


# Clocks differ: a post published a little "before" its due time still counts as ours.
_SKEW = timedelta(minutes=5)


async def find_recent(
    graph: Graph, listing: Listing, text: str, since: datetime | None
) -> Published | None:
    """Settle an unconfirmed post by finding ``text`` among the account's recent posts.

    Returns the post when found; None when the listing reaches back past ``since`` (the
    earliest moment the post could have been published) without it, so it certainly was not
    published; raises ``OutcomeUnknown`` when the listing cannot tell.
    """
    fields = f"id,{listing.text_field},{listing.time_field},{listing.url_field}"
    body = await graph.get(listing.edge, {"fields": fields, "limit": str(listing.page_size)})
    items = body.get("data")
    items = items if isinstance(items, list) else []
    wanted = text.strip()
    oldest: datetime | None = None
    for item in items:
        if not isinstance(item, dict):
            continue
        when = parse_time(item.get(listing.time_field))
        if when is not None:
            oldest = when if oldest is None else min(oldest, when)
        same = str(item.get(listing.text_field) or "").strip() == wanted
        if same and item.get("id") and (since is None or when is None or when >= since - _SKEW):
            url = item.get(listing.url_field)
            return Published(str(item["id"]), url=url if isinstance(url, str) else None)
    if since is not None:
        complete = len(items) < listing.page_size
        if complete or (oldest is not None and oldest < since - _SKEW):
            return None
    raise OutcomeUnknown(
        f"{graph.network}: the post is not among the {len(items)} most recent ones, "
        "which do not reach back to when it was sent"
    )
