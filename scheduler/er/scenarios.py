"""The reference scenarios the ER loop is judged by (tests and benchmarks share them)."""

from __future__ import annotations

from datetime import UTC, datetime, time

from scheduler.config import AccountConfig, Config, ERSettings
from scheduler.er.simulate import Scenario, Truth
from scheduler.plan.items import PlanItem

#: Five content types with true ER 1%, 1.5%, 2%, 3% and 4%.
FIVE_TYPES = {
    "provocation": 0.01,
    "announcement": 0.015,
    "medal": 0.02,
    "laugh": 0.03,
    "instruction": 0.04,
}
START = datetime(2026, 1, 5, tzinfo=UTC)


def account(name: str, posts_per_day: int, *, followers: int = 20_000) -> AccountConfig:
    hours = [time(8 + (12 * i) // max(1, posts_per_day - 1), 0) for i in range(posts_per_day)]
    return AccountConfig(
        name=name,
        platform="sim",
        timezone="UTC",
        options={"followers": followers},
        slots={day: tuple(hours) for day in range(7)},
    )


def plan_for(accounts: list[str], types: dict[str, float]) -> list[PlanItem]:
    """Three posts of every type per account: the content team's starting stock."""
    items: list[PlanItem] = []
    for a in accounts:
        for i in range(3):
            for t in types:
                n = len(items)
                items.append(
                    PlanItem(
                        f"{a}-{t}-{i}",
                        a,
                        t,
                        f"{t} post {i}",
                        (),
                        None,
                        (),
                        False,
                        None,
                        "scenario",
                        n,
                        "line",
                        n,
                    )
                )
    return items


def five_types(
    seed: int,
    *,
    days: int = 90,
    posts_per_day: int = 3,
    accounts: int = 1,
    drift_day: int | None = None,
    er: ERSettings | None = None,
) -> Scenario:
    """The issue's scenario: 5 types at 1-4 %, 3 posts a day, 90 days; optionally the best type
    changes on ``drift_day`` (the worst type becomes the best by a clear margin)."""
    names = [f"acct{i + 1}" for i in range(accounts)]
    drift = ((drift_day, {"provocation": 0.06}),) if drift_day is not None else ()
    config = Config(
        path=None,
        accounts={n: account(n, posts_per_day) for n in names},
        er=er or ERSettings(),
    )
    return Scenario(
        config,
        plan_for(names, FIVE_TYPES),
        {n: Truth(FIVE_TYPES, drift) for n in names},
        days,
        seed,
        START,
    )
