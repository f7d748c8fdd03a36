"""The built-in ER policy, offered on the ``er_policy`` hook like any plugin's.

It is registered ``trylast``, so a plugin that returns its own policy replaces it
(docs/er.md#replacing-the-policy).
"""

from __future__ import annotations

from typing import Any

from scheduler.er.policy import Policy, ThompsonPolicy
from scheduler.hookspecs import hookimpl


@hookimpl(trylast=True)
def er_policy(settings: Any) -> Policy:
    """Thompson sampling over the shrunk posteriors, within the ``[er]`` limits."""
    return ThompsonPolicy()
