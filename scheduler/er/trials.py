"""Many seeds of a world under several strategies: the figures ``smm simulate`` prints.

Each (seed, strategy) is an independent world (``loopsim.run``). The oracle and round-robin do
not depend on the loop's own settings beyond the limits, so their results are cached on disk
per world and seed; seeds run in parallel processes when there are cores to spare. The
summary is plain data (``summary``), rendered as text by the CLI, and as JSON or HTML.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import statistics
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from pathlib import Path
from typing import Any

import platformdirs

from scheduler.er.loopsim import STRATEGIES, RunResult, run
from scheduler.er.recompute import resolve_policy
from scheduler.er.world import World
from scheduler.files import write_private

#: Strategies whose outcome depends only on the world, the seed and the limits: cacheable.
CACHEABLE = ("oracle", "round_robin")
CACHE_VERSION = 1


def cache_dir() -> Path:
    return Path(platformdirs.user_cache_dir("smm-scheduler")) / "simulate"


def _cache_key(world: World, seed: int, strategy: str) -> str:
    er = world.er
    relevant = {
        "v": CACHE_VERSION,
        "accounts": [repr(a) for a in world.accounts],
        "days": world.days,
        "start": world.start.isoformat(),
        "name": world.name,
        "seed": seed,
        "strategy": strategy,
        # The limits shape the oracle; round-robin ignores them but they cost nothing here.
        "limits": [er.floor, er.ceiling, getattr(er, "exploration", None), repr(er.ages)],
    }
    text = json.dumps(relevant, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _load(path: Path, strategy: str, seed: int) -> RunResult | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return RunResult(
            strategy,
            seed,
            float(data["value"]),
            int(data["engagement"]),
            int(data["posts"]),
            dict(data["by_type"]),
            list(data.get("trajectory", [])),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _save(path: Path, result: RunResult) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {**asdict(result), "intervals": []}
    write_private(path, json.dumps(data))  # atomic: a parallel writer never leaves half a file


def _cache_path(world: World, seed: int, strategy: str, cache: Path | None) -> Path | None:
    if cache is None or strategy not in CACHEABLE:
        return None
    return cache / f"{_cache_key(world, seed, strategy)}.json"


def run_one(world: World, seed: int, strategy: str, cache: Path | None) -> RunResult:
    """One (seed, strategy), from the cache when it may be."""
    path = _cache_path(world, seed, strategy, cache)
    if path is not None:
        hit = _load(path, strategy, seed)
        if hit is not None:
            return hit
    result = run(world, seed, strategy)
    if path is not None:
        with contextlib.suppress(OSError):  # a read-only cache only costs time
            _save(path, result)
    return result


def run_seeds(
    world: World,
    seeds: Sequence[int],
    strategies: Sequence[str] = STRATEGIES,
    *,
    cache: Path | None = None,
    workers: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[int, dict[str, RunResult]]:
    """Every (seed, strategy) of ``world``; results per seed, then per strategy."""
    jobs = [(seed, s) for seed in seeds for s in strategies]
    out: dict[int, dict[str, RunResult]] = {seed: {} for seed in seeds}
    done = 0

    def finished(seed: int, strategy: str, result: RunResult) -> None:
        nonlocal done
        out[seed][strategy] = result
        done += 1
        if on_progress is not None:
            on_progress(done, len(jobs))

    # Cached results are read here: a process pool only pays for runs that compute.
    todo = []
    for seed, s in jobs:
        path = _cache_path(world, seed, s, cache)
        hit = _load(path, s, seed) if path is not None else None
        if hit is not None:
            finished(seed, s, hit)
        else:
            todo.append((seed, s))
    workers = workers if workers is not None else min(os.cpu_count() or 1, len(todo))
    if any(s not in CACHEABLE for _, s in todo):
        # The loop's policy comes from the plugins: load them once, before workers fork.
        resolve_policy(world.er)
    if workers <= 1 or len(todo) <= 1:
        for seed, s in todo:
            finished(seed, s, run_one(world, seed, s, cache))
        return out
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(run_one, world, seed, s, cache): (seed, s) for seed, s in todo}
        for future in as_completed(futures):
            seed, s = futures[future]
            finished(seed, s, future.result())
    return out


# ============================================================================ figures


def days_to_lead(
    trajectory: Sequence[Mapping[str, Any]],
    account: str,
    content_type: str,
    since: float,
    until: float | None = None,
) -> float | None:
    """Days after ``since`` until ``content_type`` holds the top weight of ``account`` and
    keeps it until ``until`` (None: it never does)."""
    reached: float | None = None
    for point in trajectory:
        if point["account"] != account or point["day"] < since:
            continue
        if until is not None and point["day"] >= until:
            break
        weights = point["weights"]
        top = max(weights.values())
        if weights.get(content_type, 0.0) >= top - 1e-9:
            if reached is None:
                reached = point["day"] - since
        else:
            reached = None
    return reached


def drift_events(world: World) -> list[tuple[str, float, str, float | None]]:
    """Per account and drift that changes the best type: (account, day, new best, next
    drift day)."""
    out = []
    for acc in world.accounts:
        days = [d for d, _ in acc.truth.drift]
        for i, day in enumerate(days):
            before = acc.truth.table(day - 1e-9)
            after = acc.truth.table(day)
            best_before = max(sorted(before), key=lambda t: before[t])
            best_after = max(sorted(after), key=lambda t: after[t])
            if best_after != best_before:
                nxt = days[i + 1] if i + 1 < len(days) else None
                out.append((acc.name, day, best_after, nxt))
    return out


def max_deviation(result: RunResult) -> float:
    """The mean over recomputes of the largest distance of any weight from an equal share."""
    devs = []
    for point in result.trajectory:
        w = point["weights"]
        if w:
            devs.append(max(abs(v - 1 / len(w)) for v in w.values()))
    return statistics.mean(devs) if devs else 0.0


def _stat(
    values: Sequence[float], seeds: Sequence[int], *, low_is_worst: bool = True
) -> dict[str, Any]:
    if not values:
        return {}
    worst_i = min(range(len(values)), key=lambda i: values[i] if low_is_worst else -values[i])
    return {
        "mean": statistics.mean(values),
        "median": statistics.median(values),
        "worst": values[worst_i],
        "worst_seed": seeds[worst_i],
        "best": max(values) if low_is_worst else min(values),
        "spread": statistics.stdev(values) if len(values) > 1 else 0.0,
    }


def summary(world: World, results: Mapping[int, Mapping[str, RunResult]]) -> dict[str, Any]:
    """The figures of a multi-seed run, as plain data (JSON-able)."""
    seeds = sorted(results)
    per_seed = []
    of_oracle, over_rr, realised, deviation, over_fixed = [], [], [], [], []
    demoted_seeds = []
    for seed in seeds:
        r = results[seed]
        row: dict[str, Any] = {"seed": seed}
        for s, res in r.items():
            row[s] = {
                "value": round(res.value, 2),
                "engagement": res.engagement,
                "posts": res.posts,
            }
        er = r.get("er")
        if er is not None and "oracle" in r and r["oracle"].value:
            row["of_oracle"] = er.value / r["oracle"].value
            row["engagement_of_oracle"] = (
                er.engagement / r["oracle"].engagement if r["oracle"].engagement else None
            )
            of_oracle.append(row["of_oracle"])
            if row["engagement_of_oracle"] is not None:
                realised.append(row["engagement_of_oracle"])
        if er is not None and "round_robin" in r and r["round_robin"].value:
            row["over_round_robin"] = er.value / r["round_robin"].value - 1
            over_rr.append(row["over_round_robin"])
        if er is not None and "fixed_slots" in r and r["fixed_slots"].value:
            row["over_fixed_slots"] = er.value / r["fixed_slots"].value
            over_fixed.append(row["over_fixed_slots"])
        if er is not None:
            row["max_deviation"] = max_deviation(er)
            deviation.append(row["max_deviation"])
            if any(p["demoted"] for p in er.trajectory):
                demoted_seeds.append(seed)
        per_seed.append(row)
    drift = []
    for account, day, best, nxt in drift_events(world):
        follow = []
        for seed in seeds:
            er = results[seed].get("er")
            if er is not None:
                follow.append(days_to_lead(er.trajectory, account, best, day, nxt))
        got = sorted(f for f in follow if f is not None)
        drift.append(
            {
                "account": account,
                "day": day,
                "new_best": best,
                "days_to_lead": follow,
                "median": statistics.median([f if f is not None else float("inf") for f in follow])
                if follow
                else None,
                "never": len(follow) - len(got),
            }
        )
    first = results[seeds[0]].get("er") if seeds else None
    return {
        "world": world.name,
        "description": world.description,
        "days": world.days,
        "accounts": len(world.accounts),
        "seeds": seeds,
        "of_oracle": _stat(of_oracle, seeds),
        "engagement_of_oracle": _stat(realised, seeds),
        "over_round_robin": _stat(over_rr, seeds),
        # Slot learning against the same loop with its slots fixed (a ratio, 1.15 = +15 %).
        "over_fixed_slots": _stat(over_fixed, seeds),
        "max_deviation": _stat(deviation, seeds, low_is_worst=False),
        "demoted_seeds": demoted_seeds,
        "drift": drift,
        "per_seed": per_seed,
        "by_type": first.by_type if first else {},
        "trajectory": first.trajectory if first else [],
    }
