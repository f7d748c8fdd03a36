"""Evergreen recycling: best performers first, after a cooldown, with a cap on repeats."""

from __future__ import annotations

from datetime import time

import pytest
from er_support import DAY, HOUR, T0, Builder, posts_t
from sqlalchemy import Connection, Engine, select

from scheduler.config import AccountConfig
from scheduler.db.models import PostEvent, PostState, Schedule
from scheduler.er.recycle import recycle_evergreen, recycle_idempotency_key

events_t = PostEvent.__table__  # type: ignore[attr-defined]


@pytest.fixture
def conn(engine: Engine):  # type: ignore[no-untyped-def]
    with engine.begin() as c:
        yield c


def evergreen(
    b: Builder, acc: int, key: str, er: float | None, days_ago: int = 40, **kw: object
) -> int:
    post = b.post(
        acc, "instruction", key=key, evergreen=True, published_at=T0 - days_ago * DAY, **kw
    )
    if er is not None:
        b.snapshot(post, 73 * HOUR, likes=round(er * 1000), comments=0, shares=0, reach=1000)
    return post


def queued(conn: Connection, acc: int) -> list[object]:
    return list(
        conn.execute(
            select(posts_t)
            .where(posts_t.c.account_id == acc, posts_t.c.state == PostState.QUEUED)
            .order_by(posts_t.c.plan_order)
        ).all()
    )


def test_the_best_performers_are_recycled_first(conn: Connection) -> None:
    b = Builder(conn)
    acc = b.account()
    evergreen(b, acc, "low", 0.01)
    best = evergreen(b, acc, "best", 0.03)
    evergreen(b, acc, "mid", 0.02)
    made = recycle_evergreen(conn, acc, T0, min_queue=2)
    assert [(m.key, m.repeat, m.er) for m in made] == [
        ("best~r1", 1, pytest.approx(0.03)),
        ("mid~r1", 1, pytest.approx(0.02)),
    ]
    first = queued(conn, acc)[0]
    assert first.key == "best~r1"
    assert first.recycled_from_id == best
    assert first.repeat_count == 1
    assert first.schedule == Schedule.QUEUE
    assert first.evergreen
    assert first.plan_file is None
    original_key = conn.execute(
        select(posts_t.c.idempotency_key).where(posts_t.c.id == best)
    ).scalar_one()
    assert first.idempotency_key == recycle_idempotency_key(original_key, 1)
    assert first.idempotency_key != original_key
    reason = conn.execute(select(events_t.c.reason).where(events_t.c.post_id == first.id)).scalar()
    assert reason == "evergreen repeat 1 of best (ER 3.0%)"


def test_nothing_is_recycled_while_the_queue_is_long_enough(conn: Connection) -> None:
    b = Builder(conn)
    acc = b.account()
    evergreen(b, acc, "tip", 0.03)
    for _ in range(3):
        b.post(acc, "laugh", state=PostState.QUEUED)
    assert recycle_evergreen(conn, acc, T0, min_queue=3) == []


def test_a_post_inside_its_cooldown_waits(conn: Connection) -> None:
    b = Builder(conn)
    acc = b.account()
    evergreen(b, acc, "fresh", 0.05, days_ago=10)
    original = evergreen(b, acc, "old", 0.04, days_ago=90)
    # The old one's repeat went out 10 days ago: the family's cooldown counts from it.
    b.post(
        acc,
        "instruction",
        key="old~r1",
        evergreen=True,
        published_at=T0 - 10 * DAY,
        recycled_from_id=original,
        repeat_count=1,
    )
    evergreen(b, acc, "ready", 0.01, days_ago=31)
    made = recycle_evergreen(conn, acc, T0, min_queue=5)
    assert [m.key for m in made] == ["ready~r1"]


def test_repeats_stop_at_the_cap(conn: Connection) -> None:
    b = Builder(conn)
    acc = b.account()
    original = evergreen(b, acc, "tip", 0.03, days_ago=200)
    for n in (1, 2):
        b.post(
            acc,
            "instruction",
            key=f"tip~r{n}",
            evergreen=True,
            published_at=T0 - (200 - 60 * n) * DAY,
            recycled_from_id=original,
            repeat_count=n,
        )
    made = recycle_evergreen(conn, acc, T0, min_queue=5, max_repeats=3)
    assert [(m.key, m.repeat) for m in made] == [("tip~r3", 3)]
    later = T0 + 100 * DAY
    conn.execute(
        posts_t.update()
        .where(posts_t.c.key == "tip~r3")
        .values(state=PostState.PUBLISHED, published_at=T0 + DAY)
    )
    assert recycle_evergreen(conn, acc, later, min_queue=5, max_repeats=3) == []


def test_a_family_with_a_repeat_waiting_is_not_recycled_again(conn: Connection) -> None:
    b = Builder(conn)
    acc = b.account()
    evergreen(b, acc, "tip", 0.03)
    assert len(recycle_evergreen(conn, acc, T0, min_queue=5)) == 1
    assert recycle_evergreen(conn, acc, T0 + DAY, min_queue=5) == []


def test_only_evergreen_posts_are_recycled_and_unmeasured_ones_come_last(
    conn: Connection,
) -> None:
    b = Builder(conn)
    acc = b.account()
    b.post(acc, "laugh", key="plain", published_at=T0 - 40 * DAY)
    evergreen(b, acc, "unknown", None)
    evergreen(b, acc, "measured", 0.001)
    made = recycle_evergreen(conn, acc, T0, min_queue=5)
    assert [(m.key, m.er) for m in made] == [
        ("measured~r1", pytest.approx(0.001)),
        ("unknown~r1", None),
    ]


def test_with_the_accounts_config_the_repeats_get_slots(conn: Connection) -> None:
    b = Builder(conn)
    acc = b.account()
    evergreen(b, acc, "tip", 0.03)
    cfg = AccountConfig("acc", "sim", "UTC", slots={d: (time(9),) for d in range(7)})
    recycle_evergreen(conn, acc, T0, min_queue=1, account=cfg)
    (row,) = queued(conn, acc)
    assert row.due_at is not None
    assert row.due_at > T0


def test_a_repeat_of_one_post_of_a_several_account_item_keeps_the_items_group(
    conn: Connection,
) -> None:
    b = Builder(conn)
    acc = b.account()
    evergreen(b, acc, "tip@riga_x", 0.03, group_key="tip")
    evergreen(b, acc, "alone", 0.01)
    made = recycle_evergreen(conn, acc, T0, min_queue=2)
    groups = dict(
        conn.execute(
            select(posts_t.c.key, posts_t.c.group_key).where(
                posts_t.c.id.in_([m.post_id for m in made])
            )
        ).all()
    )
    assert groups == {"tip@riga_x~r1": "tip", "alone~r1": None}
