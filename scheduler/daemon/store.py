"""Database steps of the daemon. Each is one short transaction; none waits on the network.

Claims follow docs/design.md: PostgreSQL takes rows with ``FOR UPDATE SKIP LOCKED`` so several
daemons share the queue without blocking each other; SQLite takes its write lock up front
(``BEGIN IMMEDIATE``). A claim is a lease (owner, expiry) and opens the attempt row in the same
transaction, so the attempt is committed before any network call; ``mark_sent`` records, right
before the call, that its request may leave (only then does the attempt count for good).

The engine accepts SQLite and PostgreSQL only. The steps whose statements differ (the claim,
the send record, the outcome writes, the rescue's read of expired leases, the next due time)
are chosen once per engine (``steps``), one code path per database.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, Select, and_, case, func, select, update

from scheduler.daemon import fastsql

# Heartbeats and shared rate-limit waits live in ``liveness``; their names stay reachable here.
from scheduler.daemon.liveness import ALIVE_WITHIN as ALIVE_WITHIN
from scheduler.daemon.liveness import HEARTBEAT_EVERY as HEARTBEAT_EVERY
from scheduler.daemon.liveness import heartbeat as heartbeat
from scheduler.daemon.liveness import rate_limit_blocks as rate_limit_blocks
from scheduler.db.engine import immediate
from scheduler.db.models import Account, Attempt, DaemonHeartbeat, Outcome, PostState
from scheduler.queue import Change, announce, posts_t, record_events
from scheduler.states import DUE_STATES, sql_in

accounts_t = Account.__table__  # type: ignore[attr-defined]
attempts_t = Attempt.__table__  # type: ignore[attr-defined]
daemons_t = DaemonHeartbeat.__table__  # type: ignore[attr-defined]


@dataclass
class Claimed:
    """A post this daemon holds a lease on, with its open attempt."""

    post_id: int
    attempt_id: int
    attempt_number: int
    account_id: int
    account: str
    row: Any  # the posts row as claimed (the columns of ``_CLAIM_COLUMNS``)
    #: When an earlier request of the post may first have left (None: this is the first).
    first_sent_at: datetime | None = None
    #: Whether an earlier attempt of the post ended with an unknown outcome.
    had_unknown: bool = False


@dataclass
class Result:
    """What one attempt ended in, ready to be written."""

    claimed: Claimed
    outcome: Outcome
    state: PostState
    finished_at: datetime
    message: str | None = None
    http_status: int | None = None
    latency_ms: float | None = None
    next_attempt_at: datetime | None = None
    retry_at: datetime | None = None
    remote_id: str | None = None
    remote_url: str | None = None
    followers: int | None = None
    #: False for rate-limit waits: they do not use up the post's attempts.
    counts: bool = True
    #: Set for auth failures: the account is paused with this reason.
    pause_reason: str | None = None


class Link:
    """A connection kept open for one kind of step of a daemon. PostgreSQL (the claims, or
    the outcome writes): in autocommit, each of those steps is one statement, a transaction
    by itself. SQLite (every step, all run in the daemon's one database thread): each step a
    ``BEGIN IMMEDIATE`` transaction (``transaction``). No pool checkout (and its liveness
    ping), no reset on return; on PostgreSQL no BEGIN and no COMMIT round trip per step.

    Used by one thread at a time. A step that fails drops the connection (it may be broken);
    the next step opens a new one.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._conn: Connection | None = None

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        if self._conn is None:
            conn = self.engine.connect()
            if self.engine.dialect.name == "sqlite":
                self._conn = conn.execution_options(sqlite_begin="IMMEDIATE")
            else:
                self._conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        try:
            yield self._conn
        except BaseException:
            self.close()
            raise

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """SQLite: a ``BEGIN IMMEDIATE`` transaction on the kept connection."""
        with self.connect() as conn, conn.begin():
            yield conn

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with suppress(Exception):  # a broken connection: the pool discards it
                conn.close()


@contextmanager
def _connect(engine: Engine, link: Link | None) -> Iterator[Connection]:
    """``link``'s connection, or (without one) a connection for this step only."""
    if link is not None:
        with link.connect() as conn:
            yield conn
        return
    once = Link(engine)
    try:
        with once.connect() as conn:
            yield conn
    finally:
        once.close()


@contextmanager
def _immediate(engine: Engine, link: Link | None) -> Iterator[Connection]:
    """A write transaction: on ``link``'s connection when given, else ``immediate``'s."""
    if link is None:
        with immediate(engine) as conn:
            yield conn
        return
    with link.transaction() as conn:
        yield conn


@dataclass(frozen=True)
class DialectSteps:
    """The steps whose statements differ between the two databases, chosen once per engine
    (as APScheduler's SQLAlchemy store works out its dialect's abilities at start-up)."""

    claim: Callable[..., tuple[list[Claimed], list[Change]]]
    write_results: Callable[[Engine, str, Sequence[Result], datetime, Link | None], int]
    mark_sent: Callable[[Engine, Sequence[int], datetime, Link | None], set[int]]
    #: The expired leases a rescue takes, read (and on PostgreSQL locked) in its transaction.
    take_expired: Callable[[Connection, Select[Any]], list[Any]]
    next_due: Callable[[Engine], datetime | None]


_chosen: weakref.WeakKeyDictionary[Engine, DialectSteps] = weakref.WeakKeyDictionary()


def steps(engine: Engine) -> DialectSteps:
    """The steps for ``engine``'s database (chosen on first use)."""
    found = _chosen.get(engine)
    if found is None:
        name = engine.dialect.name
        if name == "postgresql":
            from scheduler.daemon import store_pg

            found = DialectSteps(
                store_pg.claim,
                store_pg.write_results,
                store_pg.mark_sent,
                store_pg.take_expired,
                store_pg.next_due,
            )
        elif name == "sqlite":
            found = DialectSteps(
                _claim_sqlite,
                _with_pauses(_write_results_sqlite),
                _mark_sent_sqlite,
                _take_expired_sqlite,
                _next_due_sqlite,
            )
        else:  # make_engine refuses these; a hand-made engine ends here
            raise ValueError(f"the daemon runs on SQLite or PostgreSQL, not {name}")
        _chosen[engine] = found
    return found


#: What a claim reads back of each post: what the dispatcher and the plugins' view of the post
#: (``scheduler.outgoing.from_row``) need, no more (every value read costs type processing).
_CLAIM_COLUMNS = tuple(
    posts_t.c[name]
    for name in (
        "id",
        "key",
        "account_id",
        "content_type",
        "text",
        "media",
        "media_meta",
        "post_options",
        "link",
        "tags",
        "idempotency_key",
        "state",
        "due_at",
        "next_attempt_at",
        "attempt_count",
        "remote_id",
        "remote_url",
        "published_at",
    )
)


def _active_accounts() -> Any:
    return select(accounts_t.c.id).where(accounts_t.c.paused.is_(False))


def claim(
    engine: Engine,
    owner: str,
    now: datetime,
    *,
    lease: timedelta,
    limit: int,
    grace: Mapping[int, timedelta],
    default_grace: timedelta,
    accounts: Collection[int] | None = None,
    names: Mapping[int, str] | None = None,
    link: Link | None = None,
) -> tuple[list[Claimed], list[Change]]:
    """Lease up to ``limit`` due posts; posts later than their account's grace become missed.

    Only posts of ``accounts`` are taken (the ones this daemon's config knows), so a daemon
    on an older config leaves newer accounts to the daemons that know them. Returns the
    claimed posts (each with a fresh attempt row) and the misfire changes. ``names`` (account
    id to name, when the caller knows them) saves reading the names back. ``link``: the
    connection to claim through on PostgreSQL (one for every claim of a daemon).
    """
    return steps(engine).claim(
        engine, owner, now, lease, limit, grace, default_grace, accounts, names, link
    )


def _claim_sqlite(
    engine: Engine,
    owner: str,
    now: datetime,
    lease: timedelta,
    limit: int,
    grace: Mapping[int, timedelta],
    default_grace: timedelta,
    accounts: Collection[int] | None,
    names: Mapping[int, str] | None,
    link: Link | None,
) -> tuple[list[Claimed], list[Change]]:
    """``claim`` on SQLite: one ``BEGIN IMMEDIATE`` transaction (on ``link``'s connection).

    Every statement returns one row at most (lists come aggregated): the driver gives the
    interpreter lock up and takes it back for each row it steps through, and while the event
    loop is busy in the other thread every one of those waits for it."""
    with _immediate(engine, link) as conn:
        fresh_ids, stale_ids = _candidates(conn, now, limit, accounts, grace, default_grace)
        missed = _mark_missed(conn, _rows_of(conn, stale_ids), now, owner) if stale_ids else []
        if not fresh_ids:
            return [], missed
        rows = _lease(conn, fresh_ids, owner, now, lease)
        known = _account_names(conn, rows, names)
        attempt_of = _insert_attempts(conn, rows, owner, now)
        history = _history(conn, rows)
    return _claimed(rows, attempt_of, known, history), missed


def _account_names(
    conn: Connection, rows: Sequence[Any], names: Mapping[int, str] | None
) -> dict[int, str]:
    """Account id -> name for ``rows``: ``names`` as given, the others read."""
    known: dict[int, str] = dict(names or {})
    unknown = {r.account_id for r in rows} - known.keys()
    if unknown:
        known.update(
            conn.execute(
                select(accounts_t.c.id, accounts_t.c.name).where(accounts_t.c.id.in_(unknown))
            ).all()
        )
    return known


def _history(conn: Connection, rows: Sequence[Any]) -> dict[int, tuple[datetime | None, bool]]:
    """What earlier attempts of the retried posts among ``rows`` tell: when the first request
    may have left, and whether one ended with an unknown outcome. Read with the claim, so that
    deciding an attempt's outcome never needs the database."""
    retried = [r.id for r in rows if r.attempt_count > 1]
    if not retried:
        return {}
    unknown = attempts_t.c.outcome == Outcome.OUTCOME_UNKNOWN
    return {
        post_id: (first, bool(had))
        for post_id, first, had in conn.execute(
            select(
                attempts_t.c.post_id,
                func.min(attempts_t.c.sent_at),
                func.max(case((unknown, 1), else_=0)),
            )
            .where(attempts_t.c.post_id.in_(retried), attempts_t.c.sent_at.is_not(None))
            .group_by(attempts_t.c.post_id)
        ).all()
    }


def _claimed(
    rows: Sequence[Any],
    attempt_of: Mapping[int, int],
    known: Mapping[int, str],
    history: Mapping[int, tuple[datetime | None, bool]],
) -> list[Claimed]:
    """``Claimed`` posts from the leased rows, in claim order."""
    out = []
    for r in sorted(rows, key=lambda r: (r.next_attempt_at, r.id)):
        first, had_unknown = history.get(r.id, (None, False))
        out.append(
            Claimed(
                r.id,
                attempt_of[r.id],
                r.attempt_count,
                r.account_id,
                known[r.account_id],
                r,
                first_sent_at=first,
                had_unknown=had_unknown,
            )
        )
    return out


#: The due states as SQL literals: a partial index on them (``ix_posts_due``) only serves a
#: query that spells the same condition out, not one with bound parameters.
_DUE_SQL = sql_in(DUE_STATES)
#: Post ``p``'s account is not paused.
_ACTIVE_SQL = (
    f"EXISTS (SELECT 1 FROM {accounts_t.name} a WHERE a.id = p.account_id AND NOT a.paused)"
)


def _candidates(
    conn: Connection,
    now: datetime,
    limit: int,
    accounts: Collection[int] | None,
    grace: Mapping[int, timedelta],
    default_grace: timedelta,
) -> tuple[list[int], list[int]]:
    """SQLite: the due posts a claim takes, read in ``ix_posts_due`` order (the index
    already sorts them): the ids of those within their account's misfire grace, and of those
    later than it. Timestamps are stored as text that sorts as they do, so a post is late
    when its due text is below its account's ``now - grace``.

    The unary ``+`` keeps the account filters from steering the planner to the
    (account_id, state) index, which would sort every due row of those accounts per claim.
    """
    when = fastsql.datetime_converter(conn)
    only = ""
    params: list[Any] = []
    own = {a: g for a, g in grace.items() if g != default_grace}
    threshold = "?"
    if own:
        threshold = "CASE p.account_id " + "WHEN ? THEN ? " * len(own) + "ELSE ? END"
        for account_id, g in own.items():
            params += (account_id, when(now - g))
    params.append(when(now - default_grace))
    params.append(when(now))
    if accounts is not None:
        ids = list(accounts)
        only = f"AND +p.account_id IN ({', '.join('?' * len(ids))}) " if ids else "AND 0 "
        params += ids
    row = conn.exec_driver_sql(
        "SELECT group_concat(CASE WHEN c.due >= c.edge THEN c.id END), "
        "group_concat(CASE WHEN c.due < c.edge THEN c.id END) "
        f"FROM (SELECT p.id AS id, p.next_attempt_at AS due, {threshold} AS edge "
        f"FROM {posts_t.name} p WHERE p.{_DUE_SQL} "
        f"AND p.next_attempt_at <= ? AND {_ACTIVE_SQL} {only}"
        "ORDER BY p.next_attempt_at, p.id LIMIT ?) c",
        (*params, limit),
    ).one()
    return _ids(row[0]), _ids(row[1])


def _ids(text: str | None) -> list[int]:
    """A ``group_concat`` of integer ids as a list (None: no rows)."""
    return [int(i) for i in text.split(",")] if text else []


def _rows_of(conn: Connection, ids: Sequence[int]) -> list[Any]:
    """SQLite: (id, key, state) of posts ``ids``, what a misfire's change records."""
    return list(
        conn.execute(
            select(posts_t.c.id, posts_t.c.key, posts_t.c.state).where(posts_t.c.id.in_(ids))
        ).all()
    )


_CLAIM_NAMES = tuple(c.name for c in _CLAIM_COLUMNS)


MISSED_ERROR = "too late: the daemon was not running at the due time (misfire policy)"
MISSED_REASON = "later than the misfire grace"


def _lease(
    conn: Connection, ids: Sequence[int], owner: str, now: datetime, lease: timedelta
) -> list[Any]:
    """SQLite: take the lease on posts ``ids``; returns their ``_CLAIM_COLUMNS``, read back
    in the same transaction as one JSON array (not ``RETURNING``: a row at a time)."""
    when = fastsql.datetime_converter(conn)
    table = fastsql.table_name(conn, posts_t)
    marks = ", ".join("?" * len(ids))
    conn.exec_driver_sql(
        f"UPDATE {table} SET state = ?, lease_owner = ?, "
        "lease_expires_at = ?, attempt_count = attempt_count + 1, updated_at = ? "
        f"WHERE id IN ({marks})",
        (str(PostState.CLAIMED), owner, when(now + lease), when(now), *ids),
    )
    columns = ", ".join(fastsql.quote(conn, n) for n in _CLAIM_NAMES)
    raw = fastsql.json_rows(
        conn,
        f"SELECT json_group_array(json_array({columns})) FROM {table} WHERE id IN ({marks})",
        ids,
    )
    read = fastsql.row_reader(conn, posts_t, _CLAIM_NAMES)
    return [read(r) for r in raw]


_ATTEMPT_COLUMNS = ("post_id", "number", "idempotency_key", "owner", "started_at")


def _insert_attempts(
    conn: Connection, rows: Sequence[Any], owner: str, now: datetime
) -> dict[int, int]:
    """SQLite: open one attempt row per leased post (its number: the post's attempt count);
    returns post id -> attempt id, read back as one JSON array: the open attempts of these
    posts that this claim made (a due post has no open attempt, so each has one)."""
    when = fastsql.datetime_converter(conn)
    started = when(now)
    values = [(r.id, r.attempt_count, r.idempotency_key, owner, started) for r in rows]
    fastsql.insert_rows(conn, attempts_t, _ATTEMPT_COLUMNS, values)
    marks = ", ".join("?" * len(rows))
    found = fastsql.json_rows(
        conn,
        f"SELECT json_group_array(json_array(post_id, id)) FROM {attempts_t.name} "
        f"WHERE post_id IN ({marks}) AND outcome IS NULL AND owner = ? AND started_at = ?",
        [*(r.id for r in rows), owner, started],
    )
    attempt_of: dict[int, int] = dict(found)
    if len(attempt_of) != len(rows) or len(found) != len(rows):
        raise RuntimeError(
            f"a claim of {len(rows)} posts found {len(found)} open attempts of its own"
        )
    return attempt_of


def _mark_missed(conn: Connection, stale: Sequence[Any], now: datetime, owner: str) -> list[Change]:
    if not stale:
        return []
    conn.execute(
        update(posts_t)
        .where(posts_t.c.id.in_([s.id for s in stale]))
        .values(
            state=PostState.MISSED,
            last_error=MISSED_ERROR,
            error_class="missed",
            updated_at=now,
        )
    )
    changes = [Change(s.id, s.key, s.state, PostState.MISSED) for s in stale]
    record_events(conn, changes, now, owner, MISSED_REASON)
    return changes


def write_results(
    engine: Engine,
    owner: str,
    results: Sequence[Result],
    now: datetime,
    *,
    link: Link | None = None,
) -> int:
    """Record attempt outcomes and post states, all in one transaction.

    A publish is recorded even if our lease was lost meanwhile (the post *is* on the
    network); any other outcome only applies while we still hold the lease, so a rescued
    post is never overwritten. Returns how many posts changed. ``link``: the connection to
    write through on PostgreSQL (one for every write of a daemon).
    """
    if not results:
        return 0
    return steps(engine).write_results(engine, owner, results, now, link)


def _with_pauses(
    write: Callable[[Connection, str, Sequence[Result], datetime], int],
) -> Callable[[Engine, str, Sequence[Result], datetime, Link | None], int]:
    """``write`` in one transaction with the account pauses the results ask for."""

    def run(
        engine: Engine, owner: str, results: Sequence[Result], now: datetime, link: Link | None
    ) -> int:
        with _immediate(engine, link if engine.dialect.name == "sqlite" else None) as conn:
            changed = write(conn, owner, results, now)
            pauses = {r.claimed.account_id: r.pause_reason for r in results if r.pause_reason}
            for account_id, reason in pauses.items():
                pause_for_auth(conn, account_id, reason or "credentials rejected", now, owner)
        return changed

    return run


def _write_results_sqlite(
    conn: Connection, owner: str, results: Sequence[Result], now: datetime
) -> int:
    """SQLite: ``write_results`` as one statement per table and kind of outcome, each
    updating its rows from a ``VALUES`` list (``UPDATE ... FROM``). An ``executemany`` runs
    the statement once per row, and the driver gives the interpreter lock up and takes it
    back around each: with the event loop busy in the other thread, every row waited for it.
    """
    when = fastsql.datetime_converter(conn)
    text = fastsql.text
    fastsql.update_from(
        conn,
        attempts_t,
        ("finished_at", "outcome", "message", "http_status", "latency_ms", "retry_at"),
        [
            (
                r.claimed.attempt_id,
                when(r.finished_at),
                text(r.outcome),
                r.message,
                r.http_status,
                r.latency_ms,
                when(r.retry_at),
            )
            for r in results
        ],
    )
    now_v = when(now)
    changed = 0
    published = [r for r in results if r.state == PostState.PUBLISHED]
    others = [r for r in results if r.state != PostState.PUBLISHED]
    if published:
        changed += fastsql.update_from(
            conn,
            posts_t,
            ("remote_id", "remote_url", "published_at", "followers_at_publish"),
            [
                (r.claimed.post_id, r.remote_id, r.remote_url, when(r.finished_at), r.followers)
                for r in published
            ],
            also="state = ?, lease_owner = NULL, lease_expires_at = NULL, last_error = NULL, "
            "error_class = NULL, updated_at = ?",
            also_params=(str(PostState.PUBLISHED), now_v),
        )
    if others:
        changed += fastsql.update_from(
            conn,
            posts_t,
            ("state", "next_attempt_at", "attempt_count", "last_error", "error_class"),
            [
                (
                    r.claimed.post_id,
                    text(r.state),
                    when(r.next_attempt_at),
                    0 if r.counts else 1,
                    r.message,
                    text(r.outcome),
                )
                for r in others
            ],
            # A post not counted gives its attempt back; no new due time keeps the old one.
            expressions={
                "next_attempt_at": "COALESCE({value}, {table}.next_attempt_at)",
                "attempt_count": "{table}.attempt_count - {value}",
            },
            also="lease_owner = NULL, lease_expires_at = NULL, updated_at = ?",
            also_params=(now_v,),
            where="{table}.lease_owner = ? AND {table}.state = ?",
            where_params=(owner, str(PostState.CLAIMED)),
        )
    return changed


def pause_for_auth(
    conn: Connection, account_id: int, reason: str, now: datetime, actor: str
) -> None:
    """The network refused the account's credentials: pause it until a person renews them."""
    conn.execute(
        update(accounts_t)
        .where(accounts_t.c.id == account_id)
        .values(paused=True, paused_reason=reason, auth_state="expired", updated_at=now)
    )
    rows = conn.execute(
        select(posts_t.c.id, posts_t.c.key, posts_t.c.state).where(
            posts_t.c.account_id == account_id, posts_t.c.state.in_(DUE_STATES)
        )
    ).all()
    if rows:
        conn.execute(
            update(posts_t)
            .where(posts_t.c.id.in_([r.id for r in rows]), posts_t.c.state.in_(DUE_STATES))
            .values(state=PostState.PAUSED, updated_at=now)
        )
        record_events(
            conn,
            [Change(r.id, r.key, r.state, PostState.PAUSED) for r in rows],
            now,
            actor,
            reason,
        )


def release(
    engine: Engine, owner: str, claimed: Sequence[Claimed], now: datetime, reason: str
) -> int:
    """Give back posts whose network call never started (shutdown, rate-limit wait).

    Their attempt is closed as not counted and the post is due again at once.
    """
    if not claimed:
        return 0
    with immediate(engine) as conn:
        conn.execute(
            update(attempts_t)
            .where(attempts_t.c.id.in_([c.attempt_id for c in claimed]))
            .values(finished_at=now, outcome=Outcome.ABANDONED, message=reason)
        )
        return conn.execute(
            update(posts_t)
            .where(
                posts_t.c.id.in_([c.post_id for c in claimed]),
                posts_t.c.lease_owner == owner,
                posts_t.c.state == PostState.CLAIMED,
            )
            .values(
                state=PostState.RETRY_WAIT,
                attempt_count=posts_t.c.attempt_count - 1,
                lease_owner=None,
                lease_expires_at=None,
                updated_at=now,
            )
        ).rowcount


def renew_leases(
    engine: Engine, owner: str, post_ids: Sequence[int], now: datetime, lease: timedelta
) -> list[int]:
    """Extend this daemon's leases on posts still in flight; return the ids still ours."""
    if not post_ids:
        return []
    with immediate(engine) as conn:
        return list(
            conn.execute(
                update(posts_t)
                .where(
                    posts_t.c.id.in_(post_ids),
                    posts_t.c.lease_owner == owner,
                    posts_t.c.state == PostState.CLAIMED,
                )
                .values(lease_expires_at=now + lease)
                .returning(posts_t.c.id)
            ).scalars()
        )


def mark_sent(
    engine: Engine, attempt_ids: Sequence[int], now: datetime, *, link: Link | None = None
) -> set[int]:
    """Record that the requests of these attempts may leave from now on; returns the ids
    recorded. An attempt missing from the answer was closed meanwhile (its lease rescued by
    another daemon): its request must not go out."""
    if not attempt_ids:
        return set()
    return steps(engine).mark_sent(engine, attempt_ids, now, link)


def _mark_sent_sqlite(
    engine: Engine, attempt_ids: Sequence[int], now: datetime, link: Link | None
) -> set[int]:
    """``mark_sent`` on SQLite: a ``BEGIN IMMEDIATE`` transaction (on ``link``'s connection).
    The attempts recorded are those still open: all of them, as a rule (the rows the update
    changed say so); otherwise read back in the same transaction."""
    with _immediate(engine, link) as conn:
        when = fastsql.datetime_converter(conn)
        marks = ", ".join("?" * len(attempt_ids))
        changed = conn.exec_driver_sql(
            f"UPDATE {attempts_t.name} SET sent_at = ? WHERE id IN ({marks}) AND outcome IS NULL",
            (when(now), *attempt_ids),
        ).rowcount
        if changed == len(set(attempt_ids)):
            return set(attempt_ids)
        row = conn.exec_driver_sql(
            f"SELECT group_concat(id) FROM {attempts_t.name} "
            f"WHERE id IN ({marks}) AND outcome IS NULL",
            tuple(attempt_ids),
        ).one()
        return set(_ids(row[0]))


#: How a rescue closes the open attempts of the posts it takes (the attempts' ``message``).
#: Each ends in "not counted" when the attempt is given back.
CUT_COUNTED = "the daemon holding the lease stopped mid-attempt"
CUT_UNSENT = "the daemon holding the lease stopped before sending: not counted"
CUT_ABSENT = (
    "the daemon holding the lease stopped mid-attempt; the network has no such post: not counted"
)
CUT_EARLIER = (
    "the daemon holding the lease stopped mid-attempt; the network has the post, which an "
    "earlier request may have made: not counted"
)


def expired_leases(
    engine: Engine,
    now: datetime,
    limit: int = 1000,
    *,
    accounts: Collection[int] | None = None,
) -> list[Any]:
    """The posts ``rescue_expired`` would take now: their posts rows, each with its
    account's name (``account``) and its open attempt (``attempt_id``, ``sent_at``; None
    when it has none). Read first, so that the networks can be asked about the posts whose
    request may have left before the rescue decides what their attempt was."""
    with engine.connect() as conn:
        q = (
            select(
                posts_t,
                accounts_t.c.name.label("account"),
                attempts_t.c.id.label("attempt_id"),
                attempts_t.c.sent_at.label("sent_at"),
            )
            .join(accounts_t, accounts_t.c.id == posts_t.c.account_id)
            .outerjoin(
                attempts_t,
                and_(attempts_t.c.post_id == posts_t.c.id, attempts_t.c.outcome.is_(None)),
            )
            .where(posts_t.c.state == PostState.CLAIMED, posts_t.c.lease_expires_at < now)
            .limit(limit)
        )
        if accounts is not None:
            q = q.where(posts_t.c.account_id.in_(list(accounts)))
        return list(conn.execute(q).all())


def _may_have_made(a: Any) -> bool:
    """Whether closed attempt ``a``'s request may have made the post on the network: it may
    have left, and no answer said it was refused or never got there."""
    if a.sent_at is None:
        return False
    if a.outcome == Outcome.ABANDONED:
        return bool(a.message == CUT_COUNTED)  # cut by a crash, and not given back since
    return a.outcome in (Outcome.OUTCOME_UNKNOWN, Outcome.PLUGIN_ERROR, Outcome.PUBLISHED)


def rescue_expired(
    engine: Engine,
    owner: str,
    now: datetime,
    keys: Mapping[int, timedelta | None],
    limit: int = 1000,
    *,
    accounts: Collection[int] | None = None,
    absent: Collection[int] = (),
    present: Collection[int] = (),
    seen: Mapping[int, Collection[int]] | None = None,
) -> tuple[int, int]:
    """Recover posts whose lease expired (their daemon died or stalled).

    ``keys``: the accounts whose network honours idempotency keys, with how long a key
    holds (None: for good). What the networks' lookups said about the open attempts recorded
    as sent: ``absent``, the ids of those whose post the network certainly does not have (the
    request never got there); ``present``, those whose post it has.

    An open attempt is given back (not counted) when it never reached the send step (no
    ``sent_at``), when it is absent, or when it is present but an earlier request of the
    post may have made what the network has (a network that honours keys answers a repeat
    with the post it has, so the lookup cannot tell whether this request got there). A post
    none of whose attempts may be on the network is due again at once. One whose request may
    have left is resent under its key while the key holds; otherwise it becomes
    ``unconfirmed`` and is settled by a lookup, never blindly resent.

    ``seen``: the posts the lookups were made for (``expired_leases``), each with the ids of
    its open attempts that were recorded as sent then. Only those are taken, and each only
    while its open attempts recorded as sent are still those: a lease that expired since, or
    an attempt recorded as sent since, is left for a later rescue, after its network is asked.

    Returns (queued again, unconfirmed).
    """
    absent, present = set(absent), set(present)
    with immediate(engine) as conn:
        q = (
            select(posts_t.c.id, posts_t.c.key, posts_t.c.account_id)
            .where(posts_t.c.state == PostState.CLAIMED, posts_t.c.lease_expires_at < now)
            .limit(limit)
        )
        if accounts is not None:  # only accounts whose network this daemon knows
            q = q.where(posts_t.c.account_id.in_(list(accounts)))
        if seen is not None:
            q = q.where(posts_t.c.id.in_(list(seen)))
        expired = steps(engine).take_expired(conn, q) if seen is None or seen else []
        if not expired:
            return 0, 0
        # Their open attempts, and the closed ones whose request may have left.
        history: dict[int, list[Any]] = {}
        for a in conn.execute(
            select(
                attempts_t.c.id,
                attempts_t.c.post_id,
                attempts_t.c.sent_at,
                attempts_t.c.outcome,
                attempts_t.c.message,
            ).where(
                attempts_t.c.post_id.in_([e.id for e in expired]),
                (attempts_t.c.outcome.is_(None)) | (attempts_t.c.sent_at.is_not(None)),
            )
        ):
            history.setdefault(a.post_id, []).append(a)
        closing: dict[str, list[int]] = {}  # message -> the open attempts it closes
        requeue: dict[int, list[Any]] = {}  # attempts given back -> posts due again at once
        resend: dict[int, list[Any]] = {}  # the same, for posts resent under their key
        unsure: dict[int, list[Any]] = {}  # the same, for posts left unconfirmed
        for e in expired:
            attempts = history.get(e.id, [])
            open_ = [a for a in attempts if a.outcome is None]
            if seen is not None and {a.id for a in open_ if a.sent_at} != set(seen[e.id]):
                continue  # changed since the lookups: decided at a later rescue
            made_before = any(_may_have_made(a) for a in attempts if a.outcome is not None)
            on_network = False
            given_back = 0
            for a in open_:
                if a.sent_at is None:
                    why = CUT_UNSENT
                elif a.id in absent:
                    why = CUT_ABSENT
                elif a.id in present and made_before:
                    why, on_network = CUT_EARLIER, True
                else:
                    why, on_network = CUT_COUNTED, True
                closing.setdefault(why, []).append(a.id)
                given_back += why != CUT_COUNTED
            if not on_network:
                requeue.setdefault(given_back, []).append(e)
                continue
            holds = False
            if e.account_id in keys:  # the key holds for good, or still holds
                window = keys[e.account_id]
                sent = [a.sent_at for a in attempts if a.sent_at is not None]
                holds = window is None or not sent or now - min(sent) < window
            (resend if holds else unsure).setdefault(given_back, []).append(e)
        for why, ids in closing.items():
            conn.execute(
                update(attempts_t)
                .where(attempts_t.c.id.in_(ids), attempts_t.c.outcome.is_(None))
                .values(finished_at=now, outcome=Outcome.ABANDONED, message=why)
            )
        for given_back, posts in requeue.items():
            _requeue(
                conn,
                posts,
                now,
                given_back,
                "lease expired before the request reached the network; the attempt does not count",
            )
        for given_back, posts in resend.items():
            _requeue(
                conn,
                posts,
                now,
                given_back,
                "lease expired; resending with the same idempotency key",
            )
        for given_back, posts in unsure.items():
            conn.execute(
                update(posts_t)
                .where(posts_t.c.id.in_([e.id for e in posts]))
                .values(
                    state=PostState.UNCONFIRMED,
                    attempt_count=_less(given_back),
                    lease_owner=None,
                    lease_expires_at=None,
                    last_error="lease expired mid-attempt; the network may have the post",
                    error_class=Outcome.OUTCOME_UNKNOWN,
                    updated_at=now,
                )
            )
        requeued = [e for group in (requeue, resend) for ps in group.values() for e in ps]
        left = [e for ps in unsure.values() for e in ps]
        record_events(
            conn,
            [Change(e.id, e.key, PostState.CLAIMED, PostState.RETRY_WAIT) for e in requeued]
            + [Change(e.id, e.key, PostState.CLAIMED, PostState.UNCONFIRMED) for e in left],
            now,
            owner,
            "lease expired",
        )
    return len(requeued), len(left)


def _less(given_back: int) -> Any:
    """A post's ``attempt_count`` with ``given_back`` attempts returned (never below 0)."""
    return case(
        (posts_t.c.attempt_count > given_back, posts_t.c.attempt_count - given_back), else_=0
    )


def _requeue(
    conn: Connection, posts: Sequence[Any], now: datetime, given_back: int, why: str
) -> None:
    """Rescued ``posts`` due again at once, ``given_back`` attempts returned to each."""
    if not posts:
        return
    conn.execute(
        update(posts_t)
        .where(posts_t.c.id.in_([e.id for e in posts]))
        .values(
            state=PostState.RETRY_WAIT,
            next_attempt_at=now,
            attempt_count=_less(given_back),
            lease_owner=None,
            lease_expires_at=None,
            last_error=why,
            updated_at=now,
        )
    )


def _take_expired_sqlite(conn: Connection, q: Select[Any]) -> list[Any]:
    """``rescue_expired``'s read on SQLite: its ``BEGIN IMMEDIATE`` already holds the lock."""
    return list(conn.execute(q).all())


#: The earliest due time: the first row of ``ix_posts_due`` (the due states spelled out, so
#: the partial index applies) whose account is not paused.
_NEXT_DUE_SQL = (
    f"SELECT p.next_attempt_at FROM {posts_t.name} p WHERE p.{_DUE_SQL} "
    f"AND {_ACTIVE_SQL} ORDER BY p.next_attempt_at LIMIT 1"
)


def next_due(engine: Engine) -> datetime | None:
    """The earliest time a post becomes due (among unpaused accounts).

    Read as the first row of ``ix_posts_due`` whose account is not paused: a few index
    entries, however long the queue.
    """
    return steps(engine).next_due(engine)


def _next_due_sqlite(engine: Engine) -> datetime | None:
    """``next_due`` on SQLite: the stored text read back as an aware UTC datetime."""
    with engine.connect() as conn:
        raw = conn.exec_driver_sql(_NEXT_DUE_SQL).first()
        if raw is None:
            return None
        due: datetime = fastsql.row_reader(conn, posts_t, ("next_attempt_at",))(raw)[0]
        return due


def unconfirmed_posts(engine: Engine, limit: int = 100) -> list[Any]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                select(posts_t, accounts_t.c.name.label("account"))
                .join(accounts_t, accounts_t.c.id == posts_t.c.account_id)
                .where(posts_t.c.state == PostState.UNCONFIRMED)
                .order_by(posts_t.c.updated_at)
                .limit(limit)
            ).all()
        )


