"""Mastodon (and compatible servers): the built-in ``mastodon`` platform.

Loaded through the ``smm_scheduler`` entry-point group like any third-party plugin.
"""

from __future__ import annotations

from collections.abc import Callable

from scheduler.adapter import Adapter
from scheduler.hookspecs import hookimpl
from smm_mastodon.adapter import MastodonAdapter

__all__ = ["MastodonAdapter", "register_platforms"]


@hookimpl
def register_platforms(register: Callable[[type[Adapter]], None]) -> None:
    """Contribute the Mastodon adapter."""
    register(MastodonAdapter)
