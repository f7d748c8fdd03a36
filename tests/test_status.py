"""``smm status``: daemons alive, the queue, what is next, what needs a person; exit codes."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine

from scheduler.cli import cli
from scheduler.cli.status import NEEDS_ATTENTION, daemon_state
from scheduler.daemon import store
from scheduler.db.models import PostState
from scheduler.queue import accounts_t, posts_t
from scheduler.timeutil import utcnow

Smm = Callable[..., Result]

#: For tests whose SQL is no different on PostgreSQL (the time comparisons run on both).
sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytest.fixture
def smm(db_url: str) -> Smm:
    def run(*args: str, expect: int = 0) -> Result:
        result = CliRunner().invoke(cli, ["--db", db_url, "status", *args])
        assert result.exit_code == expect, result.output
        return result

    return run


def status_json(smm: Smm, expect: int = 0) -> dict[str, Any]:
    return dict(json.loads(smm("--json", expect=expect).output))


def add_account(engine: Engine, name: str, tz: str = "UTC", **values: Any) -> int:
    now = utcnow()
    with engine.begin() as conn:
        row = {
            "name": name,
            "platform": "sim",
            "timezone": tz,
            "paused": False,
            "auth_state": "ok",
            "created_at": now,
            "updated_at": now,
            **values,
        }
        return int(
            conn.execute(accounts_t.insert().values(row).returning(accounts_t.c.id)).scalar_one()
        )


def add_post(
    engine: Engine, account_id: int, due: datetime, state: str = PostState.QUEUED, **values: Any
) -> str:
    key = f"p-{uuid.uuid4().hex[:8]}"
    now = utcnow()
    row = {
        "key": key,
        "account_id": account_id,
        "content_type": "laugh",
        "text": "hello  world",
        "schedule": "fixed",
        "content_hash": "h",
        "state": state,
        "due_at": due,
        "next_attempt_at": due,
        "idempotency_key": uuid.uuid4().hex,
        "created_at": now,
        "updated_at": now,
        **values,
    }
    with engine.begin() as conn:
        conn.execute(posts_t.insert().values(row))
    return key


def beat(engine: Engine, daemon: str, age: timedelta, status: str = "running") -> None:
    info = {"hostname": "host1", "pid": 42, "version": "0.1"}
    store.heartbeat(engine, daemon, info, utcnow() - age, status)


@sqlite_only
def test_an_empty_database_with_a_daemon_alive_is_healthy(smm: Smm, engine: Engine) -> None:
    beat(engine, "d1", timedelta(seconds=1))
    report = status_json(smm)
    assert report["healthy"] is True
    assert report["attention"] == []
    assert [d["id"] for d in report["daemons"]] == ["d1"]
    assert report["queue"] == dict.fromkeys((s.value for s in PostState), 0)
    assert report["next_due"] == []


def test_daemons_are_alive_stale_or_stopped_by_their_heartbeat(smm: Smm, engine: Engine) -> None:
    beat(engine, "fresh", timedelta(seconds=5))
    beat(engine, "silent", timedelta(minutes=5))
    beat(engine, "done", timedelta(seconds=5), status="stopped")
    beat(engine, "last-week", timedelta(days=7))
    states = {d["id"]: d["state"] for d in status_json(smm)["daemons"]}
    assert states == {"fresh": "alive", "silent": "stale", "done": "stopped"}


def test_the_text_report_folds_stopped_daemons_into_one_line(smm: Smm, engine: Engine) -> None:
    beat(engine, "host1:1:live", timedelta(seconds=2))
    for n in range(20):  # a crash loop's leftovers
        beat(engine, f"host1:{100 + n}:dead", timedelta(minutes=5 + n))
    beat(engine, "host1:99:done", timedelta(seconds=40), status="stopped")
    text = smm().output
    assert "host1:1:live" in text
    assert "dead" not in text
    assert "host1:99:done" not in text
    assert "21 stopped daemons (20 without a clean stop), last seen 40s ago" in text


def test_the_daemon_state_boundary_is_three_heartbeats() -> None:
    now = utcnow()
    assert daemon_state(now - timedelta(seconds=30), "running", now) == "alive"
    assert daemon_state(now - timedelta(seconds=31), "running", now) == "stale"
    assert daemon_state(now, "stopped", now) == "stopped"


@sqlite_only
def test_the_queue_is_counted_by_state(smm: Smm, engine: Engine) -> None:
    beat(engine, "d1", timedelta(seconds=1))
    a = add_account(engine, "riga")
    later = utcnow() + timedelta(hours=1)
    for state in (PostState.QUEUED, PostState.QUEUED, PostState.PUBLISHED, PostState.CANCELLED):
        add_post(engine, a, later, state)
    queue = status_json(smm)["queue"]
    assert (queue["queued"], queue["published"], queue["cancelled"], queue["failed"]) == (
        2,
        1,
        1,
        0,
    )


@sqlite_only
def test_the_next_ten_posts_due_are_listed_in_order_in_local_time(smm: Smm, engine: Engine) -> None:
    beat(engine, "d1", timedelta(seconds=1))
    riga = add_account(engine, "riga", tz="Europe/Riga")
    held = add_account(engine, "held", paused=True, paused_reason="paused from the CLI")
    first = utcnow().replace(microsecond=0) + timedelta(days=1)
    keys = [add_post(engine, riga, first + timedelta(hours=i)) for i in range(12)]
    add_post(engine, held, first - timedelta(hours=1), PostState.PAUSED)
    add_post(engine, riga, first - timedelta(hours=2), PostState.PUBLISHED)
    report = status_json(smm)
    assert [p["id"] for p in report["next_due"]] == keys[:10]
    assert report["next_due"][0]["due_local"].endswith(("EET", "EEST"))
    assert report["next_due"][0]["text"] == "hello world"


def test_no_daemon_alive_needs_attention_even_before_anything_is_due(
    smm: Smm, engine: Engine
) -> None:
    assert status_json(smm, expect=NEEDS_ATTENTION)["attention"] == [
        "no daemon alive (no post waiting): start `smm run`"
    ]
    a = add_account(engine, "riga")
    add_post(engine, a, datetime(2099, 1, 1, 9, tzinfo=UTC))
    beat(engine, "stopped-one", timedelta(seconds=1), status="stopped")
    report = status_json(smm, expect=NEEDS_ATTENTION)
    assert report["healthy"] is False
    assert report["attention"] == [
        "no daemon alive (the next post is due at 2099-01-01T09:00:00Z): start `smm run`"
    ]
    assert smm(expect=NEEDS_ATTENTION).output.startswith("needs attention:")


def test_posts_due_with_no_daemon_alive_need_attention(smm: Smm, engine: Engine) -> None:
    a = add_account(engine, "riga")
    add_post(engine, a, utcnow() - timedelta(seconds=10))
    beat(engine, "crashed", timedelta(minutes=10))
    report = status_json(smm, expect=NEEDS_ATTENTION)
    assert report["attention"] == ["1 post(s) due and no daemon alive: start `smm run`"]


def test_posts_due_a_moment_ago_with_a_daemon_alive_are_fine(smm: Smm, engine: Engine) -> None:
    a = add_account(engine, "riga")
    add_post(engine, a, utcnow() - timedelta(seconds=10))
    beat(engine, "d1", timedelta(seconds=2))
    assert status_json(smm)["healthy"] is True


def test_posts_overdue_although_a_daemon_is_alive_need_attention(smm: Smm, engine: Engine) -> None:
    a = add_account(engine, "riga")
    add_post(engine, a, utcnow() - timedelta(minutes=6))
    beat(engine, "d1", timedelta(seconds=2))
    (line,) = status_json(smm, expect=NEEDS_ATTENTION)["attention"]
    assert line.startswith("1 post(s) overdue by more than 5 min")


@sqlite_only
def test_due_posts_of_paused_accounts_need_no_attention(smm: Smm, engine: Engine) -> None:
    beat(engine, "d1", timedelta(seconds=1))
    a = add_account(engine, "held", paused=True, paused_reason="paused from the CLI")
    add_post(engine, a, utcnow() - timedelta(hours=1), PostState.PAUSED)
    report = status_json(smm)
    assert report["healthy"] is True
    assert report["paused_accounts"] == [
        {
            "account": "held",
            "platform": "sim",
            "reason": "paused from the CLI",
            "auth_expired": False,
            "fix": "smm queue resume --account held",
        }
    ]


@sqlite_only
def test_an_account_with_rejected_credentials_is_flagged(smm: Smm, engine: Engine) -> None:
    beat(engine, "d1", timedelta(seconds=1))
    add_account(
        engine, "riga", paused=True, auth_state="expired", paused_reason="credentials rejected"
    )
    report = status_json(smm, expect=NEEDS_ATTENTION)
    assert report["attention"] == ["credentials rejected, account(s) paused: riga"]
    (paused,) = report["paused_accounts"]
    assert paused["auth_expired"] is True
    assert paused["fix"].startswith("renew the credentials")
    text = smm(expect=NEEDS_ATTENTION).output
    assert "AUTH EXPIRED: credentials rejected" in text


@sqlite_only
def test_failed_posts_are_listed_with_their_error_and_the_fix(smm: Smm, engine: Engine) -> None:
    beat(engine, "d1", timedelta(seconds=1))
    a = add_account(engine, "riga")
    key = add_post(
        engine,
        a,
        utcnow() - timedelta(hours=1),
        PostState.FAILED,
        error_class="rejected",
        last_error="the network refused this post",
    )
    report = status_json(smm, expect=NEEDS_ATTENTION)
    assert report["attention"] == ["1 failed post(s): retry or cancel them"]
    (post,) = report["needs_person"]
    assert post["id"] == key
    assert (post["error_class"], post["last_error"]) == (
        "rejected",
        "the network refused this post",
    )
    assert post["fix"] == f"smm queue retry {key}  (or: smm queue cancel {key})"
    text = smm(expect=NEEDS_ATTENTION).output
    assert f"fix: smm queue retry {key}" in text
    assert "rejected: the network refused this post" in text


def test_unconfirmed_posts_wait_for_a_person_only_once_the_daemon_gave_up(
    smm: Smm, engine: Engine
) -> None:
    a = add_account(engine, "riga")
    add_post(engine, a, utcnow() - timedelta(minutes=1), PostState.UNCONFIRMED)
    beat(engine, "d1", timedelta(seconds=1))
    assert status_json(smm)["healthy"] is True  # the daemon is still settling it
    key = add_post(
        engine,
        a,
        utcnow() - timedelta(hours=1),
        PostState.UNCONFIRMED,
        updated_at=utcnow() - timedelta(minutes=30),
        last_error="simulated timeout",
    )
    report = status_json(smm, expect=NEEDS_ATTENTION)
    assert report["attention"] == ["1 unconfirmed post(s) the network cannot settle: resolve them"]
    assert [p["id"] for p in report["needs_person"]] == [key]
    assert report["needs_person"][0]["fix"] == (
        f"smm queue resolve {key} --published REMOTE_ID | --not-published"
    )


@sqlite_only
def test_the_text_report_shows_each_section(smm: Smm, engine: Engine) -> None:
    a = add_account(engine, "riga", tz="Europe/Riga")
    key = add_post(engine, a, utcnow() + timedelta(hours=3))
    beat(engine, "host1:42:abc", timedelta(seconds=1))
    text = smm().output
    assert text.startswith("healthy")
    assert "host1:42:abc" in text
    assert "alive" in text
    assert "queued 1" in text
    assert key in text


def test_an_uninitialised_database_is_an_error(tmp_path: Any) -> None:
    result = CliRunner().invoke(cli, ["--db", f"sqlite:///{tmp_path / 'new.db'}", "status"])
    assert result.exit_code == 1
    assert "smm init" in result.output


def test_unconfirmed_posts_are_flagged_after_two_of_the_configured_reconcile_intervals(
    db_url: str, engine: Engine, tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[daemon]\nreconcile = "30m"\n', encoding="utf-8")
    a = add_account(engine, "riga")
    beat(engine, "d1", timedelta(seconds=1))
    add_post(
        engine,
        a,
        utcnow() - timedelta(hours=2),
        PostState.UNCONFIRMED,
        updated_at=utcnow() - timedelta(minutes=30),
    )

    def status(*args: str) -> Result:
        return CliRunner().invoke(
            cli, ["--db", db_url, "--config", str(config), "status", "--json", *args]
        )

    assert status().exit_code == 0  # within two 30-minute tries: the daemon is on it
    config.write_text('[daemon]\nreconcile = "10m"\n', encoding="utf-8")
    assert status().exit_code == NEEDS_ATTENTION


@sqlite_only
def test_posts_of_an_account_no_longer_in_the_config_need_attention(
    db_url: str, engine: Engine, tmp_path: Path
) -> None:
    """A daemon takes only its config's accounts: posts of one the config lost wait for ever."""
    beat(engine, "d1", timedelta(seconds=1))
    kept, gone = add_account(engine, "kept"), add_account(engine, "gone")
    add_post(engine, kept, utcnow() + timedelta(hours=1))
    for state in (PostState.QUEUED, PostState.PAUSED, PostState.PENDING_APPROVAL):
        add_post(engine, gone, utcnow() + timedelta(hours=1), state)
    add_post(engine, gone, utcnow() - timedelta(days=1), PostState.PUBLISHED)
    config = tmp_path / "c.toml"
    config.write_text('[accounts.kept]\nplatform = "sim"\ntimezone = "UTC"\n', encoding="utf-8")
    args = ["--db", db_url, "--config", str(config), "status"]
    result = CliRunner().invoke(cli, [*args, "--json"])
    assert result.exit_code == NEEDS_ATTENTION, result.output
    report = json.loads(result.output)
    assert report["orphaned"] == [{"account": "gone", "posts": 3}]
    assert report["attention"] == [
        "3 post(s) wait for account(s) no longer in the config (gone): no daemon takes them; "
        "put the account back in the config, or cancel them (smm queue list --account NAME)"
    ]
    config.write_text(
        config.read_text() + '[accounts.gone]\nplatform = "sim"\ntimezone = "UTC"\n',
        encoding="utf-8",
    )
    assert CliRunner().invoke(cli, args).exit_code == 0
