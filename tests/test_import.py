"""Plan import on SQLite and PostgreSQL: one transaction, reconciled by plan id."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, update

from scheduler.config import Config, parse_config
from scheduler.db.models import PostState
from scheduler.plan import pipeline, validating
from scheduler.plan.importer import ImportDiff, apply_plan
from scheduler.plan.read import read_plan_files
from scheduler.plan.validate import validate_items
from scheduler.queue import accounts_t, events_t, posts_t

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # a Monday

CONFIG = """
[accounts.riga]
platform = "testnet"
timezone = "Europe/Riga"
slots = { daily = ["09:00", "18:00"] }

[accounts.ny]
platform = "testnet"
timezone = "America/New_York"
slots = { weekdays = ["10:00"] }
"""


@pytest.fixture
def config() -> Config:
    return parse_config(CONFIG, "config.toml")


@pytest.fixture
def plan(tmp_path: Path):  # type: ignore[no-untyped-def]
    def write(text: str, name: str = "plan.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write


#: How the tests import: validate, then apply_plan; import_plan in one process; import_plan
#: with a forked process validating (chunks of two items, so both processes take some).
IMPORTERS = ("apply_plan", "import_plan", "import_plan_forked")

RunImport = Callable[..., ImportDiff]


@pytest.fixture(params=IMPORTERS)
def run_import(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> RunImport:
    """Import plan files the way the parameter says; each test runs once per importer."""
    importer = str(request.param)
    if importer == "import_plan_forked":
        monkeypatch.setattr(validating, "CHUNK", 2)

    def run(
        engine: Engine, config: Config, *paths: Path, now: datetime = NOW, **kw: Any
    ) -> ImportDiff:
        raws, problems = read_plan_files(paths)
        assert problems == []
        if importer == "apply_plan":
            items, bad = validate_items(raws, config, now)
            assert bad == []
            with engine.begin() as conn:
                return apply_plan(conn, items, config, now, **kw)
        forked = importer == "import_plan_forked"
        assert validating.can_fork() or not forked, "the forked importer would not fork here"
        with engine.begin() as conn:
            diff, bad = pipeline.import_plan(conn, raws, config, now, parallel=forked, **kw)
        assert bad == []
        return diff

    return run


def rows(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        return {r.key: r for r in conn.execute(select(posts_t).order_by(posts_t.c.id))}


PLAN = """
- {id: q1, account: riga, type: laugh, text: one}
- {id: q2, account: riga, type: medal, text: two}
- {id: f1, account: riga, type: laugh, text: fixed, at: "2026-03-03 18:00"}
- {id: q3, account: riga, type: instruction, text: three}
- {id: n1, account: ny, type: laugh, text: new york}
"""


def test_import_creates_queued_posts_with_utc_due_times(
    run_import: RunImport, engine: Engine, config: Config, plan
) -> None:  # type: ignore[no-untyped-def]
    diff = run_import(engine, config, plan(PLAN))
    assert diff.summary()["added"] == 5
    got = rows(engine)
    assert {r.state for r in got.values()} == {PostState.QUEUED}
    # Riga is UTC+2 in early March; slots 09:00 and 18:00 local -> 07:00 and 16:00 UTC.
    assert got["q1"].due_at == datetime(2026, 3, 2, 16, 0, tzinfo=UTC)  # today 18:00
    assert got["q2"].due_at == datetime(2026, 3, 3, 7, 0, tzinfo=UTC)  # tomorrow 09:00
    assert got["f1"].due_at == datetime(2026, 3, 3, 16, 0, tzinfo=UTC)
    # f1 holds tomorrow's 18:00 slot, so q3 takes the one after.
    assert got["q3"].due_at == datetime(2026, 3, 4, 7, 0, tzinfo=UTC)
    assert got["n1"].due_at == datetime(2026, 3, 2, 15, 0, tzinfo=UTC)  # 10:00 EST
    assert all(r.next_attempt_at == r.due_at for r in got.values())
    assert len({r.idempotency_key for r in got.values()}) == 5
    assert got["q1"].source.endswith("plan.yaml:2")


def test_importing_the_same_plan_twice_adds_and_updates_nothing(
    run_import: RunImport, engine: Engine, config: Config, plan
) -> None:  # type: ignore[no-untyped-def]
    path = plan(PLAN)
    run_import(engine, config, path)
    before = rows(engine)
    diff = run_import(engine, config, path, now=NOW + timedelta(minutes=5))
    assert diff.summary() == {
        "added": 0,
        "updated": 0,
        "requeued": 0,
        "unchanged": 5,
        "locked": 0,
        "gone": 0,
        "dropped": 0,
        "cancelled": 0,
    }
    after = rows(engine)
    assert {k: (r.due_at, r.idempotency_key, r.updated_at) for k, r in after.items()} == {
        k: (r.due_at, r.idempotency_key, r.updated_at) for k, r in before.items()
    }


def test_a_changed_waiting_post_is_updated_in_place(
    run_import: RunImport, engine: Engine, config: Config, plan
) -> None:  # type: ignore[no-untyped-def]
    run_import(engine, config, plan(PLAN))
    key_before = rows(engine)["q2"].idempotency_key
    diff = run_import(engine, config, plan(PLAN.replace("text: two", "text: two edited")))
    assert [i.key for i, _ in diff.updated] == ["q2"]
    q2 = rows(engine)["q2"]
    assert q2.text == "two edited"
    assert q2.idempotency_key == key_before  # the same post, not a new one


def test_published_posts_are_never_touched(
    run_import: RunImport, engine: Engine, config: Config, plan
) -> None:  # type: ignore[no-untyped-def]
    run_import(engine, config, plan(PLAN))
    with engine.begin() as conn:
        conn.execute(update(posts_t).where(posts_t.c.key == "q1").values(state=PostState.PUBLISHED))
    diff = run_import(engine, config, plan(PLAN.replace("text: one", "text: changed")))
    assert [i.key for i, _ in diff.locked] == ["q1"]
    assert rows(engine)["q1"].text == "one"


def test_a_changed_failed_post_is_queued_again(
    run_import: RunImport, engine: Engine, config: Config, plan
) -> None:  # type: ignore[no-untyped-def]
    run_import(engine, config, plan(PLAN))
    with engine.begin() as conn:
        conn.execute(
            update(posts_t)
            .where(posts_t.c.key == "q2")
            .values(state=PostState.FAILED, last_error="too long", attempt_count=3)
        )
    diff = run_import(engine, config, plan(PLAN.replace("text: two", "text: 2")))
    assert [i.key for i, _ in diff.requeued] == ["q2"]
    q2 = rows(engine)["q2"]
    assert (q2.state, q2.attempt_count, q2.last_error) == (PostState.QUEUED, 0, None)
    assert q2.due_at is not None
    assert q2.due_at > NOW
    with engine.connect() as conn:
        events = conn.execute(
            select(events_t.c.from_state, events_t.c.to_state, events_t.c.actor)
        ).all()
    assert [tuple(e) for e in events] == [("failed", "queued", "plan")]


def test_posts_gone_from_the_plan_are_reported_and_cancelled_only_with_prune(
    run_import: RunImport,
    engine: Engine,
    config: Config,
    plan,  # type: ignore[no-untyped-def]
) -> None:
    path = plan(PLAN)
    run_import(engine, config, path)
    shorter = "\n".join(line for line in PLAN.splitlines() if "q2" not in line)
    diff = run_import(engine, config, plan(shorter))
    assert [g.key for g in diff.gone] == ["q2"]
    assert rows(engine)["q2"].state == PostState.QUEUED
    diff = run_import(engine, config, plan(shorter), prune=True)
    got = rows(engine)
    assert got["q2"].state == PostState.CANCELLED
    # The freed slot goes to the next post in the queue.
    assert got["q3"].due_at == datetime(2026, 3, 3, 7, 0, tzinfo=UTC)


def test_posts_of_other_plan_files_are_not_gone(
    run_import: RunImport, engine: Engine, config: Config, plan
) -> None:  # type: ignore[no-untyped-def]
    run_import(engine, config, plan(PLAN, "a.yaml"))
    diff = run_import(engine, config, plan("- {id: b1, account: ny, type: t, text: b}\n", "b.yaml"))
    assert diff.gone == []


def test_a_reimport_that_reads_every_stored_post_finds_only_its_own_files_gone(
    run_import: RunImport,
    engine: Engine,
    config: Config,
    plan,  # type: ignore[no-untyped-def]
) -> None:
    """Most stored posts are named by the plan: they are all read at once, and the posts
    gone from the plan are picked out of them, not queried for."""
    run_import(engine, config, plan(PLAN, "a.yaml"))
    run_import(engine, config, plan("- {id: b1, account: ny, type: t, text: b}\n", "b.yaml"))
    shorter = "\n".join(line for line in PLAN.splitlines() if "q2" not in line)
    diff = run_import(engine, config, plan(shorter, "a.yaml"))
    assert [g.key for g in diff.gone] == ["q2"]
    assert diff.summary()["unchanged"] == 4


@pytest.mark.parametrize("chunk", [1, 3])
def test_stored_posts_read_in_chunks_give_what_one_read_gives(
    chunk: int,
    run_import: RunImport,
    engine: Engine,
    config: Config,
    plan,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A re-import reads the stored posts a chunk at a time: the same diff, the same rows."""
    from scheduler.plan import importer

    shorter = "\n".join(line for line in PLAN.splitlines() if "q2" not in line)
    edited = shorter.replace("text: one", "text: one edited")
    outcomes = []
    for size in (importer.READ_CHUNK, chunk):
        monkeypatch.setattr(importer, "READ_CHUNK", size)
        with engine.begin() as conn:
            conn.execute(posts_t.delete())
        run_import(engine, config, plan(PLAN, "a.yaml"))
        run_import(engine, config, plan("- {id: b1, account: ny, type: t, text: b}\n", "b.yaml"))
        diff = run_import(engine, config, plan(edited, "a.yaml"))
        with engine.connect() as conn:
            rows = conn.execute(
                select(posts_t.c.key, posts_t.c.state, posts_t.c.text, posts_t.c.due_at).order_by(
                    posts_t.c.key
                )
            ).all()
        outcomes.append((sorted(g.key for g in diff.gone), diff.summary(), rows))
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0] == ["q2"]


