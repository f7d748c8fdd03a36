"""Which daemons are alive on the database, and what the networks told any of them.

Each daemon records a heartbeat (``smm status`` reads it); the daemons alive by it share each
account's declared rate limits, and every heartbeat reads the rate-limit answers (429s, with a
retry time still ahead) any daemon got, so that all of them hold back together.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, select, text, update

from scheduler.db.engine import immediate
from scheduler.db.models import Account, Attempt, DaemonHeartbeat, Outcome
from scheduler.queue import posts_t

accounts_t = Account.__table__  # type: ignore[attr-defined]
attempts_t = Attempt.__table__  # type: ignore[attr-defined]
daemons_t = DaemonHeartbeat.__table__  # type: ignore[attr-defined]


#: How often a running daemon records its heartbeat.
HEARTBEAT_EVERY = timedelta(seconds=10)
#: A daemon whose heartbeat is older than this (three missed beats) is taken for gone, by the
#: other daemons and by ``smm status``.
ALIVE_WITHIN = 3 * HEARTBEAT_EVERY


#: Rows of daemons not seen for this long are deleted at the next heartbeat of any daemon.
DAEMON_RETENTION = timedelta(days=1)


def heartbeat(
    engine: Engine, daemon_id: str, info: Mapping[str, Any], now: datetime, status: str
) -> int:
    """Record that this daemon is alive (``smm status`` reads it); return how many daemons,
    this one included, are alive on the database (they share the networks' rate limits).

    Alive means a heartbeat within ``ALIVE_WITHIN``, not stopped, and, for a daemon of this
    host, a process still running under its pid: a daemon killed a moment ago takes no share.
    Rows older than ``DAEMON_RETENTION`` are deleted.
    """
    with immediate(engine) as conn:
        updated = conn.execute(
            update(daemons_t)
            .where(daemons_t.c.id == daemon_id)
            .values(last_seen=now, status=status)
        ).rowcount
        if not updated:
            conn.execute(
                daemons_t.insert().values(
                    id=daemon_id, started_at=now, last_seen=now, status=status, **info
                )
            )
        conn.execute(daemons_t.delete().where(daemons_t.c.last_seen < now - DAEMON_RETENTION))
        recent = conn.execute(
            select(daemons_t.c.id, daemons_t.c.hostname, daemons_t.c.pid).where(
                daemons_t.c.last_seen >= now - ALIVE_WITHIN, daemons_t.c.status != "stopped"
            )
        ).all()
    here = socket.gethostname()
    alive = sum(1 for r in recent if r.id == daemon_id or r.hostname != here or _running(r.pid))
    return max(1, alive)


def _running(pid: int | None) -> bool:
    """Whether a process with this pid runs on this host (one we may not signal does)."""
    if not pid:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


#: Attempts a network refused with a rate limit, spelled out as the partial index
#: ``ix_attempts_rate_limited`` is (bound parameters would not match it).
_ANSWERED_SQL = (
    f"{attempts_t.name}.outcome = '{Outcome.RATE_LIMITED.value}' "
    f"AND {attempts_t.name}.latency_ms IS NOT NULL"
)


def rate_limit_blocks(engine: Engine, now: datetime) -> dict[str, datetime]:
    """Accounts a network told to wait, by name: the latest retry time still ahead among the
    attempts that reached the network and came back rate-limited (a 429), whichever daemon
    made them. A post this daemon held back for its own budget is not the network's word
    (it has no latency: nothing was sent) and is left out."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(accounts_t.c.name, func.max(attempts_t.c.retry_at))
            .select_from(attempts_t)
            .join(posts_t, posts_t.c.id == attempts_t.c.post_id)
            .join(accounts_t, accounts_t.c.id == posts_t.c.account_id)
            .where(text(_ANSWERED_SQL), attempts_t.c.retry_at > now)
            .group_by(accounts_t.c.name)
        ).all()
    return dict(rows)
