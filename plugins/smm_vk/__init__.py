"""VK (VKontakte): posts on a user's or a community's wall, deduplicated by ``guid``."""

from __future__ import annotations

from collections.abc import Callable

from scheduler.adapter import Adapter
from scheduler.hookspecs import hookimpl
from smm_vk.adapter import VKAdapter

__all__ = ["VKAdapter", "register_platforms"]


@hookimpl
def register_platforms(register: Callable[[type[Adapter]], None]) -> None:
    """Contribute the ``vk`` platform."""
    register(VKAdapter)
