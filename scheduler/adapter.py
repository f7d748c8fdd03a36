"""The network adapter contract: what every platform plugin implements.

An adapter turns a post into one network's real HTTP requests and maps every failure to a
small taxonomy (``PublishError`` subclasses) the core knows how to handle. The core never
looks inside a network: length counting, media rules, error codes and rate-limit headers all
live in the adapter (docs/plugins/adapters.md).
"""

from __future__ import annotations

import enum
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import quote

import httpx
import regex

from scheduler.config import CredentialRef
from scheduler.errors import excerpt

__all__ = [
    "NOT_SENT",
    "NO_OPTIONS",
    "OPTION_NAMES",
    "VISIBILITIES",
    "Account",
    "Adapter",
    "AuthExpired",
    "Capabilities",
    "ErrorClass",
    "Issue",
    "IssueCode",
    "MediaMeta",
    "Metrics",
    "OutcomeUnknown",
    "OutgoingPost",
    "Poll",
    "PostOptions",
    "PublishError",
    "Published",
    "RateLimitPolicy",
    "RateLimitStatus",
    "RateLimited",
    "RateWindow",
    "Rejected",
    "ThreadPart",
    "Transient",
    "VideoLimits",
    "json_object",
    "scrub_url_secrets",
    "status_error",
    "transport_error",
]


# --------------------------------------------------------------------------- taxonomy


class ErrorClass(enum.StrEnum):
    """How the core reacts to a failure (docs/concepts.md#failures)."""

    TRANSIENT = "transient"  # certainly not accepted; retry with backoff
    RATE_LIMITED = "rate_limited"  # certainly not accepted; retry at ``retry_at``
    AUTH_EXPIRED = "auth_expired"  # credentials no longer work; pause the account
    REJECTED = "rejected"  # the network refused this post for good
    OUTCOME_UNKNOWN = "outcome_unknown"  # it may have been accepted: never blindly resend


class PublishError(Exception):
    """A classified failure. ``message`` is the network's own words (secrets are redacted later)."""

    error_class: ClassVar[ErrorClass]

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        retry_at: datetime | None = None,
        code: str | int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.http_status = http_status
        self.retry_at = retry_at
        self.code = code


class Transient(PublishError):
    """The request certainly did not take effect (refused connection, 5xx before acceptance)."""

    error_class = ErrorClass.TRANSIENT


class RateLimited(PublishError):
    """The network asked us to wait; ``retry_at`` says until when (None: use backoff)."""

    error_class = ErrorClass.RATE_LIMITED


class AuthExpired(PublishError):
    """The token is invalid, revoked or expired; a person must renew it."""

    error_class = ErrorClass.AUTH_EXPIRED


class Rejected(PublishError):
    """The network refused this post permanently (too long, bad media, duplicate...)."""

    error_class = ErrorClass.REJECTED


class OutcomeUnknown(PublishError):
    """The request may have reached the network (timeout after sending, dropped connection)."""

    error_class = ErrorClass.OUTCOME_UNKNOWN


