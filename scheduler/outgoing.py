"""Between the core and the plugins: posts as adapters see them, and the checks they make.

This is the only place the core asks plugins about a post before it is sent: the
``prepare_post`` transforms and each network's ``validate``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from collections.abc import Sequence
from functools import cache
from typing import Any

import httpx

from scheduler import media, plugins
from scheduler.adapter import NO_OPTIONS, Account, Adapter, Issue, IssueCode, OutgoingPost
from scheduler.config import AccountConfig, MediaSettings
from scheduler.plan.items import PlanItem, stored_meta
from scheduler.plan.post_options import stored_options


def account_view(cfg: AccountConfig) -> Account:
    """The adapter-facing view of a configured account."""
    return Account(
        name=cfg.name,
        platform=cfg.platform,
        timezone=cfg.timezone,
        options=cfg.options,
        credentials=cfg.credentials,
    )


def from_plan_item(item: PlanItem, idempotency_key: str = "") -> OutgoingPost:
    # Plan validation builds one per item: filled in directly, as the frozen dataclass's own
    # __init__ would (its per-field object.__setattr__ costs three times more); a test checks
    # that both give equal posts and that every field is set.
    post = _new_post(OutgoingPost)
    post.__dict__.update(
        key=item.key,
        account=item.account,
        content_type=item.content_type,
        text=item.text,
        media=item.media,
        link=item.link,
        tags=item.tags,
        idempotency_key=idempotency_key,
        due_at=item.at,
        remote_id=None,
        remote_url=None,
        published_at=None,
        media_meta=item.media_meta,
        options=item.options,
    )
    return post


_new_post = object.__new__


def from_row(row: Any, account: str) -> OutgoingPost:
    """An OutgoingPost from a posts-table row (``media_meta`` when the query read it).

    The daemon builds one per post it sends: filled in directly, as ``from_plan_item`` does
    (a test holds it equal to the constructor's, every field set)."""
    media = tuple(row.media or ())
    post = _new_post(OutgoingPost)
    post.__dict__.update(
        key=row.key,
        account=account,
        content_type=row.content_type,
        text=row.text,
        media=media,
        link=row.link,
        tags=tuple(row.tags or ()),
        idempotency_key=row.idempotency_key,
        due_at=row.due_at,
        remote_id=row.remote_id,
        remote_url=row.remote_url,
        published_at=row.published_at,
        media_meta=stored_meta(media, getattr(row, "media_meta", None)) if media else (),
        options=stored_options(getattr(row, "post_options", None)),
    )
    return post


async def prepare(post: OutgoingPost, account: Account) -> OutgoingPost:
    """Run every ``prepare_post`` transform in turn; each sees the previous one's result."""
    for impl in plugins.hook_impls("prepare_post"):
        kwargs = {k: v for k, v in {"post": post, "account": account}.items() if k in impl.argnames}
        result = await plugins.await_me_maybe(impl.function(**kwargs))
        if result is not None:
            if not isinstance(result, OutgoingPost):
                raise TypeError(
                    f"plugin {impl.plugin_name}: prepare_post returned {type(result).__name__}, "
                    "not an OutgoingPost"
                )
            post = result
    return post


@cache
def _offline_client() -> httpx.AsyncClient:
    # Adapters need a client to exist; validation never sends anything through it.
    return httpx.AsyncClient(transport=httpx.MockTransport(_refuse))


def _refuse(request: httpx.Request) -> httpx.Response:
    raise RuntimeError("validation must not use the network")


def offline_adapter(platform: str) -> Adapter:
    """An adapter instance for offline checks (validate, text_length)."""
    return _adapters(platform)


@cache
def _adapters(platform: str) -> Adapter:
    return plugins.adapter_class(platform)(_offline_client())


def network_check(item: PlanItem, account: AccountConfig) -> Sequence[Issue]:
    """The network's own rules for ``item``, checked offline at plan validation."""
    try:
        adapter = offline_adapter(account.platform)
    except plugins.PluginError:
        return []  # reported once per account by the config check, not once per post
    view = _account_view(account)
    post = from_plan_item(item)
    try:
        if has_transforms():
            post = asyncio.run(prepare(post, view))
    except Exception as exc:  # a broken transform is reported on the post, not as a crash
        failed = f"a prepare_post plugin failed: {type(exc).__name__}: {exc}"
        return [Issue("text", failed, code=IssueCode.PLUGIN_FAILED)]
    try:
        issues = adapter.validate(post, view)
        if post.tags:
            issues = [*issues, *adapter.tag_issues(post, view)]
        if post.media_meta:
            issues = [*issues, *adapter.media_meta_issues(post, view)]
        if post.options is not NO_OPTIONS:
            issues = [*issues, *adapter.option_issues(post, view)]
            if post.options.thread and "thread" in adapter.capabilities.post_options:
                issues = [*issues, *_thread_issues(adapter, post, view)]
    except Exception as exc:  # a broken plugin must not abort validation of the whole plan
        failed = f"the {account.platform} plugin failed to validate: {exc!r}"
        return [Issue("text", failed, code=IssueCode.PLUGIN_FAILED)]
    return issues


def _thread_issues(adapter: Adapter, post: OutgoingPost, view: Account) -> list[Issue]:
    """Each thread part checked as a post of its own (its text, media and their alt text),
    named by the part (``thread[0]``) and, for its media, the file (``thread[0].media[1]``)."""
    found = []
    parts = post.chain()
    total = len(parts)
    for index, part in enumerate(parts[1:]):
        label = f"thread part {index + 2} of {total}: "
        for issue in adapter.validate(part, view):
            name = f"thread[{index}]" + (".media" if issue.field == "media" else "")
            found.append(Issue(name, label + issue.message, issue.hint, issue.code))
        for j, path in enumerate(part.media):
            # One file at a time, so that each problem names its file.
            single = dataclasses.replace(part, media=(path,), media_meta=(part.meta(j),))
            for issue in adapter.media_meta_issues(single, view):
                message = issue.message.replace("media 1 (", f"media {j + 1} (", 1)
                where = f"thread[{index}].media[{j}]"
                found.append(Issue(where, label + message, issue.hint, issue.code))
    return found


def media_issues(
    item: PlanItem, account: AccountConfig, settings: MediaSettings
) -> Sequence[Issue]:
    """The item's local media files checked by content and size against what its network
    takes (the files' place was checked when the item was read)."""
    try:
        capabilities = offline_adapter(account.platform).capabilities_for(account_view(account))
    except plugins.PluginError:
        return []
    policy = _media_policy(settings, item.file)
    issues: list[Issue] = []
    for entry in item.media:
        if media.is_url(entry):
            continue
        try:
            media.inspect(entry, capabilities, policy)
        except media.MediaError as exc:
            issues.append(
                Issue("media", f"media file refused: {exc}", code=IssueCode.MEDIA_REFUSED)
            )
    for index, part in enumerate(item.options.thread):
        for j, entry in enumerate(part.media):
            if media.is_url(entry):
                continue
            try:
                media.inspect(entry, capabilities, policy)
            except media.MediaError as exc:
                issues.append(
                    Issue(
                        f"thread[{index}].media[{j}]",
                        f"thread part {index + 2}: media file refused: {exc}",
                        code=IssueCode.MEDIA_REFUSED,
                    )
                )
    return issues


@functools.lru_cache(maxsize=64)
def _media_policy(settings: MediaSettings, file: str) -> media.MediaPolicy:
    return media.policy_for(settings, file)


def has_transforms() -> bool:
    """Whether any plugin implements ``prepare_post`` (checked cheaply, per call)."""
    # Once built, the manager is only ever replaced whole: reading it needs no lock.
    pm = plugins._pm
    if pm is None:
        pm = plugins.get_plugin_manager()
    return bool(pm.hook.prepare_post.get_hookimpls())


_views: dict[str, tuple[AccountConfig, Account]] = {}


def _account_view(account: AccountConfig) -> Account:
    """``account_view``, remembered per config object (validation asks once per post)."""
    cached = _views.get(account.name)
    if cached is None or cached[0] is not account:
        cached = _views[account.name] = (account, account_view(account))
    return cached[1]


def clear_caches() -> None:
    """Forget adapter instances and hook lookups (after plugins change)."""
    _adapters.cache_clear()
    _views.clear()


__all__ = [
    "account_view",
    "clear_caches",
    "from_plan_item",
    "from_row",
    "has_transforms",
    "media_issues",
    "network_check",
    "offline_adapter",
    "prepare",
]
