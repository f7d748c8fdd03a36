"""A generic JSON webhook as a network (built-in plugin ``webhook``)."""

from __future__ import annotations

from collections.abc import Callable

from scheduler.adapter import Adapter
from scheduler.hookspecs import hookimpl

from .adapter import WebhookAdapter
from .signing import sign, verify

__all__ = ["WebhookAdapter", "register_platforms", "sign", "verify"]


@hookimpl
def register_platforms(register: Callable[[type[Adapter]], None]) -> None:
    """Contribute the ``webhook`` platform."""
    register(WebhookAdapter)
