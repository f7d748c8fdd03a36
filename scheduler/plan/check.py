"""Validating a plan as a stream, without writing anything: what ``smm plan validate`` runs.

The plan is read as ``import_plan`` reads it (``PlanFiles``, never held whole): a first pass
keeps a 64-bit hash of each id (duplicates, compared as written when hashes repeat), then the
items are validated a chunk at a time, each chunk's ids looked up among the stored posts
already out of the queue (their times may be in the past). Problems are counted and the
first ``KEPT_PROBLEMS`` kept, in plan order, as an import keeps them. What is kept besides:
the accounts the valid posts use, and for fixed-time posts of networks with quotas, the
time and cost each budget warning needs (``budgets.PlanBudgets``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from scheduler.budgets import PlanBudgets
from scheduler.config import Config
from scheduler.errors import Problem
from scheduler.plan import pipeline, validating
from scheduler.plan.groups import plan_ids
from scheduler.plan.items import RawItem
from scheduler.plan.validate import NetworkCheck, validate_raw

#: Looks up which of a chunk's ids are stored posts already out of the queue.
SettledLookup = Callable[[Sequence[str]], Collection[str]]


@dataclass
class PlanCheck:
    """What validating a plan found."""

    #: Valid posts, and how many of them have a fixed time.
    posts: int = 0
    fixed: int = 0
    #: The first ``pipeline.KEPT_PROBLEMS`` problems, in plan order, and how many there are.
    problems: list[Problem] = field(default_factory=list)
    problem_count: int = 0
    #: The accounts the valid posts use.
    accounts: set[str] = field(default_factory=set)
    warnings: list[dict[str, Any]] = field(default_factory=list)

    def add(self, found: Iterable[Problem]) -> None:
        for problem in found:
            self.problem_count += 1
            if len(self.problems) < pipeline.KEPT_PROBLEMS:
                self.problems.append(problem)


def check_plan(
    plan: Iterable[RawItem],
    config: Config,
    now: datetime,
    *,
    network_check: NetworkCheck | None = None,
    settled: SettledLookup | None = None,
) -> PlanCheck:
    """Validate every item of ``plan`` (read again on each pass: a list, or ``PlanFiles``,
    whose reading problems come first); ``settled`` tells which ids of a chunk are posts
    already out of the queue (None: none are). Holds one chunk of items at a time."""
    ids = {name: number for number, name in enumerate(config.accounts)}
    scan = pipeline._scan(None, plan, config, ids, False, ())
    read_problems = list(getattr(plan, "problems", ()))
    voided = set(getattr(plan, "voided", ()))
    duplicated, duplicates = pipeline._duplicates(plan, scan) if scan.duplicates else ([], 0)
    checker = _Chunks(config, now, network_check, settled, duplicated)
    chunk: list[RawItem] = []
    for raw in plan:
        chunk.append(raw)
        if len(chunk) == validating.CHUNK:
            checker.check(chunk)
            chunk = []
    checker.check(chunk)
    result = checker.result
    changed = list(getattr(plan, "changed", lambda: [])())
    found = result.problems
    if voided:  # items of a file that could not be read count for nothing
        found = [p for p in found if p.file not in voided]
    result.problems = (read_problems + changed + found)[: pipeline.KEPT_PROBLEMS]
    # Duplicates past the ones listed are counted, not named.
    result.problem_count += len(read_problems) + len(changed) + duplicates - len(duplicated)
    result.warnings = checker.budgets.warnings()
    return result


class _Chunks:
    """Validates the plan a chunk at a time, in plan order, into a ``PlanCheck``."""

    def __init__(
        self,
        config: Config,
        now: datetime,
        network_check: NetworkCheck | None,
        settled: SettledLookup | None,
        duplicated: Iterable[tuple[int, int, Problem]],
    ) -> None:
        self.config = config
        self.now = now
        self.network_check = network_check
        self.settled = settled
        #: The duplicate-id problems listed, by item index.
        self.duplicated = {index: problem for index, _, problem in duplicated}
        self.result = PlanCheck()
        self.budgets = PlanBudgets(config)
        self.start = 0

    def check(self, raws: Sequence[RawItem]) -> None:
        done: Collection[str] = ()
        if self.settled is not None and raws:
            done = self.settled(plan_ids(raws))
        result = self.result
        for index, raw in enumerate(raws, self.start):
            own: list[Problem] = []
            network: list[Problem] = []
            items = validate_raw(
                raw,
                self.config,
                self.now,
                own,
                network,
                network_check=self.network_check,
                settled=done,
                duplicate=self.duplicated.get(index),
            )
            result.add(own)
            result.add(network)
            for item in items:
                result.posts += 1
                result.accounts.add(item.account)
                if item.at is not None:
                    result.fixed += 1
                    self.budgets.add(item)
        self.start += len(raws)
