"""The post state machine (scheduler/states.py, docs/design.md#post-states).

Every write path moves a post only along ``TRANSITIONS``: the database itself records any
other move (a trigger built from the table), while the daemon publishes, fails, retries,
pauses and misses posts, its leases are rescued, and the CLI's queue operations, the plan
importer and ``smm queue resolve`` move them by hand.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
from sqlalchemy import Engine, select, text

from scheduler import states
from scheduler.adapter import (
    Account,
    Adapter,
    AuthExpired,
    Capabilities,
    OutcomeUnknown,
    OutgoingPost,
    Published,
    Rejected,
    Transient,
)
from scheduler.daemon import store
from scheduler.db.engine import make_engine
from scheduler.db.models import Post
from scheduler.hookspecs import hookimpl
from scheduler.queue import cancel, find_posts, pause_accounts, reschedule, resume_accounts, retry
from scheduler.states import TRANSITIONS, PostState, allowed, sql_in
from tests.daemon_support import (
    config_at,
    event_rows,
    post_rows,
    registered,
    run_service,
    seed_posts,
    write_config,
)


def test_every_state_has_its_transitions_listed() -> None:
    assert set(TRANSITIONS) == set(PostState)
    assert not TRANSITIONS[PostState.PUBLISHED], "a published post never moves again"
    for targets in TRANSITIONS.values():
        assert targets <= set(PostState)


def test_allowed_reads_the_table() -> None:
    assert allowed(None, "queued")
    assert allowed(None, "paused")
    assert not allowed(None, "published")
    assert allowed("claimed", "unconfirmed")
    assert not allowed("unconfirmed", "queued"), "an unconfirmed post is settled, never requeued"
    assert not allowed("published", "queued")
    assert allowed("paused", "paused")


def test_partial_indexes_spell_their_states_from_the_module() -> None:
    wheres = {
        i.name: str(i.dialect_options["sqlite"]["where"])
        for i in Post.__table__.indexes  # type: ignore[attr-defined]
    }
    assert wheres["ix_posts_due"] == sql_in(states.DUE_STATES)
    assert wheres["ix_posts_settling"] == sql_in(states.SETTLING_STATES)
    assert wheres["ix_posts_awaiting"] == sql_in(states.AWAITING_APPROVAL)
    assert wheres["ix_posts_calendar"] == sql_in(states.CALENDAR_STATES)
    # together with ix_posts_due, the calendar's two indexes hold every post
    assert set(states.CALENDAR_STATES) | set(states.DUE_STATES) == set(PostState)
    assert sql_in(["claimed"]) == "state = 'claimed'"


# ------------------------------------------------------------------ every write path obeys


def _guard(engine: Engine) -> None:
    """Record, in ``bad_moves``, every change of ``posts.state`` the table does not list."""
    pairs = ", ".join(f"'{a}>{b}'" for a, targets in TRANSITIONS.items() for b in targets)
    initial = ", ".join(f"'{s}'" for s in states.INITIAL_STATES)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE bad_moves (post_id INTEGER, move TEXT)"))
        conn.execute(
            text(
                "CREATE TRIGGER guard_update AFTER UPDATE OF state ON posts "
                f"WHEN NEW.state <> OLD.state AND (OLD.state || '>' || NEW.state) NOT IN ({pairs}) "
                "BEGIN INSERT INTO bad_moves VALUES (NEW.id, OLD.state || '>' || NEW.state); END"
            )
        )
        conn.execute(
            text(
                "CREATE TRIGGER guard_insert AFTER INSERT ON posts "
                f"WHEN NEW.state NOT IN ({initial}) "
                "BEGIN INSERT INTO bad_moves VALUES (NEW.id, 'new>' || NEW.state); END"
            )
        )


def _bad_moves(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT post_id, move FROM bad_moves")).all())


class StateNet(Adapter):
    """Publishes, fails or loses each post as its key's first word says."""

    platform = "statenet"
    capabilities = Capabilities(text_limit=5000)
    seen: ClassVar[set[str]] = set()

    async def publish(
        self, post: OutgoingPost, account: Account, idempotency_key: str
    ) -> Published:
        kind = post.key.split("-")[0]
        first = post.key not in StateNet.seen
        StateNet.seen.add(post.key)
        if kind == "transient" and first:
            raise Transient("try again", http_status=503)
        if kind == "rejected":
            raise Rejected("no", http_status=400)
        if kind == "unknown":
            raise OutcomeUnknown("no answer", http_status=504)
        if kind == "auth":
            raise AuthExpired("token revoked", http_status=401)
        return Published(remote_id=f"r-{post.key}")


