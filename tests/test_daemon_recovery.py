"""The daemon's policies end to end: misfire after downtime, rescue of expired leases and
settling of unconfirmed posts, paused accounts on expired credentials, settling by hand, and
publishing on time."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from daemon_support import (
    attempt_rows,
    config_at,
    event_rows,
    ledger_posts,
    no_pending,
    post_rows,
    run_service,
    seed_posts,
    utcnow,
    write_config,
)
from smm_sim import SimAdapter, SimPlainAdapter, read_ledger, requests_per_key, reset_worlds
from sqlalchemy import Engine

from scheduler.adapter import Account, OutgoingPost, Published, Transient
from scheduler.cli import cli
from scheduler.config import Config
from scheduler.daemon import store
from scheduler.daemon import worker as worker_module
from scheduler.daemon.service import Service
from scheduler.daemon.worker import Worker
from scheduler.db.engine import make_engine
from scheduler.db.models import Outcome, PostState
from scheduler.outgoing import account_view, from_row

DAEMON = {"tick": "0.1s", "lease": "2s", "shutdown_deadline": "2s", "publish_timeout": "5s"}


@pytest.fixture(autouse=True)
def _fresh_networks() -> Iterator[None]:
    reset_worlds()
    yield
    reset_worlds()


def run_once(engine: Engine, config: Config) -> None:
    """``smm run --once`` in-process: publish what is due, then return."""

    async def go() -> None:
        await asyncio.wait_for(Service(engine, config, once=True).run(), 60)

    asyncio.run(go())


def smm(db_url: str, config: Path, *args: str, expect: int = 0) -> str:
    result = CliRunner().invoke(cli, ["--db", db_url, "--config", str(config), *args])
    assert result.exit_code == expect, result.output
    return result.output


# ------------------------------------------------------------------------------ misfire


def test_after_downtime_late_posts_are_missed_and_recent_ones_go_out(
    db_url: str, tmp_path: Path
) -> None:
    ledger = tmp_path / "deliveries.jsonl"
    path = write_config(
        tmp_path / "config.toml",
        {
            "strict": {"platform": "sim", "options": {"ledger": str(ledger)}},
            "lenient": {
                "platform": "sim",
                "options": {"ledger": str(ledger)},
                "policies": {"misfire_grace": "10m"},
            },
        },
        daemon=DAEMON,
        policies={"misfire_grace": "60s"},
    )
    config = config_at(path)
    engine = make_engine(db_url)
    now = utcnow()
    ago = lambda **kw: now - timedelta(**kw)  # noqa: E731
    # A day of downtime: posts every 15 minutes that nobody published.
    stale = [(f"strict-day-{i}", "strict", ago(minutes=20 + 15 * i)) for i in range(96)]
    seed_posts(
        engine,
        config,
        [
            *stale,
            ("strict-2m", "strict", ago(minutes=2)),
            ("strict-30s", "strict", ago(seconds=30)),
            ("strict-5s", "strict", ago(seconds=5)),
            ("strict-later", "strict", now + timedelta(hours=1)),
            ("lenient-2m", "lenient", ago(minutes=2)),
            ("lenient-30m", "lenient", ago(minutes=30)),
        ],
    )

    run_once(engine, config)

    posts = post_rows(engine)
    missed = {k for k, p in posts.items() if p.state == PostState.MISSED}
    published = {k for k, p in posts.items() if p.state == PostState.PUBLISHED}
    assert missed == {k for k, _, _ in stale} | {"strict-2m", "lenient-30m"}
    assert published == {"strict-30s", "strict-5s", "lenient-2m"}
    assert posts["strict-later"].state == PostState.QUEUED
    # Missed posts say why, never reached the network, and their change is on record.
    for key in missed:
        assert posts[key].error_class == "missed"
        assert "misfire" in posts[key].last_error
    sent = {e.post_key for e in read_ledger(ledger)}
    assert sent == published
    assert not {a.key for a in attempt_rows(engine)} & missed
    events = {e.key: e for e in event_rows(engine) if e.to_state == PostState.MISSED}
    assert set(events) == missed
    assert all(e.reason == "later than the misfire grace" for e in events.values())
    engine.dispose()


# ------------------------------------------------------------------------------ rescue


def test_expired_leases_are_resent_under_the_key_or_left_unconfirmed_then_looked_up(
    db_url: str, tmp_path: Path
) -> None:
    ledger = tmp_path / "deliveries.jsonl"
    path = write_config(
        tmp_path / "config.toml",
        {
            "idem": {"platform": "sim", "options": {"ledger": str(ledger)}},
            "plain": {"platform": "sim-plain", "options": {"ledger": str(ledger)}},
        },
        daemon=DAEMON,
        policies={"misfire_grace": "1h"},
    )
    config = config_at(path)
    engine = make_engine(db_url)
    now = utcnow()
    # -sent: the request reached the network; -marked: it was about to leave (recorded as
    # sent) when the daemon died; -unsent: it died before that (a rate-limit wait, say).
    keys = [
        "idem-sent",
        "idem-marked",
        "idem-unsent",
        "plain-sent",
        "plain-marked",
        "plain-unsent",
    ]
    seed_posts(engine, config, [(k, k.split("-")[0], now - timedelta(seconds=10)) for k in keys])

    # A daemon claims them all and dies; two of its requests had reached the network.
    dead = "crashed-host:4242:0badc0"
    claimed, _ = store.claim(
        engine,
        dead,
        now - timedelta(seconds=5),
        lease=timedelta(seconds=1),
        limit=10,
        grace={},
        default_grace=timedelta(hours=1),
    )
    assert len(claimed) == 6
    store.mark_sent(
        engine,
        [c.attempt_id for c in claimed if c.row.key.endswith(("-sent", "-marked"))],
        now - timedelta(seconds=5),
    )

    async def dead_daemon_sends() -> None:
        async with httpx.AsyncClient() as client:
            for c in claimed:
                if c.row.key.endswith("-sent"):
                    cls = SimAdapter if c.account == "idem" else SimPlainAdapter
                    view = account_view(config.accounts[c.account])
                    await cls(client).publish(
                        from_row(c.row, c.account), view, c.row.idempotency_key
                    )

    asyncio.run(dead_daemon_sends())
    reset_worlds()  # the new daemon knows only what the network tells it

    async def new_daemon() -> tuple[Any, ...]:
        worker = Worker(engine, config)
        await worker.start()
        try:
            rescued = await worker.rescue()
            after_rescue = post_rows(engine)
            await worker.claim_and_dispatch()
            await worker.drain()
            after_resend = post_rows(engine)
            settled = await worker.reconcile()
            after_lookup = post_rows(engine)
            await worker.claim_and_dispatch()
            await worker.drain()
            return rescued, after_rescue, after_resend, settled, after_lookup
        finally:
            await worker.close()

    rescued, after_rescue, after_resend, settled, after_lookup = asyncio.run(new_daemon())
    final = post_rows(engine)
    attempts = attempt_rows(engine)
    created = ledger_posts(ledger)
    requests = requests_per_key(ledger)

    # Rescue: posts whose request never left, or never got to the network (its lookup has
    # no such post), are due again, their attempt given back; the idempotent network's
    # others are resent under their key; the rest are unconfirmed.
    assert rescued == (5, 1)
    assert {k: after_rescue[k].state for k in keys} == {
        "idem-sent": PostState.RETRY_WAIT,
        "idem-marked": PostState.RETRY_WAIT,
        "idem-unsent": PostState.RETRY_WAIT,
        "plain-sent": PostState.UNCONFIRMED,
        "plain-marked": PostState.RETRY_WAIT,
        "plain-unsent": PostState.RETRY_WAIT,
    }
    assert {k: after_rescue[k].attempt_count for k in keys} == {
        "idem-sent": 1,
        "idem-marked": 0,
        "idem-unsent": 0,
        "plain-sent": 1,
        "plain-marked": 0,
        "plain-unsent": 0,
    }
    assert all(a.outcome == Outcome.ABANDONED for a in attempts if a.owner == dead)
    not_counted = {a.key for a in attempts if "not counted" in (a.message or "")}
    assert not_counted == {"idem-marked", "idem-unsent", "plain-marked", "plain-unsent"}
    # Resent with the same key: the network returned the post it had, no second post.
    for key in ("idem-sent", "idem-marked", "idem-unsent"):
        p = after_resend[key]
        assert p.state == PostState.PUBLISHED
        assert created[p.idempotency_key] == [p.remote_id]
        mine = [a for a in attempts if a.key == key]
        assert [a.idempotency_key for a in mine] == [p.idempotency_key] * 2
    assert requests[final["idem-sent"].idempotency_key] == 2  # the dead daemon's, then ours
    # Unconfirmed posts are never resent blindly: the lookup settles them.
    assert after_resend["plain-sent"].state == PostState.UNCONFIRMED
    assert settled == 1
    assert after_lookup["plain-sent"].state == PostState.PUBLISHED
    assert after_lookup["plain-sent"].remote_id == created[final["plain-sent"].idempotency_key][0]
    reasons = {e.key: e.reason for e in event_rows(engine) if e.from_state == "unconfirmed"}
    assert reasons == {"plain-sent": "the network confirmed it"}
    # The absent ones went out once; the present one was never sent again.
    assert after_resend["plain-unsent"].state == PostState.PUBLISHED
    assert after_resend["plain-marked"].state == PostState.PUBLISHED
    for key in keys:
        assert created[final[key].idempotency_key] == [final[key].remote_id], key
    assert requests[final["plain-sent"].idempotency_key] == 1
    # No post used more attempts than the requests its network received.
    for key in keys:
        assert final[key].attempt_count <= requests[final[key].idempotency_key], key
    engine.dispose()


def _crash_after_recording(engine: Engine, config: Config, *, send: bool) -> Any:
    """A daemon claims the one due post, records its send and dies: after its request
    reached the network (``send``) or before. Its lease has expired when this returns."""
    (c,), _ = store.claim(
        engine,
        "crashed-host:4242:0badc0",
        utcnow(),
        lease=timedelta(milliseconds=1),
        limit=1,
        grace={},
        default_grace=timedelta(hours=1),
    )
    assert store.mark_sent(engine, [c.attempt_id], utcnow()) == {c.attempt_id}
    if send:

        async def publish() -> None:
            async with httpx.AsyncClient() as client:
                view = account_view(config.accounts[c.account])
                await SimAdapter(client).publish(
                    from_row(c.row, c.account), view, c.row.idempotency_key
                )

        asyncio.run(publish())
    time.sleep(0.01)
    return c


def test_a_second_crash_before_the_network_had_the_resend_gives_its_attempt_back(
    sqlite_url: str, tmp_path: Path
) -> None:
    # The first request made the post; the resend under its key was cut by a second crash
    # before the network had it. The network's lookup finds the post (the first request's),
    # which says nothing of the resend: only the first counts.
    ledger = tmp_path / "deliveries.jsonl"
    path = write_config(
        tmp_path / "config.toml",
        {"idem": {"platform": "sim", "options": {"ledger": str(ledger)}}},
        daemon=DAEMON,
    )
    config = config_at(path)
    engine = make_engine(sqlite_url)
    seed_posts(engine, config, [("p", "idem", utcnow() - timedelta(seconds=10))])

    async def rescue() -> tuple[int, int]:
        worker = Worker(engine, config)
        await worker.start()
        try:
            return await worker.rescue()
        finally:
            await worker.close()

    async def publish() -> None:
        worker = Worker(engine, config)
        await worker.start()
        try:
            await worker.claim_and_dispatch()
            await worker.drain()
        finally:
            await worker.close()

    _crash_after_recording(engine, config, send=True)
    assert asyncio.run(rescue()) == (1, 0)  # resent under its key, the attempt counted
    assert post_rows(engine)["p"].attempt_count == 1
    _crash_after_recording(engine, config, send=False)
    assert asyncio.run(rescue()) == (1, 0)
    assert post_rows(engine)["p"].attempt_count == 1
    asyncio.run(publish())

    p = post_rows(engine)["p"]
    requests = requests_per_key(ledger)[p.idempotency_key]
    assert (p.state, p.attempt_count, requests) == (PostState.PUBLISHED, 2, 2)
    assert ledger_posts(ledger)[p.idempotency_key] == [p.remote_id]
    assert [a.message for a in attempt_rows(engine)] == [
        store.CUT_COUNTED,
        store.CUT_EARLIER,
        None,
    ]
    engine.dispose()


class _LookupFailsFirst(SimAdapter):
    """The sim, whose lookup fails (a timeout, an outage) the first ``failures`` times."""

    failures = 1

    async def lookup(self, post: OutgoingPost, account: Account) -> Published | None:
        if self.failures:
            self.failures -= 1
            raise Transient("the lookup timed out")
        return await super().lookup(post, account)


@pytest.mark.parametrize("patience", [60.0, 0.0])
def test_a_failed_lookup_is_asked_again_before_the_rescue_counts_the_attempt(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, patience: float
) -> None:
    monkeypatch.setattr(worker_module, "RESCUE_LOOKUP_PATIENCE_S", patience)
    ledger = tmp_path / "deliveries.jsonl"
    path = write_config(
        tmp_path / "config.toml",
        {"idem": {"platform": "sim", "options": {"ledger": str(ledger)}}},
        daemon=DAEMON,
    )
    config = config_at(path)
    engine = make_engine(sqlite_url)
    seed_posts(engine, config, [("p", "idem", utcnow() - timedelta(seconds=10))])
    _crash_after_recording(engine, config, send=False)

    async def rescue_twice() -> list[tuple[tuple[int, int], Any]]:
        async with httpx.AsyncClient() as client:
            worker = Worker(engine, config, adapters={"sim": _LookupFailsFirst(client)})
            await worker.start()
            try:
                seen = []
                for _ in range(2):
                    seen.append((await worker.rescue(), post_rows(engine)["p"]))
                return seen
            finally:
                await worker.close()

    (first, after_first), (second, after_second) = asyncio.run(rescue_twice())
    if patience:
        # Left with its expired lease, its attempt undecided, until the network answers.
        assert first == (0, 0)
        assert (after_first.state, after_first.attempt_count) == (PostState.CLAIMED, 1)
        assert second == (1, 0)
        assert (after_second.state, after_second.attempt_count) == (PostState.RETRY_WAIT, 0)
        assert attempt_rows(engine)[0].message == store.CUT_ABSENT
    else:  # out of patience: decided without the answer, as for a network that cannot tell
        assert first == (1, 0)
        assert (after_first.state, after_first.attempt_count) == (PostState.RETRY_WAIT, 1)
        assert attempt_rows(engine)[0].message == store.CUT_COUNTED
    engine.dispose()


# ------------------------------------------------------------------------------ auth


def test_expired_credentials_pause_the_account_and_its_other_posts_wait(
    sqlite_url: str, tmp_path: Path
) -> None:
    ledger = tmp_path / "deliveries.jsonl"
    accounts: dict[str, Any] = {
        "locked": {
            "platform": "sim",
            "options": {"ledger": str(ledger), "fail_rate": 1.0, "fail_mix": {"auth_expired": 1}},
        },
        "fine": {"platform": "sim", "options": {"ledger": str(ledger)}},
    }
    path = write_config(tmp_path / "config.toml", accounts, daemon=DAEMON)
    config = config_at(path)
    engine = make_engine(sqlite_url)
    now = utcnow()
    later = now + timedelta(seconds=1.5)
    seed_posts(
        engine,
        config,
        [("locked-0", "locked", now)]
        + [(f"locked-{i}", "locked", later) for i in range(1, 4)]
        + [("fine-0", "fine", now), ("fine-1", "fine", later)],
    )

    asyncio.run(run_service(engine, config, until=no_pending(engine), timeout=60))

    posts = post_rows(engine)
    assert posts["fine-0"].state == posts["fine-1"].state == PostState.PUBLISHED
    assert {posts[f"locked-{i}"].state for i in range(4)} == {PostState.PAUSED}
    tried = [a for a in attempt_rows(engine) if a.key.startswith("locked")]
    assert [(a.key, a.outcome) for a in tried] == [("locked-0", Outcome.AUTH_EXPIRED)]
    assert not {e.post_key for e in read_ledger(ledger)} & set(posts) - {"fine-0", "fine-1"}
    listed = {a["name"]: a for a in json.loads(smm(sqlite_url, path, "accounts", "list", "--json"))}
    assert listed["locked"]["paused"] is True
    assert listed["locked"]["auth_state"] == "expired"
    assert "simulated expired token" in listed["locked"]["paused_reason"]
    assert listed["locked"]["waiting"] == 4
    assert (listed["fine"]["paused"], listed["fine"]["auth_state"]) == (False, "ok")

    # Credentials renewed, account resumed: its posts go out.
    accounts["locked"]["options"] = {"ledger": str(ledger)}
    write_config(path, accounts, daemon=DAEMON)
    smm(sqlite_url, path, "queue", "resume", "--account", "locked")
    run_once(engine, config_at(path))
    posts = post_rows(engine)
    assert {p.state for p in posts.values()} == {PostState.PUBLISHED}
    engine.dispose()


# ------------------------------------------------------------------------------ by hand


def test_a_429_answered_to_one_daemon_holds_back_the_others_at_their_next_heartbeat(
    sqlite_url: str, tmp_path: Path
) -> None:
    accounts: dict[str, Any] = {
        "busy": {
            "platform": "sim",
            "options": {"fail_rate": 1.0, "fail_mix": {"rate_limited": 1}, "retry_after": "15m"},
        },
        "calm": {"platform": "sim"},
    }
    config = config_at(write_config(tmp_path / "config.toml", accounts, daemon=DAEMON))
    engine = make_engine(sqlite_url)
    now = utcnow()
    seed_posts(engine, config, [("busy-0", "busy", now), ("calm-0", "calm", now)])

    async def two_daemons() -> tuple[timedelta, timedelta, timedelta]:
        first, second = Worker(engine, config), Worker(engine, config)
        await first.start()
        await second.start()
        try:
            await first.claim_and_dispatch()  # the network answers "busy-0" with a 429
            await first.drain()
            policy = SimAdapter.capabilities.rate_limit
            before = second.limits.budget("busy", policy).delay(utcnow())
            await second.heartbeat()
            return (
                before,
                second.limits.budget("busy", policy).delay(utcnow()),
                second.limits.budget("calm", policy).delay(utcnow()),
            )
        finally:
            await first.close()
            await second.close()

    before, busy, calm = asyncio.run(two_daemons())
    tried = {a.key: a.outcome for a in attempt_rows(engine)}
    assert tried == {"busy-0": Outcome.RATE_LIMITED, "calm-0": Outcome.PUBLISHED}
    assert before == timedelta(0)
    # The other daemon now waits out the network's 15 minutes too; the calm account is free.
    assert timedelta(minutes=14) < busy <= timedelta(minutes=15)
    assert calm == timedelta(0)


def test_queue_resolve_settles_an_unconfirmed_post_by_hand(sqlite_url: str, tmp_path: Path) -> None:
    path = write_config(
        tmp_path / "config.toml",
        {
            "plain": {
                "platform": "sim-plain",
                "options": {"fail_rate": 1.0, "fail_mix": {"outcome_unknown": 1}},
            }
        },
        daemon=DAEMON,
    )
    config = config_at(path)
    engine = make_engine(sqlite_url)
    seed_posts(engine, config, [(f"u{i}", "plain", utcnow()) for i in range(3)])
    run_once(engine, config)
    posts = post_rows(engine)
    assert {p.state for p in posts.values()} == {PostState.UNCONFIRMED}
    assert all("simulated timeout" in p.last_error for p in posts.values())

    url = "https://sim.invalid/plain/by-hand"
    out = smm(sqlite_url, path, "queue", "resolve", "u0", "--published", "by-hand", "--url", url)
    assert "published as by-hand at " + url in out
    assert "queued again" in smm(sqlite_url, path, "queue", "resolve", "u1", "--not-published")
    out = smm(sqlite_url, path, "queue", "resolve", "u0", "--not-published", expect=1)
    assert "not unconfirmed" in out
    smm(sqlite_url, path, "queue", "resolve", "u2", expect=2)
    smm(sqlite_url, path, "queue", "resolve", "u2", "--published", url, "--not-published", expect=2)

    posts = post_rows(engine)
    assert (posts["u0"].state, posts["u0"].remote_id, posts["u0"].remote_url) == (
        PostState.PUBLISHED,
        "by-hand",
        url,
    )
    assert posts["u1"].state == PostState.RETRY_WAIT
    assert posts["u2"].state == PostState.UNCONFIRMED
    by_hand = [(e.key, e.from_state, e.to_state) for e in event_rows(engine) if e.actor == "cli"]
    assert by_hand == [("u0", "unconfirmed", "published"), ("u1", "unconfirmed", "retry_wait")]
    engine.dispose()


# ------------------------------------------------------------------------------ on time


def test_a_post_due_at_t_is_claimed_right_after_t_not_at_the_next_tick(
    sqlite_url: str, tmp_path: Path
) -> None:
    path = write_config(
        tmp_path / "config.toml",
        {"a": {"platform": "sim"}},
        # A long tick: only waking at the earliest due time can be on time.
        daemon={**DAEMON, "tick": "30s"},
    )
    config = config_at(path)
    engine = make_engine(sqlite_url)
    start = utcnow()
    due = [start + timedelta(seconds=3 + 0.37 * i) for i in range(8)]
    seed_posts(engine, config, [(f"t{i}", "a", d) for i, d in enumerate(due)])

    asyncio.run(run_service(engine, config, until=no_pending(engine), timeout=60))

    lateness = {a.key: (a.started_at - a.due_at).total_seconds() for a in attempt_rows(engine)}
    print("lateness (s):", {k: round(v, 3) for k, v in lateness.items()})
    assert set(lateness) == {f"t{i}" for i in range(8)}
    assert all(0 <= late < 1.5 for late in lateness.values()), lateness
    engine.dispose()
