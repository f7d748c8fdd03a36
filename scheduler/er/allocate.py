"""Queue slots filled by priority: the content-type mix follows the weights, slot by slot.

``priority_order`` is a ``QueueOrder`` for ``scheduler.queue.assign_queue_slots``: it orders an
account's waiting queue posts so that, counting what was published lately, each next slot
goes to the content type that is owed a post and whose deadline comes first (Tijdeman's
chairman assignment), which keeps every type within one post of its share at every slot.
Within a type the plan's order holds. Fixed-time posts never take part
(``assign_queue_slots`` never moves them).
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Mapping, Sequence

from sqlalchemy import Connection, select

from scheduler.db.models import ContentTypePriority, Post, PostState
from scheduler.queue import QueueEntry, QueueOrder, plan_order

posts_t = Post.__table__  # type: ignore[attr-defined]
priorities_t = ContentTypePriority.__table__  # type: ignore[attr-defined]

#: How many recent publications the mix is balanced over (with a 10 % floor, two posts).
HISTORY_WINDOW = 20


def normalised(weights: Mapping[str, float], types: Sequence[str]) -> dict[str, float]:
    """Weights over ``weights`` and ``types`` summing to 1; a type without a weight yet (new in
    the plan since the last recompute) gets the mean weight, as the policy would start it."""
    known = {t: max(float(w), 0.0) for t, w in weights.items()}
    missing = [t for t in types if t not in known]
    fill = (sum(known.values()) / len(known)) if known else 1.0
    known.update(dict.fromkeys(missing, fill))
    total = sum(known.values())
    if total <= 0:
        return {t: 1 / len(known) for t in known} if known else {}
    return {t: w / total for t, w in known.items()}


def priority_order(weights: Mapping[str, float], history: Sequence[str] = ()) -> QueueOrder:
    """A queue order whose content-type mix follows ``weights``.

    ``history`` lists the content types of the account's recent publications, oldest first:
    they count as slots already filled, so the mix is right over the rolling window and not
    only within the posts still waiting.

    Slot by slot, this is Tijdeman's solution of the chairman assignment problem: among the
    types owed at least ``1 - C`` posts, the one whose deadline ``(posts + C) / weight``
    comes first takes the slot, with ``C = 1 - 1 / (2 (k - 1))`` for ``k`` types. While every
    type has posts waiting, each type's count stays within ``C`` (less than one post) of
    ``weight × slots`` at every slot. When no type is owed (a type ran out, or the history
    is lopsided) the largest deficit takes the slot. Ties go to the earlier plan position.
    """

    def order(entries: Sequence[QueueEntry]) -> Sequence[QueueEntry]:
        waiting: dict[str, deque[QueueEntry]] = {}
        for e in plan_order(entries):
            waiting.setdefault(e.content_type, deque()).append(e)
        share = normalised(weights, sorted(waiting))
        bound = 1 - 1 / (2 * (len(share) - 1)) if len(share) > 1 else 1.0
        counts = Counter(t for t in history if t in share)
        slots = len(history)
        out: list[QueueEntry] = []

        def head(t: str) -> tuple[int, int, str]:
            return (waiting[t][0].plan_order, waiting[t][0].id or 0, t)

        while waiting:
            slots += 1
            owed = [t for t in waiting if share[t] * slots - counts[t] >= 1 - bound - 1e-12]
            if owed:
                chosen = min(owed, key=lambda t: ((counts[t] + bound) / share[t], head(t)))
            else:
                chosen = min(waiting, key=lambda t: (counts[t] - share[t] * slots, head(t)))
            out.append(waiting[chosen].popleft())
            counts[chosen] += 1
            if not waiting[chosen]:
                del waiting[chosen]
        return out

    return order


def stored_weights(conn: Connection, account_id: int) -> dict[str, float]:
    """The account's current content-type weights (empty before the first recompute)."""
    rows = conn.execute(
        select(priorities_t.c.content_type, priorities_t.c.weight).where(
            priorities_t.c.account_id == account_id
        )
    )
    return {t: float(w) for t, w in rows}


def recent_types(conn: Connection, account_id: int, window: int = HISTORY_WINDOW) -> list[str]:
    """Content types of the account's last ``window`` publications, oldest first."""
    rows = conn.execute(
        select(posts_t.c.content_type)
        .where(posts_t.c.account_id == account_id, posts_t.c.state == PostState.PUBLISHED)
        .order_by(posts_t.c.published_at.desc(), posts_t.c.id.desc())
        .limit(window)
    ).all()
    return [r.content_type for r in reversed(rows)]


def queue_order_for(
    conn: Connection, account_id: int, *, window: int = HISTORY_WINDOW
) -> QueueOrder:
    """The queue order for ``account_id``: by its stored weights, else the plan's order."""
    weights = stored_weights(conn, account_id)
    if not weights:
        return plan_order
    return priority_order(weights, recent_types(conn, account_id, window))
