"""Meta's networks: Facebook Pages, Instagram and Threads, one Graph API plugin.

The three adapters share the Graph plumbing and error mapping in ``smm_meta.graph``; Instagram
and Threads also share two-step container publishing in ``smm_meta.containers``.
"""

from __future__ import annotations

from collections.abc import Callable

from scheduler.adapter import Adapter
from scheduler.hookspecs import hookimpl
from smm_meta.facebook import FacebookAdapter
from smm_meta.instagram import InstagramAdapter
from smm_meta.threads import ThreadsAdapter

__all__ = ["FacebookAdapter", "InstagramAdapter", "ThreadsAdapter", "register_platforms"]


@hookimpl
def register_platforms(register: Callable[[type[Adapter]], None]) -> None:
    """Contribute the ``facebook``, ``instagram`` and ``threads`` platforms."""
    register(FacebookAdapter)
    register(InstagramAdapter)
    register(ThreadsAdapter)
