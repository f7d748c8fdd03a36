"""X (Twitter) through API v2 (built-in plugin ``x``)."""

from __future__ import annotations

from collections.abc import Callable

from scheduler.adapter import Adapter
from scheduler.hookspecs import hookimpl

from .adapter import XAdapter

__all__ = ["XAdapter", "register_platforms"]


@hookimpl
def register_platforms(register: Callable[[type[Adapter]], None]) -> None:
    """Contribute the ``x`` platform."""
    register(XAdapter)
