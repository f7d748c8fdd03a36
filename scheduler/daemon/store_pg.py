"""The daemon's steps on PostgreSQL: the claim, the send record, the outcome write, the
rescue's read of expired leases and the next due time.

Each is one driver-level statement, a transaction by itself (autocommit, through the
daemon's kept ``store.Link`` for the step): the claim locks the due posts with ``FOR UPDATE
SKIP LOCKED``, takes their lease, opens their attempts and marks the late ones missed; the
send record stamps the attempts; the outcome write closes the attempts and moves the posts
on. ``scheduler.daemon.store`` chooses these for a PostgreSQL engine (``store.steps``).

Values go to the server in few parameters, built by C code rather than a driver's
per-value adaptation in Python: the outcome write sends its rows as one JSON array (read
back with ``jsonb_array_elements``), id lists go as one array literal (``{1,2,3}``).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, Select

from scheduler.daemon import fastsql
from scheduler.daemon.store import (
    _ACTIVE_SQL,
    _ATTEMPT_COLUMNS,
    _CLAIM_NAMES,
    _DUE_SQL,
    MISSED_ERROR,
    MISSED_REASON,
    Claimed,
    Link,
    Result,
    _claimed,
    _connect,
    _with_pauses,
    accounts_t,
    attempts_t,
)
from scheduler.db.models import Outcome, PostState
from scheduler.queue import Change, events_t, posts_t

_POSTS, _ATTEMPTS, _ACCOUNTS = str(posts_t.name), str(attempts_t.name), str(accounts_t.name)


def _ids(values: Collection[int]) -> str:
    """An array literal of integers (``{1,2,3}``), for a ``::bigint[]`` parameter."""
    return "{" + ",".join(map(str, values)) + "}"


def _utc(value: datetime) -> datetime:
    """``value`` in UTC; a naive datetime is refused (as the UTC columns refuse it)."""
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r} given to a UTC column")
    return value.astimezone(UTC)


def _iso(value: datetime | None) -> str | None:
    """A UTC timestamp as ISO text, exact to the microsecond (JSON has no timestamp type)."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r} given to a UTC column")
    return value.isoformat()


# ============================================================================ the claim


def claim_sql(filtered: bool) -> str:
    """The whole claim as one statement (prepared by psycopg after a few runs).

    ``picked`` locks the due candidates through the partial index (``SKIP LOCKED``), ``sel``
    tells the ones later than their account's grace (cutoff per account, else the default),
    ``claimed`` takes the lease on the others and ``att`` opens their attempt rows from its
    ``RETURNING``; ``missed`` marks the late ones missed and ``ev`` records that change. One
    statement is one transaction, so it runs without BEGIN / COMMIT. The result rows are of
    three kinds: 0 a claimed post, 1 an attempt (its id, then its post id), 2 a post marked
    missed (its id, key, former state and due time). ``filtered``: only the posts of the
    accounts in ``%(accounts)s``.
    """
    c_cols = ", ".join(fastsql.pg_plain_columns(posts_t, _CLAIM_NAMES, "c"))
    missed_cols = {
        "id": "m.id",
        "key": "m.key",
        "state": "k.state",
        "next_attempt_at": "(m.next_attempt_at AT TIME ZONE 'UTC')",
    }
    m_cols = ", ".join(missed_cols.get(n, "NULL") for n in _CLAIM_NAMES)
    only = "AND p.account_id = ANY(%(accounts)s::bigint[]) " if filtered else ""
    returned = ", ".join(f'"{n}"' for n in _CLAIM_NAMES)
    return (
        f"WITH picked AS (SELECT p.id, p.account_id, p.next_attempt_at, p.state FROM {_POSTS} p "
        f"WHERE p.{_DUE_SQL} AND p.next_attempt_at <= %(now)s "
        f"AND p.account_id IN (SELECT a.id FROM {_ACCOUNTS} a WHERE a.paused IS false) "
        f"{only}ORDER BY p.next_attempt_at, p.id LIMIT %(limit)s FOR UPDATE OF p SKIP LOCKED), "
        "sel AS (SELECT k.id, k.next_attempt_at < COALESCE(g.cutoff, %(cutoff)s) AS stale "
        "FROM picked k LEFT JOIN unnest(%(grace_ids)s::bigint[], %(cutoffs)s::timestamptz[]) "
        "AS g(account_id, cutoff) ON g.account_id = k.account_id), "
        f"claimed AS (UPDATE {_POSTS} SET state = %(claimed)s, lease_owner = %(owner)s, "
        "lease_expires_at = %(expires)s, attempt_count = attempt_count + 1, "
        "updated_at = %(now)s WHERE id = ANY(ARRAY(SELECT id FROM sel WHERE NOT stale)) "
        f"RETURNING {returned}), "
        f"att AS (INSERT INTO {_ATTEMPTS} ({', '.join(_ATTEMPT_COLUMNS)}) "
        "SELECT c.id, c.attempt_count, c.idempotency_key, %(owner)s, %(now)s FROM claimed c "
        "RETURNING id, post_id), "
        f"missed AS (UPDATE {_POSTS} SET state = %(missed)s, last_error = %(missed_error)s, "
        "error_class = 'missed', updated_at = %(now)s "
        "WHERE id = ANY(ARRAY(SELECT id FROM sel WHERE stale)) "
        'RETURNING id, "key", next_attempt_at), '
        f"ev AS (INSERT INTO {events_t.name} (post_id, at, from_state, to_state, actor, reason) "
        "SELECT m.id, %(now)s, k.state, %(missed)s, %(owner)s, %(missed_reason)s "
        "FROM missed m JOIN picked k ON k.id = m.id) "
        f"SELECT 0 AS kind, NULL::bigint AS attempt_id, {c_cols} FROM claimed c "
        f"UNION ALL SELECT 1, a.id, a.post_id{', NULL' * (len(_CLAIM_NAMES) - 1)} FROM att a "
        f"UNION ALL SELECT 2, NULL, {m_cols} FROM missed m JOIN picked k ON k.id = m.id"
    )


