"""Queue slots for the new posts of a streamed import, handed out one post at a time.

``plan_queue_slots`` wants every new row of an account at once; an import that streams its
plan knows, before it writes anything, only what its first pass kept: the minutes the new
fixed-time posts take (compactly, as integers) and which accounts get new queue posts. The
new queue posts then arrive in plan order, and each takes the next free slot here, merged
with the account's stored waiting posts exactly as ``plan_queue_slots`` orders them (by plan
order, a new post before a stored one of the same order).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from scheduler.config import AccountConfig
from scheduler.db.models import PostState, Schedule
from scheduler.queue import QueueEntry
from scheduler.slots import SlotPlan, iter_plan, minute


def epoch_minute(instant: datetime) -> int:
    """``instant``'s minute as a number (what two posts in one minute share)."""
    return int(instant.timestamp()) // 60


class SlotPlanner:
    """The slots of one account's new queue posts, in plan order; ``updates`` collects the
    stored waiting posts that move (post id, new time), as ``plan_queue_slots`` returns them.

    ``held``: the account's ``holding_posts``; ``new_taken``: the epoch minutes
    (``epoch_minute``) of its new fixed-time posts, in any order; ``plan``: the weekly tables
    to follow instead of the config's slots (an account that learns its slots)."""

    def __init__(
        self,
        account: AccountConfig,
        held: Sequence[Any],
        now: datetime,
        new_taken: array[int],
        plan: SlotPlan | None = None,
    ) -> None:
        entries = [
            QueueEntry(r.id, r.plan_order, r.content_type, r.due_at)
            for r in held
            if r.schedule == Schedule.QUEUE
            and r.state == PostState.QUEUED
            and (r.due_at is None or r.due_at > now)
        ]
        moving = {e.id for e in entries}
        taken = {minute(r.due_at) for r in held if r.id not in moving and r.due_at is not None}
        # Stored ones in reverse plan order: the next to place is popped off the end.
        self._stored = sorted(entries, key=lambda e: (e.plan_order, e.id or 0), reverse=True)
        plan = plan if plan is not None else [(None, account.slots)]
        self._free = self._free_slots(plan, account, now, taken, array("q", sorted(new_taken)))
        self.updates: list[tuple[int, datetime | None]] = []

    @staticmethod
    def _free_slots(
        plan: SlotPlan,
        account: AccountConfig,
        now: datetime,
        taken: set[datetime],
        new_taken: array[int],
    ) -> Iterator[datetime]:
        at = 0  # new_taken is sorted, and slots come in time order: one pass over it
        end = len(new_taken)
        for instant in iter_plan(plan, account.tz, now):
            if taken and minute(instant) in taken:
                continue
            if at < end:
                number = int(instant.timestamp()) // 60  # epoch_minute
                while at < end and new_taken[at] < number:
                    at += 1
                if at < end and new_taken[at] == number:
                    continue
            yield instant

    def _place_stored(self, entry: QueueEntry) -> None:
        t = next(self._free, None)
        if entry.due_at != t:
            assert entry.id is not None
            self.updates.append((entry.id, t))

    def next(self, plan_order: int) -> datetime | None:
        """The slot of the next new queue post (None: the account has no free slot)."""
        stored = self._stored
        while stored and stored[-1].plan_order < plan_order:
            self._place_stored(stored.pop())
        return next(self._free, None)

    def finish(self) -> list[tuple[int, datetime | None]]:
        """Place the stored posts after the last new one; the moves of stored posts."""
        while self._stored:
            self._place_stored(self._stored.pop())
        return self.updates
