"""The ER loop run against a simulated world, in memory: weeks of posting in well under a second.

Every recompute goes through the loop's own code — the per-type statistics
(``stats.age_ratios``, ``combine_ages``, ``shrink``), the policy and its limits
(``recompute._decide``), and the slot-by-slot content mix (``allocate.priority_order``) — on
readings taken the way the metrics job takes them (the first 6-hourly reading at or after
each configured age, along the network's saturating curve). Only the bookkeeping the daemon
keeps in its database is kept here in lists, so a strategy runs in a fraction of a second and
many seeds and worlds can be compared.

Each strategy runs in its own world: the posts it publishes draw their audience from a
generator seeded by (world, seed, strategy), so no strategy inherits another's luck. Runs are
compared on *expected* engagement (each published post's true ER at its publish time, times
its expected reach: the value of the allocation, without the luck of single posts) and also
report the engagement the posts actually drew.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any

from scheduler.config import ERSettings
from scheduler.er.allocate import HISTORY_WINDOW, priority_order
from scheduler.er.hours import Observation, fit
from scheduler.er.policy import Decision, Policy
from scheduler.er.readings import FRESH, LOG_OFFSET, AgeSums, reading_windows
from scheduler.er.recompute import _decide, resolve_policy
from scheduler.er.slotlearn import best_times, decide
from scheduler.er.stats import (
    HORIZON_HALF_LIVES,
    AccountStats,
    Evidence,
    age_ratios,
    combine_ages,
    shrink_log,
)
from scheduler.er.world import AccountWorld, World
from scheduler.queue import QueueEntry
from scheduler.slots import MIN_GAP, window_times

STRATEGIES = ("er", "oracle", "round_robin")
#: Also known: the same loop with its slots fixed where the world puts them (what slot
#: learning is measured against).
ALL_STRATEGIES = (*STRATEGIES, "fixed_slots")
#: How often readings are taken (the metrics job runs more often; one reading per band counts).
METRICS_EVERY = timedelta(hours=6)
RECOMPUTE_EVERY = timedelta(days=1)
#: The network's saturation time: counts reach 1 - exp(-age / TAU) of their final value.
TAU = timedelta(hours=20)
_SPLIT_REACH_NOISE = "reach"


# ============================================================================ posts


Reading = tuple[float, int | None, int | None, float | None, float | None]


@dataclass(slots=True)
class SimPost:
    """A published post and what the network will say about it."""

    account: int
    content_type: str
    at: float  # epoch seconds
    value: float  # expected engagements (the allocation's worth)
    engagements: int  # final engagements drawn
    reach: int  # final reach drawn
    followers: int
    #: Per configured age: (epoch seconds the reading is taken, engagements, denominator,
    #: ER, log ER); the last four None when the reading has no denominator.
    readings: list[Reading] = field(default_factory=list)
    #: What the post adds to the statistics once every reading is in (``sums_at``).
    settled: Contribution | None = None


def draw_post(
    acc: AccountWorld,
    index: int,
    content_type: str,
    when: datetime,
    start: datetime,
    rng: random.Random,
    ages: Sequence[timedelta],
    *,
    fallback_to_followers: bool = True,
) -> SimPost:
    """Publish one post: draw its audience and the readings the metrics job will take."""
    day = (when - start).total_seconds() / 86400.0
    hour = acc.truth.hour_factor(when.weekday(), when.hour)
    sigma_r = acc.default_noise
    sigma = acc.noise_of(content_type)
    reach_factor = math.exp(rng.gauss(-sigma_r * sigma_r / 2, sigma_r))
    er_factor = math.exp(rng.gauss(-sigma * sigma / 2, sigma))
    if acc.viral.rate and rng.random() < acc.viral.rate:
        er_factor *= rng.uniform(acc.viral.low, acc.viral.high)
    reach = min(acc.followers, max(1, round(acc.expected_reach() * reach_factor)))
    rate = min(1.0, acc.truth.er(content_type, day) * hour * er_factor)
    engagements = _binomial(rng, reach, rate)
    post = SimPost(
        index,
        content_type,
        when.timestamp(),
        acc.value(content_type, when, start),
        engagements,
        reach,
        acc.followers,
    )
    tick = METRICS_EVERY.total_seconds()
    origin = start.timestamp()
    tau = TAU.total_seconds()
    for age in ages:
        due = post.at + age.total_seconds()
        taken = origin + math.ceil((due - origin) / tick) * tick
        share = -math.expm1(-(taken - post.at) / tau)
        eng = round(engagements * share)
        denominator: int | None = None
        if acc.basis == "reach":
            denominator = round(reach * share) or None
        elif acc.basis == "followers" or fallback_to_followers:
            denominator = acc.followers
        # else: reach declared, never reported, and no fallback: the reading has no denominator
        if denominator is None:
            post.readings.append((taken, None, None, None, None))
        else:
            log_er = math.log(eng + LOG_OFFSET) - math.log(denominator)
            post.readings.append((taken, eng, denominator, eng / denominator, log_er))
    return post


def _binomial(rng: random.Random, n: int, p: float) -> int:
    if n <= 0 or p <= 0:
        return 0
    if p >= 1:
        return n
    var = n * p * (1 - p)
    if var >= 10:
        return max(0, min(n, round(rng.gauss(n * p, math.sqrt(var)))))
    # Small counts: Poisson-like inversion on the rarer side is plenty for a simulation.
    k, prob = 0, (1 - p) ** n
    u, ratio = rng.random(), p / (1 - p)
    while u > prob and k < n:
        u -= prob
        prob *= ratio * (n - k) / (k + 1)
        k += 1
    return k


# ============================================================================ statistics


def sums_at(posts: Sequence[SimPost], now: float, settings: ERSettings) -> dict[str, list[AgeSums]]:
    """Per content type, the ``AgeSums`` the database would return at ``now``
    (``readings.sum_readings``, the same rules in Python)."""
    hl = settings.half_life.total_seconds()
    rate = math.log(2) / hl
    horizon = now - hl * HORIZON_HALF_LIVES
    recent_from = now - hl
    fresh_from = now - hl * FRESH
    n_ages = len(reading_windows(settings.ages))
    out: dict[str, list[AgeSums]] = {}
    for post in posts:
        at = post.at
        if at < horizon or at > now:
            continue
        readings = post.readings
        if readings[-1][0] <= now:  # every reading is in: worked out once per post
            got = post.settled
            if got is None:
                got = post.settled = _contribution(readings, len(readings))
        else:  # readings are taken in age order: the first ``k`` are in
            got = _contribution(readings, sum(1 for r in readings if r[0] <= now))
        if got is None:
            continue
        latest, er, lx, read, last = got
        w = math.exp((at - now) * rate)
        sums = out.get(post.content_type)
        if sums is None:
            sums = out[post.content_type] = [AgeSums() for _ in range(n_ages)]
        for i, er_i in read:
            a = sums[i]
            a.any_weight += w
            a.any_total += w * er_i
            if last is not None:
                a.pair_this += w * er_i
                a.pair_last += w * last
        a = sums[latest]
        a.weight += w
        a.total += w * er
        a.squares += w * er * er
        a.log_total += w * lx
        a.log_squares += w * lx * lx
        if at >= fresh_from:
            a.fresh_weight += w
            a.fresh_log_total += w * lx
            a.fresh_log_squares += w * lx * lx
            a.fresh_count += 1
        a.count += 1
        if at >= recent_from:
            a.recent_total += er
            a.recent_count += 1
        else:
            a.older_total += er
            a.older_count += 1
    return out


Contribution = tuple[int, float, float, list[tuple[int, float]], float | None]


def _contribution(readings: Sequence[Reading], k: int) -> Contribution | None:
    """What a post adds to the sums when its first ``k`` readings are in: (the latest age
    read, its ER and log ER, every (age, ER) read, the last age's ER or None); None when
    none of them has an ER."""
    read = [(i, r[3]) for i, r in enumerate(readings[:k]) if r[3] is not None]
    if not read:
        return None
    latest, er = read[-1]
    lx = readings[latest][4]
    assert lx is not None
    last = readings[-1][3] if k == len(readings) else None
    return latest, er, lx, read, last


def stats_at(
    account_id: int,
    name: str,
    basis: str,
    types: Sequence[str],
    posts: Sequence[SimPost],
    now: float,
    settings: ERSettings,
) -> AccountStats:
    """The account's statistics at ``now``, as ``stats.account_stats`` computes them."""
    sums = sums_at(posts, now, settings)
    ages_seconds = sorted({int(a.total_seconds()) for a in settings.ages})
    ratios = age_ratios(sums.values())
    evidence = {t: combine_ages(s, ratios, ages_seconds) for t, s in sums.items()}
    for t in types:
        evidence.setdefault(t, Evidence())
    mean, spread, k, per_type = shrink_log(evidence)
    return AccountStats(account_id, name, basis, mean, spread, k, per_type)


# ============================================================================ strategies


def floored_oracle(
    true_er: Mapping[str, float], types: Sequence[str], floor: float, ceiling: float
) -> dict[str, float]:
    """The best shares knowing the true rates: every type its floor, the rest to the best
    types in turn, each up to the ceiling. A type without a known rate counts as 0."""
    if not types:
        return {}
    floor = min(floor, 1 / len(types))
    weights = dict.fromkeys(types, floor)
    left = 1 - floor * len(types)
    for t in sorted(types, key=lambda t: (-true_er.get(t, 0.0), t)):
        add = min(left, max(0.0, ceiling - floor))
        weights[t] += add
        left -= add
    if left > 1e-12:  # the ceiling is too low to place everything: spread the rest evenly
        for t in types:
            weights[t] += left / len(types)
    return weights


@dataclass
class OraclePolicy:
    """Knows each account's truth and the day; allocates as ``floored_oracle`` under the
    same limits the loop works within."""

    world: World
    day: Callable[[], float]
    name: str = "oracle"

    def decide(
        self,
        stats: AccountStats,
        old_weights: Mapping[str, float],
        settings: ERSettings,
        rng: random.Random,
    ) -> Decision:
        from scheduler.er.weights import fit_limits

        acc = next(a for a in self.world.accounts if a.name == stats.account)
        types = sorted(stats.types)
        limits = fit_limits(len(types), settings.floor, settings.ceiling, settings.exploration)
        table = acc.truth.table(self.day())
        weights = floored_oracle(table, types, limits.floor, limits.ceiling)
        return Decision(weights, f"oracle for day {self.day():.0f}: knows the true rates")


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
        types = sorted(stats.types)
        return Decision({t: 1 / len(types) for t in types}, "round-robin: equal shares")


# ============================================================================ one run


@dataclass
class RunResult:
    """What one strategy achieved in one world and seed."""

    strategy: str
    seed: int
    value: float  # expected engagements of the posts it published
    engagement: int  # engagements those posts actually drew
    posts: int
    by_type: dict[str, dict[str, float]]
    #: Per recompute and account: at (days since start), weights, demoted types.
    trajectory: list[dict[str, Any]] = field(default_factory=list)
    #: Per recompute and account and ranked type: (day, type, er_low, er_high, truth read).
    intervals: list[tuple[float, str, str, float, float, float]] = field(default_factory=list)
    #: Slots moved by slot learning (one per day of the week a move applies to).
    slot_moves: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "seed": self.seed,
            "value": round(self.value, 3),
            "engagement": self.engagement,
            "posts": self.posts,
            "by_type": self.by_type,
        }