_CLAIM_SQL = {True: claim_sql(True), False: claim_sql(False)}


def claim_params(
    owner: str,
    now: datetime,
    lease: timedelta,
    limit: int,
    grace: Mapping[int, timedelta],
    default_grace: timedelta,
    accounts: Collection[int] | None,
) -> dict[str, Any]:
    """The parameters of ``claim_sql(accounts is not None)``."""
    params: dict[str, Any] = {
        "now": now,
        "limit": limit,
        "cutoff": now - default_grace,
        "grace_ids": _ids(grace),
        "cutoffs": [now - g for g in grace.values()],
        "claimed": str(PostState.CLAIMED),
        "missed": str(PostState.MISSED),
        "missed_error": MISSED_ERROR,
        "missed_reason": MISSED_REASON,
        "owner": owner,
        "expires": now + lease,
    }
    if accounts is not None:
        params["accounts"] = _ids(accounts)
    return params


#: Account names of ids, and what earlier attempts of retried posts tell (as
#: ``store._history``): when a request of the post may first have left, and whether one
#: ended with an unknown outcome.
_NAMES_SQL = f"SELECT id, name FROM {_ACCOUNTS} WHERE id = ANY(%s::bigint[])"
_HISTORY_SQL = (
    "SELECT post_id, min(sent_at), "
    f"max(CASE WHEN outcome = '{Outcome.OUTCOME_UNKNOWN}' THEN 1 ELSE 0 END) "
    f"FROM {_ATTEMPTS} WHERE post_id = ANY(%s::bigint[]) AND sent_at IS NOT NULL "
    "GROUP BY post_id"
)


