"""The slots an account posts at when it learns them (``[accounts.NAME.slots] learn``).

Slot learning (``scheduler.er.slotlearn``) writes each change of an account's weekly slots
to ``slot_decisions``: the table before and after, and from when the new one holds (the
account's next local midnight, so no day gets more or fewer posts than the config gives it).
Every queue operation reads the account's slots here, so the plan import, ``smm queue
resume`` and the daemon all give queue posts the same times. A stored table is used only
for the days it still fits the config: as many slots as the config gives the day, inside its
windows, an hour apart; a day whose windows or slot count changed starts again from the
config's times. That is said, not silent: ``misfit`` tells which days and why, the first
reading in a process logs it (``learned_slots_misfit``), and ``smm status`` and ``smm er``
show it until slot learning decides again (from the config's times, so the new table fits).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any

import structlog
from sqlalchemy import Connection, select

from scheduler.config import AccountConfig
from scheduler.db.models import SlotDecision
from scheduler.slots import SlotPlan, WeekTable, fits_windows, spaced
from scheduler.timeutil import format_utc

log = structlog.get_logger(__name__)
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


_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def _unfit(times: tuple[time, ...], want: int, windows: Any) -> str | None:
    """Why a day's learned ``times`` do not hold under the config (None: they do)."""
    if len(times) != want:
        return f"{len(times)} learned slot(s), the config now gives {want}"
    outside = [t for t in times if not fits_windows((t,), windows)]
    if outside:
        return f"{outside[0]:%H:%M} lies outside the learning windows now"
    if not spaced(times):
        return "learned slots less than an hour apart"
    return None


def fitted(account: AccountConfig, stored: Mapping[int, tuple[time, ...]] | None) -> WeekTable:
    """``stored`` where it fits the account's config today, the config's slots elsewhere."""
    table = dict(account.slots)
    for day, windows in account.learn.items():
        want = len(account.slots.get(day, ()))
        times = (stored or {}).get(day, ())
        if want and _unfit(times, want, windows) is None:
            table[day] = tuple(times)
    return table


def misfits(
    account: AccountConfig, stored: Mapping[int, tuple[time, ...]] | None
) -> dict[str, str]:
    """The days of a learning account whose ``stored`` times no longer fit its config
    (``fitted`` gives them the config's slots), by day name, each with why."""
    found = {}
    for day in sorted(account.learn):
        want = len(account.slots.get(day, ()))
        why = _unfit((stored or {}).get(day, ()), want, account.learn[day]) if want else None
        if stored is None:
            why = "the stored table cannot be read"
        if why is not None:
            found[_DAYS[day]] = why
    return found


@dataclass(frozen=True)
class Misfit:
    """A learned slot table the config no longer fits on some days (``misfits``)."""

    account: str
    #: When slot learning decided the table.
    decided_at: datetime
    days: Mapping[str, str]

    def words(self) -> str:
        """For ``smm status`` and ``smm er``."""
        days = "; ".join(f"{day}: {why}" for day, why in self.days.items())
        return (
            f"the slots {self.account} learned on {format_utc(self.decided_at)} no longer fit "
            f"its config ({days}): those days post at the config's times until slot "
            "learning decides again"
        )

    def as_dict(self) -> dict[str, Any]:
        return {"account": self.account, "decided_at": self.decided_at, "days": dict(self.days)}


def _latest(conn: Connection, account_id: int) -> Any:
    return conn.execute(
        select(
            slot_decisions_t.c.id,
            slot_decisions_t.c.created_at,
            slot_decisions_t.c.effective_from,
            slot_decisions_t.c.old_slots,
            slot_decisions_t.c.new_slots,
        )
        .where(slot_decisions_t.c.account_id == account_id)
        .order_by(slot_decisions_t.c.id.desc())
        .limit(1)
    ).first()


#: (account, decision id, the days and why) already logged by this process.
_logged: set[tuple[str, int, tuple[tuple[str, str], ...]]] = set()


def _said(account: AccountConfig, row: Any) -> Misfit | None:
    """The latest table's misfit, logged the first time this process meets it."""
    days = misfits(account, table_from_json(row.new_slots))
    if not days:
        return None
    found = Misfit(account.name, row.created_at, days)
    seen = (account.name, row.id, tuple(days.items()))
    if seen not in _logged:
        _logged.add(seen)
        log.warning(
            "learned_slots_misfit",
            account=account.name,
            decided_at=row.created_at,
            days=dict(days),
            using="the config's slots on those days until slot learning decides again",
        )
    return found


def misfit(conn: Connection, account: AccountConfig, account_id: int) -> Misfit | None:
    """Whether the account's latest learned table no longer fits its config, and where."""
    if not account.learn:
        return None
    row = _latest(conn, account_id)
    return None if row is None else _said(account, row)


def current_slots(
    conn: Connection, account: AccountConfig, account_id: int
) -> tuple[WeekTable, SlotPlan]:
    """The account's latest learned table (its slots once the pending change holds) and the
    plan of tables the queue follows: the old table until the change, the new one after."""
    if not account.learn:
        return account.slots, [(None, account.slots)]
    row = _latest(conn, account_id)
    if row is None:
        return account.slots, [(None, account.slots)]
    _said(account, row)
    old = fitted(account, table_from_json(row.old_slots))
    new = fitted(account, table_from_json(row.new_slots))
    return new, [(None, old), (row.effective_from, new)]


def slot_plan(conn: Connection, account: AccountConfig, account_id: int) -> SlotPlan:
    """The weekly tables the account's queue follows (``current_slots``)."""
    return current_slots(conn, account, account_id)[1]
