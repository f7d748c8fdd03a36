"""Threads, through its Graph API at graph.threads.net.

Text, one image or video, or a carousel of up to twenty goes into a container
(``POST /{threads-user-id}/threads`` with ``media_type`` TEXT, IMAGE, VIDEO or CAROUSEL), then
``POST /{threads-user-id}/threads_publish`` makes it a post; see ``smm_meta.containers`` for
why a retry cannot publish twice. ``GET /{threads-user-id}/threads_publishing_limit`` is
checked first (250 posts in 24 hours).

Threads counts an emoji as its UTF-8 bytes towards the 500-character limit, so ``😀`` costs 4.

A thread (``thread:`` in the plan) is a reply chain: each part after the first is a container
with ``reply_to_id`` the part before, published in turn. Each part is a recorded step
(``scheduler.chains``): the container is noted before ``threads_publish`` is asked, so an
attempt that resumes asks the container's status (``PUBLISHED``: the part is out, found among
the replies of the part before; anything else: it is not) and goes on from the first part
not out; none is published twice.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from datetime import timedelta
from types import MappingProxyType
from typing import Any

from scheduler import tokens
from scheduler.adapter import (
    Account,
    Capabilities,
    Issue,
    OutcomeUnknown,
    OutgoingPost,
    Published,
    RateLimitPolicy,
)
from scheduler.chains import ReplyChain, Step, unrecorded
from smm_meta.containers import VIDEO_FORMATS, ContainerAdapter, is_video, media_issues
from smm_meta.graph import Graph, Listing, find_recent

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
    """Publishes text, images, videos and carousels to a Threads profile.

    Options: ``threads_user_id`` (required), ``graph_version`` (default v1.0), ``graph_host``
    (default ``https://graph.threads.net``). Credential: ``access_token``.
    """

    platform = "threads"
    capabilities = Capabilities(
        text_limit=500,
        text_counting="characters, emoji as UTF-8 bytes",
        max_media=20,
        media_types=("image/jpeg", "image/png", "video/mp4", "video/quicktime"),
        idempotent=False,
        metrics=frozenset({"views", "likes", "comments", "shares"}),
        has_reach=True,
        rate_limit=RateLimitPolicy(requests=100, per=timedelta(hours=1), concurrency=1),
        # A thread: containers with reply_to_id, published in turn.
        post_options=frozenset({"thread"}),
        # POST /{threads-user-id}/threads: alt_text, "The maximum length of alt_text is
        # 1,000 characters", for an image or video.
        alt_text_limit=1000,
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
        issues += media_issues(post.media, "Threads", (".jpg", ".jpeg", ".png"), VIDEO_FORMATS)
        if not post.media and not self.compose_text(post).strip():
            issues.append(Issue("text", "a Threads post needs text or an image"))
        return issues

    def single_params(self, url: str | None, text: str, alt: str | None = None) -> dict[str, str]:
        if url is None:
            return {"media_type": "TEXT", "text": text}
        params = _media_params(url) | {"text": text}
        return {**params, "alt_text": alt} if alt else params

    def child_params(self, url: str, alt: str | None = None) -> dict[str, str]:
        params = _media_params(url) | {"is_carousel_item": "true"}
        return {**params, "alt_text": alt} if alt else params

    def carousel_params(self, children: Sequence[str], text: str) -> dict[str, str]:
        return {"media_type": "CAROUSEL", "children": ",".join(children), "text": text}

    # -- threads ----------------------------------------------------------------------------

    def _chain(self, post: OutgoingPost, idempotency_key: str = "") -> ReplyChain:
        key = idempotency_key or post.idempotency_key or post.key
        return ReplyChain(self.checkpoints, self.platform, key, len(post.options.thread) + 1)

    async def publish(
        self, post: OutgoingPost, account: Account, idempotency_key: str
    ) -> Published:
        """One container published; a thread, its parts in turn (see the module docstring)."""
        if not post.options.thread:
            return await super().publish(post, account, idempotency_key)
        await tokens.fresh(self, account)
        graph = self.graph(account)
        user = self.user_id(account)
        parts = post.chain()

        async def send(step: Step, note: Any) -> str:
            extra = {"reply_to_id": step.parent} if step.parent else {}
            container = await self._create(graph, user, parts[step.number - 1], extra)
            # Noted before publishing: a resumed attempt asks this container what became of it.
            await note({"container": container})
            await self._wait_until_finished(graph, container)
            body = await graph.post(f"{user}/{self.publish_edge}", {"creation_id": container})
            media_id = body.get("id")
            if not media_id:
                raise OutcomeUnknown(f"{self.network}: publishing answered without a media id")
            return str(media_id)

        async def find(step: Step) -> str | None:
            return await self._find_part(graph, user, parts, step)

        await self._check_quota(graph, user)
        ids = await self._chain(post, idempotency_key).run(send, find)
        return Published(ids[0], url=await self._permalink(graph, ids[0]))

    async def _find_part(
        self, graph: Graph, user: str, parts: Sequence[OutgoingPost], step: Step
    ) -> str | None:
        """What became of a part whose publishing may have gone through: its container's
        status says whether it is out; the first part is then found among the account's
        threads, a later one among the replies to the part before, by its text."""
        container = step.data.get("container")
        if not isinstance(container, str) or not container:
            return None  # the container is noted before publishing is asked: never asked
        state, _ = await self._status(graph, container)
        if state in ("FINISHED", "IN_PROGRESS", "EXPIRED", "ERROR"):
            return None
        if state != "PUBLISHED":
            raise OutcomeUnknown(f"{self.network}: container {container} is in state {state!r}")
        text = self.compose_text(parts[step.number - 1])
        if step.parent is None:
            found = await find_recent(graph, self._listing(user), text, since=None)
            if found is None:  # without ``since`` it raises instead; this narrows the type
                raise OutcomeUnknown(f"{self.network}: published, but not listed yet")
            return found.remote_id
        body = await graph.get(
            f"{step.parent}/replies", {"fields": "id,text,timestamp,is_reply_owned_by_me"}
        )
        for reply in body.get("data") or ():
            if (
                isinstance(reply, Mapping)
                and reply.get("id")
                and reply.get("is_reply_owned_by_me") is not False
                and str(reply.get("text") or "").strip() == text.strip()
            ):
                return str(reply["id"])
        raise OutcomeUnknown(
            f"{self.network}: the part was published but is not among the replies yet"
        )

    async def lookup(self, post: OutgoingPost, account: Account) -> Published | None:
        """A thread is out when its last part is: the record says how far it got (parts
        left in flight are asked about); not all out, publishing again resumes it."""
        if not post.options.thread:
            return await super().lookup(post, account)
        chain = self._chain(post)
        state = await chain.load()
        if state is None:
            if await super().lookup(post, account) is None:
                return None
            raise unrecorded(self.network)
        graph = self.graph(account)
        user = self.user_id(account)
        parts = post.chain()

        async def find(step: Step) -> str | None:
            return await self._find_part(graph, user, parts, step)

        state = await chain.settle(state, find)
        if len(state.parts) < chain.total:
            return None
        return Published(state.parts[0], url=await self._permalink(graph, state.parts[0]))


def _media_params(url: str) -> dict[str, str]:
    """An image (``IMAGE``, ``image_url``) or a video (``VIDEO``, ``video_url``) container."""
    if is_video(url):
        return {"media_type": "VIDEO", "video_url": url}
    return {"media_type": "IMAGE", "image_url": url}