def _day_types(
    weights: Mapping[str, float], types: Sequence[str], history: list[str], n: int
) -> list[str]:
    """The content types of the next ``n`` slots, as ``assign_queue_slots`` would order a
    queue holding enough posts of every type (the simulated content team keeps it full)."""
    entries = [
        QueueEntry(None, i * len(types) + j, t, None) for i in range(n) for j, t in enumerate(types)
    ]
    if not weights:  # before the first recompute: the plan's order
        ordered: Sequence[QueueEntry] = sorted(entries, key=lambda e: e.plan_order)
    else:
        ordered = priority_order(weights, history[-HISTORY_WINDOW:])(entries)
    return [e.content_type for e in ordered[:n]]


def run(
    world: World,
    seed: int,
    strategy: str,
    *,
    policy: Policy | None = None,
    on_day: Callable[[int], None] | None = None,
) -> RunResult:
    """Simulate ``world`` under one strategy and seed."""
    settings = world.er
    start = world.start
    rng = random.Random(f"{world.name}|{seed}|{strategy}|audience")
    # An account with a seed of its own draws from its own stream, still per run and strategy.
    rngs = [
        rng if acc.seed == 0 else random.Random(f"{seed}|{strategy}|{acc.name}|{acc.seed}")
        for acc in world.accounts
    ]
    decide_rng = random.Random(f"{seed}:{strategy}")
    now_day = [0.0]
    chosen: Policy
    if strategy in ("er", "fixed_slots"):
        chosen = policy or resolve_policy(settings)
    elif strategy == "oracle":
        chosen = OraclePolicy(world, lambda: now_day[0])
    elif strategy == "round_robin":
        chosen = RoundRobinPolicy()
    else:
        raise ValueError(f"unknown strategy {strategy!r}; known: {', '.join(ALL_STRATEGIES)}")
    accounts = world.accounts
    types = [acc.truth.types for acc in accounts]
    posts: list[list[SimPost]] = [[] for _ in accounts]
    history: list[list[str]] = [[] for _ in accounts]
    weights: list[dict[str, float]] = [{} for _ in accounts]
    states: list[dict[str, Any]] = [{} for _ in accounts]
    result = RunResult(strategy, seed, 0.0, 0, 0, {})
    ages = sorted(settings.ages)
    # Each account's weekly slots: the loop moves them within the learning windows, the
    # oracle puts them at the best hours of those windows from the start.
    tables = [acc.week() for acc in accounts]
    if strategy == "oracle":
        tables = [oracle_table(acc) for acc in accounts]
    slot_rng = random.Random(f"{seed}:{strategy}:slots")
    for day in range(world.days):
        today = start + timedelta(days=day)
        if day > 0:  # the daily recompute, before the day's slots are filled
            now_day[0] = float(day)
            now = today.timestamp()
            for i, acc in enumerate(accounts):
                stats = stats_at(i, acc.name, _basis(acc), types[i], posts[i], now, settings)
                stats = AccountStats(**{**stats.__dict__, "state": states[i]})
                _, decision = _decide(chosen, stats, weights[i], settings, decide_rng)
                weights[i] = dict(decision.new_weights)
                states[i] = dict(decision.state)
                result.trajectory.append(
                    {
                        "account": acc.name,
                        "day": day,
                        "weights": weights[i],
                        "demoted": sorted(decision.demoted),
                    }
                )
                if strategy == "er":
                    _record_intervals(result, acc, stats, day, settings.min_posts)
                if strategy == "er" and acc.learn:
                    model = fit(observations_at(posts[i], now, settings))
                    slots = decide(model, tables[i], acc.learn, slot_rng)
                    tables[i] = dict(slots.new)
                    result.slot_moves += sum(len(m.days) for m in slots.moves)
        for i, acc in enumerate(accounts):
            order = types[i]
            if strategy == "oracle":  # ties between equal shares go to the truly better type
                table = acc.truth.table(float(day))
                order = sorted(order, key=lambda t: (-table[t], t))
            today_slots = tables[i].get(today.weekday(), ())
            slot_types = _day_types(weights[i], order, history[i], len(today_slots))
            for slot, ctype in zip(today_slots, slot_types, strict=True):
                when = today.replace(hour=slot.hour, minute=slot.minute)
                post = draw_post(acc, i, ctype, when, start, rngs[i], ages)
                posts[i].append(post)
                history[i].append(ctype)
                result.value += post.value
                result.engagement += post.engagements
                result.posts += 1
                slot_stats = result.by_type.setdefault(
                    ctype, {"posts": 0, "engagement": 0, "value": 0.0}
                )
                slot_stats["posts"] += 1
                slot_stats["engagement"] += post.engagements
                slot_stats["value"] += post.value
        if on_day is not None:
            on_day(day + 1)
    return result


