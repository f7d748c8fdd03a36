"""The Bluesky adapter: posts are ``app.bsky.feed.post`` records in the account's repository.

Publishing is ``com.atproto.repo.createRecord`` under a record key derived from the
idempotency key (``smm_bluesky.tid``), so no retry can publish twice: the second attempt
finds the record there and reports it as published. See docs/plugins/networks/bluesky.md.
"""

from __future__ import annotations

import contextlib
import mimetypes
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import httpx

from scheduler.account_settings import settings_issues
from scheduler.adapter import (
    Account,
    Adapter,
    Capabilities,
    Issue,
    Metrics,
    OutcomeUnknown,
    OutgoingPost,
    Published,
    PublishError,
    RateLimitPolicy,
    Rejected,
    Transient,
)
from scheduler.media import read as read_media
from scheduler.text import grapheme_count
from smm_bluesky import xrpc
from smm_bluesky.facets import facet, find_spans
from smm_bluesky.session import Session, SessionStore
from smm_bluesky.tid import tid_for_key

__all__ = ["BlueskyAdapter"]

POST_COLLECTION = "app.bsky.feed.post"
_IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp", "image/gif")
_RECORD_EXISTS_ERRORS = frozenset({"InvalidSwap", "RecordAlreadyExists"})
#: Content ids remembered (a thread's part asks for its parent's as soon as it is made).
_CIDS_KEPT = 256


def _record_exists(exc: xrpc.XrpcError) -> bool:
    """True when a create failed because a record already has our key.

    Servers word this differently (409, ``InvalidSwap``, "already exists"; the reference
    PDS lets its tree's "There is already a value at key" escape as a 500), so every
    candidate is checked by reading the record back.
    """
    text = exc.message.lower()
    return (
        exc.status == 409
        or exc.error in _RECORD_EXISTS_ERRORS
        or "already exist" in text
        or "already a value" in text
    )


def _count(view: Mapping[str, Any], key: str) -> int | None:
    value = view.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


#: The account options this plugin reads (docs/plugins/networks/bluesky.md).
ACCOUNT_OPTIONS = ("handle", "pds", "langs")


