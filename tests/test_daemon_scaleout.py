"""Scale-out: several ``smm run`` processes share one PostgreSQL queue, nothing else."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
from daemon_support import (
    NO_FSYNC_ENV,
    Daemons,
    attempt_rows,
    config_at,
    daemon_pids,
    ledger_posts,
    pending_count,
    post_rows,
    seed_posts,
    utcnow,
    wait_until,
    write_config,
)
from smm_sim import requests_per_key

from scheduler.db.engine import make_engine
from scheduler.db.models import PostState

POSTS = 20_000
DAEMONS = 3
ACCOUNTS = 20  # half on `sim`, half on `sim-plain` (where a double send shows as two posts)


@pytest.mark.slow
def test_three_daemons_on_one_postgres_publish_each_post_exactly_once(
    postgres_url: str, tmp_path: Path
) -> None:
    ledger = tmp_path / "deliveries.jsonl"
    names = [f"{'idem' if i % 2 else 'plain'}-{i}" for i in range(ACCOUNTS)]
    path = write_config(
        tmp_path / "config.toml",
        {
            name: {
                "platform": "sim" if name.startswith("idem") else "sim-plain",
                "options": {"seed": 3, "ledger": str(ledger)},
            }
            for name in names
        },
        daemon={
            "tick": "0.2s",
            "lease": "10s",
            "batch_size": 200,
            "concurrency": 256,
            "shutdown_deadline": "5s",
        },
        policies={"misfire_grace": "1h"},
    )
    config = config_at(path)
    engine = make_engine(postgres_url)

    # No crash here: the ledger need not survive one, so the daemons skip its fsync (the
    # test networks' entry point; the sim and `smm run` are otherwise the real ones).
    with Daemons(
        path, postgres_url, tmp_path, test_networks=True, env={NO_FSYNC_ENV: "1"}
    ) as daemons:
        procs = [daemons.start(log=f"daemon-{i}.log") for i in range(DAEMONS)]
        wait_until(
            lambda: {p.pid for p in procs} <= daemon_pids(engine),
            timeout=90,
            what="three daemons to start",
        )
        # The whole plan arrives at once, all of it due now (as `smm plan import` would).
        now = utcnow()
        t0 = time.monotonic()
        seed_posts(engine, config, [(f"p{i:05d}", names[i % ACCOUNTS], now) for i in range(POSTS)])
        started = time.monotonic()
        print(f"import of {POSTS} posts: {started - t0:.1f} s")
        try:
            wait_until(
                lambda: pending_count(engine) == 0,
                timeout=240,
                interval=0.5,
                what=f"{POSTS} posts to be published",
            )
            for p in procs:
                assert p.terminate() == 0, p.tail()
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{daemons.logs()}") from None
        print(f"{POSTS} posts, {DAEMONS} daemons: {time.monotonic() - started:.1f} s")

    posts = post_rows(engine)
    created = ledger_posts(ledger)
    requests = requests_per_key(ledger)
    attempts = attempt_rows(engine)
    engine.dispose()

    assert len(posts) == POSTS
    assert Counter(p.state for p in posts.values()) == {PostState.PUBLISHED: POSTS}
    # Exactly once, as the network counts: one request and one post per key, and the post
    # the database records is the one the network made.
    assert len(created) == POSTS
    assert all(created[p.idempotency_key] == [p.remote_id] for p in posts.values())
    assert set(requests.values()) == {1}
    # One attempt per post: no post was ever claimed by two daemons.
    assert Counter(Counter(a.post_id for a in attempts).values()) == {1: POSTS}
    # Each daemon did part of the work.
    owners = Counter(a.owner for a in attempts)
    assert len(owners) == DAEMONS, owners
    assert sorted(int(o.split(":")[1]) for o in owners) == sorted(p.pid for p in procs)
    print("attempts per daemon:", dict(owners))
