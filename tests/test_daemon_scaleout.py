"""Scale-out: several ``smm run`` processes share one PostgreSQL queue, nothing else."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

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
from smm_sim import posts_per_key, requests_per_key

from scheduler.daemon.worker import Worker
from scheduler.db.engine import make_engine
from scheduler.db.models import PostState

POSTS = 20_000
DAEMONS = 3
ACCOUNTS = 20  # half on `sim`, half on `sim-plain` (where a double send shows as two posts)


@pytest.mark.slow
@pytest.mark.timeout(600)  # its own deadlines add up to over 5 minutes
def test_three_daemons_on_one_postgres_publish_each_post_exactly_once(
    postgres_url: str, tmp_path: Path
) -> None:
    ledger = tmp_path / "deliveries.jsonl"
    names = [f"{'idem' if i % 2 else 'plain'}-{i}" for i in range(ACCOUNTS)]
    path = write_config(
        tmp_path / "config.toml",
        {
            name: {
                # 1,000 posts an account at once: more than the sim's declared 600 a minute,
                # which the three daemons would share. This test is about claims.
                "platform": "roomy-sim" if name.startswith("idem") else "roomy-sim-plain",
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


# ------------------------------------------------------------------------------ in-process


def _two_accounts(tmp_path: Path, ledger: Path, **daemon: Any) -> Path:
    return write_config(
        tmp_path / "config.toml",
        {
            "a": {"platform": "sim-plain", "options": {"ledger": str(ledger)}},
            "b": {"platform": "sim-plain", "options": {"ledger": str(ledger)}},
        },
        daemon={"tick": "0.1s", "lease": "1s", **daemon},
        policies={"misfire_grace": "1h"},
    )


def test_a_daemon_leaves_alone_the_posts_of_accounts_missing_from_its_config(
    sqlite_url: str, tmp_path: Path
) -> None:
    ledger = tmp_path / "deliveries.jsonl"
    path = _two_accounts(tmp_path, ledger)
    full = config_at(path)
    engine = make_engine(sqlite_url)
    seed_posts(engine, full, [("a-0", "a", utcnow()), ("b-0", "b", utcnow())])
    # This daemon's config predates account b (not reloaded yet, or not rolled out here yet).
    older = replace(full, accounts={"a": full.accounts["a"]})

    async def step() -> None:
        worker = Worker(engine, older)
        await worker.start()
        try:
            await worker.claim_and_dispatch()
            await worker.drain()
        finally:
            await worker.close()

    asyncio.run(step())
    posts = post_rows(engine)
    engine.dispose()
    assert posts["a-0"].state == PostState.PUBLISHED
    assert posts["b-0"].state in (PostState.QUEUED, PostState.RETRY_WAIT), posts["b-0"].last_error


def test_a_daemon_that_lost_its_lease_does_not_send_after_another_took_over(
    sqlite_url: str, tmp_path: Path
) -> None:
    ledger = tmp_path / "deliveries.jsonl"
    path = _two_accounts(tmp_path, ledger)
    config = config_at(path)
    engine = make_engine(sqlite_url)
    seed_posts(engine, config, [("a-0", "a", utcnow())])

    async def scenario() -> None:
        first, second = Worker(engine, config), Worker(engine, config)
        await first.start()
        await second.start()
        try:
            # The first daemon claims the post; every slot of the account is busy, so it waits.
            assert first.adapters is not None
            policy = first.adapters["sim-plain"].capabilities.rate_limit
            slot = first.limits.account_semaphore("a", policy)
            for _ in range(policy.concurrency):
                await slot.acquire()
            assert await first.claim_and_dispatch() == 1
            # Its lease renewals fail meanwhile (it runs no renewal here): the lease expires,
            # and the second daemon takes over. The request never left (it was waiting for a
            # slot): the post is due again at once, its attempt given back, and published.
            await asyncio.sleep(1.5)
            assert await second.rescue() == (1, 0)
            assert await second.claim_and_dispatch() == 1
            await second.drain()
            # The first daemon's slot frees up.
            for _ in range(policy.concurrency):
                slot.release()
            await first.drain()
        finally:
            await first.close()
            await second.close()

    asyncio.run(scenario())
    posts = post_rows(engine)
    engine.dispose()
    assert posts["a-0"].state == PostState.PUBLISHED
    assert posts_per_key(ledger)[posts["a-0"].idempotency_key] == 1, "published twice"
