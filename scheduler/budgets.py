"""Quota budgets: what a network allows per day or month, planned for and never overspent.

Some networks refuse calls past a quota: YouTube's 10,000 daily units per Google Cloud
project (an upload costs 1,600), TikTok's cap on posts a creator makes in 24 hours. An adapter
that knows its network's budgets declares them::

    def budgets(self, account) -> Sequence[Budget]: ...
    def budget_cost(self, post, account) -> Mapping[str, int]: ...   # budget key -> units

and the core uses them twice:

* ``smm plan validate`` (``plan_warnings``) adds up the costs of the plan's fixed-time posts
  in each window of each budget, in due order, and names the posts the budget does not cover;
* the adapter itself, right before the call that spends the budget, asks the ``Ledger``
  whether the units are left (``Ledger.spend``); when they are not it raises ``RateLimited``
  until the window resets, without sending anything: the post waits with that reason, and
  the posts due first are the ones that got the budget.

A window is a calendar ``"day"`` or ``"month"`` in the budget's time zone (YouTube's quota
day is Pacific time), or a rolling ``timedelta``. The ledger is a small JSON file per budget
scope beside the checkpoints (``$STATE_DIRECTORY/budgets``), updated under a file lock, so
the daemons of one host share it; daemons on several hosts each count their own calls, and
the network's own quota answer remains the last word.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from scheduler.checkpoints import default_directory

__all__ = [
    "Budget",
    "Ledger",
    "PlannedPost",
    "budgeted",
    "budgets_left",
    "plan_budget_warnings",
    "plan_warnings",
    "window",
]


@dataclass(frozen=True)
class Budget:
    """One quota: ``limit`` units per ``period`` for everything sharing ``scope``."""

    key: str  # "youtube-units"
    description: str  # "YouTube Data API daily quota units"
    limit: int
    #: "day" or "month" (calendar, in ``timezone``), or a rolling ``timedelta``.
    period: str | timedelta
    timezone: str = "UTC"
    #: Who shares the budget (a Google Cloud project, a creator): accounts with the same scope.
    scope: str = ""


def window(budget: Budget, at: datetime) -> tuple[datetime, datetime]:
    """The window of ``budget`` that contains ``at`` (aware datetimes, UTC)."""
    if isinstance(budget.period, timedelta):
        return at - budget.period, at
    zone = ZoneInfo(budget.timezone)
    local = at.astimezone(zone)
    if budget.period == "day":
        start = local.replace(hour=0, minute=0, second=0, microsecond=0)
        end = (start + timedelta(days=1, hours=2)).replace(hour=0)
    elif budget.period == "month":
        start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        end = (start + timedelta(days=32)).replace(day=1)
    else:
        raise ValueError(f"unknown budget period {budget.period!r}")
    utc = ZoneInfo("UTC")
    # Through the wall clock, so a DST change inside the window keeps local midnights.
    return (
        start.replace(tzinfo=None).replace(tzinfo=zone).astimezone(utc),
        end.replace(tzinfo=None).replace(tzinfo=zone).astimezone(utc),
    )


def budgeted(adapter: object) -> bool:
    """True when the adapter declares budgets."""
    return callable(getattr(adapter, "budgets", None)) and callable(
        getattr(adapter, "budget_cost", None)
    )


# --------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class PlannedPost:
    """What planning needs of a post: its id, where it came from, when, and its cost."""

    key: str
    source: str  # "plan.yaml:12"
    at: datetime
    cost: Mapping[str, int]


def plan_warnings(budgets: Sequence[Budget], posts: Sequence[PlannedPost]) -> list[dict[str, Any]]:
    """For each budget window the posts overrun, one warning naming the posts left out.

    Posts are taken in due order; each is covered while its window's total stays within the
    limit; the others are listed (they would wait for the next window).
    """
    warnings = []
    for budget in budgets:
        period = budget.period
        covered: list[tuple[datetime, int]] = []
        over: dict[tuple[datetime, datetime], list[PlannedPost]] = {}
        for post in sorted(posts, key=lambda p: (p.at, p.key)):
            cost = post.cost.get(budget.key, 0)
            if cost <= 0:
                continue
            start, end = window(budget, post.at)
            if isinstance(period, timedelta):
                used = sum(c for when, c in covered if start < when <= post.at)
            else:
                used = sum(c for when, c in covered if start <= when < end)
            if used + cost <= budget.limit:
                covered.append((post.at, cost))
                continue
            over.setdefault((start, end), []).append(post)
        for span, left_out in over.items():
            warnings.append(
                {
                    "budget": budget.key,
                    "description": budget.description,
                    "limit": budget.limit,
                    "window_start": span[0],
                    "window_end": span[1],
                    "posts": [p.key for p in left_out],
                    "sources": [p.source for p in left_out],
                    "message": (
                        f"{budget.description}: {budget.limit:,} per {_period(budget)} "
                        f"would be exceeded{_when(budget, span)}; not covered: "
                        + ", ".join(f"{p.key} ({p.source})" for p in left_out)
                        + " (they would wait for the budget)"
                    ),
                }
            )
    return warnings


def _period(budget: Budget) -> str:
    if isinstance(budget.period, timedelta):
        return f"{budget.period.total_seconds() / 3600:g} h"
    return f"{budget.period} ({budget.timezone})"


def _when(budget: Budget, span: tuple[datetime, datetime]) -> str:
    if isinstance(budget.period, timedelta):
        return ""
    local = span[0].astimezone(ZoneInfo(budget.timezone))
    return f" on {local:%Y-%m-%d}" if budget.period == "day" else f" in {local:%Y-%m}"


def budgets_left(
    config: Any, now: datetime, ledger: Ledger | None = None
) -> dict[str, list[dict[str, Any]]]:
    """By account name, each declared budget with what is spent and left in the current
    window, as the host's ledger says (``left`` None when it cannot be read)."""
    from scheduler import plugins
    from scheduler.outgoing import account_view, offline_adapter

    ledger = ledger or Ledger()
    out: dict[str, list[dict[str, Any]]] = {}
    for name, cfg in config.accounts.items():
        try:
            adapter = offline_adapter(cfg.platform)
        except plugins.PluginError:
            continue
        if not budgeted(adapter):
            continue
        try:
            declared = adapter.budgets(account_view(cfg))  # type: ignore[attr-defined]
        except Exception:  # a bad option: validation reports it
            continue
        entries = []
        for budget in declared:
            spent = ledger.peek(budget, now)
            entries.append(
                {
                    "budget": budget.key,
                    "description": budget.description,
                    "limit": budget.limit,
                    "spent": spent,
                    "left": None if spent is None else max(0, budget.limit - spent),
                    "resets_at": None
                    if isinstance(budget.period, timedelta)
                    else window(budget, now)[1],
                }
            )
        out[name] = entries
    return out