class StateNetPlugin:
    @hookimpl
    def register_platforms(self, register: Any) -> None:
        register(StateNet)


@pytest.fixture
def guarded(tmp_path: Path, sqlite_url: str) -> Engine:
    engine = make_engine(sqlite_url)
    _guard(engine)
    return engine


def test_every_write_path_moves_posts_only_along_the_transitions(
    guarded: Engine, tmp_path: Path
) -> None:
    engine = guarded
    cfg_path = write_config(
        tmp_path / "smm.toml",
        {
            "main": {"platform": "statenet"},
            "locked": {"platform": "statenet"},
        },
        policies={"max_attempts": 2, "backoff_base": "1s", "backoff_max": "1s"},
    )
    config = config_at(cfg_path)
    now = datetime.now(UTC)
    posts = [
        ("ok-1", "main", now - timedelta(seconds=5)),
        ("transient-1", "main", now - timedelta(seconds=5)),
        ("rejected-1", "main", now - timedelta(seconds=5)),
        ("unknown-1", "main", now - timedelta(seconds=5)),
        ("stale-1", "main", now - timedelta(days=2)),
        ("auth-1", "locked", now - timedelta(seconds=5)),
        ("later-1", "locked", now + timedelta(days=3)),
        ("later-2", "main", now + timedelta(days=3)),
    ]
    seed_posts(engine, config, posts, now=now)
    StateNet.seen.clear()

    def settled() -> bool:
        rows = post_rows(engine)
        return all(
            rows[k].state not in states.PENDING_STATES for k, _, due in posts if due < now
        ) and (rows["transient-1"].state == PostState.PUBLISHED)

    with registered(("statenet-plugin", StateNetPlugin())):
        asyncio.run(run_service(engine, config, until=settled, timeout=30))

    rows = post_rows(engine)
    assert rows["ok-1"].state == PostState.PUBLISHED
    assert rows["rejected-1"].state == PostState.FAILED
    assert rows["unknown-1"].state == PostState.UNCONFIRMED
    assert rows["stale-1"].state == PostState.MISSED
    assert rows["auth-1"].state == PostState.PAUSED
    assert rows["later-1"].state == PostState.PAUSED  # its account was paused with it

    later = datetime.now(UTC)
    # By hand: settle, cancel, retry, reschedule, pause and resume.
    assert store.settle(
        engine, rows["unknown-1"].id, later, "cli", published=False, reason="not there"
    )
    with engine.begin() as conn:
        cancel(conn, find_posts(conn, ["rejected-1", "stale-1", "later-2"]), later)
        retry(conn, find_posts(conn, ["rejected-1"]), later)
        (row,) = find_posts(conn, ["stale-1"])
        reschedule(conn, row, later + timedelta(days=1), later)
        ids = [a.id for a in conn.execute(text("SELECT id FROM accounts WHERE name = 'locked'"))]
        resume_accounts(conn, [(i, None) for i in ids], later)
        pause_accounts(conn, ids, later, "holiday")
    # A lease nobody renews is rescued.
    claimed, _ = store.claim(
        engine,
        "gone-daemon",
        later,
        lease=timedelta(seconds=1),
        limit=10,
        grace={},
        default_grace=timedelta(days=30),
    )
    assert claimed
    # Their requests may have left (recorded as sent): a network without keys leaves them
    # unconfirmed.
    store.mark_sent(engine, [c.attempt_id for c in claimed], later)
    store.rescue_expired(engine, "rescuer", later + timedelta(minutes=1), {})
    # The plan, pruned: posts it no longer names are cancelled.
    from scheduler.plan.importer import apply_plan
    from scheduler.plan.items import PlanItem

    item = PlanItem(
        key="ok-2",
        account="main",
        content_type="laugh",
        text="post ok-2",
        media=(),
        link=None,
        tags=(),
        evergreen=False,
        at=later + timedelta(days=1),
        file="plan.yaml",
        line=1,
        unit="line",
        order=0,
    )
    with engine.begin() as conn:
        apply_plan(conn, [item], config, later, prune=True)

    assert _bad_moves(engine) == []
    moves = {(e.from_state, e.to_state) for e in event_rows(engine)}
    assert ("queued", "cancelled") in moves or ("retry_wait", "cancelled") in moves
    for from_state, to_state in moves:
        assert allowed(from_state, to_state), f"event {from_state} -> {to_state}"
    with engine.connect() as conn:
        kinds = set(conn.execute(select(Post.state)).scalars())  # type: ignore[call-overload]
    assert len(kinds) >= 4, kinds


