"""Two-step publishing, shared by Instagram and Threads: build a container, then publish it.

Both networks take a post in two requests. ``POST /{user}/media`` (Instagram) or
``POST /{user}/threads`` creates a *container*: invisible, fetched and processed by Meta,
valid for 24 hours. ``POST /{user}/media_publish`` or ``/threads_publish`` with
``creation_id=<container>`` makes it a post. A container can be published once only.

That is what keeps a retry from duplicating a post. The adapter remembers, per account and
idempotency key, the container it built; a retry checks that container's status before doing
anything: ``FINISHED`` is published (no new container), ``IN_PROGRESS`` (a video still
processing) is waited on again, ``PUBLISHED`` means the earlier attempt went through after
all, and the post is found in the account's recent media instead of being sent again. Nothing
random is derived; only an expired or failed container is replaced.

The memory is kept in the process and noted durably (``scheduler.checkpoints``, in the
daemon's database), so a restart, or a daemon on another host, finds the container too: a
video goes on processing in the container Meta already fetched, and ``lookup`` asks the
container whether it was published. A container is not a key Meta honours (it may be gone,
its note too), so ``capabilities.idempotent`` stays False: the core never resends an
``unconfirmed`` post blindly; ``lookup`` settles it, by the container when it is known, else
by the post's text.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import abstractmethod
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import ClassVar
from urllib.parse import urlparse

import httpx
import structlog

from scheduler import tokens
from scheduler.account_settings import settings_issues
from scheduler.adapter import (
    Account,
    Adapter,
    AuthExpired,
    Issue,
    Metrics,
    OutcomeUnknown,
    OutgoingPost,
    Published,
    PublishError,
    RateLimited,
    Rejected,
    Transient,
)
from scheduler.checkpoints import Checkpoints
from scheduler.timeutil import utcnow
from smm_meta.graph import Graph, Listing, count, find_recent, insight_values

__all__ = ["VIDEO_FORMATS", "ContainerAdapter", "is_video", "media_issues"]

log = structlog.get_logger("smm_meta.containers")

_VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".webm", ".avi")
#: The video files Instagram and Threads take (MP4 and QuickTime containers).
VIDEO_FORMATS = (".mp4", ".mov")
_REMEMBERED_CONTAINERS = 1024


def is_video(entry: str) -> bool:
    """Whether a media URL names a video file (by its extension: Meta fetches the file)."""
    return urlparse(entry).path.lower().endswith(_VIDEO_SUFFIXES)


def media_issues(
    media: Sequence[str],
    network: str,
    formats: tuple[str, ...],
    videos: tuple[str, ...] = (),
) -> list[Issue]:
    """Media Meta cannot fetch: not a public URL, a video in a format it refuses (any video
    when ``videos`` is empty), or an image format it refuses."""
    issues = []
    for entry in media:
        parsed = urlparse(entry)
        path = parsed.path.lower()
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            issues.append(
                Issue(
                    "media",
                    f"{entry!r} is not a URL: {network} fetches media from public URLs",
                    "upload the file somewhere public and put its https:// URL in the plan",
                )
            )
        elif path.endswith(_VIDEO_SUFFIXES) and not path.endswith(videos):
            issues.append(
                Issue(
                    "media",
                    f"{entry!r}: {network} takes {', '.join(videos)} videos only"
                    if videos
                    else f"{entry!r}: video is not supported for {network}",
                )
            )
        elif (
            not path.endswith(_VIDEO_SUFFIXES)
            and "." in path.rsplit("/", 1)[-1]
            and not path.endswith(formats)
        ):
            issues.append(
                Issue("media", f"{entry!r}: {network} takes {', '.join(formats)} images only")
            )
    return issues


class ContainerAdapter(Adapter):
    """Base of the Instagram and Threads adapters: containers, polling, quota, insights."""

    #: How messages name the network.
    network: ClassVar[str]
    default_host: ClassVar[str]
    default_version: ClassVar[str]
    #: The account option holding the user id.
    user_option: ClassVar[str]
    #: Container fields: its state (``IN_PROGRESS``, ``FINISHED``...) and why it failed.
    status_fields: ClassVar[tuple[str, str]]
    create_edge: ClassVar[str]
    publish_edge: ClassVar[str]
    quota_edge: ClassVar[str]
    #: The account's recent posts; ``{user}`` is replaced by the user id.
    listing: ClassVar[Listing]
    #: ``metric=`` of the insights request, and which ``Metrics`` field each one fills.
    insight_metrics: ClassVar[Mapping[str, str]]

    #: Seconds between container status checks, and how many checks before giving up for
    #: this attempt (a video still processing is a transient failure: the retry checks the
    #: same container again, so processing goes on across attempts).
    poll_interval: float = 3.0
    poll_attempts: int = 10
    #: The quota is a rolling 24 hours and Meta does not say when the next slot frees up.
    quota_wait: timedelta = timedelta(hours=1)

    def __init__(self, client: httpx.AsyncClient, checkpoints: Checkpoints | None = None) -> None:
        super().__init__(client)
        self._containers: OrderedDict[tuple[str, str], str] = OrderedDict()
        #: Where containers (and Threads' reply chains) are noted durably.
        self.checkpoints = checkpoints if checkpoints is not None else Checkpoints()

    # -- request parameters, per network ----------------------------------------------------

    @abstractmethod
    def single_params(self, url: str | None, text: str, alt: str | None = None) -> dict[str, str]:
        """The container of a post with one image (or none), with its alt text if any."""

    @abstractmethod
    def child_params(self, url: str, alt: str | None = None) -> dict[str, str]:
        """One image of a carousel, with its alt text if any."""

    @abstractmethod
    def carousel_params(self, children: Sequence[str], text: str) -> dict[str, str]:
        """The carousel itself, pointing at its ready children."""

    # -- offline ---------------------------------------------------------------------------

    @classmethod
    def check_account(cls, account: Account) -> list[Issue]:
        """The user id and a reference to the access token are required; an option this
        plugin does not read is a typo (``auto_refresh``: the core renews the token)."""
        return settings_issues(
            account,
            known=(cls.user_option, "graph_host", "graph_version", "auto_refresh"),
            required=[(cls.user_option, f"the {cls.network} user id", '"17841400000000000"')],
            credentials=[("access_token", "the access token")],
            urls=["graph_host"],
        )

    def validate(self, post: OutgoingPost, account: Account) -> list[Issue]:
        issues = super().validate(post, account)
        if not account.option(self.user_option):
            issues.append(Issue("account", f"option {self.user_option!r} is not set"))
        return issues

    # -- helpers ---------------------------------------------------------------------------

    def graph(self, account: Account) -> Graph:
        """The Graph host and version this account talks to, with its token."""
        host = str(account.option("graph_host", self.default_host)).rstrip("/")
        version = str(account.option("graph_version", self.default_version))
        return Graph(self.client, f"{host}/{version}", account.secret("access_token"), self.network)

    def user_id(self, account: Account) -> str:
        user = account.option(self.user_option)
        if not user:
            raise Rejected(f"account {account.name}: option {self.user_option!r} is not set")
        return str(user)

    async def _remember(self, key: tuple[str, str], container: str) -> None:
        self._containers[key] = container
        while len(self._containers) > _REMEMBERED_CONTAINERS:
            self._containers.popitem(last=False)
        try:
            await asyncio.to_thread(
                self.checkpoints.save, self.platform, _note_key(key), {"container": container}
            )
        except OSError as exc:
            # The process still remembers it; another would only build a new container.
            log.warning("container_not_noted", network=self.network, error=type(exc).__name__)

    async def _recall(self, key: tuple[str, str]) -> str | None:
        container = self._containers.get(key)
        if container is None:
            note = await self.checkpoints.recall(self.platform, _note_key(key))
            found = note.get("container") if note else None
            container = found if isinstance(found, str) and found else None
        return container

    async def _forget(self, key: tuple[str, str]) -> None:
        self._containers.pop(key, None)
        with contextlib.suppress(OSError):
            await asyncio.to_thread(self.checkpoints.clear, self.platform, _note_key(key))

    async def _status(self, graph: Graph, container: str) -> tuple[str, str]:
        state_field, reason_field = self.status_fields
        body = await graph.get(container, {"fields": f"{state_field},{reason_field}"})
        return str(body.get(state_field) or ""), str(body.get(reason_field) or "")

    async def _check_quota(self, graph: Graph, user: str) -> None:
        try:
            body = await graph.get(f"{user}/{self.quota_edge}", {"fields": "quota_usage,config"})
        except Rejected:
            return  # the quota cannot be read (permissions): the network still enforces it
        data = body.get("data")
        record = data[0] if isinstance(data, list) and data and isinstance(data[0], dict) else {}
        config = record.get("config")
        config = config if isinstance(config, dict) else {}
        used, total = count(record.get("quota_usage")), count(config.get("quota_total"))
        if used is not None and total and used >= total:
            raise RateLimited(
                f"{self.network}: {used} of {total} posts allowed in 24 hours already published",
                retry_at=utcnow() + self.quota_wait,
            )

    async def _container(self, graph: Graph, user: str, params: Mapping[str, str]) -> str:
        # An unpublished container is invisible: losing the answer is safe to retry.
        body = await graph.post(f"{user}/{self.create_edge}", params, mutating=False)
        container = body.get("id")
        if not container:
            raise Transient(f"{self.network}: the container was created without an id")
        return str(container)

    async def _wait_until_finished(self, graph: Graph, container: str) -> None:
        for attempt in range(self.poll_attempts):
            if attempt:
                await asyncio.sleep(self.poll_interval)
            state, reason = await self._status(graph, container)
            if attempt or state != "FINISHED":
                log.info(
                    "container_status",
                    network=self.network,
                    container=container,
                    state=state,
                    check=attempt + 1,
                )
            if state in ("FINISHED", "PUBLISHED"):
                return
            if state == "ERROR":
                raise Rejected(
                    f"{self.network}: the media could not be processed: {reason or 'no reason'}"
                )
            if state == "EXPIRED":
                raise Transient(f"{self.network}: the container expired before it was published")
        raise Transient(
            f"{self.network}: the media was still processing after {self.poll_attempts} checks"
        )

    async def _create(
        self,
        graph: Graph,
        user: str,
        post: OutgoingPost,
        extra: Mapping[str, str] | None = None,
    ) -> str:
        """The post's container (a carousel's, once its children are ready); ``extra``
        parameters go on it (a reply's ``reply_to_id``)."""
        text = self.compose_text(post)
        if len(post.media) > 1:
            children = [
                await self._container(graph, user, self.child_params(url, post.meta(i).alt))
                for i, url in enumerate(post.media)
            ]
            for child in children:
                await self._wait_until_finished(graph, child)
            params = self.carousel_params(children, text)
        else:
            url = post.media[0] if post.media else None
            params = self.single_params(url, text, post.meta(0).alt if url else None)
        return await self._container(graph, user, {**params, **(extra or {})})

    def _listing(self, user: str) -> Listing:
        return replace(self.listing, edge=self.listing.edge.format(user=user))

    # -- network calls ---------------------------------------------------------------------

    # Long-lived tokens renew themselves (no refresh token), for accounts that set
    # ``options.auto_refresh = true`` (scheduler.tokens).
    refresh_lead: ClassVar[timedelta] = timedelta(days=7)
    rotates_refresh_token: ClassVar[bool] = False
    refresh_credential: ClassVar[str] = "access_token"
    #: The grant of ``GET {graph_host}/refresh_access_token``.
    refresh_grant: ClassVar[str]

    async def refresh_token(self, account: Account) -> tokens.TokenSet:
        """``GET {graph_host}/refresh_access_token?grant_type=...&access_token=...``: a new
        long-lived token (60 days) for one at least a day old and not expired."""
        host = str(account.option("graph_host", self.default_host)).rstrip("/")
        return await tokens.oauth2_refresh(
            self.client,
            f"{host}/refresh_access_token",
            {"grant_type": self.refresh_grant, "access_token": account.secret("access_token")},
            network=self.network,
            method="GET",
        )

    async def publish(
        self, post: OutgoingPost, account: Account, idempotency_key: str
    ) -> Published:
        await tokens.fresh(self, account)
        graph = self.graph(account)
        user = self.user_id(account)
        key = (account.name, idempotency_key or post.key)
        container = await self._recall(key)
        if container is not None:
            state, _ = await self._status(graph, container)
            if state == "PUBLISHED":
                # The earlier attempt went through after all: report it, never publish again.
                listing = self._listing(user)
                found = await find_recent(graph, listing, self.compose_text(post), since=None)
                if found is None:  # without ``since`` it raises instead; this narrows the type
                    raise OutcomeUnknown(f"{self.network}: published, but not listed yet")
                await self._forget(key)
                return found
            if state not in ("FINISHED", "IN_PROGRESS"):
                container = None  # expired or failed: build a new one
        await self._check_quota(graph, user)
        try:
            if container is None:
                container = await self._create(graph, user, post)
                await self._remember(key, container)
            await self._wait_until_finished(graph, container)
            body = await graph.post(f"{user}/{self.publish_edge}", {"creation_id": container})
        except Rejected:
            await self._forget(key)
            raise
        media_id = body.get("id")
        if not media_id:
            raise OutcomeUnknown(f"{self.network}: publishing answered without a media id")
        await self._forget(key)
        return Published(str(media_id), url=await self._permalink(graph, str(media_id)))

    async def _permalink(self, graph: Graph, media_id: str) -> str | None:
        # The post is out: a failure here must not turn a success into an error.
        try:
            body = await graph.get(media_id, {"fields": "permalink"})
        except PublishError:
            return None
        link = body.get("permalink")
        return link if isinstance(link, str) else None

    async def fetch_metrics(
        self, posts: Sequence[OutgoingPost], account: Account
    ) -> Mapping[str, Metrics]:
        graph = self.graph(account)
        metric = ",".join(self.insight_metrics)
        out: dict[str, Metrics] = {}
        for post in posts:
            if not post.remote_id:
                continue
            try:
                body = await graph.get(f"{post.remote_id}/insights", {"metric": metric})
            except Rejected:
                continue  # deleted, or a media type without these metrics: left out
            out[post.remote_id] = self.to_metrics(post.remote_id, insight_values(body))
        return out

    def to_metrics(self, remote_id: str, values: Mapping[str, int]) -> Metrics:
        """Insights by name -> ``Metrics``; names mapping to the same field are added up."""
        fields: dict[str, int] = {}
        for name, field in self.insight_metrics.items():
            if name in values:
                fields[field] = fields.get(field, 0) + values[name]
        return Metrics(remote_id=remote_id, **fields)

    async def lookup(self, post: OutgoingPost, account: Account) -> Published | None:
        graph = self.graph(account)
        user = self.user_id(account)
        try:
            container = await self._recall((account.name, post.idempotency_key or post.key))
            if container is not None:
                state, _ = await self._status(graph, container)
                if state in ("FINISHED", "IN_PROGRESS", "EXPIRED", "ERROR"):
                    return None  # the container was never published
            listing = self._listing(user)
            return await find_recent(graph, listing, self.compose_text(post), post.due_at)
        except (AuthExpired, OutcomeUnknown):
            raise
        except PublishError as exc:
            message = f"{self.network}: cannot look the post up: {exc.message}"
            raise OutcomeUnknown(message) from None


def _note_key(key: tuple[str, str]) -> str:
    """Where a container is noted: apart from a reply chain's note under the same key."""
    account, idempotency_key = key
    return f"{account}\x1f{idempotency_key}#container"
