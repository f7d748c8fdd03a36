"""The daemon's ER jobs: metrics on an interval, recompute then refill the queues, and no
double recompute when several daemons share the database."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field, replace
from datetime import datetime, time
from typing import Any

from er_support import DAY, HOUR, T0, Builder, FakeAdapter, counters, posts_t
from sqlalchemy import Engine, select

from scheduler.config import AccountConfig, Config, empty_config
from scheduler.db.models import MetricSnapshot, PostState
from scheduler.er.jobs import (
    METRICS_EVERY,
    RECOMPUTE_EVERY,
    recompute_and_refill,
    refill_queues,
    service_jobs,
)
from scheduler.timeutil import Clock

snapshots_t = MetricSnapshot.__table__  # type: ignore[attr-defined]
SLOTS = {d: (time(9), time(13), time(19)) for d in range(7)}


@dataclass
class FixedClock(Clock):
    at: datetime

    def now(self) -> datetime:
        return self.at


@dataclass
class Worker:
    """The part of the daemon's worker the jobs use."""

    engine: Engine
    config: Config
    clock: Clock
    adapters: dict[str, Any] = field(default_factory=dict)


def config(platform: str = "sim") -> Config:
    acc = AccountConfig("acc", platform, "UTC", slots=SLOTS)
    return replace(empty_config(), accounts={"acc": acc})


def measured_account(engine: Engine, waiting: int = 6) -> int:
    """Two types measured (laugh clearly better), ``waiting`` queue posts of each."""
    rng = random.Random(1)
    with engine.begin() as conn:
        b = Builder(conn)
        acc = b.account("acc", "sim")
        for t, er in (("laugh", 0.04), ("medal", 0.01)):
            for i in range(8):
                b.measured(acc, t, er * rng.uniform(0.9, 1.1), published_at=T0 - (4 + i) * DAY)
        for i in range(waiting):
            b.post(acc, "medal", state=PostState.QUEUED, plan_order=i)
        for i in range(waiting):
            b.post(acc, "laugh", state=PostState.QUEUED, plan_order=100 + i)
    return acc


def queue_types(engine: Engine, acc: int) -> list[str]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                select(posts_t.c.content_type)
                .where(posts_t.c.account_id == acc, posts_t.c.state == PostState.QUEUED)
                .order_by(posts_t.c.due_at)
            ).scalars()
        )


def test_the_daemon_gets_a_metrics_and_an_er_job(engine: Engine) -> None:
    jobs = service_jobs(Worker(engine, config(), FixedClock(T0)))
    assert [(name, every) for name, every, _ in jobs] == [
        ("metrics", METRICS_EVERY),
        ("er", RECOMPUTE_EVERY),
    ]


def test_the_metrics_job_reads_due_posts(engine: Engine) -> None:
    with engine.begin() as conn:
        b = Builder(conn)
        b.post(b.account("acc", "fake"), "laugh", published_at=T0 - 2 * HOUR)
    worker = Worker(engine, config("fake"), FixedClock(T0), {"fake": FakeAdapter(counters)})
    metrics = service_jobs(worker)[0][2]
    assert asyncio.run(metrics()) == 1
    with engine.connect() as conn:
        assert len(conn.execute(select(snapshots_t)).all()) == 1


def test_the_er_job_recomputes_then_fills_slots_by_priority(engine: Engine) -> None:
    acc = measured_account(engine)
    records = recompute_and_refill(engine, config(), T0)
    assert [r.account for r in records] == ["acc"]
    assert records[0].new_weights["laugh"] > records[0].new_weights["medal"]
    # In plan order the six medal posts would come first; by priority laugh leads.
    assert queue_types(engine, acc)[:2] == ["laugh", "laugh"]


def test_a_second_daemon_does_not_recompute_again_at_once(engine: Engine) -> None:
    measured_account(engine)
    assert len(recompute_and_refill(engine, config(), T0)) == 1
    assert recompute_and_refill(engine, config(), T0 + RECOMPUTE_EVERY / 4) == []
    assert len(recompute_and_refill(engine, config(), T0 + RECOMPUTE_EVERY)) == 1


def test_a_short_queue_is_refilled_with_evergreen_repeats(engine: Engine) -> None:
    with engine.begin() as conn:
        b = Builder(conn)
        acc = b.account("acc", "sim")
        tip = b.post(acc, "instruction", key="tip", evergreen=True, published_at=T0 - 40 * DAY)
        b.snapshot(tip, 73 * HOUR, likes=30, comments=0, shares=0, reach=1000)
    assert refill_queues(engine, config(), T0) >= 1
    with engine.connect() as conn:
        row = conn.execute(select(posts_t).where(posts_t.c.key == "tip~r1")).one()
    assert row.state == PostState.QUEUED
    assert row.due_at is not None
