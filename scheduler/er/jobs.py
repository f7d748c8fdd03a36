"""The ER loop's daemon jobs: read metrics, recompute priorities, refill the queues.

``smm run`` asks ``service_jobs(worker)`` for them and runs each on an interval. The same
functions serve simulations, which pass ``now`` from their virtual clock.

With several daemons on one database, every daemon runs the jobs: reading metrics twice is
prevented by the readings already stored (a band read is not due again), and a recompute is
skipped when any daemon recorded one less than half an interval ago.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, Protocol

import structlog
from sqlalchemy import Engine, func, select

from scheduler.config import Config
from scheduler.db.engine import immediate
from scheduler.db.models import Account, PriorityDecision
from scheduler.er.allocate import queue_order_for
from scheduler.er.collect import collect_metrics
from scheduler.er.recompute import DecisionRecord, recompute
from scheduler.er.recycle import recycle_evergreen
from scheduler.er.slotjob import learn_slots
from scheduler.queue import assign_queue_slots
from scheduler.timeutil import Clock

log = structlog.get_logger(__name__)

accounts_t = Account.__table__  # type: ignore[attr-defined]
decisions_t = PriorityDecision.__table__  # type: ignore[attr-defined]

#: How often the metrics job looks for due readings (the first band is an hour).
METRICS_EVERY = timedelta(minutes=10)
#: How often priorities are recomputed.
RECOMPUTE_EVERY = timedelta(hours=1)

Job = Callable[[], Awaitable[Any]]


class WorkerLike(Protocol):
    """What the jobs need from the daemon's worker."""

    engine: Engine
    config: Config
    clock: Clock
    adapters: Any


def service_jobs(worker: WorkerLike) -> list[tuple[str, timedelta, Job]]:
    """(name, interval, job) for each of the ER loop's daemon jobs."""

    async def metrics() -> int:
        return await collect_metrics(
            worker.engine, worker.adapters or {}, worker.config, worker.clock.now(),
            clock=worker.clock,
        )  # fmt: skip

    async def er() -> list[DecisionRecord]:
        return await asyncio.to_thread(
            recompute_and_refill, worker.engine, worker.config, worker.clock.now()
        )

    return [("metrics", METRICS_EVERY, metrics), ("er", RECOMPUTE_EVERY, er)]


def recently_recomputed(engine: Engine, now: datetime, within: timedelta) -> bool:
    """True when a decision was recorded less than ``within`` before ``now``."""
    with engine.connect() as conn:
        last = conn.execute(select(func.max(decisions_t.c.created_at))).scalar()
    return last is not None and timedelta(0) <= now - last < within


def recompute_and_refill(
    engine: Engine, config: Config, now: datetime, *, every: timedelta = RECOMPUTE_EVERY
) -> list[DecisionRecord]:
    """Recompute priorities (unless another daemon just did), then refill every queue."""
    if recently_recomputed(engine, now, every / 2):
        log.info("er_recompute_skipped", reason="recomputed less than half an interval ago")
        return []
    records = recompute(engine, config, now, keep_sums=True)
    refill_queues(engine, config, now)
    return records


def refill_queues(engine: Engine, config: Config, now: datetime) -> int:
    """For every enabled account: queue evergreen repeats if the queue runs short, learn its
    slots once a day if it learns them (``scheduler.er.slotjob``), then give the waiting
    queue posts their slots in priority order. Returns the posts moved or made."""
    with engine.connect() as conn:
        ids = {r.name: r.id for r in conn.execute(select(accounts_t.c.id, accounts_t.c.name))}
    changed = 0
    for name, cfg in sorted(config.accounts.items()):
        if not cfg.enabled or name not in ids:
            continue
        with immediate(engine) as conn:
            changed += len(recycle_evergreen(conn, ids[name], now, ages=config.er.ages))
            # A new table of learned slots and the posts it moves are one transaction.
            learn_slots(conn, cfg, ids[name], now, config.er)
            changed += assign_queue_slots(
                conn, cfg, ids[name], now, order=queue_order_for(conn, ids[name])
            )
    return changed
