"""The simulated social network (platforms ``sim`` and ``sim-plain``): no HTTP, all seeded.

Used by the demo, the ER-loop simulator and the daemon's tests. See
docs/plugins/networks/sim.md for the account options.
"""

from __future__ import annotations

from collections.abc import Callable

from scheduler.adapter import Adapter
from scheduler.hookspecs import hookimpl

from .adapter import SimAdapter, SimPlainAdapter
from .ledger import LedgerEntry, posts_per_key, read_ledger, requests_per_key
from .settings import SimOptionError, SimSettings
from .world import SimPost, SimWorld, reset_worlds, world_for

__all__ = [
    "LedgerEntry",
    "SimAdapter",
    "SimOptionError",
    "SimPlainAdapter",
    "SimPost",
    "SimSettings",
    "SimWorld",
    "posts_per_key",
    "read_ledger",
    "register_platforms",
    "requests_per_key",
    "reset_worlds",
    "world_for",
]


@hookimpl
def register_platforms(register: Callable[[type[Adapter]], None]) -> None:
    """Contribute the ``sim`` and ``sim-plain`` platforms."""
    register(SimAdapter)
    register(SimPlainAdapter)