class _Claim:
    """What a claim's rows say, decoded; then what else must be read (names, history)."""

    def __init__(self, raw: Sequence[Sequence[Any]], names: Mapping[int, str] | None) -> None:
        self.fresh: list[Any] = []
        self.stale: list[Any] = []
        self.attempt_of: dict[int, int] = {}
        # A reader per claim: it remembers the timestamps it converted, for this batch only.
        read = fastsql.row_reader(None, posts_t, _CLAIM_NAMES, plain=True)
        for r in raw:
            if r[0] == 1:
                self.attempt_of[r[2]] = r[1]
            else:
                (self.stale if r[0] else self.fresh).append(read(r[2:]))
        self.known: dict[int, str] = dict(names or {})
        self.unknown = sorted({r.account_id for r in self.fresh} - self.known.keys())
        self.retried = [r.id for r in self.fresh if r.attempt_count > 1]
        self.history: dict[int, tuple[datetime | None, bool]] = {}

    def add_names(self, rows: Sequence[Sequence[Any]]) -> None:
        self.known.update((int(i), str(n)) for i, n in rows)

    def add_history(self, rows: Sequence[Sequence[Any]]) -> None:
        self.history = {post_id: (first, bool(had)) for post_id, first, had in rows}

    def result(self) -> tuple[list[Claimed], list[Change]]:
        self.stale.sort(key=lambda r: (r.next_attempt_at, r.id))
        missed = [Change(s.id, s.key, s.state, PostState.MISSED) for s in self.stale]
        return _claimed(self.fresh, self.attempt_of, self.known, self.history), missed


