"""Facebook Pages, through the Graph API.

Text (with an optional link card) goes to ``POST /{page-id}/feed``; one image to
``POST /{page-id}/photos``; several images are uploaded unpublished, then attached to one
``/feed`` post with ``attached_media``; one video to ``POST /{page-id}/videos`` (resumable,
``smm_meta.fbvideo``). The answer is ``{"id": "<page-id>_<post-id>"}`` (for a
photo, ``{"id": <photo>, "post_id": "<page-id>_<post-id>"}``).

Facebook has no idempotency key: a lost answer makes the post ``unconfirmed`` and ``lookup``
searches the page's recent posts for its text. Unpublished photo uploads are invisible, so
only the request that creates the post itself is treated as one whose loss leaves the outcome
open.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx

from scheduler.account_settings import settings_issues
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
from scheduler.checkpoints import Checkpoints
from scheduler.media import read as read_media
from smm_meta.fbvideo import MAX_VIDEO_BYTES, VIDEO_LIMITS, VIDEO_TYPES, VideoUpload
from smm_meta.graph import Graph, Listing, count, find_recent, insight_values

__all__ = ["FacebookAdapter"]

_PHOTO_TYPES = ("image/jpeg", "image/png", "image/gif", "image/bmp", "image/tiff")
#: Page photo uploads take files up to 10 MB.
MAX_PHOTO_BYTES = 10 * 1024 * 1024
_PHOTOS = Capabilities(text_limit=63206, media_types=_PHOTO_TYPES, max_media_bytes=MAX_PHOTO_BYTES)
_VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".webm", ".avi")


def _is_video(entry: str) -> bool:
    path = urlparse(entry).path if _is_url(entry) else entry
    return path.lower().endswith(_VIDEO_SUFFIXES)


#: Graph accepts up to 50 ids in one ``?ids=`` read.
_IDS_PER_READ = 50
_VIDEO_COUNT_FIELDS = ",".join(
    ("reactions.summary(total_count).limit(0)", "comments.summary(total_count).limit(0)")
)
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
        media_types=_PHOTO_TYPES + VIDEO_TYPES,
        # Photos up to 10 MB (checked by validate); a video up to 10 GB and 240 minutes,
        # checked by the core (``video``), which reads its length from the file.
        max_media_bytes=MAX_VIDEO_BYTES,
        video=VIDEO_LIMITS,
        idempotent=False,
        metrics=frozenset({"likes", "comments", "shares", "reach"}),
        has_reach=True,
        rate_limit=RateLimitPolicy(requests=60, per=timedelta(minutes=1), concurrency=2),
        # POST /{post-id}/comments
        post_options=frozenset({"first_comment"}),
        # Meta documents no length for a comment's message; 8,000 characters is the limit
        # Facebook's own comment box enforces (the Graph API refuses longer ones).
        comment_limit=8000,
        # POST /{page-id}/photos takes alt_text_custom ("Accessible alternative description
        # for an image"); Facebook documents no length for it, so the adapter holds it to
        # 1,000 characters, what Meta documents for Instagram's and Threads' alt_text.
        alt_text_limit=1000,
    )

    default_host = "https://graph.facebook.com"
    default_version = "v21.0"
    #: Video processing: seconds between status checks, and how many after ``finish``.
    video_poll_interval: float = 5.0
    video_poll_attempts: int = 6

    def __init__(self, client: httpx.AsyncClient, checkpoints: Checkpoints | None = None) -> None:
        super().__init__(client)
        #: Where a video's upload session is noted, to resume it (smm_meta.fbvideo).
        self.checkpoints = checkpoints if checkpoints is not None else Checkpoints()

    # -- offline ---------------------------------------------------------------------------

    def compose_text(self, post: OutgoingPost) -> str:
        """Text and tags; the link rides as a link card on text posts, in the text otherwise."""
        if post.media:
            return super().compose_text(post)
        return super().compose_text(replace(post, link=None))

    @classmethod
    def check_account(cls, account: Account) -> list[Issue]:
        """The Page id and a reference to the Page access token are required; an option this
        plugin does not read is a typo."""
        return settings_issues(
            account,
            known=("page_id", "graph_host", "graph_version", "reach_metric"),
            required=[("page_id", "the Page's numeric id", '"102345678901234"')],
            credentials=[("page_access_token", "the Page access token")],
            urls=["graph_host"],
        )

    def validate(self, post: OutgoingPost, account: Account) -> list[Issue]:
        issues = super().validate(post, account)
        if not account.option("page_id"):
            issues.append(Issue("account", "option 'page_id' is not set"))
        if not post.media and not post.text.strip() and not post.link:
            issues.append(Issue("text", "a Facebook post needs text, a link or an image"))
        videos = [entry for entry in post.media if _is_video(entry)]
        if videos and len(post.media) > 1:
            issues.append(
                Issue("media", "a Facebook video goes out alone, without other media beside it")
            )
        for entry in post.media:
            issue = _video_issue(entry) if _is_video(entry) else _photo_issue(entry)
            if issue is not None:
                issues.append(issue)
        return issues

    def media_meta_issues(self, post: OutgoingPost, account: Account) -> list[Issue]:
        """The core's alt-text checks; alt text goes with photos only (``alt_text_custom``)."""
        issues = super().media_meta_issues(post, account)
        for index, entry in enumerate(post.media):
            if _is_video(entry) and post.meta(index).alt:
                issues.append(
                    Issue(
                        "media",
                        f"media {index + 1} ({entry.rsplit('/', 1)[-1]}): Facebook takes alt "
                        "text on photos only, not on videos",
                        "remove 'alt' from the video (describe it in the text)",
                    )
                )
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
        image = await read_media(media, _PHOTOS)
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
        if len(post.media) == 1 and _is_video(post.media[0]):
            video_id = await self._video(graph, page, post, idempotency_key).publish(
                post.media[0], message
            )
            return Published(video_id, url=f"https://www.facebook.com/{page}/videos/{video_id}")
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

    def _video(
        self, graph: Graph, page: str, post: OutgoingPost, idempotency_key: str = ""
    ) -> VideoUpload:
        return VideoUpload(
            graph,
            page,
            self.checkpoints,
            idempotency_key or post.idempotency_key or post.key,
            poll_interval=self.video_poll_interval,
            poll_attempts=self.video_poll_attempts,
        )

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
        # A video's id has no page prefix; a Video node has no "shares" to read.
        videos = [i for i in ids if "_" not in i]
        counts = await self._read_ids(graph, [i for i in ids if "_" in i], _COUNT_FIELDS)
        counts.update(await self._read_ids(graph, videos, _VIDEO_COUNT_FIELDS))
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
                # Graph leaves "shares" out when nobody shared (a video has none to read).
                shares=count(shares.get("count"))
                if isinstance(shares, dict)
                else (None if "_" not in remote_id else 0),
                reach=reach,
            )
        return out

    async def lookup(self, post: OutgoingPost, account: Account) -> Published | None:
        graph = self.graph(account)
        page = self.page_id(account)
        if len(post.media) == 1 and _is_video(post.media[0]):
            # The upload's note says whether finish was sent; the video's status, whether it
            # went through. Without a note the page's posts are searched as for any post.
            video = self._video(graph, page, post)
            try:
                video_id = await video.settle()
            except (AuthExpired, OutcomeUnknown):
                raise
            except PublishError as exc:
                raise OutcomeUnknown(f"Facebook: cannot look the video up: {exc.message}") from None
            if video_id is not None:
                return Published(video_id, url=f"https://www.facebook.com/{page}/videos/{video_id}")
        listing = Listing(f"{page}/posts", "message", "created_time", "permalink_url")
        try:
            return await find_recent(graph, listing, self.compose_text(post), post.due_at)
        except (AuthExpired, OutcomeUnknown):
            raise
        except PublishError as exc:
            raise OutcomeUnknown(f"Facebook: cannot look the post up: {exc.message}") from None


def _photo_issue(entry: str) -> Issue | None:
    if _is_url(entry):
        return None
    with contextlib.suppress(OSError):
        if Path(entry).stat().st_size > MAX_PHOTO_BYTES:
            return Issue("media", f"{entry}: larger than Facebook's 10 MB photo limit")
    return None


def _video_issue(entry: str) -> Issue | None:
    """A video Facebook refuses by its name: not MP4 or MOV. A local file's size (10 GB) and
    length (240 minutes) are the core's to check, by content (``capabilities.video``); a
    URL's file is fetched and checked by Facebook itself."""
    if not urlparse(entry).path.lower().endswith((".mp4", ".mov")):
        return Issue("media", f"{entry}: Facebook takes MP4 or MOV videos")
    return None