#: httpx failures raised before the request left: resending is always safe.
NOT_SENT: tuple[type[httpx.HTTPError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.UnsupportedProtocol,
)


def transport_error(
    exc: httpx.HTTPError, *, network: str, where: str, mutating: bool
) -> PublishError:
    """Classify an httpx failure by the never-twice rule.

    Not sent (refused connection, connect timeout...) is ``Transient``; any other failure of a
    request that creates something (``mutating``) may have reached the network, so it is
    ``OutcomeUnknown``; a read that failed is ``Transient``. The exception's own text is not
    quoted: it may carry a URL with a token in it.
    """
    kind = type(exc).__name__
    if isinstance(exc, NOT_SENT):
        return Transient(f"{network}: could not reach the server ({kind}) on {where}")
    if mutating:
        return OutcomeUnknown(
            f"{network}: no answer ({kind}) on {where}; the request may have taken effect"
        )
    return Transient(f"{network}: no answer ({kind}) on {where}")


def status_error(
    status: int,
    message: str,
    *,
    mutating: bool,
    idempotent: bool = False,
    retry_at: datetime | None = None,
    code: str | int | None = None,
    effect: str = "the request may have taken effect",
) -> PublishError:
    """Classify an HTTP error status by the rule every network shares.

    429 is ``RateLimited`` (until ``retry_at``, when the network said); 401 ``AuthExpired``;
    anything below 500 else ``Rejected``. A 5xx depends on the request:

    * one that creates nothing (``mutating`` False): ``Transient``;
    * one that creates something under an idempotency key the network honours
      (``idempotent``): ``Transient`` (resent under the same key, the network recognises
      it), except a 504, ``OutcomeUnknown``: a gateway gave up waiting and the origin may
      still be doing the work;
    * one that creates something without such a key: ``OutcomeUnknown``, whatever the 5xx.
      A 500, 502 or 503 may come after the origin accepted the body (a proxy that lost the
      answer, a crash after the write), and a blind resend could publish twice; the post is
      settled by the adapter's ``lookup`` instead.

    ``effect`` is added to an ``OutcomeUnknown``'s message. Call it after the network's own
    special cases (its error codes, a 403 that means expired credentials...). URL-borne
    tokens are scrubbed from ``message`` (``scrub_url_secrets``).
    """
    message = scrub_url_secrets(message)
    if status == 429:
        return RateLimited(message, http_status=status, retry_at=retry_at, code=code)
    if status == 401:
        return AuthExpired(message, http_status=status, code=code)
    if status < 500:
        return Rejected(message, http_status=status, code=code)
    if mutating and (status == 504 or not idempotent):
        return OutcomeUnknown(f"{message}; {effect}", http_status=status, code=code)
    return Transient(message, http_status=status, code=code)


#: Query parameters that carry credentials in the URLs networks answer with or quote.
_SECRET_PARAMS = (
    "access_token|token|oauth_token|refresh_token|client_secret|api_key|apikey|key|sig|"
    "signature|session_key|session_secret_key|appsecret_proof|password|secret|auth"
)
_URL_SECRETS = (
    # ?access_token=...&sig=... (raw or URL-encoded separators)
    (
        re.compile(rf"(?i)([?&;]|%3F|%26)({_SECRET_PARAMS})(=|%3D)[^&#\s\"'<>]*"),
        r"\1\2\3[redacted]",
    ),
    # https://user:password@host
    (re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^/\s:@]*:)[^@/\s]+@"), r"\1[redacted]@"),
    # Telegram's https://api.telegram.org/bot<token>/method
    (re.compile(r"(?i)(/bot)\d+:[A-Za-z0-9_-]+"), r"\1[redacted]"),
)


def scrub_url_secrets(text: str, *, secrets: Sequence[str] = ()) -> str:
    """``text`` with the credentials URLs carry replaced by ``[redacted]``: token-like query
    parameters, passwords in ``user:password@``, bot tokens in paths, and each of ``secrets``
    as given and URL-encoded. For error messages that quote a request or response URL."""
    for pattern, replacement in _URL_SECRETS:
        text = pattern.sub(replacement, text)
    for secret in secrets:
        if secret:
            for form in {secret, quote(secret, safe="")}:
                text = text.replace(form, "[redacted]")
    return text


def json_object(response: httpx.Response) -> dict[str, Any] | None:
    """The body as a JSON object, or None (not JSON, or JSON but not an object).

    The body decides, not the content type: some APIs answer JSON as text/javascript.
    """
    try:
        data = json.loads(response.content)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Account:
    """The account a call is for, as the adapter sees it. Secrets are fetched on demand."""

    name: str
    platform: str
    timezone: str
    options: Mapping[str, Any] = field(default_factory=dict)
    credentials: Mapping[str, CredentialRef] = field(default_factory=dict, repr=False)

    def secret(self, key: str) -> str:
        """The secret configured as ``credentials.<key>``; raises AuthExpired when missing."""
        ref = self.credentials.get(key)
        if ref is None:
            raise AuthExpired(f"account {self.name}: no credential {key!r} configured")
        from scheduler.config import CredentialError

        try:
            return ref.resolve()
        except CredentialError as exc:
            raise AuthExpired(f"account {self.name}: {exc}") from None

    def option(self, key: str, default: Any = None) -> Any:
        return self.options.get(key, default)


@dataclass(frozen=True, slots=True)
class MediaMeta:
    """What the plan says about one media file besides where it is (docs/content-plan.md)."""

    #: The alternative text people with screen readers hear; None when the plan gives none.
    alt: str | None = None
    #: The focal point, ``(x, y)`` each from -1 to 1 (0, 0 the centre; x right, y up), the
    #: point a network keeps in view when it crops a preview; None when not given.
    focus: tuple[float, float] | None = None


_NO_META = MediaMeta()

