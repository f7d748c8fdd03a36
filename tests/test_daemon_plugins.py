"""A plugin cannot take the daemon down (docs/design.md, invariant 6).

Each misbehaviour gets its own account on the ``badnet`` test network (tests/daemon_support.py);
real ``sim`` accounts publish alongside, before and after the bad posts, and must all go out.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from daemon_support import (
    BadAdapter,
    Daemons,
    config_at,
    ledger_posts,
    no_pending,
    pending_count,
    post_rows,
    registered,
    run_service,
    seed_posts,
    utcnow,
    wait_until,
    write_config,
)
from smm_sim import reset_worlds

from scheduler.adapter import Account, Adapter, OutgoingPost
from scheduler.db.engine import make_engine
from scheduler.db.models import Outcome, PostState
from scheduler.hookspecs import hookimpl

PUBLISH_TIMEOUT_S = 0.5
DAEMON = {
    "tick": "0.1s",
    "lease": "2s",
    "batch_size": 20,
    "concurrency": 16,
    "publish_timeout": f"{PUBLISH_TIMEOUT_S}s",
    "shutdown_deadline": "2s",
}
SHUTDOWN_DEADLINE_S = 2
POLICIES = {"misfire_grace": "1h", "backoff_base": "0.05s", "backoff_max": "0.2s"}


class HookBombs:
    """Event and transform hooks that fail: ``prepare_post`` for one account, and
    ``post_published`` / ``post_failed`` always."""

    @hookimpl
    def prepare_post(self, post: OutgoingPost, account: Account) -> OutgoingPost | None:
        if account.name == "prepare-raises":
            raise ValueError("cannot shorten links today")
        return None

    @hookimpl
    def post_published(self, post: OutgoingPost) -> None:
        raise RuntimeError("the analytics hook is broken")

    @hookimpl
    def post_failed(self, post: OutgoingPost) -> None:
        raise RuntimeError("the alerting hook is broken")


BAD_MODES = ["raise", "hang", "garbage-dict", "garbage-none", "garbage-empty-id"]


@pytest.fixture(autouse=True)
def _fresh_networks() -> Any:
    reset_worlds()
    BadAdapter.calls.clear()
    yield
    reset_worlds()


def test_misbehaving_plugins_fail_their_own_posts_and_the_daemon_goes_on(
    db_url: str, tmp_path: Path
) -> None:
    ledger = tmp_path / "deliveries.jsonl"
    good = {"good-0": "sim", "good-1": "sim-plain"}
    accounts: dict[str, dict[str, Any]] = {
        **{
            name: {"platform": platform, "options": {"ledger": str(ledger)}}
            for name, platform in good.items()
        },
        **{mode: {"platform": "badnet", "options": {"mode": mode}} for mode in BAD_MODES},
        "broken-start": {"platform": "broken-start"},
        "prepare-raises": {"platform": "sim", "options": {"ledger": str(ledger)}},
    }
    path = write_config(tmp_path / "config.toml", accounts, daemon=DAEMON, policies=POLICIES)
    config = config_at(path)
    engine = make_engine(db_url)
    now = utcnow()
    bad = [*BAD_MODES, "broken-start", "prepare-raises"]
    seed_posts(
        engine,
        config,
        [(f"{name}-{i}", name, now) for name in bad for i in range(3)]
        # Good posts due before, with, and well after the bad ones.
        + [
            (f"{name}-{i}", name, now + timedelta(seconds=i * 0.3))
            for name in good
            for i in range(10)
        ],
    )

    async def go() -> None:
        await run_service(engine, config, until=no_pending(engine), timeout=60)

    with registered(("hook-bombs", HookBombs())):
        asyncio.run(go())  # fails if the service stopped or raised by itself
    posts = post_rows(engine)
    engine.dispose()

    created = ledger_posts(ledger)
    for p in posts.values():
        if p.account in good:
            assert p.state == PostState.PUBLISHED, (p.key, p.state, p.last_error)
            assert created[p.idempotency_key] == [p.remote_id]

    def check(account: str, state: str, error_class: str, *words: str) -> None:
        for p in (p for p in posts.values() if p.account == account):
            assert (p.state, p.error_class) == (state, error_class), (p.key, p.last_error)
            for word in words:
                assert word in (p.last_error or ""), (p.key, p.last_error)

    check("raise", "failed", Outcome.PLUGIN_ERROR, "raised PluginBug", "kaboom while publishing")
    check("garbage-dict", "failed", Outcome.PLUGIN_ERROR, "returned dict", "not a Published")
    check("garbage-none", "failed", Outcome.PLUGIN_ERROR, "returned NoneType")
    check("garbage-empty-id", "failed", Outcome.PLUGIN_ERROR, "remote id")
    # A hang may have reached the network: never resent on a network without idempotency.
    check("hang", "unconfirmed", Outcome.OUTCOME_UNKNOWN, "did not answer within")
    check("broken-start", "failed", Outcome.PLUGIN_ERROR, "broken-start")
    check("prepare-raises", "failed", Outcome.PLUGIN_ERROR, "prepare_post failed", "ValueError")
    # Each bad post was tried once: none of these outcomes is retried.
    assert dict(BadAdapter.calls) == {p.key: 1 for p in posts.values() if p.account in BAD_MODES}


def _bad_process_run(
    tmp_path: Path, db_url: str, mode: str
) -> tuple[Daemons, Callable[[], dict[str, Any]]]:
    ledger = tmp_path / "deliveries.jsonl"
    accounts = {
        "good": {"platform": "sim-plain", "options": {"ledger": str(ledger)}},
        mode: {"platform": "badnet", "options": {"mode": mode}},
    }
    path = write_config(tmp_path / "config.toml", accounts, daemon=DAEMON, policies=POLICIES)
    engine = make_engine(db_url)
    now = utcnow()
    seed_posts(
        engine,
        config_at(path),
        [(f"{mode}-0", mode, now)]
        + [(f"good-{i}", "good", now + timedelta(seconds=1 + i * 0.2)) for i in range(5)],
    )
    engine.dispose()

    def rows() -> dict[str, Any]:
        e = make_engine(db_url)
        try:
            return post_rows(e)
        finally:
            e.dispose()

    return Daemons(path, db_url, tmp_path, test_networks=True), rows


def test_a_plugin_calling_sys_exit_does_not_stop_the_daemon(
    sqlite_url: str, tmp_path: Path
) -> None:
    daemons, rows = _bad_process_run(tmp_path, sqlite_url, "exit")
    with daemons:
        d = daemons.start()
        engine = make_engine(sqlite_url)
        try:
            wait_until(
                lambda: pending_count(engine) == 0 or not d.alive(),
                timeout=60,
                what="the posts to be dispatched",
            )
        finally:
            engine.dispose()
        assert d.alive(), f"the daemon exited with {d.wait(5)}:\n{d.tail()}"
        assert d.terminate() == 0, d.tail()
    posts = rows()
    assert posts["exit-0"].state == PostState.FAILED
    assert posts["exit-0"].error_class == Outcome.PLUGIN_ERROR
    assert all(posts[f"good-{i}"].state == PostState.PUBLISHED for i in range(5))


def test_a_hang_that_ignores_cancellation_ends_unconfirmed_and_sigterm_still_stops(
    sqlite_url: str, tmp_path: Path
) -> None:
    daemons, _ = _bad_process_run(tmp_path, sqlite_url, "stubborn-hang")
    with daemons:
        d = daemons.start()
        engine = make_engine(sqlite_url)
        try:
            wait_until(
                lambda: (
                    all(
                        p.state == PostState.PUBLISHED
                        for p in post_rows(engine).values()
                        if p.account == "good"
                    )
                    or not d.alive()
                ),
                timeout=60,
                what="the good posts to go out",
            )
            time.sleep(PUBLISH_TIMEOUT_S * 4)  # the stubborn publish is long past its timeout
            stubborn = post_rows(engine)["stubborn-hang-0"]
        finally:
            engine.dispose()
        assert d.alive(), d.tail()
        d.send(signal.SIGTERM)
        started = time.monotonic()
        try:
            rc: int | None = d.wait(SHUTDOWN_DEADLINE_S + 6)
        except subprocess.TimeoutExpired:
            d.kill()
            rc = None
        waited = time.monotonic() - started
    assert (stubborn.state, stubborn.error_class) == (
        PostState.UNCONFIRMED,
        Outcome.OUTCOME_UNKNOWN,
    ), f"{stubborn.state} {stubborn.last_error}"
    assert rc == 0, f"no exit within {waited:.0f} s of SIGTERM (deadline {SHUTDOWN_DEADLINE_S} s)"


class BrokenRegistration:
    """A third-party plugin whose ``register_platforms`` itself raises."""

    @hookimpl
    def register_platforms(self, register: Callable[[type[Adapter]], None]) -> None:
        raise RuntimeError("incompatible with this version of the SDK")


def test_a_plugin_whose_registration_raises_does_not_stop_the_other_networks(
    sqlite_url: str, tmp_path: Path
) -> None:
    ledger = tmp_path / "deliveries.jsonl"
    path = write_config(
        tmp_path / "config.toml",
        {"good": {"platform": "sim", "options": {"ledger": str(ledger)}}},
        daemon=DAEMON,
        policies=POLICIES,
    )
    config = config_at(path)
    engine = make_engine(sqlite_url)
    seed_posts(engine, config, [(f"good-{i}", "good", utcnow()) for i in range(3)])

    async def go() -> None:
        await run_service(engine, config, until=no_pending(engine), timeout=60)

    try:
        with registered(("broken-registration", BrokenRegistration())):
            asyncio.run(go())
        posts = post_rows(engine)
    finally:
        engine.dispose()
    assert {p.state for p in posts.values()} == {PostState.PUBLISHED}
