"""YouTube: videos uploaded through the Data API v3 resumable upload, resumed, never restarted."""

from __future__ import annotations

from collections.abc import Callable

from scheduler.adapter import Adapter
from scheduler.hookspecs import hookimpl
from smm_youtube.adapter import YouTubeAdapter

__all__ = ["YouTubeAdapter", "register_platforms"]


@hookimpl
def register_platforms(register: Callable[[type[Adapter]], None]) -> None:
    """Contribute the ``youtube`` platform."""
    register(YouTubeAdapter)