def test_dry_run_reports_the_diff_and_writes_nothing(
    run_import: RunImport, engine: Engine, config: Config, plan
) -> None:  # type: ignore[no-untyped-def]
    run_import(engine, config, plan(PLAN))
    with engine.connect() as conn:
        before = conn.execute(select(posts_t).order_by(posts_t.c.id)).all()
    changed = (
        PLAN.replace("text: one", "text: changed") + "- {id: new, account: ny, type: t, text: n}\n"
    )
    diff = run_import(engine, config, plan(changed), dry_run=True)
    assert diff.summary()["added"] == 1
    assert diff.summary()["updated"] == 1
    assert [p.key for p in diff.added] == ["new"]
    with engine.connect() as conn:
        assert conn.execute(select(posts_t).order_by(posts_t.c.id)).all() == before


def test_queue_order_follows_the_plan(
    run_import: RunImport, engine: Engine, config: Config, plan
) -> None:  # type: ignore[no-untyped-def]
    text = "".join(f"- {{id: p{i}, account: riga, type: t, text: t{i}}}\n" for i in range(6))
    run_import(engine, config, plan(text))
    got = rows(engine)
    dues = [got[f"p{i}"].due_at for i in range(6)]
    assert dues == sorted(dues)
    assert len(set(dues)) == 6