def claim(
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
    """``store.claim`` on PostgreSQL: one driver-level statement (its own transaction)."""
    params = claim_params(owner, now, lease, limit, grace, default_grace, accounts)
    with _connect(engine, link) as conn:
        raw = conn.exec_driver_sql(_CLAIM_SQL[accounts is not None], params).all()
        if not raw:
            return [], []
        got = _Claim(raw, names)
        if got.unknown:
            got.add_names(conn.exec_driver_sql(_NAMES_SQL, (_ids(got.unknown),)).all())
        if got.retried:
            got.add_history(conn.exec_driver_sql(_HISTORY_SQL, (_ids(got.retried),)).all())
    return got.result()


# ============================================================================ the send record

_MARK_SQL = (
    f"UPDATE {_ATTEMPTS} SET sent_at = %s WHERE id = ANY(%s::bigint[]) "
    "AND outcome IS NULL RETURNING id"
)


def mark_sent(
    engine: Engine, attempt_ids: Sequence[int], now: datetime, link: Link | None
) -> set[int]:
    """``store.mark_sent`` on PostgreSQL: one short statement over an array (the same text
    whatever the batch size, so the server plans it once), its own transaction."""
    with _connect(engine, link) as conn:
        return {r[0] for r in conn.exec_driver_sql(_MARK_SQL, (_utc(now), _ids(attempt_ids)))}


# ============================================================================ rescue, next due


def take_expired(conn: Connection, q: Select[Any]) -> list[Any]:
    """``rescue_expired``'s read on PostgreSQL: the expired leases locked ``SKIP LOCKED``,
    so two daemons rescuing at once take different posts and neither waits."""
    return list(conn.execute(q.with_for_update(skip_locked=True, of=posts_t)).all())


_NEXT_DUE_SQL = (
    f"SELECT p.next_attempt_at FROM {_POSTS} p WHERE p.{_DUE_SQL} "
    f"AND {_ACTIVE_SQL} ORDER BY p.next_attempt_at LIMIT 1"
)


def next_due(engine: Engine) -> datetime | None:
    """``store.next_due`` on PostgreSQL: psycopg reads the timestamptz as an aware datetime."""
    with engine.connect() as conn:
        due = conn.exec_driver_sql(_NEXT_DUE_SQL).scalar()
    return None if due is None else _utc(due)


# ============================================================================ the outcome write


def _write_sql() -> str:
    """``write_results`` as one statement over the rows of a JSON array (one array per
    result, in ``_write_rows`` order): the attempt rows closed, published posts recorded,
    the others moved on while the lease is ours; the number of posts changed.

    The attempts are also named by id (``attempt_ids``, an array), so that the server finds
    them through the primary key: joined only to the batch, whose size it cannot know, it
    hashed a scan of the whole attempts table once per write while its statistics lagged
    behind a table growing by thousands of rows a second (the write took twice as long).
    """
    fields = (
        ("attempt_id", "bigint"),
        ("post_id", "bigint"),
        ("finished_at", "timestamptz"),
        ("outcome", "text"),
        ("message", "text"),
        ("http_status", "int"),
        ("latency_ms", "float8"),
        ("retry_at", "timestamptz"),
        ("state", "text"),
        ("next_attempt_at", "timestamptz"),
        ("uncount", "int"),
        ("remote_id", "text"),
        ("remote_url", "text"),
        ("followers", "bigint"),
    )
    values = ", ".join(f"(e->>{i})::{kind} AS {name}" for i, (name, kind) in enumerate(fields))
    return (
        f"WITH v AS MATERIALIZED (SELECT {values} "
        "FROM jsonb_array_elements(%(rows)s::jsonb) AS e), "
        f"att AS (UPDATE {_ATTEMPTS} AS a SET finished_at = v.finished_at, outcome = v.outcome, "
        "message = v.message, http_status = v.http_status, latency_ms = v.latency_ms, "
        "retry_at = v.retry_at FROM v WHERE a.id = ANY(%(attempt_ids)s::bigint[]) "
        "AND a.id = v.attempt_id), "
        f"pub AS (UPDATE {_POSTS} AS p SET state = %(published)s, remote_id = v.remote_id, "
        "remote_url = v.remote_url, published_at = v.finished_at, "
        "followers_at_publish = v.followers, lease_owner = NULL, lease_expires_at = NULL, "
        "last_error = NULL, error_class = NULL, updated_at = %(now)s FROM v "
        "WHERE p.id = v.post_id AND v.state = %(published)s RETURNING 1), "
        f"oth AS (UPDATE {_POSTS} AS p SET state = v.state, "
        "next_attempt_at = COALESCE(v.next_attempt_at, p.next_attempt_at), "
        "attempt_count = p.attempt_count - v.uncount, last_error = v.message, "
        "error_class = v.outcome, lease_owner = NULL, lease_expires_at = NULL, "
        "updated_at = %(now)s FROM v "
        "WHERE p.id = v.post_id AND v.state <> %(published)s "
        "AND p.lease_owner = %(owner)s AND p.state = %(claimed)s "
        "RETURNING 1) "
        "SELECT (SELECT count(*) FROM pub) + (SELECT count(*) FROM oth)"
    )


_WRITE_SQL = _write_sql()
_PUBLISHED, _CLAIMED = str(PostState.PUBLISHED), str(PostState.CLAIMED)


def _write_params(owner: str, results: Sequence[Result], now: datetime) -> dict[str, Any]:
    """The parameters of ``_WRITE_SQL``: the results as one JSON array of arrays."""
    published = _PUBLISHED
    rows = [
        (
            r.claimed.attempt_id,
            r.claimed.post_id,
            _iso(r.finished_at),
            str(r.outcome),
            r.message,
            r.http_status,
            r.latency_ms,
            _iso(r.retry_at),
            published if r.state == published else str(r.state),
            _iso(r.next_attempt_at),
            0 if r.counts else 1,
            r.remote_id,
            r.remote_url,
            r.followers,
        )
        for r in results
    ]
    return {
        "rows": json.dumps(rows, separators=(",", ":"), allow_nan=False),
        "attempt_ids": _ids([r.claimed.attempt_id for r in results]),
        "published": published,
        "claimed": _CLAIMED,
        "owner": owner,
        "now": _utc(now),
    }


def _write(conn: Connection, owner: str, results: Sequence[Result], now: datetime) -> int:
    """``write_results`` on a SQLAlchemy connection: the one statement."""
    changed: int = conn.exec_driver_sql(_WRITE_SQL, _write_params(owner, results, now)).scalar_one()
    return changed


def write_results(
    engine: Engine, owner: str, results: Sequence[Result], now: datetime, link: Link | None
) -> int:
    """``store.write_results`` on PostgreSQL: one statement, its own transaction, through
    ``link``; with an account to pause, the statement and the pause share a transaction."""
    if any(r.pause_reason for r in results):
        return _with_pauses(_write)(engine, owner, results, now, link)
    with _connect(engine, link) as conn:
        return _write(conn, owner, results, now)


__all__ = [
    "claim",
    "claim_params",
    "claim_sql",
    "mark_sent",
    "next_due",
    "take_expired",
    "write_results",
]