class BlueskyAdapter(Adapter):
    """Bluesky (AT Protocol). Options: ``handle``, ``pds`` (default https://bsky.social),
    ``langs`` (e.g. ``["en"]``); credential ``app_password``."""

    platform = "bluesky"
    capabilities = Capabilities(
        text_limit=300,
        text_counting="graphemes",
        max_media=4,
        media_types=_IMAGE_TYPES,
        # app.bsky.embed.images takes blobs of at most 1,000,000 bytes.
        max_media_bytes=1_000_000,
        idempotent=True,
        idempotency_window=None,  # a record key is taken for good
        metrics=frozenset({"likes", "comments", "shares", "followers"}),
        has_reach=False,
        # app.bsky.embed.images#image.alt has no lexicon cap; Bluesky's app stops at 2,000
        # graphemes, and so does this plugin, so that the post reads the same everywhere.
        alt_text_limit=2000,
        # The record's langs; threads as reply chains (record keys make each part idempotent).
        post_options=frozenset({"language", "thread"}),
        # A PDS allows 5,000 write points an hour and a post costs 3.
        rate_limit=RateLimitPolicy(requests=1600, per=timedelta(hours=1), concurrency=4),
    )
    #: The lexicon caps post text at 3,000 UTF-8 bytes besides the 300 graphemes.
    max_text_bytes: ClassVar[int] = 3000
    #: ``app.bsky.embed.images`` takes images up to 1,000,000 bytes.
    max_image_bytes: ClassVar[int] = 1_000_000
    #: ``app.bsky.feed.getPosts`` takes at most 25 URIs per call.
    metrics_batch: ClassVar[int] = 25

    def __init__(self, client: httpx.AsyncClient) -> None:
        super().__init__(client)
        self.sessions = SessionStore(client, observe=self._observe)
        #: The content id of the records this adapter made or found lately, by URI: a reply
        #: names its root and parent by URI and CID. Only a thread's parts need them, right
        #: after they are made, so the oldest are forgotten past ``_CIDS_KEPT``: one entry per
        #: post ever published would grow with the daemon's lifetime.
        self._cids: dict[str, str] = {}

    # -- offline checks -------------------------------------------------------------------

    @classmethod
    def check_account(cls, account: Account) -> list[Issue]:
        """The handle and a reference to the app password are required;
        an option this plugin does not read is a typo."""
        return settings_issues(
            account,
            known=ACCOUNT_OPTIONS,
            required=[("handle", "the account's handle", '"brand.bsky.social"')],
            credentials=[("app_password", "the account's app password")],
            urls=["pds"],
        )

    def text_length(self, text: str) -> int:
        """Graphemes, as Bluesky counts (a family emoji or a flag is one)."""
        return grapheme_count(text)

    def alt_length(self, text: str) -> int:
        """Graphemes, as Bluesky's app counts alt text."""
        return grapheme_count(text)

    def validate(self, post: OutgoingPost, account: Account) -> list[Issue]:
        """The core checks plus Bluesky's byte cap on text and its image types and sizes."""
        issues = super().validate(post, account)
        size = len(self.compose_text(post).encode("utf-8"))
        if size > self.max_text_bytes:
            issues.append(
                Issue(
                    "text",
                    f"{size} bytes of UTF-8, Bluesky takes at most {self.max_text_bytes}",
                    "shorten it, or use fewer characters outside ASCII",
                )
            )
        for path in post.media:
            kind = mimetypes.guess_type(path)[0]
            if kind not in _IMAGE_TYPES:
                issues.append(
                    Issue("media", f"{path}: Bluesky posts take JPEG, PNG, WebP or GIF images")
                )
            elif Path(path).is_file() and Path(path).stat().st_size > self.max_image_bytes:
                issues.append(
                    Issue(
                        "media",
                        f"{path}: {Path(path).stat().st_size} bytes, Bluesky takes images up "
                        f"to {self.max_image_bytes}",
                        "resize or recompress it",
                    )
                )
        return issues

    # -- network calls --------------------------------------------------------------------

    async def publish(
        self, post: OutgoingPost, account: Account, idempotency_key: str
    ) -> Published:
        """Create the post record under the key derived from ``idempotency_key``."""
        issues = self.validate(post, account)
        if issues:  # refused before anything is sent, in Bluesky's own terms
            raise Rejected("; ".join(issue.message for issue in issues))
        rkey = tid_for_key(idempotency_key or post.idempotency_key or post.key)
        async with self._translated(account):
            session = await self.sessions.get(account)
            record = await self._record(post, account, session)
        async with self._translated(account, may_have_taken_effect=True):
            first = await self._create(account, session, rkey, record)
        if post.options.thread:
            key = idempotency_key or post.idempotency_key or post.key
            await self._thread(post, account, session, key, first, record.get("langs"))
        return first

    async def _thread(
        self,
        post: OutgoingPost,
        account: Account,
        session: Session,
        key: str,
        first: Published,
        langs: Any,
    ) -> None:
        """The thread's parts as replies (``reply.root`` the first part, ``reply.parent`` the
        part before), each under the record key of the post's key and its number: a retry
        after a failure at part N finds the parts already made under their keys and goes on
        from part N; none is created twice, none skipped."""
        root = self._ref(first.remote_id)
        parent = root
        parts = post.chain()
        total = len(parts)
        for number, part in enumerate(parts[1:], 2):
            try:
                async with self._translated(account):
                    # The part's text, facets and images, as a post of its own.
                    record = await self._record(part, account, session)
                    record.pop("langs", None)
                    if langs:
                        record["langs"] = langs
                    record["reply"] = {"root": root, "parent": parent}
                async with self._translated(account, may_have_taken_effect=True):
                    made = await self._create(
                        account, session, tid_for_key(f"{key}-part{number}"), record
                    )
            except PublishError as exc:
                exc.message = f"thread part {number} of {total}: {exc.message}"
                exc.args = (exc.message,)
                raise
            parent = self._ref(made.remote_id)

    def _ref(self, uri: str) -> dict[str, str]:
        """A strong reference to a record made or found in this call."""
        cid = self._cids.get(uri)
        if cid is None:
            raise Transient(f"Bluesky gave no CID for {uri}; the thread goes on at the retry")
        return {"uri": uri, "cid": cid}

    async def fetch_metrics(
        self, posts: Sequence[OutgoingPost], account: Account
    ) -> Mapping[str, Metrics]:
        """Likes, replies and reposts + quotes of ``posts``, 25 per ``getPosts`` call; the
        account's follower count goes in every entry."""
        uris = [p.remote_id for p in posts if p.remote_id and p.remote_id.startswith("at://")]
        if not uris:
            return {}
        result: dict[str, Metrics] = {}
        async with self._translated(account):
            followers = await self._followers(account)
            for start in range(0, len(uris), self.metrics_batch):
                batch = uris[start : start + self.metrics_batch]
                body = await self._authed(account, "app.bsky.feed.getPosts", params={"uris": batch})
                for view in body.get("posts") or ():
                    uri = view.get("uri") if isinstance(view, dict) else None
                    if uri in batch:  # posts Bluesky no longer has are simply absent
                        reposts, quotes = _count(view, "repostCount"), _count(view, "quoteCount")
                        result[uri] = Metrics(
                            remote_id=uri,
                            likes=_count(view, "likeCount"),
                            comments=_count(view, "replyCount"),
                            shares=None if reposts is None else reposts + (quotes or 0),
                            followers=followers,
                        )
        return result

    async def lookup(self, post: OutgoingPost, account: Account) -> Published | None:
        """The post if its record exists under the derived key, None if it certainly does not;
        OutcomeUnknown when Bluesky cannot be asked."""
        rkey = tid_for_key(post.idempotency_key or post.key)
        try:
            async with self._translated(account):
                session = await self.sessions.get(account)
                return await self._existing(account, session, rkey)
        except OutcomeUnknown:
            raise
        except PublishError as exc:
            raise OutcomeUnknown(
                f"cannot tell whether the post exists: {exc.message}",
                http_status=exc.http_status,
                retry_at=exc.retry_at,
                code=exc.code,
            ) from exc

    # -- internals ------------------------------------------------------------------------

    def _observe(self, account: Account, response: httpx.Response) -> None:
        status = xrpc.rate_limit_status(response.headers)
        if status is not None:
            self.rate_limit_status[account.name] = status

    def _secrets(self, account: Account) -> list[str]:
        """What must never appear in an error message: the app password and the tokens."""
        secrets = []
        with contextlib.suppress(PublishError):  # not configured: nothing to hide
            secrets.append(account.secret("app_password"))
        session = self.sessions.cached(account)
        if session is not None:
            secrets += [session.access_jwt, session.refresh_jwt]
        return secrets

    @contextlib.asynccontextmanager
    async def _translated(
        self, account: Account, *, may_have_taken_effect: bool = False
    ) -> AsyncIterator[None]:
        """Turn every failure inside into a ``PublishError`` (secrets redacted)."""
        try:
            yield
        except xrpc.XrpcError as exc:
            raise xrpc.classify(exc, secrets=self._secrets(account)) from None
        except xrpc.BadResponse as exc:
            cls = OutcomeUnknown if may_have_taken_effect else Transient
            raise cls(str(exc)) from None
        except httpx.HTTPError as exc:
            raise xrpc.classify_transport(exc, may_have_taken_effect=may_have_taken_effect) from exc

    async def _authed(self, account: Account, nsid: str, **kwargs: Any) -> dict[str, Any]:
        """Call ``nsid`` on the account's PDS as the account; renew the session once if the
        token is refused."""
        session = await self.sessions.get(account)
        observe = lambda response: self._observe(account, response)  # noqa: E731
        try:
            return await xrpc.call(
                self.client, session.pds, nsid, token=session.access_jwt, observe=observe, **kwargs
            )
        except xrpc.XrpcError as exc:
            if not exc.auth_problem:
                raise
        session = await self.sessions.renew(account, session)
        return await xrpc.call(
            self.client, session.pds, nsid, token=session.access_jwt, observe=observe, **kwargs
        )

    async def _record(
        self, post: OutgoingPost, account: Account, session: Session
    ) -> dict[str, Any]:
        text = self.compose_text(post)
        record: dict[str, Any] = {"$type": POST_COLLECTION, "text": text, "createdAt": _now()}
        langs = account.option("langs")
        if post.options.language:
            langs = [post.options.language]
        if langs:
            record["langs"] = [langs] if isinstance(langs, str) else list(langs)
        spans = find_spans(text)
        dids = await self._resolve_handles(
            account, session, {s.value for s in spans if s.kind == "mention"}
        )
        facets = [f for f in (facet(s, dids) for s in spans) if f is not None]
        if facets:
            record["facets"] = facets
        if post.media:
            images = [
                {"alt": post.meta(i).alt or "", "image": await self._upload(account, p)}
                for i, p in enumerate(post.media)
            ]
            record["embed"] = {"$type": "app.bsky.embed.images", "images": images}
        return record

    async def _resolve_handles(
        self, account: Account, session: Session, handles: set[str]
    ) -> dict[str, str]:
        """DIDs of the mentioned handles; a handle that does not exist stays plain text."""
        dids: dict[str, str] = {}
        for handle in sorted(handles):
            try:
                body = await xrpc.call(
                    self.client,
                    session.pds,
                    "com.atproto.identity.resolveHandle",
                    params={"handle": handle},
                    observe=lambda response: self._observe(account, response),
                )
            except xrpc.XrpcError as exc:
                if exc.status == 400:  # "Unable to resolve handle"
                    continue
                raise
            did = body.get("did")
            if isinstance(did, str) and did.startswith("did:"):
                dids[handle] = did
        return dids

    async def _upload(self, account: Account, path: str) -> Any:
        # Only through the core: confined to the media roots, checked by content and size.
        image = await read_media(
            path, replace(self.capabilities, max_media_bytes=self.max_image_bytes)
        )
        body = await self._authed(
            account, "com.atproto.repo.uploadBlob", content=image.content, content_type=image.mime
        )
        blob = body.get("blob")
        if not isinstance(blob, dict):
            raise xrpc.BadResponse("uploadBlob returned no blob")
        return blob

    async def _create(
        self, account: Account, session: Session, rkey: str, record: dict[str, Any]
    ) -> Published:
        try:
            body = await self._authed(
                account,
                "com.atproto.repo.createRecord",
                json={
                    "repo": session.did,
                    "collection": POST_COLLECTION,
                    "rkey": rkey,
                    "record": record,
                },
            )
        except xrpc.XrpcError as exc:
            if not (exc.status >= 500 or _record_exists(exc)):
                raise
            # An earlier attempt may have created it: our record key says for sure.
            try:
                existing = await self._existing(account, session, rkey)
            except (xrpc.XrpcError, xrpc.BadResponse, httpx.HTTPError) as check:
                raise OutcomeUnknown(
                    f"creating the post failed ({exc}) and checking for it failed too "
                    f"({type(check).__name__})",
                    http_status=exc.status,
                    code=exc.error,
                ) from None
            if existing is not None:
                return existing
            if _record_exists(exc):
                raise OutcomeUnknown(
                    f"Bluesky says the record exists but does not return it: {exc}",
                    http_status=exc.status,
                    code=exc.error,
                ) from None
            raise
        uri = body.get("uri")
        if not isinstance(uri, str) or not uri.startswith("at://"):
            raise xrpc.BadResponse("createRecord returned no at:// URI")
        self._remember_cid(uri, body)
        return self._published(session, uri, rkey)

    def _remember_cid(self, uri: str, body: Mapping[str, Any]) -> None:
        cid = body.get("cid")
        if isinstance(cid, str) and cid:
            self._cids[uri] = cid
            if len(self._cids) > _CIDS_KEPT:
                del self._cids[next(iter(self._cids))]  # the oldest (dicts keep their order)

    async def _existing(self, account: Account, session: Session, rkey: str) -> Published | None:
        """The post under ``rkey`` if the repository has it, None if it has not."""
        try:
            body = await self._authed(
                account,
                "com.atproto.repo.getRecord",
                params={"repo": session.did, "collection": POST_COLLECTION, "rkey": rkey},
            )
        except xrpc.XrpcError as exc:
            if exc.error == "RecordNotFound":
                return None
            raise
        uri = body.get("uri")
        if not isinstance(uri, str) or not uri.startswith("at://"):
            raise xrpc.BadResponse("getRecord returned no at:// URI")
        self._remember_cid(uri, body)
        return self._published(session, uri, rkey)

    async def _followers(self, account: Account) -> int | None:
        """The account's follower count now; None when Bluesky does not say (it never fails
        the metrics it goes with)."""
        session = await self.sessions.get(account)
        try:
            body = await self._authed(
                account, "app.bsky.actor.getProfile", params={"actor": session.did}
            )
        except (xrpc.XrpcError, xrpc.BadResponse, httpx.HTTPError):
            return None
        return _count(body, "followersCount")

    @staticmethod
    def _published(session: Session, uri: str, rkey: str) -> Published:
        return Published(
            remote_id=uri, url=f"https://bsky.app/profile/{session.handle}/post/{rkey}"
        )
