"""Accounts in the database mirror the config: name, platform and time zone come from it.

The database adds what only it can know: paused or not (and why), whether the credentials
still work, followers seen lately.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, Insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from scheduler.config import Config
from scheduler.db.models import Account

accounts_t = Account.__table__  # type: ignore[attr-defined]

#: Why an account with ``enabled = false`` in the config is paused.
DISABLED = "disabled in the config (enabled = false)"


def sync_accounts(conn: Connection, config: Config, now: datetime) -> dict[str, int]:
    """Create or update a row for every configured account; return name -> id for all rows.

    Accounts that left the config keep their row (their posts refer to it).
    """
    existing = {
        row.name: row
        for row in conn.execute(
            select(
                accounts_t.c.id,
                accounts_t.c.name,
                accounts_t.c.platform,
                accounts_t.c.timezone,
                accounts_t.c.paused,
                accounts_t.c.paused_reason,
            )
        )
    }
    for name, acc in config.accounts.items():
        row = existing.get(name)
        if row is None:
            conn.execute(
                _insert_new(conn).values(
                    name=name,
                    platform=acc.platform,
                    timezone=acc.timezone,
                    paused=not acc.enabled,
                    paused_reason=None if acc.enabled else DISABLED,
                    auth_state="ok",
                    created_at=now,
                    updated_at=now,
                )
            )
            continue
        values: dict[str, object] = {}
        if (row.platform, row.timezone) != (acc.platform, acc.timezone):
            values.update(platform=acc.platform, timezone=acc.timezone)
        if not acc.enabled and not row.paused:
            values.update(paused=True, paused_reason=DISABLED)
        elif acc.enabled and row.paused and row.paused_reason == DISABLED:
            # As `smm queue resume`: the posts imported while it was disabled were held
            # (``paused``) and would otherwise stay held after the account is back.
            from scheduler.queue import resume_accounts

            resume_accounts(conn, [(row.id, acc)], now, actor="config")
        if values:
            conn.execute(
                update(accounts_t).where(accounts_t.c.id == row.id).values(updated_at=now, **values)
            )
    return {row.name: row.id for row in conn.execute(select(accounts_t.c.id, accounts_t.c.name))}


def _insert_new(conn: Connection) -> Insert:
    """An insert that leaves a row another process created meanwhile alone: daemons that
    start together on one PostgreSQL database all sync the same accounts."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        return postgresql.insert(accounts_t).on_conflict_do_nothing(index_elements=["name"])
    if dialect == "sqlite":
        return sqlite.insert(accounts_t).on_conflict_do_nothing(index_elements=["name"])
    return accounts_t.insert()
