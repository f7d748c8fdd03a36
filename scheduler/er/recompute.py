"""One ER recompute: statistics, the policy's decision, stored weights and a decision record.

Called by the daemon's ER job, by ``smm er recompute`` and by simulations (``now`` is always
passed in). Per account, in one transaction: the per-type statistics, the policy's new weights
(``content_type_priorities``), and one ``PriorityDecision`` row saying what went in, what
changed and why. ``priorities_changed`` fires for every account whose weights moved.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import math
import random
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import Connection, Engine, delete, func, select

from scheduler import plugins
from scheduler.adapter import Account as AdapterAccount
from scheduler.config import Config, ERSettings
from scheduler.db.engine import immediate
from scheduler.db.models import Account, ContentTypePriority, PriorityDecision
from scheduler.er.incremental import readings_sums
from scheduler.er.policy import FROZEN_REASON, Decision, Policy, ThompsonPolicy
from scheduler.er.stats import AccountStats, account_stats, with_state
from scheduler.outgoing import account_view

log = structlog.get_logger(__name__)

accounts_t = Account.__table__  # type: ignore[attr-defined]
priorities_t = ContentTypePriority.__table__  # type: ignore[attr-defined]
decisions_t = PriorityDecision.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class DecisionRecord:
    """A stored decision, as callers and the CLI see it."""

    id: int
    account: str
    account_id: int
    created_at: datetime
    policy: str
    frozen: bool
    old_weights: dict[str, float]
    new_weights: dict[str, float]
    reason: str
    inputs: dict[str, Any] = field(default_factory=dict)
    demoted: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        """True when any weight moved (or a type came or went)."""
        return _moved(self.new_weights, self.old_weights)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "account": self.account,
            "at": self.created_at,
            "policy": self.policy,
            "frozen": self.frozen,
            "changed": self.changed,
            "old_weights": self.old_weights,
            "new_weights": self.new_weights,
            "demoted": list(self.demoted),
            "reason": self.reason,
            "inputs": self.inputs,
        }


# ============================================================================ the policy


def resolve_policy(settings: ERSettings) -> Policy:
    """The policy plugins offer on ``er_policy`` (the built-in one when none does)."""
    try:
        chosen = plugins.get_plugin_manager().hook.er_policy(settings=settings)
    except Exception as exc:  # a broken plugin must not stop the loop
        log.error("er_policy_hook_failed", error=f"{type(exc).__name__}: {exc}")
        chosen = None
    if chosen is None:
        return ThompsonPolicy()
    if not isinstance(getattr(chosen, "name", None), str) or not callable(
        getattr(chosen, "decide", None)
    ):
        log.error("er_policy_invalid", policy=repr(chosen))
        return ThompsonPolicy()
    return chosen


def decision_problem(decision: Any, types: Collection[str], old: Mapping[str, float]) -> str | None:
    """Why ``decision`` cannot be stored, or None when it is sound."""
    if not isinstance(decision, Decision):
        return f"returned {type(decision).__name__}, not a Decision"
    weights = decision.new_weights
    allowed = set(types) | set(old)
    unknown = sorted(set(weights) - allowed)
    if unknown:
        return f"weights for unknown content types {unknown}"
    bad = [t for t, w in weights.items() if not isinstance(w, int | float) or not math.isfinite(w)]
    if bad or any(w < -1e-9 for w in weights.values()):
        return "weights must be finite and not negative"
    if weights and abs(sum(weights.values()) - 1) > 1e-6:
        return f"weights sum to {sum(weights.values()):.6f}, not 1"
    return None


def _moved(new: Mapping[str, float], old: Mapping[str, float]) -> bool:
    return set(new) != set(old) or any(abs(new[t] - old[t]) > 1e-9 for t in new)


def _decide(
    policy: Policy,
    stats: AccountStats,
    old: Mapping[str, float],
    settings: ERSettings,
    rng: random.Random,
) -> tuple[str, Decision]:
    """Run the policy; a failing or unsound plugin policy yields to the built-in one."""
    try:
        decision = policy.decide(stats, old, settings, rng)
        problem = decision_problem(decision, stats.types, old)
    except Exception as exc:
        problem = f"raised {type(exc).__name__}: {exc}"
    if problem is None:
        if settings.frozen and _moved(decision.new_weights, old):
            # The freeze is the operator's switch: it holds whatever the policy proposes.
            decision = Decision(
                dict(old),
                f"{FROZEN_REASON}; the policy proposed: {decision.reason}",
                decision.details,
                decision.demoted,
                decision.state,
            )
        return policy.name, decision
    log.error("er_policy_failed", policy=policy.name, account=stats.account, problem=problem)
    fallback = ThompsonPolicy()
    decision = fallback.decide(stats, old, settings, rng)
    reason = f"policy {policy.name!r} {problem}; the built-in policy decided: {decision.reason}"
    return fallback.name, Decision(
        decision.new_weights, reason, decision.details, decision.demoted, decision.state
    )


# ============================================================================ reading and writing


def has_reach(platform: str) -> bool:
    """Whether the platform's adapter declares reach (ER by reach); False when unknown."""
    try:
        return plugins.adapter_class(platform).capabilities.has_reach
    except plugins.PluginError:
        log.warning("er_platform_unknown", platform=platform, basis="followers")
        return False