def test_approval_moves_posts_only_along_the_transitions(guarded: Engine, tmp_path: Path) -> None:
    from dataclasses import replace

    from scheduler.plan.importer import apply_plan
    from scheduler.plan.items import PlanItem
    from scheduler.queue import approve, reject

    engine = guarded
    config = config_at(write_config(tmp_path / "smm.toml", {"main": {"platform": "statenet"}}))
    config = replace(config, accounts={"main": replace(config.accounts["main"], approval=True)})
    now = datetime.now(UTC)

    def item(key: str, text: str = "as planned") -> PlanItem:
        return PlanItem(
            *(key, "main", "laugh", text, (), None, (), False, now + timedelta(days=1)),
            *("plan.yaml", 1, "line", 0),
        )

    with engine.begin() as conn:
        apply_plan(conn, [item("a"), item("b"), item("c")], config, now)
    assert {r.state for r in post_rows(engine).values()} == {PostState.PENDING_APPROVAL}
    with engine.begin() as conn:
        reject(conn, find_posts(conn, ["a", "c"]), now, "m", "not like this")
        approve(conn, find_posts(conn, ["b", "c"]), now, "m")
        cancel(conn, find_posts(conn, ["c"]), now)
    with engine.begin() as conn:  # the plan changes a sent back, b approved and c cancelled
        apply_plan(conn, [item(k, "changed") for k in "abc"], config, now)
    rows = post_rows(engine)
    assert {k: rows[k].state for k in "abc"} == dict.fromkeys("abc", PostState.PENDING_APPROVAL)
    assert _bad_moves(engine) == []


def test_the_guard_sees_a_move_the_table_does_not_list(guarded: Engine) -> None:
    """The check above can fail: a write outside the table is recorded."""
    with guarded.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO accounts (name, platform, timezone, paused, auth_state, "
                "created_at, updated_at) VALUES ('a', 'x', 'UTC', 0, 'ok', '2026-01-01', "
                "'2026-01-01')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO posts (key, account_id, content_type, text, media, tags, evergreen, "
                "schedule, plan_order, content_hash, state, idempotency_key, attempt_count, "
                "repeat_count, created_at, updated_at) VALUES ('k', 1, 't', 'x', '[]', '[]', 0, "
                "'queue', 0, 'h', 'queued', 'i', 0, 0, '2026-01-01', '2026-01-01')"
            )
        )
        conn.execute(text("UPDATE posts SET state = 'published'"))
    assert [m.move for m in _bad_moves(guarded)] == ["queued>published"]