def oracle_table(acc: AccountWorld) -> dict[int, tuple[time, ...]]:
    """The account's weekly slots placed knowing the hour effects: on each day with learning
    windows, as many slots as the world gives it at the hours of its windows that engage
    most (as far apart as slot learning keeps them); the other days as the world has them."""
    table = acc.week()
    gap = int(MIN_GAP.total_seconds() // 60)
    for day, windows in acc.learn.items():
        scores = {t: acc.truth.hour_factor(day, t.hour) for t in window_times(windows)}
        best = best_times(scores, len(table[day]), gap)
        if best is not None:
            table[day] = tuple(best)
    return table


def observations_at(
    posts: Sequence[SimPost], now: float, settings: ERSettings
) -> list[Observation]:
    """What the hour model reads at ``now``: each post's latest reading taken by then, on the
    log scale, with its decay weight and its hour of posting (a world's clock is UTC)."""
    hl = settings.half_life.total_seconds()
    rate = math.log(2) / hl
    horizon = now - hl * HORIZON_HALF_LIVES
    out = []
    for post in posts:
        if post.at < horizon or post.at > now:
            continue
        latest = None
        for i, r in enumerate(post.readings):
            if r[0] <= now and r[4] is not None:
                latest = (i, r[4])
        if latest is None:
            continue
        when = datetime.fromtimestamp(post.at, UTC)
        out.append(
            Observation(
                post.content_type,
                when.weekday(),
                when.hour,
                latest[0],
                latest[1],
                math.exp((post.at - now) * rate),
            )
        )
    return out


def _basis(acc: AccountWorld) -> str:
    return "reach" if acc.basis == "reach" else "followers"


def _record_intervals(
    result: RunResult, acc: AccountWorld, stats: AccountStats, day: int, min_posts: int
) -> None:
    """What the loop believed about each ranked type, for interval coverage."""
    for t, s in stats.types.items():
        if s.er_low is None or s.er_high is None or s.posts < min_posts:
            continue
        result.intervals.append((float(day), acc.name, t, s.er_low, s.er_high, 0.0))


def typical_reading(
    acc: AccountWorld,
    content_type: str,
    day: float,
    start: datetime,
    settings: ERSettings,
    *,
    draws: int = 4000,
    seed: int = 0,
) -> float:
    """What a type's ER estimate aims at: the typical (geometric mean) last-age reading of its
    posts published on ``day`` at the account's slots, found by drawing many of them."""
    rng = random.Random(f"typical|{seed}|{acc.name}|{content_type}|{day}")
    ages = sorted(settings.ages)
    total = 0.0
    n = 0
    for i in range(draws):
        slot = acc.slots[i % len(acc.slots)]
        when = (start + timedelta(days=day)).replace(hour=slot.hour, minute=slot.minute)
        lx = draw_post(acc, 0, content_type, when, start, rng, ages).readings[-1][4]
        if lx is not None:
            total += lx
            n += 1
    return math.exp(total / n) if n else float("nan")
