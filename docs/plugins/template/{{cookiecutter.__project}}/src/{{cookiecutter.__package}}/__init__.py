"""{{ cookiecutter.network_title }} as a network for smm-scheduler (platform ``{{ cookiecutter.network }}``)."""

from __future__ import annotations

from collections.abc import Callable

from scheduler.adapter import Adapter
from scheduler.hookspecs import hookimpl

from .adapter import {{ cookiecutter.__adapter }}

__all__ = ["{{ cookiecutter.__adapter }}", "register_platforms"]


@hookimpl
def register_platforms(register: Callable[[type[Adapter]], None]) -> None:
    """Contribute the ``{{ cookiecutter.network }}`` platform."""
    register({{ cookiecutter.__adapter }})