def settle(
    engine: Engine,
    post_id: int,
    now: datetime,
    actor: str,
    *,
    published: bool,
    remote_id: str | None = None,
    remote_url: str | None = None,
    published_at: datetime | None = None,
    reason: str,
    absent: bool = False,
) -> bool:
    """Settle an unconfirmed post: published (with its remote id/URL and the time it went
    out, ``now`` when not known) or not (queued again).

    ``absent``: the network's lookup certainly has no such post. Its last attempt, when a
    crash cut it after the send was recorded (the rescue could not ask the network then),
    never got there: that attempt is given back, as the rescue would have done.
    """
    with immediate(engine) as conn:
        row = conn.execute(
            select(posts_t.c.key, posts_t.c.state).where(posts_t.c.id == post_id)
        ).first()
        if row is None or row.state != PostState.UNCONFIRMED:
            return False
        values: dict[str, Any]
        if published:
            values = {
                "state": PostState.PUBLISHED,
                "remote_id": remote_id,
                "remote_url": remote_url,
                "published_at": published_at or now,
                "last_error": None,
                "error_class": None,
            }
        else:
            values = {
                "state": PostState.RETRY_WAIT,
                "next_attempt_at": now,
                "error_class": None,
            }
            if absent and _give_back_cut(conn, post_id):
                values["attempt_count"] = _less(1)
        conn.execute(
            update(posts_t)
            .where(and_(posts_t.c.id == post_id, posts_t.c.state == PostState.UNCONFIRMED))
            .values(updated_at=now, **values)
        )
        record_events(
            conn,
            [Change(post_id, row.key, row.state, values["state"])],
            now,
            actor,
            reason,
        )
        if not published:
            announce(conn)  # due now: daemons look at once
    return True


def _give_back_cut(conn: Connection, post_id: int) -> bool:
    """Give back the last attempt of ``post_id`` when a crash cut it after its send was
    recorded and it still counts (``CUT_COUNTED``): the network has no such post, so its
    request never got there. Returns whether one was given back."""
    last = conn.execute(
        select(attempts_t.c.id, attempts_t.c.outcome, attempts_t.c.message)
        .where(attempts_t.c.post_id == post_id)
        .order_by(attempts_t.c.id.desc())
        .limit(1)
    ).first()
    if last is None or last.outcome != Outcome.ABANDONED or last.message != CUT_COUNTED:
        return False
    conn.execute(update(attempts_t).where(attempts_t.c.id == last.id).values(message=CUT_ABSENT))
    return True