def current_weights(conn: Connection, account_ids: Collection[int]) -> dict[int, dict[str, float]]:
    """The stored weights of each account (empty for an account never recomputed)."""
    out: dict[int, dict[str, float]] = {a: {} for a in account_ids}
    rows = conn.execute(
        select(priorities_t.c.account_id, priorities_t.c.content_type, priorities_t.c.weight).where(
            priorities_t.c.account_id.in_(sorted(account_ids))
        )
    )
    for account_id, content_type, weight in rows:
        out[account_id][content_type] = float(weight)
    return out


def last_state(conn: Connection, account_ids: Collection[int]) -> dict[int, dict[str, Any]]:
    """The policy state kept in each account's latest decision record."""
    latest = (
        select(func.max(decisions_t.c.id))
        .where(decisions_t.c.account_id.in_(sorted(account_ids)))
        .group_by(decisions_t.c.account_id)
    )
    rows = conn.execute(
        select(decisions_t.c.account_id, decisions_t.c.inputs).where(decisions_t.c.id.in_(latest))
    )
    return {a: dict((inputs or {}).get("state") or {}) for a, inputs in rows}


def _json_safe(value: Any) -> Any:
    """A plugin's details, made storable (anything JSON cannot hold becomes its text)."""
    return json.loads(json.dumps(value, default=str))


def _store(
    conn: Connection,
    stats: AccountStats,
    policy_name: str,
    decision: Decision,
    old: Mapping[str, float],
    frozen: bool,
    now: datetime,
) -> DecisionRecord:
    new = {t: float(w) for t, w in decision.new_weights.items()}
    conn.execute(delete(priorities_t).where(priorities_t.c.account_id == stats.account_id))
    rows = []
    for t, weight in sorted(new.items()):
        s = stats.types.get(t)
        rows.append(
            {
                "account_id": stats.account_id,
                "content_type": t,
                "weight": weight,
                "er": s.er if s else None,
                "er_low": s.er_low if s else None,
                "er_high": s.er_high if s else None,
                "posts_counted": s.posts if s else 0,
                "demoted": t in decision.demoted,
                "updated_at": now,
            }
        )
    if rows:
        conn.execute(priorities_t.insert(), rows)
    inputs = {
        **stats.as_dict(),
        "details": _json_safe(decision.details),
        "state": _json_safe(decision.state),
    }
    result = conn.execute(
        decisions_t.insert().values(
            account_id=stats.account_id,
            created_at=now,
            policy=policy_name,
            inputs=inputs,
            old_weights=dict(old),
            new_weights=new,
            reason=decision.reason,
            frozen=frozen,
        )
    )
    assert result.inserted_primary_key is not None
    return DecisionRecord(
        id=int(result.inserted_primary_key[0]),
        account=stats.account,
        account_id=stats.account_id,
        created_at=now,
        policy=policy_name,
        frozen=frozen,
        old_weights=dict(old),
        new_weights=new,
        reason=decision.reason,
        inputs=inputs,
        demoted=tuple(sorted(decision.demoted)),
    )


@contextmanager
def _transaction(target: Engine | Connection) -> Iterator[Connection]:
    if isinstance(target, Connection):
        yield target
    else:
        with immediate(target) as conn:
            yield conn


# ============================================================================ the recompute


