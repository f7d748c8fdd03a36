"""Instagram business and creator accounts, through the Graph API (content publishing).

A post is one image (``POST /{ig-user-id}/media`` with ``image_url`` and ``caption``), one
video (a Reel: ``media_type=REELS`` with ``video_url``, or a local file uploaded to
``rupload.facebook.com``: ``smm_meta.reels``), or a carousel of up to ten (one child
container per image or video, then a ``CAROUSEL`` container), then
``POST /{ig-user-id}/media_publish``; see ``smm_meta.containers`` for why a retry cannot
publish twice. Before building anything the adapter reads
``GET /{ig-user-id}/content_publishing_limit`` and waits when the 24-hour quota is used up.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import timedelta
from types import MappingProxyType
from urllib.parse import urlparse

from scheduler.adapter import (
    Account,
    Capabilities,
    Issue,
    OutcomeUnknown,
    OutgoingPost,
    Published,
    RateLimitPolicy,
    Rejected,
)
from smm_meta.containers import VIDEO_FORMATS, ContainerAdapter, is_video, media_issues
from smm_meta.graph import Graph, Listing
from smm_meta.reels import REEL_LIMITS, UPLOAD_HOST, upload_reel

__all__ = ["InstagramAdapter"]

MAX_HASHTAGS = 30
MAX_MENTIONS = 20
_HASHTAG = re.compile(r"(?<![\w&])#\w+")
_MENTION = re.compile(r"(?<![\w.])@[\w.]+")


class InstagramAdapter(ContainerAdapter):
    """Publishes images, Reels and carousels to an Instagram professional account.

    Options: ``ig_user_id`` (required), ``graph_version`` (default v21.0), ``graph_host``
    (``https://graph.facebook.com``; ``https://graph.instagram.com`` for Instagram Login).
    Credential: ``access_token``.
    """

    platform = "instagram"
    capabilities = Capabilities(
        text_limit=2200,
        text_counting="characters",
        max_media=10,
        media_types=("image/jpeg", "video/mp4", "video/quicktime"),
        # A local video (a Reel): up to 300 MB, 3 seconds to 15 minutes.
        video=REEL_LIMITS,
        idempotent=False,
        metrics=frozenset({"reach", "likes", "comments", "shares", "saves", "views"}),
        has_reach=True,
        rate_limit=RateLimitPolicy(requests=100, per=timedelta(hours=1), concurrency=1),
        requires_media=True,
        # POST /{ig-user-id}/media: alt_text "for image posts only ... up to 1000 character",
        # on a single image or an image of a carousel (not Reels or stories).
        alt_text_limit=1000,
        # POST /{ig-media-id}/comments
        post_options=frozenset({"first_comment"}),
        # A comment is held to a caption's 2,200 characters (Instagram's comment limit, as
        # the API reference's IG Comment text gives no other).
        comment_limit=2200,
    )

    network = "Instagram"
    default_host = "https://graph.facebook.com"
    default_version = "v21.0"
    refresh_grant = "ig_refresh_token"
    user_option = "ig_user_id"
    status_fields = ("status_code", "status")
    #: Where a local Reel's bytes go (``/ig-api-upload/{version}/{container}``).
    upload_host: str = UPLOAD_HOST

    async def publish_comment(self, post: OutgoingPost, account: Account, text: str) -> Published:
        """``POST /{ig-media-id}/comments`` with ``message``; answers ``{"id"}``."""
        body = await self.graph(account).post(f"{post.remote_id}/comments", {"message": text})
        comment_id = body.get("id")
        if not comment_id:
            raise OutcomeUnknown("Instagram: the comment was accepted without an id")
        return Published(str(comment_id))

    create_edge = "media"
    publish_edge = "media_publish"
    quota_edge = "content_publishing_limit"
    listing = Listing("{user}/media", "caption", "timestamp", "permalink")
    insight_metrics = MappingProxyType(
        {
            "reach": "reach",
            "likes": "likes",
            "comments": "comments",
            "shares": "shares",
            "saved": "saves",
            "views": "views",
        }
    )

    def validate(self, post: OutgoingPost, account: Account) -> list[Issue]:
        issues = super().validate(post, account)
        text = self.compose_text(post)
        hashtags = len(_HASHTAG.findall(text))
        if hashtags > MAX_HASHTAGS:
            issues.append(
                Issue("text", f"{hashtags} hashtags, Instagram allows at most {MAX_HASHTAGS}")
            )
        mentions = len(_MENTION.findall(text))
        if mentions > MAX_MENTIONS:
            issues.append(
                Issue("text", f"{mentions} @mentions, Instagram allows at most {MAX_MENTIONS}")
            )
        # A local video alone is uploaded to Instagram (a Reel); any other media are fetched
        # by Instagram from their URLs.
        reel = _local_reel(post)
        fetched = () if reel else post.media
        # A Reel's size and length are the core's to check, by content (capabilities.video).
        issues += media_issues(fetched, "Instagram", (".jpg", ".jpeg"), VIDEO_FORMATS)
        return issues

    async def _create(
        self,
        graph: Graph,
        user: str,
        post: OutgoingPost,
        extra: Mapping[str, str] | None = None,
    ) -> str:
        """A local video alone is uploaded as a Reel (``smm_meta.reels``); the rest as the
        base builds it."""
        if not _local_reel(post):
            return await super()._create(graph, user, post, extra)
        host = self.upload_host
        version = graph.base.rstrip("/").rsplit("/", 1)[-1]
        return await upload_reel(
            self.client,
            graph,
            user,
            post.media[0],
            self.compose_text(post),
            upload_host=host,
            version=version,
        )

    def single_params(self, url: str | None, text: str, alt: str | None = None) -> dict[str, str]:
        if url is None:  # validate() flags it at import; a post that slipped through fails here
            raise Rejected("Instagram: a post needs at least one image")
        if is_video(url):
            # A video alone is a Reel (media_type VIDEO for feed videos is retired).
            return {"media_type": "REELS", "video_url": url, "caption": text}
        return {"image_url": url, "caption": text, **_alt(alt)}

    def child_params(self, url: str, alt: str | None = None) -> dict[str, str]:
        if is_video(url):
            return {"media_type": "VIDEO", "video_url": url, "is_carousel_item": "true"}
        return {"image_url": url, "is_carousel_item": "true", **_alt(alt)}

    def alt_video_issues(self, post: OutgoingPost) -> list[Issue]:
        """Alt text on a video: Instagram takes it on images only."""
        return [
            Issue(
                "media",
                f"media {index + 1} ({url.rsplit('/', 1)[-1]}): Instagram takes alt text on "
                "images only, not on Reels or videos",
                "remove 'alt' from the video (describe it in the caption)",
            )
            for index, url in enumerate(post.media)
            if is_video(url) and post.meta(index).alt
        ]

    def media_meta_issues(self, post: OutgoingPost, account: Account) -> list[Issue]:
        """The core's alt-text checks, and none on a video."""
        return [*super().media_meta_issues(post, account), *self.alt_video_issues(post)]

    def carousel_params(self, children: Sequence[str], text: str) -> dict[str, str]:
        return {"media_type": "CAROUSEL", "children": ",".join(children), "caption": text}


def _local_reel(post: OutgoingPost) -> bool:
    """Whether ``post`` is one local video file (uploaded, not fetched by Instagram)."""
    return (
        len(post.media) == 1
        and not urlparse(post.media[0]).scheme
        and post.media[0].lower().endswith(VIDEO_FORMATS)
    )


def _alt(alt: str | None) -> dict[str, str]:
    """The container's ``alt_text`` (image containers only, single or carousel item)."""
    return {"alt_text": alt} if alt else {}
