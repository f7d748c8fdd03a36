"""Telegram channels and groups through the Bot API (built-in plugin ``telegram``)."""

from __future__ import annotations

from collections.abc import Callable

from scheduler.adapter import Adapter
from scheduler.hookspecs import hookimpl

from .adapter import TelegramAdapter

__all__ = ["TelegramAdapter", "register_platforms"]


@hookimpl
def register_platforms(register: Callable[[type[Adapter]], None]) -> None:
    """Contribute the ``telegram`` platform."""
    register(TelegramAdapter)
