"""LinkedIn: member and organization posts through the versioned Posts API."""

from __future__ import annotations

from collections.abc import Callable

from scheduler.adapter import Adapter
from scheduler.hookspecs import hookimpl
from smm_linkedin.adapter import LinkedInAdapter

__all__ = ["LinkedInAdapter", "register_platforms"]


@hookimpl
def register_platforms(register: Callable[[type[Adapter]], None]) -> None:
    """Contribute the ``linkedin`` platform."""
    register(LinkedInAdapter)
