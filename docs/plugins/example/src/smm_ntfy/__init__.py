"""ntfy push notifications as a network for smm-scheduler (platform ``ntfy``)."""

from __future__ import annotations

from collections.abc import Callable

from scheduler.adapter import Adapter
from scheduler.hookspecs import hookimpl

from .adapter import NtfyAdapter

__all__ = ["NtfyAdapter", "register_platforms"]


@hookimpl
def register_platforms(register: Callable[[type[Adapter]], None]) -> None:
    """Contribute the ``ntfy`` platform."""
    register(NtfyAdapter)
