"""Publishing posts as ntfy push notifications, on https://ntfy.sh or a server of your own.

ntfy (https://docs.ntfy.sh) delivers a message published to a topic to every phone and
browser subscribed to that topic. This is the adapter that docs/plugins/tutorial.md builds.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import httpx
from scheduler.adapter import (
    Account,
    Adapter,
    AuthExpired,
    Capabilities,
    Issue,
    OutcomeUnknown,
    OutgoingPost,
    Published,
    PublishError,
    RateLimited,
    RateLimitPolicy,
    Rejected,
    Transient,
)

__all__ = ["DEFAULT_SERVER", "MESSAGE_LIMIT", "NtfyAdapter"]

DEFAULT_SERVER = "https://ntfy.sh"
#: ntfy's default ``message-size-limit``: a message is limited in bytes of UTF-8, not characters.
MESSAGE_LIMIT = 4096
#: What ntfy accepts as a topic name.
TOPIC = re.compile(r"[-_A-Za-z0-9]{1,64}")


class NtfyAdapter(Adapter):
    """Publish each post as a message on one ntfy topic.

    Options: ``topic`` (required), ``server`` (default https://ntfy.sh). Credentials:
    ``token`` (optional), an ntfy access token, sent as ``Authorization: Bearer``.
    """

    platform = "ntfy"
    capabilities = Capabilities(
        text_limit=MESSAGE_LIMIT,
        text_counting="utf8_bytes",
        max_media=1,  # one attachment, by URL
        idempotent=False,  # ntfy takes no idempotency key: see lookup()
        metrics=frozenset(),  # a notification has no likes, shares or reach
        has_reach=False,
        # ntfy's default limit: a burst of 60 requests, then one every 5 seconds.
        rate_limit=RateLimitPolicy(requests=12, per=timedelta(minutes=1), concurrency=1),
    )

    # -- offline checks -------------------------------------------------------------------

    def text_length(self, text: str) -> int:
        """Bytes of UTF-8, as ntfy counts: ``a`` is 1, ``é`` 2, ``漢`` 3, ``👍`` 4."""
        return len(text.encode("utf-8"))

    def validate(self, post: OutgoingPost, account: Account) -> list[Issue]:
        """The general checks, then ntfy's own: it attaches a file by its URL only."""
        issues = super().validate(post, account)
        for media in post.media:
            if not media.startswith(("https://", "http://")):
                issues.append(
                    Issue("media", f"{media}: ntfy attaches files by URL", "give its https:// URL")
                )
        return issues

    # -- network calls --------------------------------------------------------------------

    async def publish(
        self, post: OutgoingPost, account: Account, idempotency_key: str
    ) -> Published:
        """Publish ``post`` as JSON to the server's root URL.

        ntfy takes no idempotency key, so ``idempotency_key`` is not sent: a publish whose
        answer is lost raises ``OutcomeUnknown`` and is settled by :meth:`lookup`.
        """
        message: dict[str, Any] = {"topic": _topic(account), "message": self.compose_text(post)}
        if post.link:
            message["click"] = post.link  # tapping the notification opens the link
        if post.media:
            message["attach"] = post.media[0]
        response = await self._send(account, "POST", f"{_server(account)}/", json=message)
        try:
            remote_id = response.json()["id"]
        except (ValueError, KeyError, TypeError):
            # A success without ntfy's answer: something else (a proxy, a captive portal)
            # answered, and whether the message went out is unknown.
            raise OutcomeUnknown(
                f"ntfy answered HTTP {response.status_code} without a message id",
                http_status=response.status_code,
            ) from None
        return Published(remote_id=str(remote_id))

    async def lookup(self, post: OutgoingPost, account: Account) -> Published | None:
        """Find the message in the topic's cache, which ntfy keeps for 12 hours by default.

        Never returns None: ntfy cannot prove a message was *not* delivered (its cache may
        be off, may have expired, or may have failed to store a delivered message), and
        None would let the core send the post again.
        """
        since = int(post.due_at.timestamp()) - 60 if post.due_at else "all"
        url = f"{_server(account)}/{_topic(account)}/json"
        try:
            response = await self._send(account, "GET", url, params={"poll": 1, "since": since})
        except AuthExpired:
            raise
        except PublishError as exc:
            raise OutcomeUnknown(f"cannot search the topic: {exc.message}") from None
        text = self.compose_text(post)
        for line in response.text.splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, Mapping) and event.get("message") == text and event.get("id"):
                return Published(remote_id=str(event["id"]))
        raise OutcomeUnknown("the message is not in the topic's cache; a person must check")

    # -- one request ----------------------------------------------------------------------

    async def _send(self, account: Account, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Send one request through the injected client; raise what its failure means."""
        headers = {}
        if "token" in account.credentials:
            headers["Authorization"] = f"Bearer {account.secret('token')}"
        host = httpx.URL(url).host
        try:
            response = await self.client.request(method, url, headers=headers, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # No connection, so nothing was sent: certainly not published.
            raise Transient(f"cannot connect to {host}: {type(exc).__name__}") from None
        except httpx.TransportError as exc:
            # Sent, but the answer was lost: the message may be out.
            raise OutcomeUnknown(f"no answer from {host}: {type(exc).__name__}") from None
        if response.is_success:
            return response
        raise _error(response)


def _error(response: httpx.Response) -> PublishError:
    """The failure an ntfy error answer means, with ntfy's own words.

    ntfy answers errors as ``{"code": 42901, "http": 429, "error": "limit reached: ..."}``.
    """
    status = response.status_code
    try:
        body = response.json()
        reason, code = str(body["error"]), body.get("code")
    except (ValueError, KeyError, TypeError, AttributeError):
        reason, code = response.reason_phrase or "error", None
    message = f"ntfy: {reason} (HTTP {status})"
    if status == 429:
        return RateLimited(message, http_status=status, code=code)
    if status in (401, 403):
        return AuthExpired(message, http_status=status, code=code)
    if status == 503:
        return Transient(message, http_status=status, code=code)
    if status >= 500:
        # ntfy delivers a message before it stores it, so its 500 may follow a delivery;
        # a proxy's 502 or 504 comes after it passed the request on.
        return OutcomeUnknown(message, http_status=status, code=code)
    return Rejected(message, http_status=status, code=code)


def _server(account: Account) -> str:
    server = account.option("server", DEFAULT_SERVER)
    if not isinstance(server, str) or not server.startswith(("https://", "http://")):
        # Every post of the account would fail alike: pause it until the config is fixed.
        raise AuthExpired(f"account {account.name}: option server must be an http(s) URL")
    return server.rstrip("/")


def _topic(account: Account) -> str:
    topic = account.option("topic")
    if not isinstance(topic, str) or not TOPIC.fullmatch(topic):
        raise AuthExpired(
            f"account {account.name}: option topic must be 1 to 64 letters, digits, - or _"
        )
    return topic