def recompute(
    target: Engine | Connection,
    config: Config,
    now: datetime,
    *,
    policy: Policy | None = None,
    rng: random.Random | None = None,
    accounts: Collection[str] | None = None,
    reach: Mapping[str, bool] | None = None,
    keep_sums: bool = False,
    full: bool = False,
    whole: bool = False,
) -> list[DecisionRecord]:
    """Recompute every account's content-type weights (or those named in ``accounts``).

    With an engine, the work commits in one transaction and ``priorities_changed`` fires
    after the commit; with a connection, it joins the caller's transaction and the events
    fire once the writes are done. ``rng`` makes the policy's draws reproducible; without
    it each account draws from a generator seeded by its name and ``now``, so a simulation
    is reproducible too. ``reach`` overrides, per account name, whether ER is by reach
    (otherwise the platform's ``Capabilities.has_reach`` decides).

    With ``keep_sums`` (the daemon and ``smm er recompute``), a recompute of every account
    starts from the readings' sums the last one kept and reads only the posts that changed
    since (``incremental.py``); ``whole`` sums every post's kept readings (a full pass),
    ``full`` reads every snapshot and keeps the sums and readings anew (a rebuild).

    Accounts without any content type get no decision.
    """
    settings = config.er
    policy = policy or resolve_policy(settings)
    records: list[DecisionRecord] = []
    with _transaction(target) as conn:
        q = select(accounts_t.c.id, accounts_t.c.name, accounts_t.c.platform).order_by(
            accounts_t.c.name
        )
        if accounts is not None:
            q = q.where(accounts_t.c.name.in_(sorted(accounts)))
        rows = conn.execute(q).all()
        if not rows:
            return []
        ids = [r.id for r in rows]
        by_reach = {
            r.id: (reach[r.name] if reach and r.name in reach else has_reach(r.platform))
            for r in rows
        }
        sums = None
        if keep_sums and accounts is None:
            sums, how = readings_sums(
                conn,
                settings,
                now,
                reach_accounts={a for a, has in by_reach.items() if has},
                full=full,
                whole=whole,
            )
            log.debug("er_sums", how=how, groups=len(sums))
        # Without a filter the database scans posts once; an IN list over every account
        # would send it through the account index, twice as slow on a large table.
        stats = account_stats(
            conn,
            settings,
            now,
            reach=by_reach,
            accounts=ids if accounts is not None else None,
            names={r.id: r.name for r in rows},
            sums=sums,
        )
        weights = current_weights(conn, ids)
        states = last_state(conn, ids)
        for account_stats_ in stats.values():
            _warn_fallback(account_stats_)
        for row in rows:
            old = weights.get(row.id, {})
            account = stats.get(row.id) or AccountStats(
                row.id, row.name, "reach" if by_reach[row.id] else "followers", None, None, None,
                {},
            )  # fmt: skip
            if not account.types and not old:
                continue
            account = with_state(account, states.get(row.id, {}))
            account_rng = rng or random.Random(f"{row.name}|{now.isoformat()}")
            name, decision = _decide(policy, account, old, settings, account_rng)
            records.append(_store(conn, account, name, decision, old, settings.frozen, now))
    _announce(records, config)
    return records


#: Accounts whose reach fallback this process has already logged.
_fallback_logged: set[str] = set()


def _warn_fallback(stats: AccountStats) -> None:
    """Log once per process and account that posts are measured by followers although the
    network declares reach (``smm er`` and ``smm doctor`` say it every time)."""
    if stats.reach_fallback_posts and stats.account not in _fallback_logged:
        _fallback_logged.add(stats.account)
        log.warning(
            "er_reach_fallback",
            account=stats.account,
            posts=stats.reach_fallback_posts,
            hint="the network declares reach but reported none; these posts are measured "
            "by followers",
        )


def _announce(records: list[DecisionRecord], config: Config) -> None:
    for record in records:
        if not record.changed:
            continue
        cfg = config.accounts.get(record.account)
        account = account_view(cfg) if cfg else AdapterAccount(record.account, "unknown", "UTC")
        results = plugins.call_all("priorities_changed", account=account, decision=record.as_dict())
        _settle(results)


def _settle(results: list[Any]) -> None:
    """Run awaitables that async hook implementations returned."""
    pending = [r for r in results if inspect.isawaitable(r)]
    if not pending:
        return

    async def run_all() -> None:
        for outcome in await asyncio.gather(*pending, return_exceptions=True):
            if isinstance(outcome, Exception):
                log.error("plugin_hook_failed", hook="priorities_changed", error=repr(outcome))

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(run_all())
    else:
        # Called from a coroutine (a daemon job): the loop runs them; keep a reference so
        # the task is not collected before it ends.
        task = loop.create_task(run_all())
        _background.add(task)
        task.add_done_callback(_background.discard)


_background: set[asyncio.Task[None]] = set()
