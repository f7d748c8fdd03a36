"""The ER loop against the oracle and round-robin, and how fast a simulation runs.

Prints, for the reference scenario (5 content types with true ER 1-4 %, 90 days, 3 posts a
day) over 20 seeds: engagement as a share of the floored oracle and the gain over round-robin,
mean and worst seed; the drift scenario (the best type changes on day 45): days until the new
best type has the top weight; and the wall time of 90 days for 3 accounts at 5 posts a day.

    python benchmarks/bench_simulate.py [--seeds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from datetime import timedelta

from scheduler.config import ERSettings
from scheduler.er.scenarios import START, five_types
from scheduler.er.simulate import days_to_top, simulate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    args = parser.parse_args()

    shares, gains = [], []
    t0 = time.perf_counter()
    for seed in range(1, args.seeds + 1):
        r = asyncio.run(simulate(five_types(seed)))
        shares.append(r["er"].engagement / r["oracle"].engagement)
        gains.append(r["er"].engagement / r["round_robin"].engagement - 1)
    spent = time.perf_counter() - t0
    worst = min(range(len(shares)), key=lambda i: shares[i])
    print(f"ER loop, 5 types at 1-4 %, 90 days, 3 posts/day, {args.seeds} seeds ({spent:.0f} s)")
    print(
        f"  of the floored oracle: mean {statistics.mean(shares):.1%}, "
        f"worst {shares[worst]:.1%} (seed {worst + 1})   target >= 90% on average"
    )
    print(
        f"  over round-robin:      mean {statistics.mean(gains):+.1%}, "
        f"worst {min(gains):+.1%}   target >= +25% on average"
    )

    for half_life in (14, 7):
        follow = []
        for seed in range(1, 9):
            scenario = five_types(
                seed, drift_day=45, er=ERSettings(half_life=timedelta(days=half_life))
            )
            r = asyncio.run(simulate(scenario, strategies=("er",)))
            follow.append(
                days_to_top(r["er"].trajectory, "provocation", START + timedelta(days=45))
            )
        got = [f for f in follow if f is not None]
        print(
            f"drift on day 45, half-life {half_life} d, 8 seeds: the new best is on top after "
            f"{', '.join(f'{f:.0f}' for f in got) or '-'} days "
            f"({sum(f <= 14 for f in got)}/8 within 14)   target: within 14 days"
        )

    t0 = time.perf_counter()
    asyncio.run(simulate(five_types(1, posts_per_day=5, accounts=3), strategies=("er",)))
    print(
        f"90 simulated days, 3 accounts x 5 posts/day (1,350 posts), ER loop: "
        f"{time.perf_counter() - t0:.1f} s   target: seconds"
    )


if __name__ == "__main__":
    main()