#: The per-post options a plan can give, by their network-neutral names
#: (docs/content-plan.md#per-post-options).
OPTION_NAMES = (
    "content_warning",
    "sensitive",
    "visibility",
    "language",
    "reply_to",
    "poll",
    "first_comment",
    "thread",
)
#: Who may see a post, in network-neutral words (Mastodon: public, unlisted, private, direct).
VISIBILITIES = ("public", "unlisted", "followers", "direct")


@dataclass(frozen=True, slots=True)
class Poll:
    """A poll attached to a post."""

    options: tuple[str, ...]
    #: How long it stays open.
    duration: timedelta
    #: Whether a voter may pick several options.
    multiple: bool = False


@dataclass(frozen=True, slots=True)
class ThreadPart:
    """One post of a thread after the first: its text and its own media."""

    text: str
    media: tuple[str, ...] = ()
    #: Alt text and focal point per media file, as ``OutgoingPost.media_meta``.
    media_meta: tuple[MediaMeta, ...] = ()


@dataclass(frozen=True, slots=True)
class PostOptions:
    """What the plan asks of one post besides its content; None/False: not asked.

    A plugin lists the names it honours in ``Capabilities.post_options``; the core refuses a
    plan that asks a network for one it does not list, naming the network.
    """

    #: A warning shown before the text (Mastodon's spoiler text).
    content_warning: str | None = None
    #: The media may upset: networks hide it behind a click.
    sensitive: bool = False
    #: One of ``VISIBILITIES``.
    visibility: str | None = None
    #: The text's language, a BCP 47 tag (``en``, ``lv``, ``pt-BR``).
    language: str | None = None
    #: The network's id of the post this one answers.
    reply_to: str | None = None
    poll: Poll | None = None
    #: A comment posted right after the post (``Adapter.publish_comment``); its failure
    #: never makes the post count as failed.
    first_comment: str | None = None
    #: The posts that follow this one as a reply chain (parts 2, 3...), each its text and
    #: media (a plain text is taken as a part without media); the post's own remote id
    #: (metrics) is the first part's. ``OutgoingPost.chain`` gives them as posts.
    thread: tuple[ThreadPart, ...] = ()

    def __post_init__(self) -> None:
        if any(type(part) is not ThreadPart for part in self.thread):
            parts = tuple(
                part if isinstance(part, ThreadPart) else ThreadPart(str(part))
                for part in self.thread
            )
            object.__setattr__(self, "thread", parts)

    def given(self) -> tuple[str, ...]:
        """The names of the options that are set, in ``OPTION_NAMES`` order."""
        return tuple(
            name
            for name, value in zip(
                OPTION_NAMES,
                (
                    self.content_warning,
                    self.sensitive,
                    self.visibility,
                    self.language,
                    self.reply_to,
                    self.poll,
                    self.first_comment,
                    self.thread,
                ),
                strict=True,
            )
            if value
        )


NO_OPTIONS = PostOptions()


@dataclass(frozen=True)
class OutgoingPost:
    """A post on its way to the network (after ``prepare_post`` transforms)."""

    key: str
    account: str
    content_type: str
    text: str
    media: tuple[str, ...] = ()
    link: str | None = None
    tags: tuple[str, ...] = ()
    idempotency_key: str = ""
    due_at: datetime | None = None
    #: Set for posts already published (metrics, lookup).
    remote_id: str | None = None
    remote_url: str | None = None
    published_at: datetime | None = None
    #: Per media file, in the order of ``media``: alt text and focal point. Empty when the
    #: plan gave none for any file; use ``meta(i)``, which is safe either way.
    media_meta: tuple[MediaMeta, ...] = ()

    #: Content warning, visibility, language, reply, poll: what the plan asked for this post.
    options: PostOptions = NO_OPTIONS

    def meta(self, index: int) -> MediaMeta:
        """The metadata of ``media[index]`` (empty ``MediaMeta`` when none was given)."""
        return self.media_meta[index] if index < len(self.media_meta) else _NO_META

    def chain(self) -> tuple[OutgoingPost, ...]:
        """The post, then each part of its thread as a post of its own: the part's text and
        media, no link, tags or options (the first post carries those). One post when the
        plan gives no thread."""
        parts = tuple(
            replace(
                self,
                text=part.text,
                media=part.media,
                media_meta=part.media_meta,
                link=None,
                tags=(),
                options=NO_OPTIONS,
            )
            for part in self.options.thread
        )
        return (self, *parts)


