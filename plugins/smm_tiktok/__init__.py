"""TikTok: videos through the Content Posting API (direct post), uploaded in resumable chunks."""

from __future__ import annotations

from collections.abc import Callable

from scheduler.adapter import Adapter
from scheduler.hookspecs import hookimpl
from smm_tiktok.adapter import TikTokAdapter

__all__ = ["TikTokAdapter", "register_platforms"]


@hookimpl
def register_platforms(register: Callable[[type[Adapter]], None]) -> None:
    """Contribute the ``tiktok`` platform."""
    register(TikTokAdapter)
