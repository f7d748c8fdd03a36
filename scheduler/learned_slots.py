"""The slots an account posts at when it learns them (``[accounts.NAME.slots] learn``).

Slot learning (``scheduler.er.slotlearn``) writes each change of an account's weekly slots
to ``slot_decisions``: the table before and after, and from when the new one holds (the
account's next local midnight, so no day gets more or fewer posts than the config gives it).
Every queue operation reads the account's slots here, so the plan import, ``smm queue
resume`` and the daemon all give queue posts the same times. A stored table is used only
for the days it still fits the config: as many slots as the config gives the day, inside its
windows, an hour apart; a day whose windows or slot count changed starts again from the
config's times.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import time
from typing import Any

from sqlalchemy import Connection, select

from scheduler.config import AccountConfig
from scheduler.db.models import SlotDecision
from scheduler.slots import SlotPlan, WeekTable, fits_windows, spaced

slot_decisions_t = SlotDecision.__table__  # type: ignore[attr-defined]


def table_as_json(table: WeekTable) -> dict[str, list[str]]:
    """A weekly table as stored: weekday number (as text) -> ["HH:MM", ...]."""
    return {str(d): [f"{t:%H:%M}" for t in table[d]] for d in sorted(table) if table[d]}


def table_from_json(data: Any) -> dict[int, tuple[time, ...]] | None:
    """A stored weekly table, or None when it is not one."""
    if not isinstance(data, dict):
        return None
    out: dict[int, tuple[time, ...]] = {}
    try:
        for key, values in data.items():
            day = int(key)
            if not 0 <= day <= 6 or not isinstance(values, list):
                return None
            out[day] = tuple(sorted(time.fromisoformat(v) for v in values))
    except (TypeError, ValueError):
        return None
    return out


def fitted(account: AccountConfig, stored: Mapping[int, tuple[time, ...]] | None) -> WeekTable:
    """``stored`` where it fits the account's config today, the config's slots elsewhere."""
    table = dict(account.slots)
    for day, windows in account.learn.items():
        want = len(account.slots.get(day, ()))
        times = (stored or {}).get(day, ())
        if want and len(times) == want and fits_windows(times, windows) and spaced(times):
            table[day] = tuple(times)
    return table


def current_slots(
    conn: Connection, account: AccountConfig, account_id: int
) -> tuple[WeekTable, SlotPlan]:
    """The account's latest learned table (its slots once the pending change holds) and the
    plan of tables the queue follows: the old table until the change, the new one after."""
    if not account.learn:
        return account.slots, [(None, account.slots)]
    row = conn.execute(
        select(
            slot_decisions_t.c.effective_from,
            slot_decisions_t.c.old_slots,
            slot_decisions_t.c.new_slots,
        )
        .where(slot_decisions_t.c.account_id == account_id)
        .order_by(slot_decisions_t.c.id.desc())
        .limit(1)
    ).first()
    if row is None:
        return account.slots, [(None, account.slots)]
    old = fitted(account, table_from_json(row.old_slots))
    new = fitted(account, table_from_json(row.new_slots))
    return new, [(None, old), (row.effective_from, new)]


def slot_plan(conn: Connection, account: AccountConfig, account_id: int) -> SlotPlan:
    """The weekly tables the account's queue follows (``current_slots``)."""
    return current_slots(conn, account, account_id)[1]
