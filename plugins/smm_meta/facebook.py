"""Facebook Pages, through the Graph API.

Text (with an optional link card) goes to ``POST /{page-id}/feed``; one image to
``POST /{page-id}/photos``; several images are uploaded unpublished, then attached to one
``/feed`` post with ``attached_media``. The answer is ``{"id": "<page-id>_<post-id>"}`` (for a
photo, ``{"id": <photo>, "post_id": "<page-id>_<post-id>"}``).

Facebook has no idempotency key: a lost answer makes the post ``unconfirmed`` and ``lookup``
searches the page's recent posts for its text. Unpublished photo uploads are invisible, so
only the request that creates the post itself is treated as one whose loss leaves the outcome
open.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any
from urllib.parse import urlparse

from scheduler.adapter import (
    Account,
    Adapter,
    AuthExpired,
    Capabilities,
    Issue,
    Metrics,
    OutcomeUnknown,
    OutgoingPost,
    Published,
    PublishError,
    RateLimitPolicy,
    Rejected,
)
from scheduler.media import read as read_media
from smm_meta.graph import Graph, Listing, count, find_recent, insight_values

__all__ = ["FacebookAdapter"]

#: Graph accepts up to 50 ids in one ``?ids=`` read.
_IDS_PER_READ = 50
_COUNT_FIELDS = ",".join(
    (
        "reactions.summary(total_count).limit(0)",
        "comments.summary(total_count).limit(0)",
        "shares",
    )
)


def _is_url(entry: str) -> bool:
    return urlparse(entry).scheme in ("http", "https")


def _post_url(post_id: str) -> str:
    page, _, post = post_id.partition("_")
    return (
        f"https://www.facebook.com/{page}/posts/{post}"
        if post
        else f"https://www.facebook.com/{page}"
    )


def _alt(post: OutgoingPost, index: int) -> dict[str, str]:
    """The photo's ``alt_text_custom`` when the plan gives alt text for it."""
    alt = post.meta(index).alt
    return {"alt_text_custom": alt} if alt else {}


def _summary_total(node: object) -> int | None:
    if isinstance(node, dict) and isinstance(node.get("summary"), dict):
        return count(node["summary"].get("total_count"))
    return None