@dataclass(frozen=True)
class Published:
    """The network accepted the post."""

    remote_id: str
    url: str | None = None
    #: Followers of the account at publish time, when the network reports it cheaply.
    followers: int | None = None


@dataclass(frozen=True)
class Metrics:
    """Counters of one post. ``None`` means the network does not say; 0 means zero."""

    remote_id: str
    likes: int | None = None
    comments: int | None = None
    shares: int | None = None
    saves: int | None = None
    clicks: int | None = None
    reach: int | None = None
    impressions: int | None = None
    views: int | None = None
    followers: int | None = None
    #: Reactions counted apart from likes (emoji reactions, LinkedIn's kinds); they count as
    #: engagements. Leave None where the network folds them into ``likes``.
    reactions: int | None = None


class IssueCode(enum.StrEnum):
    """What kind of problem an ``Issue`` is, for code to tell apart: the core matches on
    these, never on an issue's words (which may change freely). ``smm plan validate --json``
    gives each problem's code."""

    TEXT_TOO_LONG = "text_too_long"
    TOO_MANY_MEDIA = "too_many_media"
    MEDIA_REQUIRED = "media_required"
    #: A media file's content or size the network does not take.
    MEDIA_REFUSED = "media_refused"
    #: Alt text given where the network takes none.
    ALT_NOT_TAKEN = "alt_not_taken"
    ALT_TOO_LONG = "alt_too_long"
    FOCUS_NOT_TAKEN = "focus_not_taken"
    #: A per-post option (``OPTION_NAMES``) the network does not honour.
    OPTION_NOT_TAKEN = "option_not_taken"
    COMMENT_TOO_LONG = "comment_too_long"
    #: A tag the network would not read as one hashtag (a space, punctuation, no letter).
    TAG_NOT_HASHTAG = "tag_not_hashtag"
    #: A plugin raised while checking the post.
    PLUGIN_FAILED = "plugin_failed"


@dataclass(frozen=True)
class Issue:
    """Why a post would be rejected by the network, found before it is sent."""

    field: str
    message: str
    hint: str = ""
    #: What kind of problem it is (an ``IssueCode``, or a code of the plugin's own, which
    #: should name the plugin: ``"mastodon.poll_too_long"``); empty when none is given.
    code: str = ""


@dataclass(frozen=True)
class RateWindow:
    """A budget the network keeps for one class of requests, besides the policy's own (e.g.
    Mastodon's media uploads, 30 per 30 minutes). ``Adapter.publish_cost`` says how many
    requests of each class a publish makes; ``Adapter.rate_limit_windows`` what the network
    said of each lately."""

    name: str
    requests: int
    per: timedelta


@dataclass(frozen=True)
class RateLimitPolicy:
    """What the network allows; the dispatcher never sends faster than this."""

    requests: int = 60
    per: timedelta = timedelta(minutes=1)
    concurrency: int = 4  # simultaneous requests per account
    #: More windows, per class of requests, each budgeted on its own by the daemon.
    windows: tuple[RateWindow, ...] = ()


@dataclass(frozen=True)
class RateLimitStatus:
    """What the last response's headers said about the budget left."""

    remaining: int | None
    reset_at: datetime | None
    limit: int | None = None


@dataclass(frozen=True)
class VideoLimits:
    """What the network takes of a video file, checked by content at plan validation and
    again before it is sent (``scheduler.media``): its size and its duration, the one read
    from the file's container (MP4/MOV ``mvhd``). A duration the file does not state plainly
    is left for the network to judge."""

    #: The MIME types these limits apply to (each also listed in ``media_types``).
    types: tuple[str, ...] = ("video/mp4",)
    min_bytes: int = 0
    #: The largest video, in bytes; it replaces ``max_media_bytes`` for videos (None: only
    #: ``[media] fetch_max_bytes``).
    max_bytes: int | None = None
    min_seconds: float = 0.0
    max_seconds: float | None = None


#: The hint of ``option_issues``'s refusal of an option the network does not take (plan
#: validation offers a variant that drops it instead, on an item of several accounts: it
#: knows the refusal by its code, ``IssueCode.OPTION_NOT_TAKEN``).
CANNOT_HONOUR_HINT = "remove it from the item, or post it to a network that takes it"

