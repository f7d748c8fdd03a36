"""Odnoklassniki (OK.ru): topics in a group or on a user's page, through the OK REST API."""

from __future__ import annotations

from collections.abc import Callable

from scheduler.adapter import Adapter
from scheduler.hookspecs import hookimpl
from smm_ok.adapter import OKAdapter

__all__ = ["OKAdapter", "register_platforms"]


@hookimpl
def register_platforms(register: Callable[[type[Adapter]], None]) -> None:
    """Contribute the ``ok`` platform."""
    register(OKAdapter)
