"""``smm queue list`` reads pages by key: every post once, in due order, whatever the page size."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from sqlalchemy import Engine, select, update

from scheduler.cli import cli
from scheduler.queue import PageCursor, page_posts, posts_t

CONFIG = """
[accounts.riga]
platform = "sim"
timezone = "Europe/Riga"
slots = { daily = ["09:00", "18:00"] }

[accounts.ny]
platform = "sim"
timezone = "America/New_York"
slots = { daily = ["10:00"] }
"""

STATES = ["queued", "retry_wait", "published", "cancelled", "paused", "failed"]
BASE = datetime(2030, 3, 1, tzinfo=UTC)


def _seed(engine: Engine, tmp_path: Path, db_url: str) -> list[tuple[Any, ...]]:
    """60 posts in every state, many sharing a time, a few without one; their expected order."""
    config = tmp_path / "config.toml"
    config.write_text(CONFIG, encoding="utf-8")
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "".join(
            f"- {{id: p{i:02d}, account: {'riga' if i % 3 else 'ny'}, type: t{i % 2}, "
            f'text: post {i}, at: "2030-03-{1 + i % 5:02d} 12:00"}}\n'
            for i in range(60)
        ),
        encoding="utf-8",
    )
    done = CliRunner().invoke(
        cli, ["--db", db_url, "--config", str(config), "plan", "import", str(plan)]
    )
    assert done.exit_code == 0, done.output
    with engine.begin() as conn:
        ids = conn.execute(select(posts_t.c.id).order_by(posts_t.c.id)).scalars().all()
        for n, post_id in enumerate(ids):
            due = BASE + timedelta(hours=n % 7)
            retry = due + timedelta(minutes=90 - n)  # a retry moves the post in the order
            state = STATES[n % len(STATES)]
            values: dict[str, Any] = {"state": state, "due_at": due, "next_attempt_at": due}
            if state == "retry_wait":
                values["next_attempt_at"] = retry
            if n % 11 == 0:  # no time at all
                values["due_at"] = values["next_attempt_at"] = None
            conn.execute(update(posts_t).where(posts_t.c.id == post_id).values(**values))
        rows = conn.execute(
            select(posts_t.c.id, posts_t.c.state, posts_t.c.due_at, posts_t.c.next_attempt_at)
        ).all()
    expected = []
    for r in rows:
        at = r.next_attempt_at if r.state in ("queued", "retry_wait") else r.due_at
        expected.append((at is None, at or BASE, r.id))
    return sorted(expected)


def test_pages_cover_every_post_once_in_due_order(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    expected = [post_id for _, _, post_id in _seed(engine, tmp_path, db_url)]
    for size in (1, 7, 60, 500):
        seen: list[int] = []
        cursor = None
        with engine.connect() as conn:
            while True:
                rows, cursor = page_posts(conn, after=cursor, limit=size)
                assert len(rows) <= size
                seen += [r.id for r in rows]
                if cursor is None:
                    break
                # The cursor survives its text form, as the CLI passes it on.
                cursor = PageCursor.decode(cursor.encode())
        assert seen == expected, size


def test_filters_and_range(engine: Engine, db_url: str, tmp_path: Path) -> None:
    _seed(engine, tmp_path, db_url)
    start, end = BASE + timedelta(hours=2), BASE + timedelta(hours=4)
    with engine.connect() as conn:
        rows, more = page_posts(
            conn, start=start, end=end, states=["published", "queued"], limit=1000
        )
        everything, _ = page_posts(conn, limit=1000)
        riga, _ = page_posts(conn, account="ny", content_type="T1", limit=1000)
    assert more is None
    want = [
        r.id
        for r in everything
        if r.listed_at is not None
        and start <= r.listed_at < end
        and r.state in ("published", "queued")
    ]
    assert [r.id for r in rows] == want
    assert want
    assert {r.account for r in riga} == {"ny"}
    assert {r.content_type for r in riga} == {"t1"}
    assert len(riga) == sum(1 for r in everything if r.account == "ny" and r.content_type == "t1")


def test_cli_pages_follow_the_printed_cursor(engine: Engine, db_url: str, tmp_path: Path) -> None:
    expected = [post_id for _, _, post_id in _seed(engine, tmp_path, db_url)]
    seen: list[int] = []
    args = ["--db", db_url, "queue", "list", "--json", "--limit", "25"]
    after: list[str] = []
    for _ in range(5):
        done = CliRunner().invoke(cli, [*args, *after])
        assert done.exit_code == 0, done.output
        seen += [p["db_id"] for p in json.loads(done.stdout)]
        if not done.stderr:
            break
        assert done.stderr.startswith("more posts: --after ")
        after = ["--after", done.stderr.split("--after ", 1)[1].strip()]
    assert seen == expected
    bad = CliRunner().invoke(cli, [*args, "--after", "yesterday"])
    assert bad.exit_code == 2
    assert "page cursor" in bad.output
    ranged = CliRunner().invoke(
        cli,
        ["--db", db_url, "queue", "list", "--json", "--from", "2030-03-01", "--to", "2030-03-01"],
    )
    assert ranged.exit_code == 0, ranged.output
    assert all(p["due_at"] for p in json.loads(ranged.stdout))
    wrong = CliRunner().invoke(cli, ["--db", db_url, "queue", "list", "--from", "soon"])
    assert wrong.exit_code == 2
    assert "--from" in wrong.output


def test_a_page_reads_through_the_indexes(engine: Engine, db_url: str) -> None:
    """SQLite's plan for each half of a page: a search of its partial index, no sort."""
    if not db_url.startswith("sqlite"):
        return
    from scheduler.queue import _HALVES, _page_query

    with engine.connect() as conn:
        for _, half_sql, column in _HALVES:
            at = posts_t.c[column]
            q = _page_query(at, half_sql, (), None, None).where(at.is_not(None), at > BASE)
            sql = str(
                q.order_by(at, posts_t.c.id)
                .limit(10)
                .compile(conn, compile_kwargs={"literal_binds": True})
            )
            plan = " ".join(str(r[-1]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))
            assert "USING INDEX ix_posts_" in plan or "USING COVERING INDEX ix_posts_" in plan, plan
            assert "TEMP B-TREE" not in plan, plan
