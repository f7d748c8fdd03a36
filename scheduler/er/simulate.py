"""``smm simulate``: the real scheduling, dispatch, metrics and ER code, in virtual time.

Each scenario runs three times on the simulated network with the same seed, differing only in
the policy on the ``er_policy`` seam: the ER loop itself, the *oracle* (the best allocation
under the same floor and ceiling, knowing the true rates — and their drift), and round-robin
(equal shares). The content team is modelled as keeping a few posts of every type waiting, so
the allocation alone decides what goes out. Engagement is read from the network a week after
the last post, so every post is counted over its whole life.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import secrets
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from scheduler.adapter import Adapter
from scheduler.config import Config, ERSettings
from scheduler.db.bulk import insert_rows
from scheduler.db.engine import make_engine
from scheduler.db.migrate import upgrade
from scheduler.db.models import Account, PostState, PriorityDecision, Schedule
from scheduler.er.allocate import queue_order_for
from scheduler.er.collect import collect_metrics
from scheduler.er.loopsim import floored_oracle
from scheduler.er.policy import Decision, Policy
from scheduler.er.recompute import recompute
from scheduler.er.stats import AccountStats
from scheduler.outgoing import account_view, from_row
from scheduler.plan.importer import apply_plan
from scheduler.plan.items import PlanItem
from scheduler.queue import assign_queue_slots, posts_t
from scheduler.simulation import Job, Simulation, VirtualClock

accounts_t = Account.__table__  # type: ignore[attr-defined]
decisions_t = PriorityDecision.__table__  # type: ignore[attr-defined]

STRATEGIES = ("er", "oracle", "round_robin")
#: How often the simulation reads metrics and recomputes (coarser than the daemon, same code).
METRICS_EVERY = timedelta(hours=6)
RECOMPUTE_EVERY = timedelta(days=1)
#: Posts of each type the simulated content team keeps waiting per account.
STOCK_PER_TYPE = 3


# ============================================================================ the truth


@dataclass(frozen=True)
class Truth:
    """The hidden true ER per content type of one account, and when it changes."""

    true_er: Mapping[str, float]
    drift: tuple[tuple[int, Mapping[str, float]], ...] = ()

    def at_day(self, day: int) -> Mapping[str, float]:
        table = self.true_er
        for start, changed in self.drift:
            if day >= start:
                table = {**table, **changed}
        return table

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> Truth:
        raw = options.get("drift") or ()
        drifts = [raw] if isinstance(raw, Mapping) else list(raw)
        return cls(
            dict(options.get("true_er") or {}),
            tuple(sorted((int(d["day"]), dict(d["true_er"])) for d in drifts)),
        )

    def as_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"true_er": dict(self.true_er)}
        if self.drift:
            options["drift"] = [{"day": d, "true_er": dict(t)} for d, t in self.drift]
        return options


# ============================================================================ comparison policies


@dataclass
class OraclePolicy:
    """Knows the truth (and the day); allocates as ``floored_oracle``."""

    truths: Mapping[str, Truth]
    clock: VirtualClock
    start: datetime
    name: str = "oracle"

    def decide(
        self,
        stats: AccountStats,
        old_weights: Mapping[str, float],
        settings: ERSettings,
        rng: random.Random,
    ) -> Decision:
        day = (self.clock.now() - self.start).days
        types = sorted(set(stats.types) | set(old_weights))
        truth = self.truths[stats.account].at_day(day)
        weights = floored_oracle(truth, types, settings.floor, settings.ceiling)
        return Decision(weights, f"oracle for day {day}: knows the true rates")


@dataclass
class RoundRobinPolicy:
    """Every type the same share, whatever happens."""

    name: str = "round_robin"

    def decide(
        self,
        stats: AccountStats,
        old_weights: Mapping[str, float],
        settings: ERSettings,
        rng: random.Random,
    ) -> Decision:
        types = sorted(set(stats.types) | set(old_weights))
        return Decision({t: 1 / len(types) for t in types}, "round-robin: equal shares")


# ============================================================================ one run


@dataclass
class RunResult:
    """What one strategy achieved."""

    strategy: str
    engagement: int
    posts: int
    by_type: dict[str, dict[str, int]]
    trajectory: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Scenario:
    """Accounts (forced onto the sim network), their truths, the plan, and how long."""

    config: Config
    items: Sequence[PlanItem]
    truths: Mapping[str, Truth]
    days: int
    seed: int
    start: datetime

    def sim_config(self, strategy: str = "er") -> Config:
        """The config on the sim network. Each strategy gets a network of its own (its own
        seed): posts another strategy published, and their audience, never carry over."""
        salt = STRATEGIES.index(strategy) if strategy in STRATEGIES else len(STRATEGIES)
        accounts = {}
        for name, acc in self.config.accounts.items():
            options = {
                **{k: v for k, v in acc.options.items() if k not in ("true_er", "drift")},
                **self.truths[name].as_options(),
                # One seed per account, derived so accounts differ but runs repeat; an
                # account's own seed option is mixed in, not overwritten.
                "seed": ((self.seed * 10 + salt) * 1000 + sorted(self.config.accounts).index(name))
                * 1_000_003
                + _own_seed(acc.options),
                # An account's own start holds; the scenario's start is the default.
                "start": acc.options.get("start", self.start.isoformat()),
            }
            accounts[name] = dataclasses.replace(acc, platform="sim", options=options)
        return dataclasses.replace(self.config, accounts=accounts)


def _own_seed(options: Mapping[str, Any]) -> int:
    """The account's own ``seed`` option (0 without one; a bad one is the sim's to report)."""
    own = options.get("seed", 0)
    return own if isinstance(own, int) and not isinstance(own, bool) else 0


def _stock_job(
    engine: Engine, config: Config, items: Sequence[PlanItem], ids: Mapping[str, int]
) -> Callable[[datetime], Any]:
    """Keep STOCK_PER_TYPE posts of every planned type waiting, then re-slot by priority."""
    templates: dict[tuple[str, str], list[PlanItem]] = {}
    for item in items:
        templates.setdefault((item.account, item.content_type), []).append(item)
    made = [0]

    async def run(now: datetime) -> None:
        def work() -> None:
            with engine.begin() as conn:
                waiting: dict[tuple[int, str], int] = {}
                for account_id, ctype in conn.execute(
                    select(posts_t.c.account_id, posts_t.c.content_type).where(
                        posts_t.c.state == PostState.QUEUED,
                        posts_t.c.schedule == Schedule.QUEUE,
                    )
                ):
                    waiting[(account_id, ctype)] = waiting.get((account_id, ctype), 0) + 1
                rows = []
                for (account, ctype), pool in templates.items():
                    account_id = ids[account]
                    for _ in range(STOCK_PER_TYPE - waiting.get((account_id, ctype), 0)):
                        made[0] += 1
                        src = pool[made[0] % len(pool)]
                        rows.append(_clone(src, account_id, made[0], now))
                insert_rows(conn, posts_t, rows)
                for name, acc in config.accounts.items():
                    assign_queue_slots(
                        conn, acc, ids[name], now, order=queue_order_for(conn, ids[name])
                    )

        await asyncio.to_thread(work)

    return run


def _clone(src: PlanItem, account_id: int, n: int, now: datetime) -> dict[str, Any]:
    return {
        "key": f"{src.key}~s{n}",
        "account_id": account_id,
        "content_type": src.content_type,
        "text": src.text,
        "media": list(src.media),
        "link": src.link,
        "tags": list(src.tags),
        "evergreen": False,
        "schedule": Schedule.QUEUE,
        "plan_order": 1_000_000 + n,
        "plan_file": None,
        "source": "simulated content team",
        "content_hash": "",
        "state": PostState.QUEUED,
        "due_at": None,
        "next_attempt_at": None,
        "idempotency_key": secrets.token_hex(16),
        "attempt_count": 0,
        "repeat_count": 0,
        "created_at": now,
        "updated_at": now,
    }


async def run_strategy(
    scenario: Scenario,
    strategy: str,
    workdir: Path,
    *,
    on_progress: Callable[[str, float], None] | None = None,
) -> RunResult:
    """Simulate ``scenario`` under one strategy, on a fresh SQLite database in ``workdir``."""
    config = scenario.sim_config(strategy)
    engine = make_engine(f"sqlite:///{workdir / f'{strategy}.db'}")
    try:
        upgrade(engine)
        clock = VirtualClock(scenario.start)
        with engine.begin() as conn:
            apply_plan(conn, list(scenario.items), config, scenario.start)
            ids = {r.name: r.id for r in conn.execute(select(accounts_t.c.id, accounts_t.c.name))}
        policy: Policy | None = {
            "er": None,
            "oracle": OraclePolicy(scenario.truths, clock, scenario.start),
            "round_robin": RoundRobinPolicy(),
        }[strategy]
        rng = random.Random(f"{scenario.seed}:{strategy}")
        sim = Simulation(engine, config, clock)

        async def metrics(now: datetime) -> None:
            await collect_metrics(engine, sim.worker.adapters or {}, config, now, clock=clock)

        async def er(now: datetime) -> None:
            await asyncio.to_thread(recompute, engine, config, now, policy=policy, rng=rng)

        stock = _stock_job(engine, config, scenario.items, ids)
        await stock(scenario.start)
        end = scenario.start + timedelta(days=scenario.days)
        total = (end - scenario.start).total_seconds()

        def progress(now: datetime) -> None:
            if on_progress is not None:
                on_progress(strategy, (now - scenario.start).total_seconds() / total)

        sim.jobs = [
            Job("metrics", METRICS_EVERY, metrics),
            Job("er", RECOMPUTE_EVERY, er),
            Job("stock", RECOMPUTE_EVERY, stock),
        ]
        sim.on_progress = progress
        worker = await sim.run(end)
        assert worker.adapters is not None
        return await _measure(engine, config, worker.adapters, clock, strategy, end)
    finally:
        engine.dispose()


async def _measure(
    engine: Engine,
    config: Config,
    adapters: Mapping[str, Adapter],
    clock: VirtualClock,
    strategy: str,
    end: datetime,
) -> RunResult:
    """Total engagement of every published post a week after the last one went out."""
    clock.advance(end + timedelta(days=7))
    with engine.connect() as conn:
        rows = conn.execute(
            select(posts_t, accounts_t.c.name.label("account"))
            .join(accounts_t, accounts_t.c.id == posts_t.c.account_id)
            .where(posts_t.c.state == PostState.PUBLISHED, posts_t.c.published_at <= end)
        ).all()
        trajectory = [
            {"account": name, "at": at, "weights": weights}
            for name, at, weights in conn.execute(
                select(accounts_t.c.name, decisions_t.c.created_at, decisions_t.c.new_weights)
                .join(accounts_t, accounts_t.c.id == decisions_t.c.account_id)
                .order_by(decisions_t.c.created_at, accounts_t.c.name)
            )
        ]
    engagement = 0
    by_type: dict[str, dict[str, int]] = {}
    for name, acc in config.accounts.items():
        mine = [r for r in rows if r.account == name]
        found = await adapters[acc.platform].fetch_metrics(
            [from_row(r, name) for r in mine], account_view(acc)
        )
        for r in mine:
            m = found.get(r.remote_id or "")
            got = 0
            if m is not None:
                got = sum(v or 0 for v in (m.likes, m.comments, m.shares, m.saves, m.clicks))
            engagement += got
            slot = by_type.setdefault(r.content_type, {"posts": 0, "engagement": 0})
            slot["posts"] += 1
            slot["engagement"] += got
    return RunResult(strategy, engagement, len(rows), by_type, trajectory)


async def simulate(
    scenario: Scenario,
    *,
    strategies: Sequence[str] = STRATEGIES,
    on_progress: Callable[[str, float], None] | None = None,
) -> dict[str, RunResult]:
    """Run ``scenario`` under each strategy (same seed, same network) and return the results."""
    with tempfile.TemporaryDirectory(prefix="smm-simulate-") as tmp:
        return {
            s: await run_strategy(scenario, s, Path(tmp), on_progress=on_progress)
            for s in strategies
        }


def days_to_top(
    trajectory: Sequence[Mapping[str, Any]], content_type: str, since: datetime
) -> float | None:
    """Days after ``since`` until ``content_type`` holds the top weight for good (None: never).

    ``trajectory`` is ``RunResult.trajectory`` for one account."""
    reached: float | None = None
    for point in trajectory:
        if point["at"] < since:
            continue
        weights = point["weights"]
        if max(weights, key=lambda t: weights[t]) == content_type:
            if reached is None:
                reached = (point["at"] - since) / timedelta(days=1)
        else:
            reached = None
    return reached
