"""What the loop knows, read back for people: per-type figures, decisions, the trajectory.

Plain dicts (the ``--json`` shapes of ``smm er``), read from the stored priorities and
decision records (and, for the best time to post, the snapshots the slot model reads): looking
never recomputes anything stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select

from scheduler.config import AccountConfig, ERSettings
from scheduler.db.models import Account, ContentTypePriority, PriorityDecision
from scheduler.er.besttime import best_time
from scheduler.er.slotjob import slot_history
from scheduler.errors import NotFound, excerpt
from scheduler.learned_slots import misfit

accounts_t = Account.__table__  # type: ignore[attr-defined]
priorities_t = ContentTypePriority.__table__  # type: ignore[attr-defined]
decisions_t = PriorityDecision.__table__  # type: ignore[attr-defined]


def account_ids(conn: Connection, account: str | None) -> list[tuple[int, str]]:
    """(id, name) of every account, or of the one named; NotFound when it does not exist."""
    q = select(accounts_t.c.id, accounts_t.c.name).order_by(accounts_t.c.name)
    if account is not None:
        q = q.where(accounts_t.c.name == account)
    rows = [(r.id, r.name) for r in conn.execute(q)]
    if account is not None and not rows:
        raise NotFound(f"no account {excerpt(account)} in the database")
    return rows


def decision_json(row: Any) -> dict[str, Any]:
    """A decision record as ``smm er`` prints it (the bulky inputs left out)."""
    old, new = dict(row.old_weights or {}), dict(row.new_weights or {})
    return {
        "at": row.created_at,
        "policy": row.policy,
        "frozen": bool(row.frozen),
        "changed": set(old) != set(new) or any(abs(new[t] - old[t]) > 1e-9 for t in new),
        "old_weights": old,
        "new_weights": new,
        "reason": row.reason,
        "summary": decision_summary(row.inputs, row.reason),
    }


def decision_summary(inputs: Any, reason: str) -> str:
    """The decision in a manager's words (``words.summarise``); the statistical reason for
    decisions made before there were words, or by a policy that gives none."""
    details = (inputs or {}).get("details") or {}
    summary = details.get("summary") if isinstance(details, dict) else None
    return summary if isinstance(summary, str) and summary else reason


def overview(
    conn: Connection,
    account: str | None = None,
    *,
    decisions: int = 3,
    settings: ERSettings | None = None,
    now: datetime | None = None,
    configs: Mapping[str, AccountConfig] | None = None,
) -> list[dict[str, Any]]:
    """Per account: every weighted type (ER, interval, posts, weight, trend, demoted) and the
    last ``decisions`` decision records, newest first. Accounts never recomputed are left out.
    With ``settings`` and ``now``, also the best time to post (``besttime.best_time``; the
    accounts' slots and learning windows from ``configs``) and the slot decisions."""
    out = []
    for account_id, name in account_ids(conn, account):
        recent = conn.execute(
            select(decisions_t)
            .where(decisions_t.c.account_id == account_id)
            .order_by(decisions_t.c.created_at.desc(), decisions_t.c.id.desc())
            .limit(max(decisions, 1))
        ).all()
        priorities = conn.execute(
            select(priorities_t)
            .where(priorities_t.c.account_id == account_id)
            .order_by(priorities_t.c.weight.desc(), priorities_t.c.content_type)
        ).all()
        if not recent and not priorities:
            continue
        inputs = dict(recent[0].inputs or {}) if recent else {}
        known = inputs.get("types") or {}
        types = []
        for p in priorities:
            extra = known.get(p.content_type) or {}
            types.append(
                {
                    "type": p.content_type,
                    "er": p.er,
                    "er_low": p.er_low,
                    "er_high": p.er_high,
                    "posts": p.posts_counted,
                    "effective_posts": extra.get("effective_posts"),
                    "weight": p.weight,
                    "trend": extra.get("trend"),
                    "demoted": bool(p.demoted),
                }
            )
        out.append(
            {
                "account": name,
                "basis": inputs.get("basis"),
                "account_er": inputs.get("account_er"),
                "reach_fallback_posts": int(inputs.get("reach_fallback_posts") or 0),
                **_timing(
                    conn,
                    account_id,
                    (configs or {}).get(name),
                    inputs.get("basis") == "reach",
                    settings,
                    now,
                ),
                "updated_at": recent[0].created_at if recent else None,
                "types": types,
                "decisions": [decision_json(r) for r in recent[:decisions]],
            }
        )
    return out


def _timing(
    conn: Connection,
    account_id: int,
    config: AccountConfig | None,
    by_reach: bool,
    settings: ERSettings | None,
    now: datetime | None,
) -> dict[str, Any]:
    """The best time to post (proposals, or the moves of an account that learns its slots)."""
    if settings is None or now is None:
        return {}
    unfit = misfit(conn, config, account_id) if config is not None else None
    return {
        **best_time(conn, account_id, config, settings, now, by_reach=by_reach),
        # Slot learning's decisions (accounts with learning windows), newest first.
        "slot_decisions": slot_history(conn, account_id),
        # The days the config no longer lets the latest learned table hold, or None.
        "learned_slots_misfit": None
        if unfit is None
        else {**unfit.as_dict(), "words": unfit.words()},
    }


def reach_fallbacks(conn: Connection) -> dict[str, int]:
    """Per account whose latest recompute measured posts by followers although its network
    declares reach: how many posts (for ``smm er`` and ``smm doctor``)."""
    latest = select(func.max(decisions_t.c.id)).group_by(decisions_t.c.account_id)
    rows = conn.execute(
        select(accounts_t.c.name, decisions_t.c.inputs)
        .join(accounts_t, accounts_t.c.id == decisions_t.c.account_id)
        .where(decisions_t.c.id.in_(latest))
    )
    out = {}
    for name, inputs in rows:
        n = int((inputs or {}).get("reach_fallback_posts") or 0)
        if n:
            out[name] = n
    return out


def fallback_warning(account: str, posts: int) -> str:
    """The sentence ``smm er`` and ``smm doctor`` print for a reach fallback."""
    return (
        f"{account}: the network declares reach but reported none for {posts} post"
        f"{'' if posts == 1 else 's'}; they are measured by followers instead"
    )


def history(
    conn: Connection, account: str | None = None, *, limit: int | None = None
) -> list[dict[str, Any]]:
    """Per account: the weights after each recompute, oldest first (the last ``limit``)."""
    out = []
    for account_id, name in account_ids(conn, account):
        q = (
            select(
                decisions_t.c.created_at,
                decisions_t.c.new_weights,
                decisions_t.c.frozen,
                decisions_t.c.policy,
                decisions_t.c.inputs,
            )
            .where(decisions_t.c.account_id == account_id)
            .order_by(decisions_t.c.created_at.desc(), decisions_t.c.id.desc())
        )
        if limit:
            q = q.limit(limit)
        rows = list(reversed(conn.execute(q).all()))
        if not rows:
            continue
        out.append(
            {
                "account": name,
                "history": [
                    {
                        "at": r.created_at,
                        "weights": dict(r.new_weights or {}),
                        "er": {
                            t: v.get("er") for t, v in ((r.inputs or {}).get("types") or {}).items()
                        },
                        "frozen": bool(r.frozen),
                        "policy": r.policy,
                    }
                    for r in rows
                ],
            }
        )
    return out