def plan_budget_warnings(items: Sequence[Any], config: Any) -> list[dict[str, Any]]:
    """``plan_warnings`` for validated plan items (fixed-time ones), account by account,
    with each account's adapter's budgets; budgets shared by accounts (one scope) are added
    up together."""
    budgets = PlanBudgets(config)
    for item in items:
        budgets.add(item)
    return budgets.warnings()


class PlanBudgets:
    """``plan_budget_warnings`` item by item, for a plan validated as a stream: each
    fixed-time post of an account whose network has quotas is kept as its id, place, time
    and cost (nothing of the others)."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self._by_budget: dict[tuple[str, str], tuple[Budget, list[PlannedPost]]] = {}

    def add(self, item: Any) -> None:
        """Count one validated plan item against its account's budgets."""
        from scheduler import plugins
        from scheduler.outgoing import account_view, from_plan_item, offline_adapter

        cfg = self.config.accounts.get(item.account)
        if item.at is None or cfg is None:
            return
        try:
            adapter = offline_adapter(cfg.platform)
        except plugins.PluginError:
            return
        if not budgeted(adapter):
            return
        view = account_view(cfg)
        try:
            budgets = adapter.budgets(view)  # type: ignore[attr-defined]
            cost = adapter.budget_cost(from_plan_item(item), view)  # type: ignore[attr-defined]
        except Exception:  # a bad option is reported by validation itself
            return
        for budget in budgets:
            entry = self._by_budget.setdefault((budget.key, budget.scope), (budget, []))
            entry[1].append(PlannedPost(item.key, item.source, item.at, cost))

    def warnings(self) -> list[dict[str, Any]]:
        """The warnings of every budget the items were counted against."""
        warnings = []
        for budget, posts in self._by_budget.values():
            warnings += plan_warnings([budget], posts)
        return warnings


