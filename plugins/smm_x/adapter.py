"""Publishing to X through API v2, with an OAuth 2.0 user-context access token.

A post is ``POST /2/tweets``; its images are uploaded first, one ``POST /2/media/upload``
each. Metrics come from ``GET /2/tweets`` in batches of 100; an unconfirmed post is looked up
in the account's own timeline. See docs/plugins/networks/x.md.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import httpx

from scheduler import media, tokens
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
    RateLimited,
    RateLimitPolicy,
    Rejected,
    Transient,
)
from scheduler.budgets import Budget, Ledger
from scheduler.chains import ReplyChain, Step, unrecorded
from scheduler.checkpoints import Checkpoints
from scheduler.errors import excerpt
from scheduler.media import read as read_media
from scheduler.timeutil import as_utc, format_utc, utcnow

from .errors import classify, rate_limit_status, transport_failure
from .matching import normalise, timeline_text
from .video import MAX_VIDEO_BYTES, VIDEO_TYPES, upload_video
from .weighted import MAX_WEIGHTED_LENGTH, weighted_length

__all__ = ["XAdapter"]

DEFAULT_API_BASE = "https://api.x.com"
IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp")
MAX_IMAGE_BYTES = 5 * 1024 * 1024
METRICS_BATCH = 100
#: Timeline pages (of 100 posts) read by ``lookup`` before it gives up.
LOOKUP_PAGES = 5
#: Posts are searched from this long before the due time (clock differences).
CLOCK_MARGIN = timedelta(minutes=5)
#: The timeline index lags a little behind a new post; absence is only trusted after this.
TIMELINE_LAG = timedelta(minutes=2)


TOKEN_URL = "https://api.x.com/2/oauth2/token"
POST_CAP = "x-posts"
#: Posts a month per user by API tier (https://docs.x.com/x-api/getting-started/about-x-api).
TIER_POST_CAPS = {"free": 500, "basic": 3000, "pro": 300_000}


#: X's poll limits (POST /2/tweets: poll.options 2-4 items of 1-25 characters,
#: poll.duration_minutes 5-10080).
POLL_MAX_OPTIONS = 4
POLL_MAX_CHARACTERS = 25
POLL_MIN_MINUTES = 5
POLL_MAX_MINUTES = 10080


class XAdapter(Adapter):
    """X (Twitter), API v2. Option: ``api_base``. Credential: ``access_token``.

    ``rate_limit_status`` is keyed by account name and follows the ``x-rate-limit-*``
    headers of the create-post endpoint, the budget the dispatcher spends.
    """

    platform = "x"
    capabilities = Capabilities(
        text_limit=MAX_WEIGHTED_LENGTH,
        text_counting="weighted",
        max_media=4,
        media_types=IMAGE_TYPES + VIDEO_TYPES,
        # Videos up to 512 MB (uploaded in chunks); images up to 5 MB (checked by validate).
        max_media_bytes=MAX_VIDEO_BYTES,
        # X has no idempotency key; it refuses an identical text as a duplicate, but only
        # within a window it does not document, so a resend is never assumed safe.
        idempotent=False,
        metrics=frozenset({"likes", "comments", "shares", "saves", "impressions"}),
        has_reach=True,
        # POST /2/media/metadata: alt_text.text "Must be <= 1000 chars" (X's media docs).
        alt_text_limit=1000,
        # POST /2/tweets takes reply.in_reply_to_tweet_id and poll {options, duration_minutes}.
        # A first comment is the first reply; a thread a chain of replies.
        post_options=frozenset({"reply_to", "poll", "first_comment", "thread"}),
        # POST /2/tweets: 100 requests per 15 minutes per user.
        rate_limit=RateLimitPolicy(requests=100, per=timedelta(minutes=15), concurrency=1),
    )
    #: OAuth 2 user tokens live two hours (with the offline.access scope X gives a refresh
    #: token, replaced at every refresh): renewed a quarter of an hour ahead.
    refresh_lead = timedelta(minutes=15)
    rotates_refresh_token = True

    async def refresh_token(self, account: Account) -> tokens.TokenSet:
        """X's OAuth 2 refresh: ``refresh_token`` and ``client_id``; a confidential client
        adds ``client_secret`` (sent as HTTP Basic authentication)."""
        client_id = account.secret("client_id")
        basic = (
            (client_id, account.secret("client_secret"))
            if "client_secret" in account.credentials
            else None
        )
        return await tokens.oauth2_refresh(
            self.client,
            str(account.option("token_url", TOKEN_URL)),
            {
                "grant_type": "refresh_token",
                "refresh_token": account.secret("refresh_token"),
                "client_id": client_id,
            },
            network="X",
            basic=basic,
        )

    def __init__(
        self,
        client: httpx.AsyncClient,
        ledger: Ledger | None = None,
        checkpoints: Checkpoints | None = None,
    ) -> None:
        super().__init__(client)
        self._user_ids: dict[str, str] = {}
        #: Posts made this month per cap scope (scheduler.budgets).
        self.ledger = ledger if ledger is not None else Ledger()
        #: Where each thread's progress is recorded, part by part (scheduler.chains).
        self.checkpoints = checkpoints if checkpoints is not None else Checkpoints()

    def budgets(self, account: Account) -> list[Budget]:
        """The monthly post cap of the account's API tier, when the config names one
        (``tier`` or ``monthly_post_cap``); X's tiers differ too much to assume one."""
        cap = account.option("monthly_post_cap")
        tier = account.option("tier")
        if cap is None and tier is None:
            return []
        if cap is None:
            if tier not in TIER_POST_CAPS:
                # A configuration every post of the account would fail alike: pause it.
                raise AuthExpired(
                    f"account {account.name}: option 'tier' must be one of "
                    f"{', '.join(TIER_POST_CAPS)} (or set monthly_post_cap)"
                )
            cap = TIER_POST_CAPS[tier]
        if not isinstance(cap, int) or isinstance(cap, bool) or cap <= 0:
            raise AuthExpired(f"account {account.name}: option 'monthly_post_cap' must be > 0")
        scope = str(account.option("quota_project", account.name))
        return [Budget(POST_CAP, "X posts per month", cap, "month", "UTC", scope=scope)]

    def budget_cost(self, post: OutgoingPost, account: Account) -> dict[str, int]:
        """One post, and one per thread part after it."""
        return {POST_CAP: 1 + len(post.options.thread)}

    async def _spend_cap(self, account: Account) -> None:
        for budget in self.budgets(account):
            resets = await asyncio.to_thread(self.ledger.spend, budget, 1, utcnow())
            if resets is not None:
                raise RateLimited(
                    f"x: the month's cap of {budget.limit:,} posts is reached; waiting until "
                    f"{format_utc(resets)}",
                    retry_at=resets,
                    code="post_cap_budget",
                )

    #: Segments of a chunked video upload, the longest wait between processing checks
    #: (X says how long in check_after_secs) and how many checks before giving up.
    video_chunk_bytes: ClassVar[int] = 4 * 1024 * 1024
    video_max_wait: ClassVar[float] = 10.0
    video_max_checks: ClassVar[int] = 60

    # -- offline checks -------------------------------------------------------------------

    def text_length(self, text: str) -> int:
        """The weighted length (twitter-text v3): URLs 23, emoji and CJK 2, Latin 1."""
        return weighted_length(text)

    def validate(self, post: OutgoingPost, account: Account) -> list[Issue]:
        """The core's length and count checks, plus X's rules for image files."""
        issues = super().validate(post, account)
        for item in post.media:
            issue = _media_issue(item)
            if issue:
                issues.append(issue)
        videos = sum(media.guess_type(item) in VIDEO_TYPES for item in post.media)
        if videos and len(post.media) > 1:
            issues.append(Issue("media", "an X post takes one video and nothing else beside it"))
        return issues

    def option_issues(self, post: OutgoingPost, account: Account) -> list[Issue]:
        """Replies and polls; a poll as X takes it: 2 to 4 options of at most 25 characters,
        open 5 minutes to 7 days, one answer per voter, and no media beside it."""
        issues = super().option_issues(post, account)
        issues += self.reply_comment_issues(post, account)  # the first comment is a reply
        poll = post.options.poll
        if poll is None:
            return issues
        if len(poll.options) > POLL_MAX_OPTIONS:
            issues.append(Issue("poll", f"{len(poll.options)} poll options, X takes at most 4"))
        for option in poll.options:
            if len(option) > POLL_MAX_CHARACTERS:
                issues.append(
                    Issue(
                        "poll",
                        f"poll option {excerpt(option)} has {len(option)} characters, X takes 25",
                    )
                )
        minutes = poll.duration.total_seconds() / 60
        if not POLL_MIN_MINUTES <= minutes <= POLL_MAX_MINUTES:
            issues.append(
                Issue("poll", f"a poll open {minutes:g} minutes, X takes 5 to 10080 (7 days)")
            )
        if poll.multiple:
            issues.append(Issue("poll", "X polls take one answer per voter (multiple: no)"))
        if post.media:
            issues.append(Issue("poll", "an X post takes a poll or media, not both"))
        return issues

    # -- publishing -----------------------------------------------------------------------

    async def publish(
        self, post: OutgoingPost, account: Account, idempotency_key: str
    ) -> Published:
        """Upload the images, then create the post. Only the create call can duplicate.

        A thread goes out part by part, each a reply to the one before, each recorded
        (``scheduler.chains``) so that a retry resumes after the last part out."""
        await tokens.fresh(self, account)
        token = account.secret("access_token")
        if post.options.thread:
            return await self._publish_thread(post, account, token, idempotency_key)
        return await self._create(post, account, token, reply_to=post.options.reply_to)

    def _chain(self, post: OutgoingPost, idempotency_key: str = "") -> ReplyChain:
        key = idempotency_key or post.idempotency_key or post.key
        return ReplyChain(self.checkpoints, self.platform, key, len(post.options.thread) + 1)

    async def _publish_thread(
        self, post: OutgoingPost, account: Account, token: str, idempotency_key: str
    ) -> Published:
        parts = post.chain()

        async def send(step: Step, note: Any) -> str:
            reply_to = step.parent if step.number > 1 else post.options.reply_to
            created = await self._create(parts[step.number - 1], account, token, reply_to=reply_to)
            return created.remote_id

        async def find(step: Step) -> str | None:
            return await self._find_part(parts, step, account, token)

        ids = await self._chain(post, idempotency_key).run(send, find)
        return Published(remote_id=ids[0], url=_post_url(ids[0]))

    async def _find_part(
        self, parts: Sequence[OutgoingPost], step: Step, account: Account, token: str
    ) -> str | None:
        """A part whose create may have gone through, found in the account's timeline:
        the first by its text, a later one by its text and the part it replies to."""
        part = parts[step.number - 1]
        found = await self._search(
            part,
            account,
            token,
            replied_to=step.parent if step.number > 1 else None,
            since=step.since,
        )
        return found.remote_id if found is not None else None

    async def _create(
        self, post: OutgoingPost, account: Account, token: str, *, reply_to: str | None
    ) -> Published:
        """Upload the post's media, then ``POST /2/tweets`` (a reply to ``reply_to``)."""
        media_ids = []
        for index, item in enumerate(post.media):
            media_id = await self._upload(item, token, account)
            alt = post.meta(index).alt
            if alt:
                await self._describe(media_id, alt, token, account)
            media_ids.append(media_id)
        payload: dict[str, Any] = {"text": self.compose_text(post)}
        if media_ids:
            payload["media"] = {"media_ids": media_ids}
        if reply_to:
            payload["reply"] = {"in_reply_to_tweet_id": reply_to}
        if post.options.poll is not None:
            payload["poll"] = {
                "options": list(post.options.poll.options),
                "duration_minutes": int(post.options.poll.duration.total_seconds() // 60),
            }
        await self._spend_cap(account)
        body = await self._request(
            "POST", "/2/tweets", token, account, sends=True, track=True, json=payload
        )
        data = body.get("data")
        post_id = data.get("id") if isinstance(data, Mapping) else None
        if not isinstance(post_id, str) or not post_id:
            raise OutcomeUnknown("x: the create answer has no data.id", http_status=201)
        return Published(remote_id=post_id, url=_post_url(post_id))

    async def publish_comment(self, post: OutgoingPost, account: Account, text: str) -> Published:
        """The first reply to the post (``reply.in_reply_to_tweet_id``)."""
        await tokens.fresh(self, account)
        token = account.secret("access_token")
        payload = {"text": text, "reply": {"in_reply_to_tweet_id": post.remote_id}}
        body = await self._request(
            "POST", "/2/tweets", token, account, sends=True, track=True, json=payload
        )
        data = body.get("data")
        reply_id = data.get("id") if isinstance(data, Mapping) else None
        if not isinstance(reply_id, str) or not reply_id:
            raise OutcomeUnknown("x: the create answer has no data.id", http_status=201)
        return Published(remote_id=reply_id, url=_post_url(reply_id))

    async def _upload(self, item: str, token: str, account: Account) -> str:
        # An upload creates no post, so every failure here is safe to retry (sends=False).
        if item.startswith(("https://", "http://")):
            raise Rejected(f"x: {item} is not a local JPEG, PNG or WebP image")
        if media.guess_type(item) in VIDEO_TYPES:

            async def request(method: str, path: str, **kwargs: Any) -> Mapping[str, Any]:
                return await self._request(method, path, token, account, **kwargs)

            return await upload_video(
                request,
                item,
                replace(self.capabilities, media_types=VIDEO_TYPES),
                chunk_bytes=self.video_chunk_bytes,
                max_wait=self.video_max_wait,
                max_checks=self.video_max_checks,
            )
        # Only through the core: confined to the media roots, checked by content and size.
        image = await read_media(
            item,
            replace(self.capabilities, media_types=IMAGE_TYPES, max_media_bytes=MAX_IMAGE_BYTES),
        )
        body = await self._request(
            "POST",
            "/2/media/upload",
            token,
            account,
            sends=False,
            data={"media_category": "tweet_image", "media_type": image.mime},
            files={"media": (image.name, image.content, image.mime)},
        )
        data = body.get("data")
        media_id = data.get("id") if isinstance(data, Mapping) else None
        if not isinstance(media_id, str) or not media_id:
            raise Transient(f"x: the upload answer for {image.name} has no data.id")
        return media_id

    async def _describe(self, media_id: str, alt: str, token: str, account: Account) -> None:
        """Attach alt text to an uploaded image (``POST /2/media/metadata``); creates no
        post, so its failures are safe to retry like the upload's."""
        await self._request(
            "POST",
            "/2/media/metadata",
            token,
            account,
            sends=False,
            json={"id": media_id, "metadata": {"alt_text": {"text": alt}}},
        )

    # -- metrics --------------------------------------------------------------------------

    async def fetch_metrics(
        self, posts: Sequence[OutgoingPost], account: Account
    ) -> Mapping[str, Metrics]:
        """``public_metrics`` of up to 100 posts a request; deleted posts are left out."""
        ids = list(dict.fromkeys(p.remote_id for p in posts if p.remote_id))
        if not ids:
            return {}
        token = account.secret("access_token")
        found: dict[str, Metrics] = {}
        for start in range(0, len(ids), METRICS_BATCH):
            params = {
                "ids": ",".join(ids[start : start + METRICS_BATCH]),
                "tweet.fields": "public_metrics",
            }
            body = await self._request("GET", "/2/tweets", token, account, params=params)
            for item in _list(body.get("data")):
                metrics = _metrics(item)
                if metrics:
                    found[metrics.remote_id] = metrics
        return found

    # -- reconciliation -------------------------------------------------------------------

    async def lookup(self, post: OutgoingPost, account: Account) -> Published | None:
        """Find the post in the account's timeline since its due time, by its exact text.

        None only when every post since the due time was read, none matches, and the due
        time is old enough for the timeline to show a post made then; otherwise
        ``OutcomeUnknown``. Failures of the lookup itself are ``OutcomeUnknown`` too.
        """
        try:
            return await self._lookup(post, account)
        except OutcomeUnknown:
            raise
        except PublishError as exc:
            raise OutcomeUnknown(
                f"x: lookup failed: {exc.message}", http_status=exc.http_status
            ) from None

    async def _lookup(self, post: OutgoingPost, account: Account) -> Published | None:
        token = account.secret("access_token")
        if not post.options.thread:
            return await self._search(post, account, token)
        # A thread is out when its last part is: the record says how far it got.
        chain = self._chain(post)
        state = await chain.load()
        if state is None:
            if await self._search(post, account, token) is None:
                return None
            raise unrecorded("x")
        parts = post.chain()

        async def find(step: Step) -> str | None:
            return await self._find_part(parts, step, account, token)

        state = await chain.settle(state, find)
        if len(state.parts) == chain.total:
            return Published(remote_id=state.parts[0], url=_post_url(state.parts[0]))
        # Not all out (perhaps none): publishing again resumes after the last part out.
        return None

    async def _search(
        self,
        post: OutgoingPost,
        account: Account,
        token: str,
        *,
        replied_to: str | None = None,
        since: datetime | None = None,
    ) -> Published | None:
        """The account's post with ``post``'s text (replying to ``replied_to`` when given)
        made since ``since`` (default: the due time), or None when certainly absent."""
        start = since or post.due_at
        if start is None:
            raise OutcomeUnknown("x: a post without a due time cannot be bounded in a timeline")
        due_at = as_utc(start)
        user_id = await self._user_id(token, account)
        now = utcnow()
        wanted = normalise(self.compose_text(post))
        params: dict[str, Any] = {
            "max_results": 100,
            "start_time": format_utc(min(due_at, now) - CLOCK_MARGIN),
            "tweet.fields": "created_at,entities,note_tweet"
            + (",referenced_tweets" if replied_to else ""),
            "exclude": "retweets",
        }
        for _ in range(LOOKUP_PAGES):
            body = await self._request(
                "GET", f"/2/users/{user_id}/tweets", token, account, params=params
            )
            for item in _list(body.get("data")):
                if (
                    isinstance(item.get("id"), str)
                    and normalise(timeline_text(item)) == wanted
                    and (replied_to is None or _replies_to(item, replied_to))
                ):
                    return Published(remote_id=item["id"], url=_post_url(item["id"]))
            meta = body.get("meta")
            next_token = meta.get("next_token") if isinstance(meta, Mapping) else None
            if not next_token:
                break
            params["pagination_token"] = next_token
        else:
            raise OutcomeUnknown(
                f"x: more than {LOOKUP_PAGES * 100} posts since the due time; not all were read"
            )
        if now - due_at < TIMELINE_LAG:
            raise OutcomeUnknown("x: not in the timeline yet, but the due time is too recent")
        return None

    async def _user_id(self, token: str, account: Account) -> str:
        if account.name not in self._user_ids:
            body = await self._request("GET", "/2/users/me", token, account)
            data = body.get("data")
            user_id = data.get("id") if isinstance(data, Mapping) else None
            if not isinstance(user_id, str) or not user_id:
                raise OutcomeUnknown("x: /2/users/me answered without data.id")
            self._user_ids[account.name] = user_id
        return self._user_ids[account.name]

    # -- HTTP -----------------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        token: str,
        account: Account,
        *,
        sends: bool = False,
        track: bool = False,
        empty_ok: bool = False,
        **kwargs: Any,
    ) -> Mapping[str, Any]:
        """One API call; the decoded JSON object of a 2xx answer, else a ``PublishError``.

        ``sends`` marks the call that creates the post (its uncertain failures are
        ``OutcomeUnknown``); ``track`` records its rate-limit headers for the dispatcher.
        """
        base = str(account.option("api_base", DEFAULT_API_BASE)).rstrip("/")
        what = f"x {method} {path}"
        try:
            response = await self.client.request(
                method, base + path, headers={"Authorization": f"Bearer {token}"}, **kwargs
            )
        except httpx.TransportError as exc:
            raise transport_failure(exc, what, sends=sends, secrets=(token,)) from None
        if track:
            status = rate_limit_status(response.headers)
            if status is not None:
                self.rate_limit_status[account.name] = status
        if not response.is_success:
            raise classify(response, sends=sends)
        if empty_ok and not response.content.strip():
            return {}
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, Mapping):
            unknown = OutcomeUnknown if sends else Transient
            raise unknown(
                f"{what}: HTTP {response.status_code} without a JSON object",
                http_status=response.status_code,
            )
        return body


