"""Queue order by priority: the mix follows the weights over a rolling window, plan order holds
within a type, fixed-time posts never move."""

from __future__ import annotations

from collections import Counter
from datetime import time, timedelta

import pytest
from er_support import DAY, HOUR, T0, Builder
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine, select

from scheduler.config import AccountConfig
from scheduler.db.models import ContentTypePriority, Schedule
from scheduler.er.allocate import normalised, priority_order, queue_order_for, recent_types
from scheduler.queue import QueueEntry, assign_queue_slots, plan_order, posts_t

priorities_t = ContentTypePriority.__table__  # type: ignore[attr-defined]


def entries(per_type: dict[str, int]) -> list[QueueEntry]:
    """Queue entries interleaved in plan order: a0 b0 c0 a1 b1 ..."""
    out = []
    order = 0
    for i in range(max(per_type.values())):
        for t, n in per_type.items():
            if i < n:
                out.append(QueueEntry(id=order + 1, plan_order=order, content_type=t, due_at=None))
                order += 1
    return out


def test_the_mix_follows_the_weights_over_a_hundred_slots() -> None:
    ordered = priority_order({"a": 0.5, "b": 0.3, "c": 0.2})(entries(dict.fromkeys("abc", 100)))
    counts = Counter(e.content_type for e in ordered[:100])
    assert abs(counts["a"] - 50) <= 2
    assert abs(counts["b"] - 30) <= 2
    assert abs(counts["c"] - 20) <= 2


def test_every_window_of_ten_slots_is_close_to_the_weights() -> None:
    ordered = priority_order({"a": 0.5, "b": 0.3, "c": 0.2})(entries(dict.fromkeys("abc", 100)))
    types = [e.content_type for e in ordered[:100]]
    for start in range(0, 90):
        window = Counter(types[start : start + 10])
        assert abs(window["a"] - 5) <= 1
        assert abs(window["b"] - 3) <= 1
        assert abs(window["c"] - 2) <= 1


def test_plan_order_holds_within_each_type() -> None:
    ordered = priority_order({"a": 0.7, "b": 0.3})(entries({"a": 20, "b": 20}))
    for t in "ab":
        orders = [e.plan_order for e in ordered if e.content_type == t]
        assert orders == sorted(orders)
    assert len(ordered) == 40


def test_recent_publications_count_toward_the_mix() -> None:
    order = priority_order({"a": 0.5, "b": 0.5}, history=["a"] * 6)
    ordered = order(entries({"a": 10, "b": 10}))
    assert [e.content_type for e in ordered[:6]] == ["b"] * 6


def test_a_type_without_a_weight_yet_gets_the_mean_share() -> None:
    assert normalised({"a": 0.6, "b": 0.4}, ["a", "b", "new"]) == pytest.approx(
        {"a": 0.4, "b": 0.8 / 3, "new": 1 / 3}
    )


def test_when_a_type_runs_out_the_others_fill_the_slots() -> None:
    ordered = priority_order({"a": 0.9, "b": 0.1})(entries({"a": 2, "b": 8}))
    assert len(ordered) == 10
    assert Counter(e.content_type for e in ordered) == {"a": 2, "b": 8}


@given(
    raw=st.lists(st.floats(0.05, 1.0), min_size=1, max_size=8),
    slots=st.integers(1, 200),
)
def test_counts_never_stray_a_whole_post_from_the_weights(raw: list[float], slots: int) -> None:
    weights = {f"t{i}": w / sum(raw) for i, w in enumerate(raw)}
    bound = 1 - 1 / (2 * (len(weights) - 1)) if len(weights) > 1 else 1.0
    ordered = priority_order(weights)(entries(dict.fromkeys(weights, slots)))
    counts: Counter[str] = Counter()
    for n, e in enumerate(ordered[:slots], start=1):
        counts[e.content_type] += 1
        assert all(abs(counts[t] - w * n) <= bound + 1e-9 for t, w in weights.items())


# ============================================================================ with the database


def test_without_stored_weights_the_queue_keeps_the_plans_order(engine: Engine) -> None:
    with engine.begin() as conn:
        acc = Builder(conn).account()
        assert queue_order_for(conn, acc) is plan_order


def test_recent_types_are_read_oldest_first(engine: Engine) -> None:
    with engine.begin() as conn:
        b = Builder(conn)
        acc = b.account()
        for i, t in enumerate("abcab"):
            b.post(acc, t, published_at=T0 - (10 - i) * HOUR)
        b.post(acc, "q", state="queued")
        assert recent_types(conn, acc, window=3) == ["c", "a", "b"]


def test_slots_go_by_priority_and_fixed_posts_never_move(engine: Engine) -> None:
    cfg = AccountConfig(
        name="acc", platform="sim", timezone="UTC", slots={d: (time(9), time(18)) for d in range(7)}
    )
    fixed_at = T0 + 2 * DAY
    with engine.begin() as conn:
        b = Builder(conn)
        acc = b.account()
        for i in range(6):
            b.post(acc, "laugh", state="queued", plan_order=i)
            b.post(acc, "medal", state="queued", plan_order=100 + i)
        fixed = b.post(
            acc, "medal", state="queued", schedule=Schedule.FIXED, due_at=fixed_at, plan_order=-1
        )
        conn.execute(
            priorities_t.insert(),
            [
                {"account_id": acc, "content_type": "laugh", "weight": 0.25, "updated_at": T0},
                {"account_id": acc, "content_type": "medal", "weight": 0.75, "updated_at": T0},
            ],
        )
        assign_queue_slots(conn, cfg, acc, T0, order=queue_order_for(conn, acc))
        rows = conn.execute(
            select(posts_t.c.id, posts_t.c.content_type, posts_t.c.due_at, posts_t.c.schedule)
            .where(posts_t.c.account_id == acc)
            .order_by(posts_t.c.due_at)
        ).all()
    assert next(r.due_at for r in rows if r.id == fixed) == fixed_at
    queue = [r.content_type for r in rows if r.schedule == Schedule.QUEUE]
    assert Counter(queue[:4]) == Counter(queue[4:8]) == {"medal": 3, "laugh": 1}
    assert all(r.due_at > T0 for r in rows)
    assert len({r.due_at for r in rows}) == len(rows)  # the fixed post keeps its slot alone
    assert timedelta(0) < rows[0].due_at - T0 < DAY
