"""Pinterest: one Pin per post on a board, through API v5."""

from __future__ import annotations

from collections.abc import Callable

from scheduler.adapter import Adapter
from scheduler.hookspecs import hookimpl
from smm_pinterest.adapter import PinterestAdapter

__all__ = ["PinterestAdapter", "register_platforms"]


@hookimpl
def register_platforms(register: Callable[[type[Adapter]], None]) -> None:
    """Contribute the ``pinterest`` platform."""
    register(PinterestAdapter)
