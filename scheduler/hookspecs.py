"""Hook specifications: the markers and the specs, nothing else.

Hooks are called with keyword arguments only, so an implementation may accept fewer arguments
than the spec lists and specs can grow without breaking plugins. Implementations may return a
value or an awaitable; the core awaits what needs awaiting. Every hook is documented, with an
example, in docs/plugins/hooks.md.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from scheduler.adapter import Account, Adapter, Metrics, OutgoingPost, Published, PublishError

PROJECT = "smm_scheduler"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# ============================================================================ start-up
# Fired once, when the plugin manager is first used.


@hookspec
def register_platforms(register: Callable[[type[Adapter]], None]) -> None:
    """Contribute network adapters: call ``register(AdapterSubclass)`` once per platform.

    Fires once when the plugins load. All implementations run. A platform name registered
    twice is an error naming both plugins.
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add commands or groups to the ``smm`` command line (``cli.add_command(...)``).

    Fires once, when ``smm`` is asked for a command that is not built in. All run.
    """


@hookspec
def register_jobs(
    worker: Any, register: Callable[[str, timedelta, Callable[[], Awaitable[Any]]], None]
) -> None:
    """Contribute periodic daemon jobs: call ``register(name, every, job)`` for each, where
    ``job`` is a coroutine function the daemon runs every ``every`` (the built-in ER loop's
    metrics collection and recompute come this way).

    Fires once per ``smm run`` start, with the daemon's ``worker`` (its ``engine``, ``config``,
    ``adapters`` and ``clock``). All implementations run; one that raises is logged and its
    jobs are left out.
    """


# ============================================================================ publishing
# Fired by the dispatcher around each publish.


@hookspec
def prepare_post(post: OutgoingPost, account: Account) -> OutgoingPost | None:
    """Transform a post just before it is sent (add UTM tags to links, shorten links...).

    Fires before every publish attempt and at plan validation (so limits are checked on the
    final text). Implementations run in turn, each seeing the previous one's result; return a
    new ``OutgoingPost`` (``dataclasses.replace``) or None to leave it unchanged. They may be
    coroutines. A failing transform fails the attempt with a plugin error; it never sends the
    untransformed post. The same input must give the same output: it runs again on retries.
    """


@hookspec
def post_published(post: OutgoingPost, account: Account, result: Published) -> None:
    """A post was published. Fires after the outcome is committed. All implementations run;
    exceptions are logged and ignored."""


@hookspec
def post_failed(post: OutgoingPost, account: Account, error: PublishError, final: bool) -> None:
    """A publish attempt failed; ``final`` is True when the post will not be retried.
    Fires after the outcome is committed. All run; exceptions are logged and ignored."""


# ============================================================================ engagement loop


@hookspec
def metrics_collected(account: Account, metrics: list[Metrics]) -> None:
    """Fresh metric snapshots were stored for ``account``. All implementations run;
    exceptions are logged and ignored."""


@hookspec(firstresult=True)
def er_policy(settings: Any) -> Any:
    """Return the policy that turns ER statistics into content-type priorities.

    The first non-None result wins; the built-in policy is registered ``trylast`` so any
    plugin replaces it. See docs/er.md for the policy interface.
    """


@hookspec
def priorities_changed(account: Account, decision: dict[str, Any]) -> None:
    """An ER recompute changed ``account``'s content-type weights; ``decision`` is the stored
    decision record (inputs, old and new weights, reason). All implementations run (they may
    be coroutines); exceptions are logged and ignored."""