# --------------------------------------------------------------------------- the ledger


@dataclass
class Ledger:
    """What was spent of each budget, per scope and window (a JSON file per scope)."""

    directory: Path | None = None
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    def _root(self) -> Path:
        if self.directory is not None:
            return self.directory
        return default_directory().parent / "budgets"

    def _path(self, budget: Budget) -> Path:
        digest = hashlib.sha256(f"{budget.key}\0{budget.scope}".encode()).hexdigest()[:32]
        return self._root() / f"{budget.key}-{digest}.json"

    @contextlib.contextmanager
    def _locked(self, budget: Budget) -> Iterator[dict[str, Any]]:
        root = self._root()
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self._path(budget)
        fd = os.open(root / ".lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                data = json.loads(path.read_bytes())
            except (OSError, ValueError):
                data = {}
            entries: dict[str, Any] = data if isinstance(data, dict) else {}
            yield entries
            fd2, tmp = tempfile.mkstemp(prefix=".ledger-", dir=root)
            with os.fdopen(fd2, "w") as f:
                json.dump(entries, f)
            os.replace(tmp, path)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def spent(self, budget: Budget, now: datetime) -> int:
        """Units of ``budget`` spent in the window containing ``now``."""
        with self._locked(budget) as entries:
            return sum(units for _, units in _in_window(entries, budget, now))

    def peek(self, budget: Budget, now: datetime) -> int | None:
        """``spent`` without a lock or a write, for readers (``smm accounts list``); None when
        the ledger cannot be read (another user's state directory)."""
        try:
            data = json.loads(self._path(budget).read_bytes())
        except FileNotFoundError:
            return 0
        except (OSError, ValueError):
            return None
        entries = data if isinstance(data, dict) else {}
        return sum(units for _, units in _in_window(entries, budget, now))

    def spend(self, budget: Budget, units: int, now: datetime) -> datetime | None:
        """Record ``units`` spent now if they fit: None. When they do not, nothing is
        recorded and the answer is when the window frees enough of them."""
        period = budget.period
        with self._locked(budget) as entries:
            spending = _in_window(entries, budget, now)
            used = sum(u for _, u in spending)
            if used + units > budget.limit:
                if not isinstance(period, timedelta):
                    return window(budget, now)[1]
                # The earliest moment enough of the window's spending has aged out.
                excess = used + units - budget.limit
                for when, cost in sorted(spending):
                    excess -= cost
                    if excess <= 0:
                        return when + period
                return now + period
            horizon = now - timedelta(days=40)
            stale = [s for s in entries if (at := _parse(s)) is None or at < horizon]
            for stamp in stale:
                del entries[stamp]
            stamp = now.isoformat()
            entries[stamp] = int(entries.get(stamp, 0)) + units
            return None


def _parse(stamp: str) -> datetime | None:
    try:
        return datetime.fromisoformat(stamp)
    except ValueError:
        return None


def _in_window(
    entries: Mapping[str, Any], budget: Budget, now: datetime
) -> list[tuple[datetime, int]]:
    """(when, units) of the spending in the window of ``budget`` that holds ``now``."""
    start, end = window(budget, now)
    rolling = isinstance(budget.period, timedelta)
    out = []
    for stamp, units in entries.items():
        when = _parse(stamp)
        if when is None or not isinstance(units, int):
            continue
        if (start < when <= now) if rolling else (start <= when < end):
            out.append((when, units))
    return out
