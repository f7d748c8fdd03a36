"""The built-in ER loop, offered through the hooks like any plugin's.

``er_policy`` is registered ``trylast``, so a plugin that returns its own policy replaces it
(docs/er.md#replacing-the-policy); ``register_jobs`` gives the daemon the metrics and
recompute jobs (scheduler/er/jobs.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from scheduler.er.policy import Policy, ThompsonPolicy
from scheduler.hookspecs import hookimpl


@hookimpl
def register_jobs(worker: Any, register: Callable[..., None]) -> None:
    """The metrics collection and the ER recompute, on their intervals."""
    from scheduler.er.jobs import service_jobs  # the daemon's dependencies, only for `smm run`

    for name, every, job in service_jobs(worker):
        register(name, every, job)


@hookimpl(trylast=True)
def er_policy(settings: Any) -> Policy:
    """Thompson sampling over the shrunk posteriors, within the ``[er]`` limits."""
    return ThompsonPolicy()