#: One hashtag as the networks that link hashtags read one (twitter-text's and Mastodon's
#: rules agree on this much): letters, combining marks, digits, ``_``, the joiners some
#: scripts need and the middle dot, with at least one letter or mark.
_HASHTAG_CHAR = r"\p{L}\p{M}\p{Nd}_\u200c\u200d\u00b7"
_HASHTAG = regex.compile(rf"[{_HASHTAG_CHAR}]*[\p{{L}}\p{{M}}][{_HASHTAG_CHAR}]*")
_NOT_HASHTAG_CHAR = regex.compile(rf"[^{_HASHTAG_CHAR}]")

#: The hint of ``media_meta_issues``'s refusal of alt text where the network takes none
#: (a CSV plan, whose alt texts are a column of their own, is told in its terms: the
#: refusal is known by its code, ``IssueCode.ALT_NOT_TAKEN``).
NO_ALT_HINT = "remove 'alt' from the item, or post it to another account"


@dataclass(frozen=True)
class Capabilities:
    """What a network accepts and reports, declared by its adapter."""

    text_limit: int
    #: How the network counts: "characters", "graphemes", "utf16", "weighted", "url23"...
    text_counting: str = "characters"
    max_media: int = 4
    #: MIME types of the media files it takes, checked against the files' bytes (empty: any).
    media_types: tuple[str, ...] = ("image/jpeg", "image/png", "image/gif")
    #: The largest media file it takes, in bytes (None: only ``[media] fetch_max_bytes``).
    max_media_bytes: int | None = None
    #: True when the network honours our idempotency key (a retry cannot duplicate).
    idempotent: bool = False
    #: Which ``Metrics`` fields the network fills.
    metrics: frozenset[str] = frozenset()
    #: True when metrics include reach/impressions/views (ER by reach, else by followers).
    has_reach: bool = False
    rate_limit: RateLimitPolicy = field(default_factory=RateLimitPolicy)
    #: Whether a post needs text, media, or either.
    requires_media: bool = False
    #: How long the network remembers an idempotency key (None: forever / not applicable).
    idempotency_window: timedelta | None = None
    #: The longest alt text a media file may carry, as ``Adapter.alt_length`` counts it;
    #: None when the network takes no alt text (then a plan that gives some is refused).
    alt_text_limit: int | None = None
    #: Whether the network takes a focal point (``focus``) for images.
    media_focus: bool = False
    #: The per-post options (``OPTION_NAMES``) the network honours; any other is refused.
    post_options: frozenset[str] = frozenset()
    #: The longest first comment the network takes, in characters, for a network that posts
    #: it as a comment (``publish_comment``); checked at validation. None: not checked here
    #: (a network whose first comment is a reply checks it with ``reply_comment_issues``).
    comment_limit: int | None = None
    #: Size and duration limits of video files (None: videos are held to ``max_media_bytes``
    #: like any file, and their duration is not checked).
    video: VideoLimits | None = None


# --------------------------------------------------------------------------- the contract


