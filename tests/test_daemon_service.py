"""The ``smm run`` service around the worker: what it sets up for a long run, and undoes."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

import httpx
from daemon_support import (
    config_at,
    no_pending,
    post_rows,
    run_service,
    seed_posts,
    utcnow,
    write_config,
)
from smm_sim import SimAdapter
from sqlalchemy import Engine

from scheduler.daemon.worker import Worker
from scheduler.db.models import PostState


def test_start_up_objects_are_frozen_out_of_the_collector_while_dispatching(
    engine: Engine, tmp_path: Path
) -> None:
    # A full collection walks every tracked object; the long-lived ones start-up built
    # (modules, config, plugins, the engine) are frozen so it walks only the work's own.
    ledger = tmp_path / "ledger.jsonl"
    accounts = {"a": {"platform": "sim", "options": {"ledger": str(ledger)}}}
    config = config_at(write_config(tmp_path / "config.toml", accounts, daemon={"tick": "0.1s"}))
    seed_posts(engine, config, [(f"p{i}", "a", utcnow()) for i in range(5)])
    frozen: list[int] = []
    done = no_pending(engine)

    def until() -> bool:
        frozen.append(gc.get_freeze_count())
        return done()

    assert gc.get_freeze_count() == 0
    asyncio.run(run_service(engine, config, until=until, timeout=60))
    assert max(frozen) > 1000
    assert gc.get_freeze_count() == 0  # handed back when the service stops
    assert {p.state for p in post_rows(engine).values()} == {PostState.PUBLISHED}


def test_written_results_make_room_at_once_not_at_the_next_tick(
    engine: Engine, tmp_path: Path
) -> None:
    # Results not yet written count against the concurrency; writing them must wake a loop
    # that waits for room, or a full daemon claims again only at the next tick.
    ledger = tmp_path / "ledger.jsonl"
    accounts = {"a": {"platform": "sim", "options": {"ledger": str(ledger)}}}
    daemon = {"tick": "30s", "concurrency": 2}
    config = config_at(write_config(tmp_path / "config.toml", accounts, daemon=daemon))
    seed_posts(engine, config, [(f"p{i}", "a", utcnow()) for i in range(12)])
    run = asyncio.run(run_service(engine, config, until=no_pending(engine), timeout=20))
    assert run.seconds < 20
    assert {p.state for p in post_rows(engine).values()} == {PostState.PUBLISHED}


def test_each_recorded_outcome_is_one_log_line(engine: Engine, tmp_path: Path) -> None:
    # An operator watching `smm run` sees each post go out, or why it did not.
    from structlog.testing import capture_logs

    accounts = {
        "ok": {"platform": "sim", "options": {"ledger": str(tmp_path / "ledger.jsonl")}},
        "bad": {"platform": "sim", "options": {"fail_rate": 1.0, "fail_mix": {"rejected": 1}}},
    }
    config = config_at(write_config(tmp_path / "config.toml", accounts, daemon={"tick": "0.1s"}))
    seed_posts(engine, config, [("p-ok", "ok", utcnow()), ("p-bad", "bad", utcnow())])
    with capture_logs() as logs:
        asyncio.run(run_service(engine, config, until=no_pending(engine), timeout=60))
    outcomes = {e["post"]: e for e in logs if e["event"].startswith("post_")}
    assert outcomes["p-ok"]["event"] == "post_published"
    assert outcomes["p-ok"]["log_level"] == "info"
    assert outcomes["p-ok"]["remote_url"]
    assert outcomes["p-bad"]["event"] == "post_failed"
    assert outcomes["p-bad"]["log_level"] == "warning"
    assert outcomes["p-bad"]["outcome"] == "rejected"
    assert "simulated rejection" in outcomes["p-bad"]["message"]


def test_auto_concurrency_is_what_the_accounts_networks_take_at_once(
    engine: Engine, tmp_path: Path
) -> None:
    # "auto" (the default): each account's declared concurrent requests, this daemon's share
    # of them, added up; a number in the config is taken as it is.
    accounts = {name: {"platform": "sim"} for name in ("a", "b", "c")}
    config = config_at(write_config(tmp_path / "config.toml", accounts))
    assert config.daemon.concurrency == 0
    worker = Worker(engine, config, adapters={"sim": SimAdapter(httpx.AsyncClient())})
    slots = SimAdapter.capabilities.rate_limit.concurrency
    worker._size_room()
    assert worker.room == 3 * slots
    worker.limits.share(2)  # two daemons alive: each takes half of every account's slots
    worker._size_room()
    assert worker.room == 3 * max(1, slots // 2)
    worker.adapters = {}  # no plugin for the platform: nothing can be sent, one slot
    worker._size_room()
    assert worker.room == 1
    fixed = config_at(write_config(tmp_path / "fixed.toml", accounts, daemon={"concurrency": 7}))
    assert Worker(engine, fixed).room == 7


def test_a_full_batch_is_followed_by_a_claim_made_ahead_which_stop_hands_back(
    engine: Engine, tmp_path: Path
) -> None:
    # The service's loop claims the next batch while a full one starts; a daemon stopped
    # before taking it gives its posts back, unsent and not counted, due again at once.
    from daemon_support import attempt_rows

    accounts = {"a": {"platform": "sim", "options": {"ledger": str(tmp_path / "l.jsonl")}}}
    config = config_at(write_config(tmp_path / "config.toml", accounts, daemon={"batch_size": 2}))
    seed_posts(engine, config, [(f"p{i}", "a", utcnow()) for i in range(5)])

    async def step() -> Worker:
        worker = Worker(engine, config)
        await worker.start()
        try:
            assert await worker.claim_and_dispatch(ahead=True) == 2
            assert worker._next is not None  # the next two are being claimed
            await worker.drain()
            await worker.stop(5.0)
        finally:
            await worker.close()
        return worker

    asyncio.run(step())
    states = {key: row.state for key, row in post_rows(engine).items()}
    assert sorted(states.values()).count(PostState.PUBLISHED) == 2
    assert sorted(states.values()).count(PostState.RETRY_WAIT) == 2  # handed back
    assert sorted(states.values()).count(PostState.QUEUED) == 1
    given_back = [a for a in attempt_rows(engine) if a.outcome == "abandoned"]
    assert len(given_back) == 2
    assert all(a.sent_at is None for a in given_back)
    assert {a.key for a in given_back} == {k for k, s in states.items() if s == "retry_wait"}
