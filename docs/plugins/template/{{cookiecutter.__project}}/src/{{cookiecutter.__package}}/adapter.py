"""Publishing posts to {{ cookiecutter.network_title }}.

Generated from the smm-scheduler plugin template. It runs as generated, against a placeholder
API: each post is one ``POST {api_base}/v1/posts`` with a bearer token, answered with
``{"id": ..., "url": ...}``. Replace the placeholder requests with the network's real ones
(search for ``PLACEHOLDER``), keep the error mapping honest (docs/plugins/adapters.md in
smm-scheduler: which error to raise when), and make the tests' fake network answer as the
real one does.
"""

from __future__ import annotations

import email.utils
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from scheduler.adapter import (
    Account,
    Adapter,
    AuthExpired,
    Capabilities,
    Metrics,
    OutcomeUnknown,
    OutgoingPost,
    Published,
    PublishError,
    RateLimited,
    RateLimitPolicy,
    Rejected,
    Transient,
)

__all__ = ["DEFAULT_API", "{{ cookiecutter.__adapter }}"]

#: PLACEHOLDER: the network's API. Accounts may point elsewhere with ``options.api_base``.
DEFAULT_API = "{{ cookiecutter.api_base }}"
#: How much of an error answer goes into the error message when it is not the expected JSON.
BODY_EXCERPT = 200


class {{ cookiecutter.__adapter }}(Adapter):
    """Publish each post to one {{ cookiecutter.network_title }} account.

    Options: ``api_base`` (default: ``DEFAULT_API``). Credentials: ``token``, sent as
    ``Authorization: Bearer``.
    """

    platform = "{{ cookiecutter.network }}"
    # PLACEHOLDER values: set each from the network's documentation.
    capabilities = Capabilities(
        text_limit=500,
        text_counting="characters",  # see Adapter.text_length to count as the network does
        max_media=0,  # raise it once publish uploads media
        idempotent=False,  # True only if the network honours the Idempotency-Key sent below
        metrics=frozenset({"likes", "comments", "shares"}),
        has_reach=False,
        rate_limit=RateLimitPolicy(requests=60, per=timedelta(minutes=1), concurrency=2),
    )

    # -- network calls --------------------------------------------------------------------

    async def publish(
        self, post: OutgoingPost, account: Account, idempotency_key: str
    ) -> Published:
        """Publish ``post`` with one request; every failure raises a ``PublishError``."""
        body = {"text": self.compose_text(post)}  # PLACEHOLDER: the network's fields
        response = await self._send(
            account,
            "POST",
            "/v1/posts",
            json=body,
            headers={"Idempotency-Key": idempotency_key},
        )
        answer = _json(response)
        remote_id = answer.get("id") if isinstance(answer, Mapping) else None
        if not remote_id:
            # A success that is not the network's answer (a proxy, a captive portal): the
            # post may or may not be out, so it must not be sent again blindly.
            raise OutcomeUnknown(
                f"{self.platform} answered HTTP {response.status_code} without a post id",
                http_status=response.status_code,
            )
        url = answer.get("url")
        return Published(remote_id=str(remote_id), url=str(url) if url else None)

    async def fetch_metrics(
        self, posts: Sequence[OutgoingPost], account: Account
    ) -> Mapping[str, Metrics]:
        """Likes, comments and shares of each published post, one request per post."""
        found: dict[str, Metrics] = {}
        for post in posts:
            if not post.remote_id:
                continue
            try:
                response = await self._send(account, "GET", f"/v1/posts/{post.remote_id}/metrics")
            except Rejected:
                continue  # the network no longer knows the post (deleted): leave it out
            counters = _json(response)
            if not isinstance(counters, Mapping):
                raise Transient(f"{self.platform} sent metrics that are not a JSON object")
            found[post.remote_id] = Metrics(
                remote_id=post.remote_id,
                likes=_count(counters.get("likes")),
                comments=_count(counters.get("comments")),
                shares=_count(counters.get("shares")),
            )
        return found

    # lookup() is inherited: it raises OutcomeUnknown, so a post whose answer was lost waits
    # for a person (smm queue resolve). If the network can find a post by the key sent with
    # it, implement lookup() to return Published, or None when the post is certainly absent.

    # -- one request ----------------------------------------------------------------------

    async def _send(
        self, account: Account, method: str, path: str, **kwargs: Any
    ) -> httpx.Response:
        """Send one request through the injected client; raise what its failure means."""
        base = str(account.option("api_base", DEFAULT_API)).rstrip("/")
        headers = {"Authorization": f"Bearer {account.secret('token')}"}
        headers.update(kwargs.pop("headers", {}))
        url = f"{base}{path}"
        host = httpx.URL(url).host
        try:
            response = await self.client.request(method, url, headers=headers, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # No connection was made, so nothing was sent: certainly not published.
            raise Transient(f"cannot connect to {host}: {type(exc).__name__}") from None
        except httpx.TransportError as exc:
            # Sent, but the answer was lost: the post may be out.
            raise OutcomeUnknown(f"no answer from {host}: {type(exc).__name__}") from None
        if response.is_success:
            return response
        raise _error(self.platform, response)


def _error(platform: str, response: httpx.Response) -> PublishError:
    """The failure an error answer means, in the network's own words.

    PLACEHOLDER: map the network's documented status codes and error codes here.
    """
    status = response.status_code
    answer = _json(response)
    reason = answer.get("error") if isinstance(answer, Mapping) else None
    if not isinstance(reason, str) or not reason.strip():
        reason = response.text[:BODY_EXCERPT].strip() or response.reason_phrase or "error"
    message = f"{platform}: {reason} (HTTP {status})"
    if status == 429:
        return RateLimited(message, http_status=status, retry_at=_retry_at(response))
    if status in (401, 403):
        return AuthExpired(message, http_status=status)
    if status in (502, 503):
        # A gateway, or a server refusing work: the request was not processed.
        return Transient(message, http_status=status)
    if status >= 500:
        # 500 or 504 may come after the network accepted the post: never resend blindly.
        return OutcomeUnknown(message, http_status=status)
    return Rejected(message, http_status=status)


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _retry_at(response: httpx.Response) -> datetime | None:
    """``Retry-After`` as seconds or an HTTP date; None when absent or unreadable."""
    value = response.headers.get("Retry-After", "").strip()
    if value.isdigit():
        return datetime.now(UTC) + timedelta(seconds=int(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)
