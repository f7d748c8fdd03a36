"""Bluesky, through the AT Protocol: the built-in ``bluesky`` platform.

Loaded through the ``smm_scheduler`` entry-point group like any third-party plugin.
"""

from __future__ import annotations

from collections.abc import Callable

from scheduler.adapter import Adapter
from scheduler.hookspecs import hookimpl
from smm_bluesky.adapter import BlueskyAdapter

__all__ = ["BlueskyAdapter", "register_platforms"]


@hookimpl
def register_platforms(register: Callable[[type[Adapter]], None]) -> None:
    """Contribute the Bluesky adapter."""
    register(BlueskyAdapter)
