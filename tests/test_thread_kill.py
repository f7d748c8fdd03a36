"""Threads and kill -9: ``smm run`` killed with SIGKILL while reply chains are going out,
restarted each time. Every part of every thread reaches the network exactly once (counted
from the sim's delivery ledger, written by the "network" itself): none twice, none skipped.
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from daemon_support import (
    NO_FSYNC_ENV,
    Daemons,
    config_at,
    finish_after_kills,
    pending_count,
    post_rows,
    utcnow,
    wait_dispatching,
    wait_until,
    write_config,
)
from smm_sim import posts_per_key, requests_per_key, reset_worlds

from scheduler.adapter import PostOptions
from scheduler.db.engine import make_engine
from scheduler.db.models import PostState
from scheduler.plan.importer import apply_plan
from scheduler.plan.items import PlanItem

POSTS = 12
PARTS = ("Part two", "Part three", "Part four")
KILLS = 6


@pytest.mark.slow
@pytest.mark.timeout(600)  # over a minute on a loaded 2-core machine
def test_kill_9_in_the_middle_of_threads_publishes_every_part_once(
    sqlite_url: str, tmp_path: Path
) -> None:
    seed = int(os.environ.get("SMM_KILL_SEED") or random.randrange(2**32))
    print(f"kill moments seed: {seed} (set SMM_KILL_SEED={seed} to replay them)")
    rng = random.Random(seed)
    reset_worlds()
    ledger = tmp_path / "deliveries.jsonl"
    path = write_config(
        tmp_path / "config.toml",
        {"threads": {"platform": "thread-sim", "options": {"seed": 1, "ledger": str(ledger)}}},
        daemon={
            "tick": "0.2s",
            "lease": "1s",
            "concurrency": 4,
            "shutdown_deadline": "3s",
            "publish_timeout": "10s",
        },
        policies={"misfire_grace": "1h", "max_attempts": 100, "backoff_base": "0.1s"},
    )
    config = config_at(path)
    engine = make_engine(sqlite_url)
    start = utcnow()
    items = [
        PlanItem(
            f"t{i:02d}",
            "threads",
            "instruction",
            f"Part one of t{i:02d}",
            (),
            None,
            (),
            False,
            start + timedelta(seconds=i * 0.3),
            "plan.yaml",
            i + 1,
            "line",
            i,
            options=PostOptions(thread=PARTS),
        )
        for i in range(POSTS)
    ]
    with engine.begin() as conn:
        apply_plan(conn, items, config, start)

    keys = [p.idempotency_key for p in post_rows(engine).values()]

    def mid_chain() -> bool:
        """A chain is half out: its first part reached the network, its last not yet."""
        if not ledger.exists():
            return False
        seen = requests_per_key(ledger)
        return any(k in seen and f"{k}-part4" not in seen for k in keys)

    with Daemons(path, sqlite_url, tmp_path, test_networks=True, env={NO_FSYNC_ENV: "1"}) as ds:
        try:
            for _ in range(KILLS):
                d = ds.start()
                wait_dispatching(d, engine)
                # Killed the moment a chain is half out (or at once when none is left).
                wait_until(
                    lambda: mid_chain() or pending_count(engine) == 0,
                    timeout=60,
                    interval=0.01,
                    what="a chain to be half out",
                )
                time.sleep(rng.uniform(0.0, 0.2))
                assert d.alive(), f"the daemon died by itself:\n{d.tail()}"
                d.kill()
            finish_after_kills(ds, engine, "every thread to go out after the last restart")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n(kill seed {seed})\n{ds.logs()}") from None

    posts = post_rows(engine)
    assert Counter(p.state for p in posts.values()) == {PostState.PUBLISHED: POSTS}
    delivered = posts_per_key(ledger)
    # The ledger counts by the key each request carried: the post's, then one per part.
    expected = {
        p.idempotency_key + part
        for p in posts.values()
        for part in ("", "-part2", "-part3", "-part4")
    }
    assert set(delivered) == expected, "a part is missing"  # none skipped
    assert {k: n for k, n in delivered.items() if n != 1} == {}  # none twice
    # The kills did land inside chains: parts the network already had were asked again (and
    # answered from its memory of their keys) when the chain resumed.
    assert any(n > 1 for n in requests_per_key(ledger).values()), "no chain was resumed"