class FacebookAdapter(Adapter):
    """Publishes to a Facebook Page as the Page.

    Options: ``page_id`` (required), ``graph_version`` (default v21.0), ``graph_host``,
    ``reach_metric`` (the post insight read as reach, default ``post_impressions_unique``).
    Credential: ``page_access_token``.
    """

    platform = "facebook"
    capabilities = Capabilities(
        text_limit=63206,
        text_counting="characters",
        max_media=10,
        media_types=("image/jpeg", "image/png", "image/gif", "image/bmp", "image/tiff"),
        # Page photo uploads take files up to 10 MB.
        max_media_bytes=10 * 1024 * 1024,
        idempotent=False,
        metrics=frozenset({"likes", "comments", "shares", "reach"}),
        has_reach=True,
        rate_limit=RateLimitPolicy(requests=60, per=timedelta(minutes=1), concurrency=2),
        # POST /{post-id}/comments
        post_options=frozenset({"first_comment"}),
        # POST /{page-id}/photos takes alt_text_custom ("Accessible alternative description
        # for an image"); Facebook documents no length for it, so the adapter holds it to
        # 1,000 characters, what Meta documents for Instagram's and Threads' alt_text.
        alt_text_limit=1000,
    )

    default_host = "https://graph.facebook.com"
    default_version = "v21.0"

    # -- offline ---------------------------------------------------------------------------

    def compose_text(self, post: OutgoingPost) -> str:
        """Text and tags; the link rides as a link card on text posts, in the text otherwise."""
        if post.media:
            return super().compose_text(post)
        return super().compose_text(replace(post, link=None))

    def validate(self, post: OutgoingPost, account: Account) -> list[Issue]:
        issues = super().validate(post, account)
        if not account.option("page_id"):
            issues.append(Issue("account", "option 'page_id' is not set"))
        if not post.media and not post.text.strip() and not post.link:
            issues.append(Issue("text", "a Facebook post needs text, a link or an image"))
        return issues

    # -- helpers ---------------------------------------------------------------------------

    def graph(self, account: Account) -> Graph:
        host = str(account.option("graph_host", self.default_host)).rstrip("/")
        version = str(account.option("graph_version", self.default_version))
        token = account.secret("page_access_token")
        return Graph(self.client, f"{host}/{version}", token, "Facebook")

    def page_id(self, account: Account) -> str:
        page = account.option("page_id")
        if not page:
            raise Rejected(f"account {account.name}: option 'page_id' is not set")
        return str(page)

    async def _photo(
        self, graph: Graph, page: str, media: str, extra: Mapping[str, str], *, mutating: bool
    ) -> dict[str, Any]:
        if _is_url(media):
            return await graph.post(f"{page}/photos", {"url": media, **extra}, mutating=mutating)
        # Only through the core: confined to the media roots, checked by content.
        image = await read_media(media, self.capabilities)
        files = {"source": (image.name, image.content, image.mime)}
        return await graph.post(f"{page}/photos", dict(extra), files=files, mutating=mutating)

    async def _read_ids(
        self, graph: Graph, ids: Sequence[str], fields: str, *, one_by_one: bool = True
    ) -> dict[str, Any]:
        """``GET /?ids=...&fields=...`` in chunks; an id Graph no longer knows is left out.

        A refused chunk is read again one id at a time (``one_by_one``), since a single
        deleted post fails the whole chunk; otherwise the refused chunk is skipped.
        """
        out: dict[str, Any] = {}
        for start in range(0, len(ids), _IDS_PER_READ):
            chunk = ids[start : start + _IDS_PER_READ]
            try:
                out.update(await graph.get("", {"ids": ",".join(chunk), "fields": fields}))
            except Rejected:
                if not one_by_one:
                    continue
                for remote_id in chunk:
                    try:
                        out[remote_id] = await graph.get(remote_id, {"fields": fields})
                    except Rejected:
                        continue
        return out

    # -- network calls ---------------------------------------------------------------------

    async def publish(
        self, post: OutgoingPost, account: Account, idempotency_key: str
    ) -> Published:
        graph = self.graph(account)
        page = self.page_id(account)
        message = self.compose_text(post)
        if len(post.media) == 1:
            extra = {"message": message, **_alt(post, 0)}
            body = await self._photo(graph, page, post.media[0], extra, mutating=True)
            post_id = body.get("post_id") or body.get("id")
        else:
            data: dict[str, str] = {"message": message}
            if post.link and not post.media:
                data["link"] = post.link
            for i, media in enumerate(post.media):
                hidden = {"published": "false", **_alt(post, i)}
                photo = await self._photo(graph, page, media, hidden, mutating=False)
                data[f"attached_media[{i}]"] = json.dumps({"media_fbid": photo.get("id")})
            body = await graph.post(f"{page}/feed", data)
            post_id = body.get("id")
        if not post_id:
            raise OutcomeUnknown("Facebook: the post was accepted without an id")
        return Published(str(post_id), url=_post_url(str(post_id)))

    async def publish_comment(self, post: OutgoingPost, account: Account, text: str) -> Published:
        """``POST /{post-id}/comments`` with ``message``, as the Page; answers ``{"id"}``."""
        body = await self.graph(account).post(f"{post.remote_id}/comments", {"message": text})
        comment_id = body.get("id")
        if not comment_id:
            raise OutcomeUnknown("Facebook: the comment was accepted without an id")
        return Published(str(comment_id))

    async def fetch_metrics(
        self, posts: Sequence[OutgoingPost], account: Account
    ) -> Mapping[str, Metrics]:
        graph = self.graph(account)
        ids = [p.remote_id for p in posts if p.remote_id]
        if not ids:
            return {}
        counts = await self._read_ids(graph, ids, _COUNT_FIELDS)
        reach_metric = str(account.option("reach_metric", "post_impressions_unique"))
        # Insights need the read_insights permission (and a Page with enough followers); a
        # refusal leaves reach unknown rather than failing the counts.
        insights = await self._read_ids(
            graph, ids, f"insights.metric({reach_metric})", one_by_one=False
        )
        out: dict[str, Metrics] = {}
        for remote_id in ids:
            node = counts.get(remote_id)
            if not isinstance(node, dict):
                continue
            shares = node.get("shares")
            insight = insights.get(remote_id, {}).get("insights")
            reach = insight_values(insight).get(reach_metric) if isinstance(insight, dict) else None
            out[remote_id] = Metrics(
                remote_id=remote_id,
                likes=_summary_total(node.get("reactions")),
                comments=_summary_total(node.get("comments")),
                # Graph leaves "shares" out when nobody shared.
                shares=count(shares.get("count")) if isinstance(shares, dict) else 0,
                reach=reach,
            )
        return out

    async def lookup(self, post: OutgoingPost, account: Account) -> Published | None:
        graph = self.graph(account)
        page = self.page_id(account)
        listing = Listing(f"{page}/posts", "message", "created_time", "permalink_url")
        try:
            return await find_recent(graph, listing, self.compose_text(post), post.due_at)
        except (AuthExpired, OutcomeUnknown):
            raise
        except PublishError as exc:
            raise OutcomeUnknown(f"Facebook: cannot look the post up: {exc.message}") from None
