"""A post as each network will show it, asked of the networks' own plugins.

The core knows no network (docs/design.md): the text a network gets, its length as that
network counts it, its limit and its objections all come from the platform's adapter
(``compose_text``, ``text_length``, ``text_limit``, ``validate``) after the ``prepare_post``
transforms, exactly as plan validation and the daemon see the post. Nothing is fetched: the
link card shows the link itself, not the page behind it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from scheduler import plugins
from scheduler.adapter import NO_OPTIONS, Account, MediaMeta, PostOptions
from scheduler.config import AccountConfig
from scheduler.outgoing import account_view, from_row, offline_adapter, prepare


@dataclass
class Part:
    """One thread part (2, 3...) as the network counts it."""

    number: int
    text: str
    length: int
    limit: int
    #: The part's own media files with their alt text (None: the plan gives none).
    media: tuple[tuple[str, str | None], ...] = ()

    @property
    def over(self) -> bool:
        return self.length > self.limit

    @property
    def fill(self) -> int:
        """The meter's fill, in percent (capped at 100)."""
        return min(100, round(100 * self.length / self.limit)) if self.limit else 0


@dataclass
class Preview:
    """One network's view of the post."""

    platform: str
    account: str
    text: str = ""
    length: int = 0
    limit: int = 0
    counting: str = ""
    issues: list[str] = field(default_factory=list)
    media: Sequence[str] = ()
    #: Alt text and focus per file, aligned with ``media`` (empty: the plan gave none).
    media_meta: Sequence[MediaMeta] = ()
    #: The account previewed with has ``require_alt``: a file without alt text is marked.
    require_alt: bool = False
    max_media: int = 0
    options: PostOptions = NO_OPTIONS
    #: The thread's parts after the first, each counted by this network's plugin.
    thread: list[Part] = field(default_factory=list)
    link: str | None = None
    link_host: str | None = None
    #: Why there is no preview (the plugin is missing or failed).
    error: str | None = None
    own: bool = False
    #: The id of the post of the same plan item on this network (a group's other post),
    #: previewed here instead of this post: each network shows what it will get.
    sibling: str | None = None

    @property
    def over(self) -> bool:
        return self.length > self.limit

    @property
    def fill(self) -> int:
        """The meter's fill, in percent (capped at 100)."""
        return min(100, round(100 * self.length / self.limit)) if self.limit else 0

    def files(self) -> list[tuple[str, str | None]]:
        """Each media file with its alt text (None: the plan gives none)."""
        meta = list(self.media_meta) or [MediaMeta()] * len(self.media)
        return [(path, m.alt) for path, m in zip(self.media, meta, strict=False)]


def _view_for(
    platform: str, row: Any, accounts: Mapping[str, AccountConfig]
) -> tuple[str, Account]:
    """The account to preview ``platform`` with: the post's own account on its own network,
    else the first configured account of that network (its options, e.g. an instance's
    higher limit, change the counting)."""
    own = accounts.get(row.account)
    if own is not None and own.platform == platform:
        return own.name, account_view(own)
    for cfg in accounts.values():
        if cfg.platform == platform:
            return cfg.name, account_view(cfg)
    return row.account, Account(row.account, platform, row.timezone)


class _Sibling:
    """A group's other post, as ``previews`` reads a row (with a platform and a zone)."""

    def __init__(self, row: Any, platform: str, timezone: str) -> None:
        self._row = row
        self.platform = platform
        self.timezone = timezone

    def __getattr__(self, name: str) -> Any:
        return getattr(self._row, name)


def platforms_to_show(row: Any, accounts: Mapping[str, AccountConfig]) -> list[str]:
    """The post's own network first, then every other network the config has accounts on."""
    out = [row.platform]
    for cfg in accounts.values():
        if cfg.platform not in out:
            out.append(cfg.platform)
    return out


def _sibling(platform: str, siblings: Sequence[Any], accounts: Mapping[str, AccountConfig]) -> Any:
    """The first of ``siblings`` (the other posts of the post's plan item) whose account is
    on ``platform``, or None."""
    for other in siblings:
        cfg = accounts.get(other.account)
        if cfg is not None and cfg.platform == platform:
            return other
    return None


async def previews(
    row: Any, accounts: Mapping[str, AccountConfig], siblings: Sequence[Any] = ()
) -> list[Preview]:
    """The post (a ``find_posts`` row joined with its account's platform and zone) on the
    networks ``platforms_to_show`` names. ``siblings``: the other posts of its plan item
    (a group); a network one of them goes to shows that post, with its own variant."""
    out = []
    original = row
    for platform in platforms_to_show(original, accounts):
        other = None if platform == original.platform else _sibling(platform, siblings, accounts)
        row = original if other is None else _Sibling(other, platform, original.timezone)
        name, view = _view_for(platform, row, accounts)
        p = Preview(platform, name, own=platform == original.platform)
        p.sibling = other.key if other is not None else None
        out.append(p)
        try:
            adapter = offline_adapter(platform)
        except plugins.PluginError as exc:
            p.error = f"no plugin for {platform}: {exc}"
            continue
        try:
            post = await prepare(from_row(row, name), view)
            caps = adapter.capabilities
            p.text = adapter.compose_text(post)
            p.length = adapter.text_length(p.text)
            p.limit = adapter.text_limit(view)
            p.counting = caps.text_counting
            p.max_media = caps.max_media
            p.media = post.media
            p.media_meta = post.media_meta
            cfg = accounts.get(name)
            p.require_alt = cfg is not None and cfg.platform == platform and cfg.require_alt
            p.options = post.options
            # Parts go out as they are written, so each is counted as the main text is.
            p.thread = [
                Part(
                    n,
                    part.text,
                    adapter.text_length(part.text),
                    p.limit,
                    tuple(
                        (path, part.media_meta[i].alt if i < len(part.media_meta) else None)
                        for i, path in enumerate(part.media)
                    ),
                )
                for n, part in enumerate(post.options.thread, 2)
            ]
            p.link = post.link
            p.link_host = urlsplit(post.link).hostname if post.link else None
            p.issues = [
                i.message + (f" ({i.hint})" if i.hint else "")
                for i in [*adapter.validate(post, view), *adapter.tag_issues(post, view)]
            ]
        except Exception as exc:  # a broken plugin spoils its own preview, not the page
            p.error = f"the {platform} plugin failed: {type(exc).__name__}: {exc}"
    return out
