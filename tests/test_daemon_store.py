"""The daemon's database steps on SQLite and PostgreSQL: claims, leases, outcomes, rescue."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event, select, update
from sqlalchemy.exc import OperationalError

from scheduler.daemon import liveness, store, store_pg
from scheduler.daemon.store import Result, accounts_t, attempts_t
from scheduler.db.bulk import insert_rows
from scheduler.db.engine import make_engine
from scheduler.db.models import Outcome, PostState
from scheduler.queue import events_t, posts_t

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=30)
GRACE = timedelta(minutes=15)


def seed(engine: Engine, due: list[datetime], *, account: str = "a") -> list[int]:
    with engine.begin() as conn:
        acc = conn.execute(select(accounts_t.c.id).where(accounts_t.c.name == account)).scalar()
        if acc is None:
            acc = conn.execute(
                accounts_t.insert()
                .values(
                    name=account,
                    platform="sim",
                    timezone="UTC",
                    paused=False,
                    auth_state="ok",
                    created_at=NOW,
                    updated_at=NOW,
                )
                .returning(accounts_t.c.id)
            ).scalar_one()
        rows = [
            {
                "key": f"{account}-{uuid.uuid4().hex[:8]}",
                "account_id": acc,
                "content_type": "t",
                "text": "x",
                "media": [],
                "tags": [],
                "evergreen": False,
                "schedule": "fixed",
                "plan_order": i,
                "content_hash": "h",
                "state": PostState.QUEUED,
                "due_at": d,
                "next_attempt_at": d,
                "idempotency_key": uuid.uuid4().hex,
                "attempt_count": 0,
                "repeat_count": 0,
                "created_at": NOW,
                "updated_at": NOW,
            }
            for i, d in enumerate(due)
        ]
        insert_rows(conn, posts_t, rows)
        return list(
            conn.execute(
                select(posts_t.c.id).where(posts_t.c.account_id == acc).order_by(posts_t.c.id)
            ).scalars()
        )


def claim(engine: Engine, owner: str = "d1", now: datetime = NOW, limit: int = 100):  # type: ignore[no-untyped-def]
    return store.claim(engine, owner, now, lease=LEASE, limit=limit, grace={}, default_grace=GRACE)


def post(engine: Engine, post_id: int) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(posts_t).where(posts_t.c.id == post_id)).one()


def test_claim_leases_due_posts_and_opens_their_attempts(engine: Engine) -> None:
    ids = seed(engine, [NOW - timedelta(seconds=5), NOW, NOW + timedelta(seconds=5)])
    claimed, missed = claim(engine)
    assert [c.post_id for c in claimed] == ids[:2]
    assert missed == []
    p = post(engine, ids[0])
    assert (p.state, p.lease_owner, p.lease_expires_at, p.attempt_count) == (
        PostState.CLAIMED,
        "d1",
        NOW + LEASE,
        1,
    )
    with engine.connect() as conn:
        attempts = conn.execute(select(attempts_t).order_by(attempts_t.c.id)).all()
    assert [(a.post_id, a.number, a.outcome, a.owner) for a in attempts] == [
        (ids[0], 1, None, "d1"),
        (ids[1], 1, None, "d1"),
    ]
    assert attempts[0].idempotency_key == p.idempotency_key


def test_a_claimed_post_is_not_claimed_again(engine: Engine) -> None:
    seed(engine, [NOW] * 5)
    first, _ = claim(engine, "d1", limit=3)
    second, _ = claim(engine, "d2")
    assert len(first) == 3
    assert len(second) == 2
    assert not {c.post_id for c in first} & {c.post_id for c in second}


def test_posts_of_paused_accounts_are_not_claimed(engine: Engine) -> None:
    seed(engine, [NOW], account="a")
    seed(engine, [NOW], account="b")
    with engine.begin() as conn:
        conn.execute(update(accounts_t).where(accounts_t.c.name == "b").values(paused=True))
    claimed, _ = claim(engine)
    assert [c.account for c in claimed] == ["a"]


def test_posts_later_than_the_grace_become_missed_not_claimed(engine: Engine) -> None:
    ids = seed(engine, [NOW - timedelta(hours=2), NOW - timedelta(minutes=5)])
    claimed, missed = claim(engine)
    assert [c.post_id for c in claimed] == [ids[1]]
    assert [m.post_id for m in missed] == [ids[0]]
    p = post(engine, ids[0])
    assert p.state == PostState.MISSED
    assert "misfire" in p.last_error
    with engine.connect() as conn:
        assert conn.execute(select(events_t.c.to_state)).scalars().all() == ["missed"]


def test_results_are_written_only_while_the_lease_is_held(engine: Engine) -> None:
    ids = seed(engine, [NOW, NOW])
    claimed, _ = claim(engine)
    # Another daemon rescued the second post meanwhile.
    with engine.begin() as conn:
        conn.execute(update(posts_t).where(posts_t.c.id == ids[1]).values(lease_owner="d2"))
    results = [
        Result(
            claimed[0],
            Outcome.TRANSIENT,
            PostState.RETRY_WAIT,
            NOW,
            next_attempt_at=NOW + timedelta(minutes=1),
            message="503",
        ),
        Result(claimed[1], Outcome.REJECTED, PostState.FAILED, NOW, message="nope"),
    ]
    assert store.write_results(engine, "d1", results, NOW) == 1
    assert post(engine, ids[0]).state == PostState.RETRY_WAIT
    assert post(engine, ids[0]).next_attempt_at == NOW + timedelta(minutes=1)
    assert post(engine, ids[1]).state == PostState.CLAIMED  # not ours any more: untouched


def test_a_publish_is_recorded_even_after_the_lease_was_lost(engine: Engine) -> None:
    (pid,) = seed(engine, [NOW])
    (c,), _ = claim(engine)
    with engine.begin() as conn:
        conn.execute(update(posts_t).where(posts_t.c.id == pid).values(lease_owner="d2"))
    r = Result(c, Outcome.PUBLISHED, PostState.PUBLISHED, NOW, remote_id="r1", remote_url="u")
    store.write_results(engine, "d1", [r], NOW)
    p = post(engine, pid)
    assert (p.state, p.remote_id, p.published_at) == (PostState.PUBLISHED, "r1", NOW)


def test_rate_limited_attempts_are_not_counted(engine: Engine) -> None:
    (pid,) = seed(engine, [NOW])
    (c,), _ = claim(engine)
    r = Result(
        c,
        Outcome.RATE_LIMITED,
        PostState.RETRY_WAIT,
        NOW,
        next_attempt_at=NOW + timedelta(minutes=5),
        counts=False,
    )
    store.write_results(engine, "d1", [r], NOW)
    assert post(engine, pid).attempt_count == 0


def test_rate_limit_blocks_are_the_429s_still_ahead_whichever_daemon_got_them(
    engine: Engine,
) -> None:
    a = seed(engine, [NOW, NOW], account="a")
    b = seed(engine, [NOW], account="b")
    c = seed(engine, [NOW], account="c")
    claimed = {row.post_id: row for row in claim(engine, "d1")[0]}
    soon, later, past = (NOW + timedelta(minutes=m) for m in (5, 15, -1))

    def refused(post_id: int, until: datetime, latency: float | None) -> Result:
        return Result(
            claimed[post_id],
            Outcome.RATE_LIMITED,
            PostState.RETRY_WAIT,
            NOW,
            http_status=429 if latency is not None else None,
            latency_ms=latency,
            next_attempt_at=until,
            retry_at=until,
            counts=False,
        )

    store.write_results(
        engine,
        "d1",
        [
            refused(a[0], soon, 12.0),
            refused(a[1], later, 15.0),  # the latest wait of the account wins
            refused(b[0], past, 9.0),  # over already
            # Held back by a daemon's own budget: nothing was sent, not the network's word.
            refused(c[0], later, None),
        ],
        NOW,
    )
    assert store.rate_limit_blocks(engine, NOW) == {"a": later}
    assert store.rate_limit_blocks(engine, soon) == {"a": later}
    assert store.rate_limit_blocks(engine, later) == {}


def test_rate_limit_blocks_read_only_the_refused_attempts_index(engine: Engine) -> None:
    # Every heartbeat asks; the attempts table grows without end, the 429s stay few.
    seed(engine, [NOW] * 20)
    claimed, _ = claim(engine)
    store.write_results(
        engine,
        "d1",
        [Result(c, Outcome.PUBLISHED, PostState.PUBLISHED, NOW, latency_ms=5.0) for c in claimed],
        NOW,
    )
    (plan,) = _plans(engine, lambda: store.rate_limit_blocks(engine, NOW))
    assert "ix_attempts_rate_limited" in plan, plan


def test_auth_failure_pauses_the_account_and_its_waiting_posts(engine: Engine) -> None:
    ids = seed(engine, [NOW, NOW + timedelta(hours=1)])
    claimed, _ = claim(engine, limit=1)
    r = Result(claimed[0], Outcome.AUTH_EXPIRED, PostState.PAUSED, NOW, pause_reason="401")
    store.write_results(engine, "d1", [r], NOW)
    assert {post(engine, i).state for i in ids} == {PostState.PAUSED}
    with engine.connect() as conn:
        acc = conn.execute(select(accounts_t)).one()
    assert (acc.paused, acc.auth_state, acc.paused_reason) == (True, "expired", "401")


@pytest.mark.parametrize(
    ("keys", "state"),
    [
        (None, "unconfirmed"),  # the network ignores keys: never resent blindly
        ("forever", "retry_wait"),
        (timedelta(hours=1), "retry_wait"),  # the key still holds
        (timedelta(seconds=5), "unconfirmed"),  # the key expired meanwhile
    ],
)
def test_expired_leases_that_may_have_been_sent_are_resent_only_while_the_key_holds(
    engine: Engine, keys: Any, state: str
) -> None:
    (pid,) = seed(engine, [NOW])
    (c,), _ = claim(engine)
    assert store.mark_sent(engine, [c.attempt_id], NOW) == {c.attempt_id}
    lifetimes = {} if keys is None else {c.account_id: None if keys == "forever" else keys}
    later = NOW + LEASE + timedelta(seconds=1)
    assert store.rescue_expired(engine, "d2", NOW, lifetimes) == (0, 0)
    store.rescue_expired(engine, "d2", later, lifetimes)
    p = post(engine, pid)
    assert (p.state, p.lease_owner, p.attempt_count) == (state, None, 1)
    with engine.connect() as conn:
        assert conn.execute(select(attempts_t.c.outcome)).scalar() == Outcome.ABANDONED


def test_an_expired_lease_whose_request_never_left_gives_the_attempt_back(engine: Engine) -> None:
    (pid,) = seed(engine, [NOW])
    (_c,), _ = claim(engine)
    later = NOW + LEASE + timedelta(seconds=1)
    # Not sent: requeued even for a network that ignores keys, and the attempt is not counted.
    assert store.rescue_expired(engine, "d2", later, {}) == (1, 0)
    p = post(engine, pid)
    assert (p.state, p.attempt_count, p.next_attempt_at) == (PostState.RETRY_WAIT, 0, later)
    (again,), _ = claim(engine, "d3", later)
    assert again.attempt_number == 1


def test_expired_leases_list_each_post_with_its_open_attempt(engine: Engine) -> None:
    sent_id, unsent_id = seed(engine, [NOW, NOW])
    claimed, _ = claim(engine)
    sent = next(c for c in claimed if c.post_id == sent_id)
    store.mark_sent(engine, [sent.attempt_id], NOW)
    assert store.expired_leases(engine, NOW + LEASE - timedelta(seconds=1)) == []
    rows = {r.id: r for r in store.expired_leases(engine, NOW + LEASE + timedelta(seconds=1))}
    assert set(rows) == {sent_id, unsent_id}
    assert (rows[sent_id].attempt_id, rows[sent_id].sent_at) == (sent.attempt_id, NOW)
    assert rows[unsent_id].sent_at is None
    assert {r.account for r in rows.values()} == {"a"}
    assert store.expired_leases(engine, NOW + LEASE * 2, accounts=[]) == []


def test_a_sent_attempt_the_network_never_had_is_given_back(engine: Engine) -> None:
    gone_id, maybe_id = seed(engine, [NOW, NOW])
    claimed, _ = claim(engine)
    store.mark_sent(engine, [c.attempt_id for c in claimed], NOW)
    gone = next(c for c in claimed if c.post_id == gone_id)
    later = NOW + LEASE + timedelta(seconds=1)
    # The network's lookup says it has no such post: due again, the attempt not counted,
    # even on a network that ignores keys. The other may be on the network: unconfirmed.
    assert store.rescue_expired(engine, "d2", later, {}, absent=[gone.attempt_id]) == (1, 1)
    p = post(engine, gone_id)
    assert (p.state, p.attempt_count, p.next_attempt_at) == (PostState.RETRY_WAIT, 0, later)
    assert (post(engine, maybe_id).state, post(engine, maybe_id).attempt_count) == (
        PostState.UNCONFIRMED,
        1,
    )
    with engine.connect() as conn:
        message = conn.execute(
            select(attempts_t.c.message).where(attempts_t.c.id == gone.attempt_id)
        ).scalar()
    assert message is not None
    assert message.endswith("no such post: not counted")


def attempt_messages(engine: Engine, post_id: int) -> list[str | None]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                select(attempts_t.c.message)
                .where(attempts_t.c.post_id == post_id)
                .order_by(attempts_t.c.id)
            ).scalars()
        )


@pytest.mark.parametrize("idempotent", [True, False])
def test_a_cut_request_the_network_has_counts_once_whatever_earlier_requests_made(
    engine: Engine, idempotent: bool
) -> None:
    # A network that honours keys answers a repeat with the post it already has, so its
    # lookup cannot tell whether a second request cut by a crash got there: only the
    # first request the post may have come from counts.
    (pid,) = seed(engine, [NOW])
    (first,), _ = claim(engine)
    store.mark_sent(engine, [first.attempt_id], NOW)
    keys = {first.account_id: None} if idempotent else {}
    t1 = NOW + LEASE + timedelta(seconds=1)
    assert store.rescue_expired(engine, "d2", t1, keys, present=[first.attempt_id]) == (
        (1, 0) if idempotent else (0, 1)
    )
    assert post(engine, pid).attempt_count == 1
    if not idempotent:  # a person queues it again (or a lookup said no, then the post came)
        with engine.begin() as conn:
            conn.execute(update(posts_t).values(state=PostState.RETRY_WAIT))
    (second,), _ = claim(engine, "d2", t1)
    assert second.attempt_number == 2
    store.mark_sent(engine, [second.attempt_id], t1)
    t2 = t1 + LEASE + timedelta(seconds=1)
    assert store.rescue_expired(engine, "d3", t2, keys, present=[second.attempt_id]) == (
        (1, 0) if idempotent else (0, 1)
    )
    p = post(engine, pid)
    assert p.attempt_count == 1
    assert p.state == (PostState.RETRY_WAIT if idempotent else PostState.UNCONFIRMED)
    assert attempt_messages(engine, pid) == [store.CUT_COUNTED, store.CUT_EARLIER]


def test_the_rescue_decides_only_on_the_attempts_the_networks_were_asked_about(
    engine: Engine,
) -> None:
    asked_id, late_id, marked_id = seed(engine, [NOW, NOW, NOW])
    claimed = {c.post_id: c for c in claim(engine)[0]}
    store.mark_sent(engine, [claimed[asked_id].attempt_id, claimed[late_id].attempt_id], NOW)
    # The late one's daemon renewed it: its lease had not expired when the rescue read.
    store.renew_leases(engine, "d1", [late_id], NOW + timedelta(seconds=5), LEASE)
    t1 = NOW + LEASE + timedelta(seconds=1)
    read = store.expired_leases(engine, t1)
    assert {r.id for r in read} == {asked_id, marked_id}
    seen = {r.id: {r.attempt_id} if r.sent_at else set() for r in read}
    # Meanwhile (the lookups take a while) the late lease expires, and the daemon of the
    # third, stalled, records its send.
    store.mark_sent(engine, [claimed[marked_id].attempt_id], t1)
    t2 = t1 + timedelta(seconds=10)
    absent = [claimed[asked_id].attempt_id]
    assert store.rescue_expired(engine, "d2", t2, {}, absent=absent, seen=seen) == (1, 0)
    assert post(engine, asked_id).attempt_count == 0
    # Nobody asked about the other two: they wait for the next rescue, still counted.
    for pid in (late_id, marked_id):
        p = post(engine, pid)
        assert (p.state, p.attempt_count) == (PostState.CLAIMED, 1)
        assert attempt_messages(engine, pid) == [None]
    assert store.rescue_expired(engine, "d2", t2, {}, seen={}) == (0, 0)


def test_a_lookup_that_finds_nothing_later_gives_back_an_attempt_a_crash_cut(
    engine: Engine,
) -> None:
    cut_id, timed_out_id = seed(engine, [NOW, NOW])
    claimed = {c.post_id: c for c in claim(engine)[0]}
    store.mark_sent(engine, [c.attempt_id for c in claimed.values()], NOW)
    c = claimed[timed_out_id]
    lost = Result(c, Outcome.OUTCOME_UNKNOWN, PostState.UNCONFIRMED, NOW, message="timeout")
    store.write_results(engine, "d1", [lost], NOW)
    # The rescue could not ask the network about the cut one: it stays counted, unconfirmed.
    assert store.rescue_expired(engine, "d2", NOW + LEASE + timedelta(seconds=1), {}) == (0, 1)
    later = NOW + timedelta(minutes=5)
    for pid in (cut_id, timed_out_id):
        assert post(engine, pid).state == PostState.UNCONFIRMED
        assert store.settle(
            engine, pid, later, "d2", published=False, reason="no such post", absent=True
        )
    # The network has no such post: the crash cut the request before it got there. A
    # request that left and timed out may have got there: it stays counted.
    assert (post(engine, cut_id).state, post(engine, cut_id).attempt_count) == ("retry_wait", 0)
    assert attempt_messages(engine, cut_id) == [store.CUT_ABSENT]
    assert post(engine, timed_out_id).attempt_count == 1
    assert attempt_messages(engine, timed_out_id) == ["timeout"]


def test_a_rescued_attempt_is_never_marked_sent_afterwards(engine: Engine) -> None:
    seed(engine, [NOW])
    (c,), _ = claim(engine)
    store.rescue_expired(engine, "d2", NOW + LEASE + timedelta(seconds=1), {})
    # The first daemon comes back from a stall: its request must not go out.
    assert store.mark_sent(engine, [c.attempt_id], NOW + LEASE) == set()


def test_a_retry_is_claimed_with_what_earlier_attempts_tell(engine: Engine) -> None:
    (_pid,) = seed(engine, [NOW])
    (c,), _ = claim(engine)
    assert (c.first_sent_at, c.had_unknown) == (None, False)
    store.mark_sent(engine, [c.attempt_id], NOW)
    unknown = Result(c, Outcome.OUTCOME_UNKNOWN, PostState.RETRY_WAIT, NOW, next_attempt_at=NOW)
    store.write_results(engine, "d1", [unknown], NOW)
    (again,), _ = claim(engine, "d1", NOW + timedelta(seconds=1))
    assert (again.attempt_number, again.first_sent_at, again.had_unknown) == (2, NOW, True)


def test_renewed_leases_are_not_rescued(engine: Engine) -> None:
    (pid,) = seed(engine, [NOW])
    claim(engine)
    store.renew_leases(engine, "d1", [pid], NOW + LEASE - timedelta(seconds=1), LEASE)
    assert store.rescue_expired(engine, "d2", NOW + LEASE + timedelta(seconds=1), {}) == (0, 0)


def test_released_posts_are_due_again_without_using_an_attempt(engine: Engine) -> None:
    (pid,) = seed(engine, [NOW])
    claimed, _ = claim(engine)
    store.release(engine, "d1", claimed, NOW, "shutdown")
    p = post(engine, pid)
    assert (p.state, p.attempt_count, p.lease_owner) == (PostState.RETRY_WAIT, 0, None)
    again, _ = claim(engine, "d2")
    assert [c.post_id for c in again] == [pid]


def test_settle_marks_an_unconfirmed_post_published_or_queues_it(engine: Engine) -> None:
    ids = seed(engine, [NOW, NOW])
    with engine.begin() as conn:
        conn.execute(update(posts_t).values(state=PostState.UNCONFIRMED))
    assert store.settle(engine, ids[0], NOW, "cli", published=True, remote_url="u", reason="r")
    assert store.settle(engine, ids[1], NOW, "cli", published=False, reason="r")
    assert post(engine, ids[0]).state == PostState.PUBLISHED
    assert post(engine, ids[1]).state == PostState.RETRY_WAIT
    assert not store.settle(engine, ids[0], NOW, "cli", published=False, reason="again")


def test_next_due_is_the_earliest_waiting_time(engine: Engine) -> None:
    assert store.next_due(engine) is None
    seed(engine, [NOW + timedelta(hours=2), NOW + timedelta(minutes=3)])
    assert store.next_due(engine) == NOW + timedelta(minutes=3)


def test_heartbeat_records_and_updates_the_daemon(engine: Engine) -> None:
    info = {"hostname": "h", "pid": 1, "version": "0"}
    store.heartbeat(engine, "d1", info, NOW, "starting")
    store.heartbeat(engine, "d1", info, NOW + timedelta(seconds=10), "running")
    with engine.connect() as conn:
        row = conn.execute(select(store.daemons_t)).one()
    assert (row.started_at, row.last_seen, row.status) == (
        NOW,
        NOW + timedelta(seconds=10),
        "running",
    )


def test_heartbeat_counts_the_daemons_alive_on_the_database(engine: Engine) -> None:
    info = {"hostname": "h", "pid": 1, "version": "0"}
    assert store.heartbeat(engine, "d1", info, NOW, "running") == 1
    store.heartbeat(engine, "old", info, NOW - store.ALIVE_WITHIN * 2, "running")  # killed
    store.heartbeat(engine, "gone", info, NOW, "stopped")
    assert store.heartbeat(engine, "d2", info, NOW, "published 3, failed 0") == 2
    assert store.heartbeat(engine, "d1", info, NOW + timedelta(seconds=10), "running") == 2


def _plans(engine: Engine, run: Any, *, queue: bool = False) -> list[str]:
    """The query plans of the reads of ``posts`` that ``run()`` makes (PostgreSQL with
    sequential scans and sorts disabled, so a plan that needs them shows them anyway);
    ``queue``: only the reads of the queue, in due order (not a claim reading the rows it
    leased back by id)."""
    statements: list[tuple[str, Any]] = []

    def seen(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        upper = statement.lstrip().upper()
        read = upper.startswith(("SELECT", "WITH")) and "posts" in statement
        if read and (not queue or "ORDER BY" in upper):
            statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", seen)
    try:
        run()
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    plans = []
    with engine.connect() as conn:
        pg = conn.dialect.name == "postgresql"
        if pg:
            conn.exec_driver_sql("SET enable_seqscan = off")
            conn.exec_driver_sql("SET enable_sort = off")
        for statement, parameters in statements:
            explain = "EXPLAIN " if pg else "EXPLAIN QUERY PLAN "
            rows = conn.exec_driver_sql(explain + statement, parameters).all()
            plans.append("\n".join(str(r[-1]) for r in rows))
        conn.rollback()
    assert plans
    return plans


def test_claims_and_next_due_read_the_due_index_in_order(engine: Engine) -> None:
    # The partial index of waiting posts applies only to queries that spell its condition
    # out; without it a claim sorts every due row and next_due reads every waiting one.
    seed(engine, [NOW - timedelta(minutes=1)] * 30 + [NOW + timedelta(days=9)] * 30)
    seed(engine, [NOW] * 30, account="b")
    with engine.connect() as conn:
        ids = list(conn.execute(select(accounts_t.c.id)).scalars())
    plans = _plans(engine, lambda: store.next_due(engine))
    if engine.dialect.name == "sqlite":  # PostgreSQL's claim is a CTE, checked below
        plans += _plans(
            engine,
            queue=True,
            run=lambda: store.claim(
                engine,
                "d1",
                NOW,
                lease=LEASE,
                limit=5,
                grace={},
                default_grace=GRACE,
                accounts=ids,
            ),
        )
    else:
        with engine.connect() as conn:
            sql = store_pg.claim_sql(True)
            plans.append(
                "\n".join(
                    r[0]
                    for r in conn.exec_driver_sql(
                        "EXPLAIN " + sql,
                        store_pg.claim_params("d1", NOW, LEASE, 5, {}, GRACE, ids),
                    )
                )
            )
            conn.rollback()
    for plan in plans:
        assert "ix_posts_due" in plan, plan
        # No sort of the due rows, no aggregate over all of them: a few index entries.
        assert "TEMP B-TREE" not in plan, plan
        assert "Sort" not in plan, plan
        assert "Aggregate" not in plan, plan


def test_claims_and_writes_through_links_hold_one_connection_each_and_no_transaction(
    postgres_url: str,
) -> None:
    # Each claim and each outcome write is one statement on PostgreSQL: through a link it
    # costs one round trip, no pool checkout (with its ping) and no BEGIN / COMMIT.
    engine = make_engine(postgres_url)
    try:
        seed(engine, [NOW] * 6)
        seen: list[str] = []
        event.listen(engine, "checkout", lambda *a: seen.append("checkout"))
        event.listen(engine, "commit", lambda *a: seen.append("commit"))
        claims, writes = store.Link(engine), store.Link(engine)
        published = 0
        for _ in range(3):
            batch, _missed = store.claim(
                engine,
                "d1",
                NOW,
                lease=LEASE,
                limit=2,
                grace={},
                default_grace=GRACE,
                link=claims,
            )
            results = [
                Result(c, Outcome.PUBLISHED, PostState.PUBLISHED, NOW, remote_id=f"r{c.post_id}")
                for c in batch
            ]
            published += store.write_results(engine, "d1", results, NOW, link=writes)
        claims.close()
        writes.close()
        assert published == 6
        assert seen == ["checkout", "checkout"]
        with engine.connect() as conn:
            states = conn.execute(select(posts_t.c.state)).scalars().all()
            open_attempts = conn.execute(
                select(attempts_t.c.id).where(attempts_t.c.outcome.is_(None))
            ).all()
        assert set(states) == {PostState.PUBLISHED}
        assert open_attempts == []
    finally:
        engine.dispose()


def test_a_link_whose_connection_broke_opens_a_new_one(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    try:
        seed(engine, [NOW] * 2)
        link = store.Link(engine)

        def take() -> list[Any]:
            return store.claim(
                engine, "d1", NOW, lease=LEASE, limit=1, grace={}, default_grace=GRACE, link=link
            )[0]

        assert len(take()) == 1
        with link.connect() as conn:
            backend = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        with engine.connect() as conn:  # the server restarts, say
            conn.exec_driver_sql(f"SELECT pg_terminate_backend({backend})")
        with pytest.raises(OperationalError):
            take()
        assert len(take()) == 1  # a new connection
        link.close()
    finally:
        engine.dispose()


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_only_daemons_alive_by_heartbeat_and_process_share_the_rate_limits(
    engine: Engine,
) -> None:
    import os
    import socket

    here = socket.gethostname()

    def beat(daemon: str, at: datetime, pid: int, host: str = here) -> int:
        info = {"hostname": host, "pid": pid, "version": "t"}
        return store.heartbeat(engine, daemon, info, at, "running")

    beat("killed-here", NOW - timedelta(seconds=5), _dead_pid())
    beat("elsewhere", NOW - timedelta(seconds=5), 4242, host="another-host")
    beat("silent", NOW - store.ALIVE_WITHIN - timedelta(seconds=1), os.getpid())
    # Me, the daemon on the other host (it may be alive), not the killed one or the silent one.
    assert beat("me", NOW, os.getpid()) == 2


def test_daemon_rows_are_deleted_after_the_retention_period(engine: Engine) -> None:
    info = {"hostname": "h", "pid": 1, "version": "t"}
    store.heartbeat(engine, "old", info, NOW - liveness.DAEMON_RETENTION - timedelta(hours=1), "x")
    store.heartbeat(engine, "recent", info, NOW - timedelta(hours=1), "stopped")
    store.heartbeat(engine, "me", info, NOW, "running")
    with engine.connect() as conn:
        ids = set(conn.execute(select(store.daemons_t.c.id)).scalars())
    assert ids == {"recent", "me"}
