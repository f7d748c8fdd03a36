"""Threads, through its Graph API at graph.threads.net.

Text, one image or a carousel of up to twenty goes into a container
(``POST /{threads-user-id}/threads`` with ``media_type`` TEXT, IMAGE or CAROUSEL), then
``POST /{threads-user-id}/threads_publish`` makes it a post; see ``smm_meta.containers`` for
why a retry cannot publish twice. ``GET /{threads-user-id}/threads_publishing_limit`` is
checked first (250 posts in 24 hours).

Threads counts an emoji as its UTF-8 bytes towards the 500-character limit, so ``😀`` costs 4.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from datetime import timedelta
from types import MappingProxyType

from scheduler.adapter import (
    Account,
    Capabilities,
    Issue,
    OutgoingPost,
    RateLimitPolicy,
)
from smm_meta.containers import ContainerAdapter, media_issues
from smm_meta.graph import Listing

__all__ = ["ThreadsAdapter"]

# Emoji and the joiners and selectors that build them up (ZWJ, VS-16, skin tones, tags).
_EMOJI_PARTS = frozenset({"\u200d", "\ufe0f", "\u20e3"})


def _is_emoji(char: str) -> bool:
    code = ord(char)
    return (
        char in _EMOJI_PARTS
        or code >= 0x1F000  # pictographs, emoticons, flags, skin tones, tag characters
        or (0x2600 <= code <= 0x27BF)  # miscellaneous symbols and dingbats
        or (0x2B00 <= code <= 0x2BFF and unicodedata.category(char) == "So")
    )


class ThreadsAdapter(ContainerAdapter):
    """Publishes text, images and carousels to a Threads profile.

    Options: ``threads_user_id`` (required), ``graph_version`` (default v1.0), ``graph_host``
    (default ``https://graph.threads.net``). Credential: ``access_token``.
    """

    platform = "threads"
    capabilities = Capabilities(
        text_limit=500,
        text_counting="characters, emoji as UTF-8 bytes",
        max_media=20,
        media_types=("image/jpeg", "image/png"),
        idempotent=False,
        metrics=frozenset({"views", "likes", "comments", "shares"}),
        has_reach=True,
        rate_limit=RateLimitPolicy(requests=100, per=timedelta(hours=1), concurrency=1),
    )

    network = "Threads"
    default_host = "https://graph.threads.net"
    default_version = "v1.0"
    refresh_grant = "th_refresh_token"
    user_option = "threads_user_id"
    status_fields = ("status", "error_message")
    create_edge = "threads"
    publish_edge = "threads_publish"
    quota_edge = "threads_publishing_limit"
    listing = Listing("{user}/threads", "text", "timestamp", "permalink")
    # Quotes are reposts with a comment: both count as shares.
    insight_metrics = MappingProxyType(
        {
            "views": "views",
            "likes": "likes",
            "replies": "comments",
            "reposts": "shares",
            "quotes": "shares",
        }
    )

    def text_length(self, text: str) -> int:
        return sum(len(c.encode()) if _is_emoji(c) else 1 for c in text)

    def validate(self, post: OutgoingPost, account: Account) -> list[Issue]:
        issues = super().validate(post, account)
        issues += media_issues(post.media, "Threads", (".jpg", ".jpeg", ".png"))
        if not post.media and not self.compose_text(post).strip():
            issues.append(Issue("text", "a Threads post needs text or an image"))
        return issues

    def single_params(self, url: str | None, text: str) -> dict[str, str]:
        if url is None:
            return {"media_type": "TEXT", "text": text}
        return {"media_type": "IMAGE", "image_url": url, "text": text}

    def child_params(self, url: str) -> dict[str, str]:
        return {"media_type": "IMAGE", "image_url": url, "is_carousel_item": "true"}

    def carousel_params(self, children: Sequence[str], text: str) -> dict[str, str]:
        return {"media_type": "CAROUSEL", "children": ",".join(children), "text": text}
