"""The Mastodon adapter: ``POST /api/v1/statuses`` with an ``Idempotency-Key``.

Mastodon remembers the key for an hour and answers a repeat with the status the first
request created, so a retry after a lost answer cannot publish twice within that window.
See docs/plugins/networks/mastodon.md.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any, ClassVar
from urllib.parse import quote

import httpx

from scheduler import media
from scheduler.account_settings import settings_issues
from scheduler.adapter import (
    OPTION_NAMES,
    Account,
    Adapter,
    AuthExpired,
    Capabilities,
    Issue,
    MediaMeta,
    Metrics,
    OutcomeUnknown,
    OutgoingPost,
    PostOptions,
    Published,
    PublishError,
    RateLimitPolicy,
    RateWindow,
    Rejected,
)
from scheduler.text import grapheme_count
from smm_mastodon import api
from smm_mastodon.instance import InstanceLimits, LimitsCache
from smm_mastodon.media import MediaUploader
from smm_mastodon.text import DEFAULT_URL_LENGTH, status_length

__all__ = ["MastodonAdapter"]

#: The account options this plugin reads (docs/plugins/networks/mastodon.md).
ACCOUNT_OPTIONS = ("instance", "visibility", "language", "max_characters")


_VISIBILITIES = ("public", "unlisted", "private", "direct")
#: The plan's network-neutral visibilities in Mastodon's words.
_VISIBILITY = {
    "public": "public",
    "unlisted": "unlisted",
    "followers": "private",
    "direct": "direct",
}
# What stock Mastodon 4.6 accepts, as its instance document lists it
# (configuration.media_attachments.supported_mime_types of tests/fixtures/mastodon/
# test_instance.yaml); the instance's own list replaces it once read.
_MEDIA_TYPES = (
    "image/jpeg",
    "image/png",
    "image/gif",
    "image/heic",
    "image/heif",
    "image/webp",
    "image/avif",
    "video/webm",
    "video/mp4",
    "video/quicktime",
    "video/ogg",
    "audio/wave",
    "audio/wav",
    "audio/x-wav",
    "audio/x-pn-wave",
    "audio/vnd.wave",
    "audio/ogg",
    "audio/vorbis",
    "audio/mpeg",
    "audio/mp3",
    "audio/webm",
    "audio/flac",
    "audio/aac",
    "audio/m4a",
    "audio/x-m4a",
    "audio/mp4",
    "audio/3gpp",
    "video/x-ms-asf",
)


def _count(status: Mapping[str, Any], key: str) -> int | None:
    value = status.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _followers(status: Mapping[str, Any]) -> int | None:
    account = status.get("account")
    return _count(account, "followers_count") if isinstance(account, Mapping) else None


class MastodonAdapter(Adapter):
    """Mastodon and compatible servers. Options: ``instance`` (base URL), ``visibility``,
    ``language``, ``max_characters``; credential ``access_token``."""

    platform = "mastodon"
    capabilities = Capabilities(
        text_limit=500,
        text_counting="graphemes, URL = 23, @user@domain = @user",
        max_media=4,
        media_types=_MEDIA_TYPES,
        idempotent=True,
        idempotency_window=timedelta(hours=1),
        # Mastodon's default description limit; the instance's own replaces it once read.
        alt_text_limit=1500,
        media_focus=True,
        post_options=frozenset(OPTION_NAMES),
        metrics=frozenset({"likes", "comments", "shares", "followers"}),
        has_reach=False,
        # Mastodon keeps several windows per account: 300 requests per 5 minutes in all,
        # 300 status creations per 3 hours, 30 media uploads per 30 minutes. A publish takes
        # 1 to 9 requests (publish_cost); each window is budgeted on its own.
        rate_limit=RateLimitPolicy(
            requests=300,
            per=timedelta(minutes=5),
            concurrency=4,
            windows=(
                RateWindow("requests", 300, timedelta(minutes=5)),
                RateWindow("statuses", 300, timedelta(hours=3)),
                RateWindow("media", 30, timedelta(minutes=30)),
            ),
        ),
    )
    #: Seconds between checks of media still being processed, and how many checks.
    media_poll_interval: ClassVar[float] = 1.0
    media_poll_attempts: ClassVar[int] = 60

    def __init__(self, client: httpx.AsyncClient) -> None:
        super().__init__(client)
        self.limits = LimitsCache(client)

    # -- offline checks -------------------------------------------------------------------

    @classmethod
    def check_account(cls, account: Account) -> list[Issue]:
        """The server and a reference to the access token are required; an option this plugin
        does not read is a typo."""
        return settings_issues(
            account,
            known=ACCOUNT_OPTIONS,
            required=[
                ("instance", "the Mastodon server to publish to", '"https://mastodon.social"')
            ],
            credentials=[("access_token", "the account's access token")],
            urls=["instance"],
        )

    def text_length(self, text: str) -> int:
        """Graphemes, with every URL as 23 and remote mentions without their domain."""
        return status_length(text, DEFAULT_URL_LENGTH)

    def text_limit(self, account: Account) -> int:
        """``max_characters`` from the options, else from the instance, else 500."""
        override = account.option("max_characters")
        if override is not None:
            return int(override)
        return self._known_limits(account).max_characters

    def alt_limit(self, account: Account) -> int | None:
        """The instance's ``description_limit`` once read (1,500 before)."""
        return self._known_limits(account).description_limit

    def validate(self, post: OutgoingPost, account: Account) -> list[Issue]:
        """Length as Mastodon counts it, and media count and types, against the instance's
        limits when they have been read (the defaults before)."""
        limits = self._known_limits(account)
        issues: list[Issue] = []
        found = self._length_issue(
            "text", "", self.compose_text(post), post.options.content_warning, account
        )
        if found is not None:
            issues.append(found)
        if len(post.media) > limits.max_media_attachments:
            issues.append(
                Issue(
                    "media",
                    f"{len(post.media)} media files, the instance takes at most "
                    f"{limits.max_media_attachments}",
                )
            )
        accepted = limits.supported_mime_types or self.capabilities.media_types
        for path in post.media:
            kind = media.guess_type(path)
            if not media.takes(kind, accepted):
                issues.append(Issue("media", f"{path}: Mastodon does not take {kind or 'it'}"))
        return issues

    def _length_issue(
        self, field: str, label: str, text: str, warning: str | None, account: Account
    ) -> Issue | None:
        """``text`` over the instance's limit as ``StatusLengthValidator`` counts it: the
        content warning (``spoiler_text``) and the text together, URLs at their fixed cost."""
        url_length = self._known_limits(account).characters_reserved_per_url
        length = status_length(text, url_length)
        if warning:
            length += grapheme_count(warning)
        limit = self.text_limit(account)
        if length <= limit:
            return None
        included = ", the content warning included" if warning else ""
        return Issue(
            field,
            f"{label}{length} characters as Mastodon counts them (graphemes, every URL as "
            f"{url_length}{included}), over the limit of {limit}",
            f"shorten it by {length - limit}",
        )

    def option_issues(self, post: OutgoingPost, account: Account) -> list[Issue]:
        """Every option is Mastodon's; a poll within the instance's poll limits, and not
        beside media (a status carries one or the other). The first comment is a reply,
        held to a status's length; the content warning goes on every part of a thread and
        counts in each part's length."""
        issues = super().option_issues(post, account)
        issues += self.reply_comment_issues(post, account)
        warning = post.options.content_warning
        parts = post.chain()
        for index, part in enumerate(parts[1:] if warning else ()):
            if self._length_issue("", "", part.text, None, account) is not None:
                continue  # too long on its own: reported with the part's other problems
            label = f"thread part {index + 2} of {len(parts)}: "
            found = self._length_issue(f"thread[{index}]", label, part.text, warning, account)
            if found is not None:
                issues.append(found)
        poll = post.options.poll
        if poll is None:
            return issues
        limits = self._known_limits(account)
        seconds = int(poll.duration.total_seconds())
        if len(poll.options) > limits.poll_max_options:
            issues.append(
                Issue(
                    "poll",
                    f"{len(poll.options)} poll options, the instance takes at most "
                    f"{limits.poll_max_options}",
                )
            )
        for option in poll.options:
            if len(option) > limits.poll_max_characters:
                issues.append(
                    Issue(
                        "poll",
                        f"poll option {option[:20]!r}... has {len(option)} characters, over "
                        f"the instance's {limits.poll_max_characters}",
                    )
                )
        if not limits.poll_min_expiration <= seconds <= limits.poll_max_expiration:
            issues.append(
                Issue(
                    "poll",
                    f"a poll open for {seconds} s, the instance takes "
                    f"{limits.poll_min_expiration} to {limits.poll_max_expiration} s",
                )
            )
        if post.media:
            issues.append(Issue("poll", "a Mastodon status takes a poll or media, not both"))
        return issues

    # -- network calls --------------------------------------------------------------------

    async def publish(
        self, post: OutgoingPost, account: Account, idempotency_key: str
    ) -> Published:
        """Upload the media, then create the status with ``Idempotency-Key``."""
        base_url = self._base_url(account)
        token = account.secret("access_token")
        await self.limits.get(base_url)  # so the checks below use the instance's limits
        issues = self.validate(post, account)
        if issues:
            raise Rejected("; ".join(issue.message for issue in issues))

        form: dict[str, Any] = {"status": self.compose_text(post)}
        visibility = account.option("visibility")
        if visibility:
            if visibility not in _VISIBILITIES:
                raise Rejected(
                    f"visibility {visibility!r} is not one of {', '.join(_VISIBILITIES)}"
                )
            form["visibility"] = visibility
        if account.option("language"):
            form["language"] = account.option("language")

        form.update(_option_fields(post.options))
        headers = {"Authorization": f"Bearer {token}"}
        uploader = MediaUploader(
            self.client,
            base_url,
            headers,
            observe=lambda response: self._observe(account, response),
            secrets=(token,),
            poll_interval=self.media_poll_interval,
            poll_attempts=self.media_poll_attempts,
        )
        limits = self._known_limits(account)
        accepted = replace(
            self.capabilities,
            media_types=limits.supported_mime_types or self.capabilities.media_types,
        )
        media_ids = [
            await uploader.upload(path, accepted, post.meta(index))
            for index, path in enumerate(post.media)
        ]
        if media_ids:
            form["media_ids[]"] = media_ids
        key = idempotency_key or post.idempotency_key or post.key
        response = await self._send(
            account,
            "POST",
            f"{base_url}/api/v1/statuses",
            headers={**headers, "Idempotency-Key": key},
            data=form,
            creating=True,
            secrets=(token,),
        )
        published = self._published(response)
        if post.options.thread:

            async def upload(path: str, meta: MediaMeta) -> str:
                return await uploader.upload(path, accepted, meta)

            await self._thread(post, account, form, headers, key, published.remote_id, upload)
        return published

    async def _thread(
        self,
        post: OutgoingPost,
        account: Account,
        form: Mapping[str, Any],
        headers: Mapping[str, str],
        key: str,
        first_id: str,
        upload: Callable[[str, MediaMeta], Awaitable[str]],
    ) -> None:
        """The thread's parts as a reply chain, each with an ``Idempotency-Key`` of its own
        (the post's key and the part's number): a retry after a failure at part N sends the
        chain again, Mastodon answers each part already created with that status, and the
        chain goes on from the first part it does not have; no part is posted twice within
        the key's hour (the daemon's idempotency window), none skipped."""
        base_url = self._base_url(account)
        shared = {k: form[k] for k in ("visibility", "language", "spoiler_text") if k in form}
        parts = post.chain()
        total = len(parts)
        previous = first_id
        for number, part in enumerate(parts[1:], 2):
            try:
                data: dict[str, Any] = {**shared, "status": part.text, "in_reply_to_id": previous}
                # The part's own media; an upload creates nothing visible, so it is safe to
                # repeat when the chain resumes (the part itself is not: its key guards it).
                media_ids = [await upload(path, meta) for path, meta in _files(part)]
                if media_ids:
                    data["media_ids[]"] = media_ids
                    if "sensitive" in form:
                        data["sensitive"] = form["sensitive"]
                response = await self._send(
                    account,
                    "POST",
                    f"{base_url}/api/v1/statuses",
                    headers={**headers, "Idempotency-Key": f"{key}-part{number}"},
                    data=data,
                    creating=True,
                    secrets=tuple(v.removeprefix("Bearer ") for v in headers.values()),
                )
            except PublishError as exc:
                exc.message = f"thread part {number} of {total}: {exc.message}"
                exc.args = (exc.message,)
                raise
            previous = self._published(response).remote_id

    async def publish_comment(self, post: OutgoingPost, account: Account, text: str) -> Published:
        """The first reply to the status (``in_reply_to_id``), seen by whom the status is
        seen, with an ``Idempotency-Key`` of its own."""
        base_url = self._base_url(account)
        token = account.secret("access_token")
        form: dict[str, Any] = {"status": text, "in_reply_to_id": post.remote_id or ""}
        visibility = post.options.visibility
        if visibility:
            form["visibility"] = _VISIBILITY[visibility]
        elif account.option("visibility") in _VISIBILITIES:
            form["visibility"] = account.option("visibility")
        key = f"{post.idempotency_key or post.key}-comment"
        response = await self._send(
            account,
            "POST",
            f"{base_url}/api/v1/statuses",
            headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key},
            data=form,
            creating=True,
            secrets=(token,),
        )
        return self._published(response)

    async def fetch_metrics(
        self, posts: Sequence[OutgoingPost], account: Account
    ) -> Mapping[str, Metrics]:
        """Favourites, replies and boosts + quotes of each status (one request each); the
        account's follower count comes with every status."""
        base_url = self._base_url(account)
        token = account.secret("access_token")
        result: dict[str, Metrics] = {}
        for post in posts:
            if not post.remote_id:
                continue
            url = f"{base_url}/api/v1/statuses/{quote(post.remote_id, safe='')}"
            response = await self._send(
                account,
                "GET",
                url,
                headers={"Authorization": f"Bearer {token}"},
                secrets=(token,),
                missing_ok=True,
            )
            status = api.json_body(response)
            if response.status_code == 404 or not isinstance(status, Mapping):
                continue  # deleted (or never ours): Mastodon no longer has it
            reblogs, quotes = _count(status, "reblogs_count"), _count(status, "quotes_count")
            result[post.remote_id] = Metrics(
                remote_id=post.remote_id,
                likes=_count(status, "favourites_count"),
                comments=_count(status, "replies_count"),
                shares=None if reblogs is None else reblogs + (quotes or 0),
                followers=_followers(status),
            )
        return result

    async def lookup(self, post: OutgoingPost, account: Account) -> Published | None:
        """Mastodon cannot find a status by idempotency key: always OutcomeUnknown.

        The way to settle an unconfirmed post is to publish again with the same key within
        the hour: Mastodon then returns the original status instead of creating another.
        """
        raise OutcomeUnknown(
            "Mastodon cannot look a status up by idempotency key; publishing again with the "
            "same key within an hour returns the original status instead of a duplicate"
        )

    # -- internals ------------------------------------------------------------------------

    @staticmethod
    def _base_url(account: Account) -> str:
        instance = account.option("instance")
        if not instance:
            # A configuration problem only a person can fix: pause the account.
            raise AuthExpired(f"account {account.name}: option 'instance' is not set")
        base = str(instance).rstrip("/")
        return base if "://" in base else f"https://{base}"

    def _known_limits(self, account: Account) -> InstanceLimits:
        instance = account.option("instance")
        known = self.limits.known(self._base_url(account)) if instance else None
        return known or InstanceLimits()

    def publish_cost(self, post: OutgoingPost, account: Account) -> Mapping[str, int]:
        """One status creation, one upload per media file (and a check of each still being
        processed), and the instance document at most once a day."""
        media = sum(len(part.media) for part in post.chain())
        statuses = 1 + len(post.options.thread)
        return {"requests": statuses + 2 * media, "statuses": statuses, "media": media}

    def _observe(self, account: Account, response: httpx.Response) -> None:
        """Keep what the headers say under the window the request counts in: creating a
        status, uploading media, or any other call; a read never overwrites the create's."""
        status = api.rate_limit_status(response.headers)
        if status is None:
            return
        request = response.request
        path = request.url.path.rstrip("/")
        if request.method == "POST" and path.endswith("/api/v1/statuses"):
            window = "statuses"
            self.rate_limit_status[account.name] = status
        elif request.method == "POST" and path.endswith(("/api/v2/media", "/api/v1/media")):
            window = "media"
        else:
            window = "requests"
        self.rate_limit_windows.setdefault(account.name, {})[window] = status

    async def _send(
        self,
        account: Account,
        method: str,
        url: str,
        *,
        headers: dict[str, str],
        data: dict[str, Any] | None = None,
        creating: bool = False,
        missing_ok: bool = False,
        secrets: tuple[str, ...] = (),
    ) -> httpx.Response:
        """One authenticated request; every failure raised as a ``PublishError``."""
        try:
            response = await self.client.request(method, url, headers=headers, data=data)
        except httpx.HTTPError as exc:
            raise api.transport_error(exc, creating=creating) from exc
        self._observe(account, response)
        if response.is_success or (missing_ok and response.status_code == 404):
            return response
        raise api.error_for(response, creating=creating, secrets=secrets)

    @staticmethod
    def _published(response: httpx.Response) -> Published:
        status = api.json_body(response)
        if not isinstance(status, Mapping):
            kind = response.headers.get("content-type", "no content type")
            raise OutcomeUnknown(
                f"Mastodon answered {response.status_code} with {kind}, not a status"
            )
        if "params" in status and "scheduled_at" in status:
            raise OutcomeUnknown(
                f"Mastodon scheduled the status (scheduled status {status.get('id')}) "
                "instead of publishing it"
            )
        status_id = status.get("id")
        if not isinstance(status_id, str) or not status_id:
            raise OutcomeUnknown("Mastodon's answer to the new status has no id")
        url = status.get("url") or status.get("uri")
        return Published(
            remote_id=status_id,
            url=url if isinstance(url, str) else None,
            followers=_followers(status),
        )


def _files(post: OutgoingPost) -> list[tuple[str, MediaMeta]]:
    """Each media file of ``post`` with its alt text and focal point."""
    return [(path, post.meta(index)) for index, path in enumerate(post.media)]


def _option_fields(options: PostOptions) -> dict[str, Any]:
    """The status form fields of the plan's per-post options (POST /api/v1/statuses:
    spoiler_text, sensitive, visibility, language, in_reply_to_id, poll[...])."""
    fields: dict[str, Any] = {}
    if options.content_warning:
        fields["spoiler_text"] = options.content_warning
    if options.sensitive:
        fields["sensitive"] = "true"
    if options.visibility:
        fields["visibility"] = _VISIBILITY[options.visibility]
    if options.language:
        fields["language"] = options.language
    if options.reply_to:
        fields["in_reply_to_id"] = options.reply_to
    if options.poll is not None:
        fields["poll[options][]"] = list(options.poll.options)
        fields["poll[expires_in]"] = str(int(options.poll.duration.total_seconds()))
        if options.poll.multiple:
            fields["poll[multiple]"] = "true"
    return fields
