"""Telling database outages from bugs, waiting them out, and saying so once per change
(scheduler/daemon/weather.py); ``smm run`` waiting for a database that is not there yet."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from daemon_support import Daemons, config_at, wait_until, write_config
from sqlalchemy import exc as sa_exc
from structlog.testing import capture_logs

from scheduler.daemon import weather
from scheduler.daemon.weather import Unavailable, Weather, patiently, unreachable
from scheduler.daemon.worker import Worker
from scheduler.db.engine import make_engine


def operational(message: str = "connection refused") -> sa_exc.OperationalError:
    return sa_exc.OperationalError("SELECT 1", {}, Exception(message))


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (operational("server closed the connection unexpectedly"), True),
        (operational("database or disk is full"), True),
        (operational("database is locked"), True),
        (sa_exc.InterfaceError("SELECT 1", {}, Exception("connection already closed")), True),
        (sa_exc.TimeoutError("QueuePool limit reached"), True),
        (sa_exc.IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed")), False),
        (sa_exc.ProgrammingError("SELEC", {}, Exception("syntax error")), False),
        (KeyError("state"), False),
    ],
)
def test_only_errors_of_an_unusable_database_are_outages(error: Exception, expected: bool) -> None:
    assert unreachable(error) is expected


def test_the_state_changes_are_said_once_each(monkeypatch: pytest.MonkeyPatch) -> None:
    told: list[str] = []
    w = Weather(notify=told.append)
    with capture_logs() as logs:
        for step in ("claim", "results", "heartbeat"):
            w.trouble(step, operational())
        w.fine()
        w.fine()
    assert [e["event"] for e in logs] == ["database_unreachable", "database_back"]
    assert logs[0]["step"] == "claim"
    assert "connection refused" in logs[0]["error"]
    assert told[0].startswith("degraded: the database is unreachable")
    assert told[1:] == ["dispatching"]
    assert not w.degraded


def test_a_failure_right_after_the_database_came_back_is_the_same_outage() -> None:
    w = Weather(notify=lambda _: None)
    with capture_logs() as logs:
        w.trouble("claim", operational())
        w.fine()
        w.trouble("results", operational("server closed the connection unexpectedly"))
        w.fine()
    assert [e["event"] for e in logs] == ["database_unreachable", "database_back"]


def test_what_a_try_that_began_before_a_change_finds_changes_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Steps run side by side and finish in any order: a statement that got through as the
    # server went down, answered after another step failed, is not the database coming
    # back; a try that failed while it was down, answered after it came back (later than
    # SETTLE_S, on a loaded machine), is not a second outage.
    clock = [100.0]
    monkeypatch.setattr(weather.time, "monotonic", lambda: clock[0])
    w = Weather(notify=lambda _: None)
    with capture_logs() as logs:
        w.trouble("claim", operational(), started=99.9)
        clock[0] = 100.1
        w.fine(started=99.8)  # began before the failure was seen
        assert w.degraded
        clock[0] = 110.0
        w.fine(started=109.5)  # the database answers: one outage, over
        assert not w.degraded
        clock[0] = 110.0 + weather.SETTLE_S + 5
        w.trouble("results", operational(), started=108.0)  # began during the outage
        assert not w.degraded
        w.trouble("results", operational(), started=116.0)  # a new outage
        clock[0] = 120.0
        w.fine(started=119.0)
    assert [(e["event"], e.get("after_s")) for e in logs] == [
        ("database_unreachable", None),
        ("database_back", 10.0),
        ("database_unreachable", None),
        ("database_back", 3.0),
    ]


def test_patiently_dates_each_try_from_when_it_runs() -> None:
    # A slow step that began before another one failed: its success leaves the daemon
    # degraded until a step that began after the failure gets through.
    w = Weather(notify=lambda _: None)
    fails = [4]

    def slow() -> str:
        time.sleep(0.3)
        return "ok"

    def broken() -> str:
        if fails[0]:
            fails[0] -= 1
            raise operational("server closed the connection unexpectedly")
        return "ok"

    async def run() -> list[bool]:
        seen = []
        slow_step = asyncio.create_task(patiently(w, "leases", slow))
        await asyncio.sleep(0.05)
        # Fails twice (the second failure is the outage), then twice more after backoffs.
        broken_step = asyncio.create_task(patiently(w, "claim", broken))
        await asyncio.sleep(0.02)
        assert w.degraded
        await slow_step
        seen.append(w.degraded)  # the slow step's success began before the failure
        await broken_step
        seen.append(w.degraded)
        return seen

    with capture_logs() as logs:
        assert asyncio.run(run()) == [True, False]
    assert [e["event"] for e in logs] == ["database_unreachable", "database_back"]


def test_a_worker_with_nothing_to_renew_does_not_take_that_for_the_database_back(
    tmp_path: Path,
) -> None:
    # A daemon with nothing in flight renews no lease: that is no answer from the database,
    # which may still be away (the daemon said "back" mid-outage, then "degraded" again).
    engine = make_engine(NOWHERE)
    worker = Worker(engine, config_at(_config(tmp_path)))
    worker.weather = Weather(notify=lambda _: None)
    worker.weather.trouble("claim", operational())
    with capture_logs() as logs:
        assert asyncio.run(worker.renew_leases()) == 0
    assert worker.weather.degraded
    assert logs == []
    engine.dispose()


def test_a_send_record_on_a_connection_that_died_with_the_server_is_no_outage() -> None:
    # The send records' kept connection, first used after a restart, fails once: tried
    # again at once on a new one, without a word. A second failure is an outage.
    w = Weather(notify=lambda _: None)
    tries: list[int] = []

    def record(fail: int) -> str:
        tries.append(1)
        if len(tries) <= fail:
            raise operational("consuming input failed: server closed the connection")
        return "ok"

    with capture_logs() as logs:
        assert asyncio.run(weather.briefly(w, "sending", record, 1)) == "ok"
        assert (len(tries), w.degraded, logs) == (2, False, [])
        tries.clear()
        with pytest.raises(sa_exc.OperationalError):
            asyncio.run(weather.briefly(w, "sending", record, 2))
    assert len(tries) == 2
    assert w.degraded
    assert [(e["event"], e["step"]) for e in logs] == [("database_unreachable", "sending")]


def test_patiently_retries_until_the_database_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(weather, "FIRST_RETRY_S", 0.01)
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 4:
            raise operational()
        return "ok"

    w = Weather(notify=lambda _: None)
    assert asyncio.run(patiently(w, "claim", flaky)) == "ok"
    assert len(calls) == 4
    assert not w.degraded


def test_patiently_raises_a_bug_at_once_and_gives_up_when_told() -> None:
    w = Weather(notify=lambda _: None)

    def bug() -> None:
        raise sa_exc.IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed"))

    with pytest.raises(sa_exc.IntegrityError):
        asyncio.run(patiently(w, "results", bug))
    assert not w.degraded

    def down() -> None:
        raise operational()

    started = time.monotonic()
    with pytest.raises(Unavailable):
        asyncio.run(patiently(w, "results", down, deadline=time.monotonic() + 0.3))
    assert time.monotonic() - started < 1.5
    assert w.degraded


def _config(tmp_path: Path, **daemon: Any) -> Path:
    return write_config(
        tmp_path / "config.toml", {"acct": {"platform": "sim"}}, daemon={"tick": "1s", **daemon}
    )


#: A PostgreSQL server that is not there (its socket directory does not exist).
NOWHERE = "postgresql+psycopg:///smm?host=/nonexistent-smm-socket-dir"


def _events(log: Path) -> list[dict[str, Any]]:
    out = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


@pytest.mark.postgres
def test_smm_run_waits_for_an_unreachable_database_and_stops_cleanly(tmp_path: Path) -> None:
    pytest.importorskip("psycopg")
    with Daemons(_config(tmp_path), NOWHERE, tmp_path) as daemons:
        d = daemons.start()
        wait_until(
            lambda: "database_unreachable" in d.log.read_text() or not d.alive(),
            timeout=30,
            what="the daemon to say it waits",
        )
        time.sleep(1.0)
        assert d.alive(), d.tail()
        started = time.monotonic()
        assert d.terminate(10) == 0, d.tail()
        assert time.monotonic() - started < 5
    (waiting,) = [e for e in _events(d.log) if e.get("event") == "database_unreachable"]
    assert waiting["step"] == "start"


@pytest.mark.postgres
def test_smm_run_gives_up_after_database_wait(tmp_path: Path) -> None:
    pytest.importorskip("psycopg")
    with Daemons(_config(tmp_path, database_wait="1s"), NOWHERE, tmp_path) as daemons:
        d = daemons.start()
        assert d.wait(30) == 1, d.tail()
    assert "database_wait (1 s)" in d.log.read_text(), d.tail()