class Adapter(ABC):
    """One network. Subclass it, declare ``platform`` and ``capabilities``, implement ``publish``.

    The core creates one adapter per platform and hands it an ``httpx.AsyncClient`` (with
    timeouts) it must use for every request, so tests can swap in ``httpx.MockTransport``.
    Methods other than ``publish`` have safe defaults.
    """

    #: The name accounts use in ``platform = "..."``.
    platform: ClassVar[str]
    capabilities: ClassVar[Capabilities]

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        #: Updated from response headers by adapters that read them; the dispatcher obeys it.
        self.rate_limit_status: dict[str, RateLimitStatus] = {}
        #: Per account, per window of ``RateLimitPolicy.windows`` (by name): what the network
        #: said of that class of requests; a read never overwrites a create's window.
        self.rate_limit_windows: dict[str, dict[str, RateLimitStatus]] = {}

    # -- offline checks -------------------------------------------------------------------

    def text_length(self, text: str) -> int:
        """The length of ``text`` as this network counts it (default: code points)."""
        return len(text)

    def compose_text(self, post: OutgoingPost) -> str:
        """The text as it will be sent (default: text, then link and tags when not in it)."""
        text = post.text
        if post.link and post.link not in text:
            text = f"{text}\n\n{post.link}"
        if post.tags:
            tags = [t if t.startswith("#") else f"#{t}" for t in post.tags]
            missing = [t for t in tags if t not in text]
            if missing:
                text = f"{text}\n\n{' '.join(missing)}"
        return text

    def validate(self, post: OutgoingPost, account: Account) -> list[Issue]:
        """Problems the network would reject the post for; checked at plan import, offline."""
        issues: list[Issue] = []
        caps = self.capabilities_for(account)
        length = self.text_length(self.compose_text(post))
        limit = self.text_limit(account)
        if length > limit:
            issues.append(
                Issue(
                    "text",
                    f"{length} characters as {self.platform} counts them ({caps.text_counting}), "
                    f"over the limit of {limit}",
                    f"shorten it by {length - limit}",
                    IssueCode.TEXT_TOO_LONG,
                )
            )
        if len(post.media) > caps.max_media:
            issues.append(
                Issue(
                    "media",
                    f"{len(post.media)} media files, {self.platform} takes at most "
                    f"{caps.max_media}",
                    code=IssueCode.TOO_MANY_MEDIA,
                )
            )
        if caps.requires_media and not post.media:
            issues.append(
                Issue(
                    "media",
                    f"{self.platform} posts need at least one media file",
                    code=IssueCode.MEDIA_REQUIRED,
                )
            )
        return issues

    def alt_length(self, text: str) -> int:
        """The length of an alt text as this network counts it (default: code points)."""
        return len(text)

    def alt_limit(self, account: Account) -> int | None:
        """The alt-text limit for ``account`` (an instance may set its own); None: no alt."""
        return self.capabilities.alt_text_limit

    def media_meta_issues(self, post: OutgoingPost, account: Account) -> list[Issue]:
        """Alt text and focal points the network cannot take: alt text where it takes none
        or longer than its limit, a focal point where it has none. The core asks it beside
        ``validate`` at plan validation, for every adapter: override ``alt_limit`` and
        ``alt_length`` rather than this."""
        issues: list[Issue] = []
        limit = self.alt_limit(account)
        for index, path in enumerate(post.media):
            meta = post.meta(index)
            where = f"media {index + 1} ({path.rsplit('/', 1)[-1]})"
            if meta.alt:
                if limit is None:
                    issues.append(
                        Issue(
                            "media",
                            f"{where}: {self.platform} takes no alt text",
                            NO_ALT_HINT,
                            IssueCode.ALT_NOT_TAKEN,
                        )
                    )
                elif (length := self.alt_length(meta.alt)) > limit:
                    issues.append(
                        Issue(
                            "media",
                            f"{where}: alt text of {length} characters, over "
                            f"{self.platform}'s limit of {limit}",
                            f"shorten it by {length - limit}",
                            IssueCode.ALT_TOO_LONG,
                        )
                    )
            if meta.focus is not None and not self.capabilities.media_focus:
                issues.append(
                    Issue(
                        "media",
                        f"{where}: {self.platform} takes no focal point",
                        "remove 'focus' for this account",
                        IssueCode.FOCUS_NOT_TAKEN,
                    )
                )
        return issues

    @classmethod
    def check_account(cls, account: Account) -> list[Issue]:
        """Problems with an account's options or credentials, for ``smm config check``.

        Runs offline, once per account; ``field`` is the key under the account's table
        (``credentials.hmac_secret``, ``options.url``). A secret may be read (when available)
        to check it, never quoted. The default finds nothing.
        """
        return []

    def text_limit(self, account: Account) -> int:
        """The text limit for ``account`` (an instance may raise the network's default)."""
        return int(account.option("max_characters", self.capabilities_for(account).text_limit))

    def capabilities_for(self, account: Account) -> Capabilities:
        """What the network accepts and reports for ``account``.

        The class's ``capabilities`` unless the account changes them: override it when an
        account's settings or kind do (a Mastodon instance with a higher limit, a Facebook
        page whose metrics include reach and a profile whose do not, a plan with a higher rate
        limit). The core asks this, not ``capabilities``, wherever the account is known:
        validation, media checks, rate limits and idempotency. Use
        ``dataclasses.replace(self.capabilities, ...)`` to change a few fields.
        """
        return self.capabilities

    def tag_issues(self, post: OutgoingPost, account: Account) -> list[Issue]:
        """The tags that would not go out as one hashtag each. The default ``compose_text``
        writes each tag as ``#tag``, and a network ends a hashtag at the first character that
        is not a letter, mark, digit or ``_`` and links none without a letter: ``#new
        product`` links ``#new``, ``#c++`` links ``#c``, ``#2026`` nothing. The core asks it
        beside ``validate`` at plan validation; return ``[]`` where tags travel as a field of
        their own (the webhook's JSON, YouTube's video tags)."""
        issues = []
        for tag in post.tags:
            word = tag.removeprefix("#")
            if _HASHTAG.fullmatch(word):
                continue
            stop = _NOT_HASHTAG_CHAR.search(word)
            why = (
                f"{self.platform} would end it at {excerpt(stop.group())}"
                if stop
                else "a hashtag needs a letter"
            )
            issues.append(
                Issue(
                    "tags",
                    f"the tag {excerpt(tag)} is not one hashtag: {why}",
                    "write each tag as one word of letters, digits and _ "
                    "(new_product or NewProduct, not new product)",
                    IssueCode.TAG_NOT_HASHTAG,
                )
            )
        return issues

    def option_issues(self, post: OutgoingPost, account: Account) -> list[Issue]:
        """The per-post options the network cannot honour: any not in
        ``capabilities.post_options``, each an issue naming the network. The core asks it
        beside ``validate`` at plan validation; override it (calling this) to check the
        values of the options the network does take (poll sizes, visibilities...)."""
        issues = [
            Issue(
                name,
                f"{self.platform} cannot honour {name!r}",
                CANNOT_HONOUR_HINT,
                IssueCode.OPTION_NOT_TAKEN,
            )
            for name in post.options.given()
            if name not in self.capabilities.post_options
        ]
        limit = self.capabilities_for(account).comment_limit
        comment = post.options.first_comment
        if limit is not None and comment and len(comment) > limit:
            issues.append(
                Issue(
                    "first_comment",
                    f"first comment: {len(comment)} characters, over {self.platform}'s "
                    f"comment limit of {limit}",
                    f"shorten it by {len(comment) - limit}",
                    IssueCode.COMMENT_TOO_LONG,
                )
            )
        return issues

    def reply_comment_issues(self, post: OutgoingPost, account: Account) -> list[Issue]:
        """The first comment checked as a text post of this network (``validate``), each
        problem on ``first_comment``: for a network whose first comment is a reply of its
        own (Mastodon, X), to call from ``option_issues``."""
        comment = post.options.first_comment
        if not comment:
            return []
        reply = replace(
            post, text=comment, media=(), media_meta=(), link=None, tags=(), options=NO_OPTIONS
        )
        return [
            Issue("first_comment", f"first comment: {issue.message}", issue.hint, issue.code)
            for issue in self.validate(reply, account)
        ]

    # -- network calls --------------------------------------------------------------------

    @abstractmethod
    async def publish(
        self, post: OutgoingPost, account: Account, idempotency_key: str
    ) -> Published:
        """Publish ``post`` once. Raise a ``PublishError`` subclass for every failure.

        Contract: the same ``idempotency_key`` is passed on every retry of the same post. If
        the network honours it (``capabilities.idempotent``), send it so a retry after an
        unknown outcome cannot duplicate. Raise ``Transient``/``RateLimited`` only when the
        request certainly did not take effect; otherwise ``OutcomeUnknown``.
        """

    def publish_cost(self, post: OutgoingPost, account: Account) -> Mapping[str, int]:
        """How many requests of each ``RateLimitPolicy.windows`` class publishing ``post``
        makes (by window name); the daemon waits until every window has room. Default:
        none beyond the policy's own one request per publish."""
        return {}

    async def publish_comment(self, post: OutgoingPost, account: Account, text: str) -> Published:
        """Post ``text`` as the first comment on the published ``post`` (``post.remote_id``
        set), or as its first reply where the network has no comments. The core calls it
        once, after the post is recorded published, for networks that list "first_comment"
        in ``capabilities.post_options``; a failure is reported and never touches the post.
        Raise a ``PublishError`` for every failure. The default takes no comments."""
        raise Rejected(f"{self.platform} takes no comments")

    async def fetch_metrics(
        self, posts: Sequence[OutgoingPost], account: Account
    ) -> Mapping[str, Metrics]:
        """Current counters for published ``posts`` (by remote id); batch where the API allows.

        Posts the network no longer knows are left out. The default reports nothing.
        """
        return {}

    async def lookup(self, post: OutgoingPost, account: Account) -> Published | None:
        """Settle an ``unconfirmed`` post: the published post if the network has it, None if
        it certainly does not. Raise ``OutcomeUnknown`` when it cannot tell (the default)."""
        raise OutcomeUnknown(f"{self.platform} cannot look posts up")
