"""The ER correction loop: measure engagement per content type, reweigh the queue, explain why.

* ``collect`` reads each published post's counters at its age bands (``collect_metrics``);
* ``stats`` turns readings into ER per post and per (account, content type), decayed and
  shrunk toward the account's mean (``account_stats``), with the SQL in ``readings``;
* ``policy`` decides the new weights (``ThompsonPolicy``, replaceable via the ``er_policy``
  hook; the built-in plugin is ``builtin``), within the limits of ``weights``;
* ``recompute`` stores weights and a decision record per account (``recompute``);
* ``allocate`` orders a queue by the weights (``priority_order``, ``queue_order_for``) and
  ``recycle`` queues evergreen repeats (``recycle_evergreen``).

See docs/er.md. The names below are imported on first use: importing one module of the
package (the in-memory simulation, say) does not import the database, plugin and network
code the others need.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scheduler.er.allocate import priority_order, queue_order_for
    from scheduler.er.collect import DEFAULT_BANDS, collect_metrics, due_band
    from scheduler.er.policy import Decision, Policy, ThompsonPolicy
    from scheduler.er.recompute import DecisionRecord, recompute
    from scheduler.er.recycle import recycle_evergreen
    from scheduler.er.stats import AccountStats, TypeStats, account_stats, engagement_rate

#: Each name of ``__all__`` and the module it comes from.
_HOMES = {
    "priority_order": "allocate",
    "queue_order_for": "allocate",
    "DEFAULT_BANDS": "collect",
    "collect_metrics": "collect",
    "due_band": "collect",
    "Decision": "policy",
    "Policy": "policy",
    "ThompsonPolicy": "policy",
    "DecisionRecord": "recompute",
    "recompute": "recompute",
    "recycle_evergreen": "recycle",
    "AccountStats": "stats",
    "TypeStats": "stats",
    "account_stats": "stats",
    "engagement_rate": "stats",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)


__all__ = [
    "DEFAULT_BANDS",
    "AccountStats",
    "Decision",
    "DecisionRecord",
    "Policy",
    "ThompsonPolicy",
    "TypeStats",
    "account_stats",
    "collect_metrics",
    "due_band",
    "engagement_rate",
    "priority_order",
    "queue_order_for",
    "recompute",
    "recycle_evergreen",
]