def test_a_fixed_post_becoming_a_queue_post_takes_a_slot(
    run_import: RunImport, engine: Engine, config: Config, plan
) -> None:  # type: ignore[no-untyped-def]
    run_import(engine, config, plan(PLAN))
    run_import(engine, config, plan(PLAN.replace(', at: "2026-03-03 18:00"', "")))
    got = rows(engine)
    assert got["f1"].schedule == "queue"
    # f1 is third in plan order among riga's queue posts; q3 follows it.
    assert got["f1"].due_at == datetime(2026, 3, 3, 16, 0, tzinfo=UTC)
    assert got["q3"].due_at == datetime(2026, 3, 4, 7, 0, tzinfo=UTC)


def test_inserting_items_into_the_plan_keeps_the_queue_in_plan_order(
    run_import: RunImport,
    engine: Engine,
    config: Config,
    plan,  # type: ignore[no-untyped-def]
) -> None:
    def items(keys: str) -> str:
        return "".join(f"- {{id: {k}, account: riga, type: t, text: {k}}}\n" for k in keys)

    run_import(engine, config, plan(items("ABC")))
    diff = run_import(engine, config, plan(items("AXYBC")))
    assert diff.summary()["added"] == 2
    assert diff.summary()["updated"] == 0
    got = rows(engine)
    assert sorted("AXYBC", key=lambda k: got[k].due_at) == list("AXYBC")


