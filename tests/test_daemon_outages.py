"""Database outages are weather (docs/operations.md#database-outages): ``smm run`` processes
ride out a PostgreSQL server stopped and started again, and a SQLite file on a full disk,
without exiting, losing a post, publishing one twice or leaving one ``unconfirmed``; and
SIGTERM is answered within the shutdown deadline whatever the database does.

The network is the sim with idempotency keys (``slow-sim``), some of whose requests hang past
the publish timeout: their outcome is unknown and they are resent under their key, which is
the bookkeeping a database outage used to break. The sim's ledger, written by the "network"
itself, says what it received.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from daemon_support import (
    NO_FSYNC_ENV,
    Daemons,
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
from outage_support import private_cluster, small_disk
from smm_sim import requests_per_key

from scheduler.db.engine import make_engine
from scheduler.db.migrate import ensure_schema
from scheduler.db.models import PostState

POSTS = 2000
ACCOUNTS = 8
#: How long each of the five outages keeps the database away, in a random order: they
#: span 3 to 15 s (a PostgreSQL server adds the 2-3 s it takes to start again), so one
#: outage outlasts the lease and the publish timeout many times over.
DOWN_S = (3.0, 5.0, 7.5, 10.0, 13.5)
OUTAGES = len(DOWN_S)
#: Posts fall due over this many seconds, so that work goes on through every outage.
SPREAD_S = 18.0
#: The port of the private cluster (5440-5499, away from the shared one on 5432).
PORT = 5440 + os.getpid() % 60

DAEMON = {
    "tick": "0.5s",
    "lease": "8s",
    "batch_size": 100,
    "concurrency": 32,
    "shutdown_deadline": "5s",
    "publish_timeout": "1.5s",
}
POLICIES = {
    "misfire_grace": "1h",
    "max_attempts": 8,
    "backoff_base": "0.2s",
    "backoff_max": "1s",
}


def _config(tmp_path: Path, ledger: Path, *, stall_rate: float = 0.02) -> Path:
    """``ACCOUNTS`` accounts on the idempotent sim; a share of requests hang for 3 s (past
    the publish timeout), before or after the network takes the post."""
    options = {"ledger": str(ledger), "latency": 0.05, "stall_rate": stall_rate, "stall": 3.0}
    return write_config(
        tmp_path / "config.toml",
        {f"acct-{i}": {"platform": "slow-sim", "options": options} for i in range(ACCOUNTS)},
        daemon=DAEMON,
        policies=POLICIES,
    )


def _seed(engine: Any, path: Path, rng: random.Random) -> None:
    config = config_at(path)
    start = utcnow() + timedelta(seconds=2)
    seed_posts(
        engine,
        config,
        [
            (
                f"p{i:04d}",
                f"acct-{i % ACCOUNTS}",
                start + timedelta(seconds=rng.uniform(0, SPREAD_S)),
            )
            for i in range(POSTS)
        ],
    )


@dataclass(frozen=True)
class Outage:
    """When the test took the database away and when it answered again (``time.time()``)."""

    began: float
    ended: float

    @property
    def length(self) -> float:
        return self.ended - self.began


def _outages(
    rng: random.Random,
    stop: Callable[[], None],
    start: Callable[[], None],
    *,
    restart_s: float = 0.0,
) -> list[Outage]:
    """Once per ``DOWN_S`` length, in a random order: run 1-2 s, then take the database away
    for that long and bring it back (``restart_s``: what bringing it back takes itself).
    Returns each outage, from its start to the database answering again."""
    outages = []
    for down in rng.sample(DOWN_S, len(DOWN_S)):
        time.sleep(rng.uniform(1.0, 2.0))
        began = time.time()
        stop()
        time.sleep(max(0.5, down - restart_s))
        start()
        outages.append(Outage(began, time.time()))
    return outages


def _said(daemons: Daemons, outages: list[Outage]) -> dict[str, list[tuple[str, int, float]]]:
    """What each daemon said of the database: (event, the outage it fell in, seconds since
    that outage began) per ``database_unreachable`` and ``database_back`` line; -1 for a
    line before the first outage (the database was up)."""
    said: dict[str, list[tuple[str, int, float]]] = {}
    for d in daemons.procs:
        lines = said.setdefault(d.log.name, [])
        for e in _events(d.log):
            if e.get("event") not in ("database_unreachable", "database_back"):
                continue
            at = datetime.fromisoformat(e["timestamp"]).timestamp()
            # A line belongs to the last outage that began before it (a daemon says the
            # database is back after the outage ended, at its next step).
            index = max((i for i, o in enumerate(outages) if o.began - 0.5 <= at), default=-1)
            since = at - outages[index].began if index >= 0 else 0.0
            lines.append((e["event"], index, round(since, 1)))
    return said


def _check(engine: Any, ledger: Path, daemons: Daemons) -> dict[str, Any]:
    """The invariants after a run: every post published once under its own key."""
    posts = post_rows(engine)
    states = Counter(str(p.state) for p in posts.values())
    created = ledger_posts(ledger)
    requests = requests_per_key(ledger)
    assert len(posts) == POSTS
    lost = [k for k, p in posts.items() if p.state != PostState.PUBLISHED]
    assert not lost, f"not published: {lost[:10]} {dict(states)}"
    assert states[str(PostState.UNCONFIRMED)] == 0
    twice = {k: v for k, v in created.items() if len(v) > 1}
    assert not twice, f"published twice under different keys: {twice}"
    for p in posts.values():
        assert created.get(p.idempotency_key) == [p.remote_id], p.key
    logs = "\n".join(p.log.read_text(errors="replace") for p in daemons.procs)
    return {
        "states": dict(states),
        "resent under their key": sum(n - 1 for n in requests.values()),
        "degraded": logs.count("database_unreachable"),
        "back": logs.count("database_back"),
        "logs": logs,
    }


def _finish(engine: Any, daemons: Daemons, started: float, deadline_s: float = 150) -> float:
    wait_until(
        lambda: pending_count(engine) == 0,
        timeout=deadline_s,
        interval=0.3,
        what="every post to be dispatched",
    )
    took = time.monotonic() - started
    for d in daemons.procs:
        assert d.alive(), f"a daemon exited during the outages:\n{d.tail()}"
    for d in daemons.procs:
        assert d.terminate(30) == 0, d.tail()
    return took


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(600)  # its own deadlines add up to over 5 minutes
def test_three_daemons_ride_out_five_postgres_restarts(tmp_path: Path) -> None:
    rng = random.Random(int(time.time()))
    ledger = tmp_path / "deliveries.jsonl"
    path = _config(tmp_path, ledger)
    with private_cluster(PORT) as cluster:
        engine = make_engine(cluster.url)
        ensure_schema(engine)
        _seed(engine, path, rng)
        env = {NO_FSYNC_ENV: "1"}
        with Daemons(path, cluster.url, tmp_path, test_networks=True, env=env) as daemons:
            procs = [daemons.start(log=f"daemon-{n}.log") for n in range(3)]
            wait_until(
                lambda: (
                    {p.pid for p in procs} <= daemon_pids(engine)
                    or not all(p.alive() for p in procs)
                ),
                timeout=60,
                what="three daemons to start",
            )
            started = time.monotonic()
            outages = _outages(rng, cluster.stop, cluster.start, restart_s=2.0)
            took = _finish(engine, daemons, started)
            result = _check(engine, ledger, daemons)
            said = _said(daemons, outages)
            server = cluster.starts_and_stops()
        engine.dispose()
    lengths = [o.length for o in outages]
    print(
        f"postgres: {POSTS} posts, 3 daemons, outages of "
        f"{', '.join(f'{s:.1f}' for s in lengths)} s: done in {took:.1f} s; "
        f"states {result['states']}; resent under their key {result['resent under their key']}; "
        f"degraded {result['degraded']} times, back {result['back']} times"
    )
    assert min(lengths) >= 3.0
    assert max(lengths) >= 12.0, f"no long outage: {lengths}"
    # Each daemon noticed outages and said so once per outage, not once per failed step:
    # one line when it found the database gone, one when it found it back, in that order.
    # (What the daemons said, against when the test took the server away and what the
    # server's own log says of its stops and starts, for a run that fails here.)
    timeline = "\n".join(
        [f"outages (s after the first): {[round(o.began - outages[0].began, 1) for o in outages]}"]
        + [f"{name}: {lines}" for name, lines in said.items()]
        + ["the server's log:", *server]
    )
    assert 3 <= result["degraded"] <= 3 * OUTAGES, timeline
    for lines in said.values():
        assert all(index >= 0 for _, index, _ in lines), timeline
        events = [event for event, _, _ in lines]
        assert events == ["database_unreachable", "database_back"] * (len(events) // 2), timeline
        degraded_in = [index for event, index, _ in lines if event == "database_unreachable"]
        assert len(degraded_in) == len(set(degraded_in)), timeline


@pytest.mark.slow
@pytest.mark.timeout(600)  # over a minute on a loaded 2-core machine
def test_a_daemon_on_sqlite_rides_out_a_full_disk(tmp_path: Path) -> None:
    rng = random.Random(int(time.time()))
    ledger = tmp_path / "deliveries.jsonl"  # the network's ledger: not on the small disk
    path = _config(tmp_path, ledger)
    with small_disk(tmp_path / "disk", 24) as disk:
        url = f"sqlite:///{disk.path / 'smm.db'}"
        engine = make_engine(url)
        ensure_schema(engine)
        _seed(engine, path, rng)
        with Daemons(path, url, tmp_path, test_networks=True, env={NO_FSYNC_ENV: "1"}) as daemons:
            d = daemons.start()
            wait_until(
                lambda: d.pid in daemon_pids(engine) or not d.alive(),
                timeout=60,
                what="the daemon to start",
            )
            started = time.monotonic()

            def fill() -> None:
                disk.fill()
                assert disk.full()

            lengths = [o.length for o in _outages(rng, fill, disk.free)]
            took = _finish(engine, daemons, started)
            result = _check(engine, ledger, daemons)
        engine.dispose()
    print(
        f"sqlite: {POSTS} posts, 1 daemon, disk full for "
        f"{', '.join(f'{s:.1f}' for s in lengths)} s: done in {took:.1f} s; "
        f"states {result['states']}; resent under their key {result['resent under their key']}; "
        f"degraded {result['degraded']} times, back {result['back']} times"
    )
    assert result["degraded"] >= 1, "the full disk was never noticed"
    assert "database or disk is full" in result["logs"]


@pytest.mark.slow
@pytest.mark.parametrize("how", ["disk full", "locked"])
def test_sigterm_with_an_unwritable_database_exits_within_the_deadline(
    tmp_path: Path, sqlite_template: Path, how: str
) -> None:
    ledger = tmp_path / "deliveries.jsonl"
    keys = [f"h{i}" for i in range(4)]
    deadline = 3.0
    options = {"ledger": str(ledger), "stall_after": keys, "stall": 30.0}
    path = write_config(
        tmp_path / "config.toml",
        {"acct": {"platform": "slow-sim", "options": options}},
        daemon={**DAEMON, "shutdown_deadline": f"{deadline:g}s", "publish_timeout": "60s"},
        policies=POLICIES,
    )
    with small_disk(tmp_path / "disk", 16) if how == "disk full" else _no_disk(tmp_path) as disk:
        db = disk.path / "smm.db"
        db.write_bytes(sqlite_template.read_bytes())
        url = f"sqlite:///{db}"
        engine = make_engine(url)
        seed_posts(engine, config_at(path), [(k, "acct", utcnow()) for k in keys])
        with Daemons(path, url, tmp_path, test_networks=True) as daemons:
            d = daemons.start()
            # Every post is on the network, its answer late: four results to write at stop.
            wait_until(
                lambda: len(requests_per_key(ledger)) == len(keys) or not d.alive(),
                timeout=60,
                what="the requests to reach the network",
            )
            lock: sqlite3.Connection | None = None
            if how == "disk full":
                disk.fill()
            else:  # another process holds the write lock (SQLite waits 30 s for it)
                lock = sqlite3.connect(db, isolation_level=None, timeout=1)
                lock.execute("BEGIN EXCLUSIVE")
            t0 = time.monotonic()
            code = d.terminate(60)
            took = time.monotonic() - t0
            if lock is not None:
                lock.rollback()
                lock.close()
            print(f"{how}: SIGTERM to exit {took:.2f} s (deadline {deadline:g} s), code {code}")
            assert took <= deadline + 1.0, d.tail()
            unwritten = [e for e in _events(d.log) if e.get("event") == "result_unwritten"]
            # Each post the daemon could not record is in the log, with what it ended in.
            assert sorted(e["post"] for e in unwritten) == keys, d.tail()
            for e in unwritten:
                assert e["outcome"] == "outcome_unknown"
                assert {"post_id", "attempt_id", "attempt", "state", "remote_id"} <= set(e)
            if how == "disk full":
                disk.free()
        engine.dispose()
    # What the network has, it has once.
    assert all(len(v) == 1 for v in ledger_posts(ledger).values())


def _events(log: Path) -> list[dict[str, Any]]:
    """The daemon's JSON log lines."""
    out = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
    return out


class _Dir:
    def __init__(self, path: Path) -> None:
        self.path = path


class _no_disk:
    """A plain directory where no small disk is needed."""

    def __init__(self, tmp_path: Path) -> None:
        self.dir = _Dir(tmp_path / "disk")

    def __enter__(self) -> Any:
        self.dir.path.mkdir()
        return self.dir

    def __exit__(self, *exc: object) -> None:
        pass