# --------------------------------------------------------------------------- helpers


def _post_url(post_id: str) -> str:
    # The i/web form needs no username, which the create answer does not carry.
    return f"https://x.com/i/web/status/{post_id}"


def _list(value: Any) -> list[Mapping[str, Any]]:
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def _replies_to(item: Mapping[str, Any], parent: str) -> bool:
    """Whether a timeline post (with ``referenced_tweets``) is a reply to ``parent``."""
    return any(
        ref.get("type") == "replied_to" and ref.get("id") == parent
        for ref in _list(item.get("referenced_tweets"))
    )


def _count(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def _metrics(item: Mapping[str, Any]) -> Metrics | None:
    post_id = item.get("id")
    public = item.get("public_metrics")
    if not isinstance(post_id, str) or not isinstance(public, Mapping):
        return None
    reposts, quotes = _count(public.get("retweet_count")), _count(public.get("quote_count"))
    shares = None if reposts is None and quotes is None else (reposts or 0) + (quotes or 0)
    return Metrics(
        remote_id=post_id,
        likes=_count(public.get("like_count")),
        comments=_count(public.get("reply_count")),
        shares=shares,
        saves=_count(public.get("bookmark_count")),
        impressions=_count(public.get("impression_count")),
    )


def _media_issue(item: str) -> Issue | None:
    if item.startswith(("https://", "http://")):
        return Issue("media", f"{item}: X needs image files, not URLs", "download it first")
    path = Path(item).expanduser()
    kind = media.guess_type(path.name)
    video = kind in VIDEO_TYPES
    if kind not in IMAGE_TYPES and not video:
        return Issue("media", f"{item}: not a JPEG, PNG or WebP image, or an MP4 or MOV video")
    if not path.is_file():
        return Issue("media", f"{item}: no such file")
    if not video and path.stat().st_size > MAX_IMAGE_BYTES:
        return Issue("media", f"{item}: larger than X's 5 MB image limit")
    return None