def test_new_posts_of_a_paused_account_wait_paused(
    run_import: RunImport, engine: Engine, config: Config, plan
) -> None:  # type: ignore[no-untyped-def]
    run_import(engine, config, plan("- {id: a, account: riga, type: t, text: a}\n"))
    with engine.begin() as conn:
        conn.execute(update(accounts_t).where(accounts_t.c.name == "riga").values(paused=True))
    run_import(
        engine,
        config,
        plan(
            "- {id: a, account: riga, type: t, text: a}\n"
            "- {id: b, account: riga, type: t, text: b}\n"
        ),
    )
    assert rows(engine)["b"].state == PostState.PAUSED


def test_a_small_plan_finds_its_posts_among_many_stored_ones(
    run_import: RunImport, engine: Engine, config: Config, plan
) -> None:  # type: ignore[no-untyped-def]
    """Few keys against many stored posts: each key is looked up (not every post read)."""
    run_import(engine, config, plan(PLAN, "a.yaml"))
    diff = run_import(
        engine,
        config,
        plan("- {id: q2, account: riga, type: medal, text: two edited}\n", "a.yaml"),
    )
    assert diff.summary()["updated"] == 1
    assert diff.summary()["added"] == 0
    assert sorted(g.key for g in diff.gone) == ["f1", "n1", "q1", "q3"]


def test_every_field_is_stored_as_the_plan_gives_it(
    run_import: RunImport, engine: Engine, config: Config, plan
) -> None:  # type: ignore[no-untyped-def]
    text = (
        "- id: full\n"
        "  account: riga\n"
        "  type: Medal\n"
        "  text: 'Ünïcode 🚀, \"quotes\", tab\\tand a backslash \\\\ end'\n"
        "  media: [https://example.com/a.png, https://example.com/b.jpg]\n"
        "  link: https://example.com/x?a=1&b=2\n"
        "  tags: [smm, '#tips']\n"
        "  evergreen: yes\n"
        '  at: "2026-03-04 09:30"\n'
        "- {id: bare, account: ny, type: t, text: plain}\n"
    )
    run_import(engine, config, plan(text))
    got = rows(engine)
    full = got["full"]
    assert full.content_type == "medal"
    # YAML single quotes keep backslashes as written: the stored text has them too.
    assert full.text == 'Ünïcode 🚀, "quotes", tab\\tand a backslash \\\\ end'
    assert full.media == ["https://example.com/a.png", "https://example.com/b.jpg"]
    assert full.link == "https://example.com/x?a=1&b=2"
    assert full.tags == ["smm", "tips"]
    assert full.evergreen is True
    assert full.schedule == "fixed"
    assert full.due_at == datetime(2026, 3, 4, 7, 30, tzinfo=UTC)
    assert full.next_attempt_at == full.due_at
    assert full.state == PostState.QUEUED
    assert full.attempt_count == 0
    assert len(full.idempotency_key) == 32
    bare = got["bare"]
    assert (bare.media, bare.tags, bare.link, bare.evergreen) == ([], [], None, False)
    assert bare.schedule == "queue"
    assert bare.due_at is not None
    assert bare.idempotency_key != full.idempotency_key
