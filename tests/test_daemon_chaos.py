"""Crashes: ``smm run`` killed with SIGKILL at random moments, restarted each time.

Proves invariants 1, 2 and 9 of docs/design.md end to end: whatever instant the daemon dies
at, the network never receives a post twice (counted from the sim's delivery ledger, written
by the "network" itself), no post is left behind, and a kill uses up no attempt whose request
did not leave.
"""

from __future__ import annotations

import asyncio
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
    attempt_rows,
    config_at,
    finish_after_kills,
    ledger_posts,
    post_rows,
    seed_posts,
    utcnow,
    wait_dispatching,
    write_config,
)
from smm_sim import posts_per_key, requests_per_key, reset_worlds

from scheduler.daemon.worker import Worker
from scheduler.db.engine import make_engine
from scheduler.db.models import Outcome, PostState

POSTS = 2000
KILLS = 30
#: Due times are spread over this many seconds, so that posts keep falling due while the
#: daemon is killed and restarted.
SPREAD_S = 25.0


@pytest.mark.slow
@pytest.mark.timeout(900)  # over 4 minutes on a loaded 2-core machine
def test_kill_9_at_random_moments_never_publishes_twice_and_loses_nothing(
    sqlite_url: str, tmp_path: Path
) -> None:
    seed = int(os.environ.get("SMM_KILL_SEED") or random.randrange(2**32))
    print(f"kill moments seed: {seed} (set SMM_KILL_SEED={seed} to replay them)")
    rng = random.Random(seed)
    ledger = tmp_path / "deliveries.jsonl"
    idem = [f"idem-{i}" for i in range(5)]
    plain = [f"plain-{i}" for i in range(5)]
    accounts = {
        **{a: {"platform": "sim", "options": {"seed": 1, "ledger": str(ledger)}} for a in idem},
        **{
            a: {"platform": "sim-plain", "options": {"seed": 1, "ledger": str(ledger)}}
            for a in plain
        },
    }
    path = write_config(
        tmp_path / "config.toml",
        accounts,
        daemon={
            "tick": "0.2s",
            "lease": "1s",
            "batch_size": 40,
            "concurrency": 32,
            "shutdown_deadline": "3s",
            "publish_timeout": "5s",
        },
        policies={
            "misfire_grace": "1h",
            "max_attempts": 100,
            "backoff_base": "0.1s",
            "backoff_max": "0.5s",
        },
    )
    config = config_at(path)
    engine = make_engine(sqlite_url)
    names = idem + plain
    start = utcnow()
    seed_posts(
        engine,
        config,
        [
            (
                f"k{i:04d}",
                names[i % len(names)],
                start + timedelta(seconds=rng.uniform(0, SPREAD_S)),
            )
            for i in range(POSTS)
        ],
    )

    # The network's ledger needs no fsync here: what a killed process wrote is in the page
    # cache, and an fsync per request would stall the daemon between sending and the
    # network's record of it (the window the attempt accounting below looks at).
    env = {NO_FSYNC_ENV: "1"}
    with Daemons(path, sqlite_url, tmp_path, test_networks=True, env=env) as daemons:
        try:
            for n in range(KILLS):
                d = daemons.start()
                if n % 4 == 3:  # any moment, start-up included
                    time.sleep(rng.uniform(0.05, 1.5))
                else:  # once it dispatches
                    wait_dispatching(d, engine)
                    time.sleep(rng.uniform(0.0, 0.6))
                assert d.alive(), f"the daemon died by itself:\n{d.tail()}"
                d.kill()
            finish_after_kills(
                daemons, engine, "every post to be dispatched after the last restart"
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n(kill seed {seed})\n{daemons.logs()}") from None

    posts = post_rows(engine)
    created = ledger_posts(ledger)
    requests = requests_per_key(ledger)
    by_account = {name: [p for p in posts.values() if p.account == name] for name in names}
    states = Counter(p.state for p in posts.values())
    attempts = attempt_rows(engine)
    # Attempts a killed daemon left open, closed by the rescue of its expired leases.
    cut = sum(
        1
        for a in attempts
        if a.outcome == Outcome.ABANDONED and "stopped mid-attempt" in (a.message or "")
    )
    print(
        f"seed {seed}: states {dict(states)}, attempts {len(attempts)}, cut by a kill "
        f"{cut}, requests resent under their key "
        f"{sum(n - 1 for n in requests.values() if n > 1)}"
    )
    msg = f"(kill seed {seed})"

    assert len(posts) == POSTS
    # Never twice: one post per idempotency key on the network, whatever the adapter.
    twice = {k: ids for k, ids in created.items() if len(ids) > 1}
    assert not twice, f"published more than once: {twice} {msg}"
    # None lost: nothing left for the daemon to pick up, nothing dropped or failed.
    assert set(states) <= {PostState.PUBLISHED, PostState.UNCONFIRMED}, f"{dict(states)} {msg}"
    for name in idem:
        for p in by_account[name]:
            assert p.state == PostState.PUBLISHED, f"{p.key}: {p.state} {p.last_error} {msg}"
            assert created.get(p.idempotency_key) == [p.remote_id], f"{p.key} {msg}"
    for name in plain:
        for p in by_account[name]:
            if p.state == PostState.PUBLISHED:
                assert created.get(p.idempotency_key) == [p.remote_id], f"{p.key} {msg}"
            else:  # unconfirmed: on the network or not, it was never resent
                assert requests.get(p.idempotency_key, 0) <= 1, f"{p.key} {msg}"
    # The kills did land mid-work (otherwise this test proves little).
    assert cut > 0, f"no kill interrupted an attempt {msg}"
    # An attempt counts once its request may leave, not at the claim: a claim a kill cut
    # before the send was recorded gives its attempt back, and so does one a kill cut after
    # the record but before the request reached the network (the rescue asks the network's
    # lookup). The network has no faults here: no post may have used more attempts than the
    # requests the network received for it.
    given_back = Counter(
        "before the send" if "stopped before sending" in a.message else "after the record"
        for a in attempts
        if "not counted" in (a.message or "")
    )
    over = {
        p.key: (p.attempt_count, requests.get(p.idempotency_key, 0))
        for p in posts.values()
        if p.attempt_count > requests.get(p.idempotency_key, 0)
    }
    print(
        f"attempts given back by the rescue: {dict(given_back)}; posts with more attempts "
        f"than requests: {len(over)}"
    )
    assert not over, f"(post: (attempts, requests)) {over} {msg}"

    # What is unconfirmed is settled by the adapter's lookup, then published once.
    unconfirmed = [p for p in posts.values() if p.state == PostState.UNCONFIRMED]
    if unconfirmed:
        reset_worlds()

        async def reconcile() -> int:
            worker = Worker(engine, config)
            await worker.start()
            try:
                settled = 0
                while n := await worker.reconcile():
                    settled += n
                return settled
            finally:
                await worker.close()

        assert asyncio.run(reconcile()) == len(unconfirmed)
        with Daemons(path, sqlite_url, tmp_path) as daemons:
            once = daemons.start("--once", log="once.log")
            assert once.wait(120) == 0, once.tail()
        posts = post_rows(engine)
        assert {p.state for p in posts.values()} == {PostState.PUBLISHED}
        per_key = posts_per_key(ledger)
        assert all(per_key[p.idempotency_key] == 1 for p in posts.values()), msg
    engine.dispose()
