"""The ``smm run`` service around the worker: what it sets up for a long run, and undoes."""

from __future__ import annotations

import asyncio
import gc
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
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
from sqlalchemy import Engine, select

from scheduler.daemon import store as store_mod
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


def test_a_heartbeat_running_when_the_daemon_stops_is_no_job_failure_and_ends_stopped(
    engine: Engine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A stop cancels the jobs still running: a heartbeat waiting on a slow database was
    # reported by APScheduler as 'Job "heartbeat" raised an exception' (a CancelledError
    # with a traceback), and its write, still going on in its thread, could land after the
    # last beat and leave the daemon shown as running, then stale, instead of stopped.
    import threading
    import time

    from structlog.testing import capture_logs

    from scheduler.daemon import liveness, service

    monkeypatch.setattr(service, "HEARTBEAT_EVERY", timedelta(seconds=0.2))
    accounts = {"a": {"platform": "sim"}}
    config = config_at(write_config(tmp_path / "config.toml", accounts, daemon={"tick": "0.1s"}))
    last_beat = threading.Event()
    began: list[float] = []

    def overran() -> bool:  # the slow beat has gone on over a few of its job's times
        return bool(began) and time.monotonic() - began[0] > 0.6

    beats: list[str] = []
    real = liveness.heartbeat

    def slow_beat(engine: Engine, daemon_id: str, info: Any, now: Any, status: str) -> int:
        beats.append(status)
        if status == "stopped":
            last_beat.set()
        elif len(beats) == 3:  # a job's (the start-up's beat is the first)
            began.append(time.monotonic())
            # The database is slow: the stop comes in the middle, and this beat's write
            # would come after the last one's.
            last_beat.wait(2.0)
        return real(engine, daemon_id, info, now, status)

    monkeypatch.setattr(store_mod, "heartbeat", slow_beat)
    with capture_logs() as logs, caplog.at_level(logging.WARNING, logger="apscheduler"):
        asyncio.run(run_service(engine, config, until=overran, timeout=30))
    generic = [r.getMessage() for r in caplog.records if r.name.startswith("apscheduler")]
    assert not generic  # neither "raised an exception" nor "skipped: maximum number ..."
    # The runs skipped while the slow one went on: said as the daemon's event, once per
    # stretch (on a busy machine the stop can come after more than one stretch).
    skipped = [e for e in logs if e["event"] == "job_skipped"]
    assert skipped
    assert {e["job"] for e in skipped} == {"heartbeat"}
    assert len(skipped) < 4, skipped
    assert "has not finished" in skipped[0]["reason"]
    assert not [e for e in logs if e["event"] == "job_failed"], logs
    cut = [e for e in logs if e["event"] == "job_cut"]
    assert [e["job"] for e in cut] == ["heartbeat"]
    assert "stopping" in cut[0]["reason"]
    with engine.connect() as conn:
        statuses = conn.execute(select(liveness.daemons_t.c.status)).scalars().all()
    assert statuses == ["stopped"]
