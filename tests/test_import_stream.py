"""A plan imported as a stream: what only streaming can get wrong.

The plan is read several times (a first pass, then validation, in one or two processes); a
time in the past is judged against the stored post only once it is looked up; queue slots are
handed out one post at a time; problems are kept up to a bound and counted.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, update

from scheduler.config import Config, parse_config
from scheduler.db.models import PostState
from scheduler.errors import Problem
from scheduler.plan import importer, pipeline, validating
from scheduler.plan.importer import ImportDiff
from scheduler.plan.read import PlanFiles
from scheduler.plan.slotplan import SlotPlanner, epoch_minute
from scheduler.queue import holding_posts, plan_queue_slots, posts_t

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)

CONFIG = """
[accounts.riga]
platform = "sim"
timezone = "Europe/Riga"
slots = { daily = ["09:00", "13:00", "18:00"] }

[accounts.ny]
platform = "sim"
timezone = "America/New_York"
slots = { weekdays = ["10:00", "15:30"] }
"""


@pytest.fixture
def config() -> Config:
    return parse_config(CONFIG, "config.toml")


@pytest.fixture(params=[False, True], ids=["one-process", "forked"])
def parallel(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    monkeypatch.setattr(validating, "CHUNK", 3)
    return bool(request.param)


def csv_plan(path: Path, rows: Sequence[str]) -> Path:
    path.write_text("id,account,type,text,at\n" + "".join(r + "\n" for r in rows), "utf-8")
    return path


def run(
    engine: Engine, config: Config, plan: Any, parallel: bool, now: datetime = NOW, **kw: Any
) -> tuple[ImportDiff, list[Problem]]:
    with engine.connect() as conn, conn.begin() as tx:
        diff, problems = pipeline.import_plan(conn, plan, config, now, parallel=parallel, **kw)
        if problems:
            tx.rollback()
    return diff, problems


def keys(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(select(posts_t.c.key).order_by(posts_t.c.id)).scalars())


def test_plan_files_are_read_again_on_each_pass(tmp_path: Path) -> None:
    plan = PlanFiles([csv_plan(tmp_path / "a.csv", ["a1,riga,t,x,", "a2,riga,t,y,"])])
    first = [(r.values["id"], r.order) for r in plan]
    assert first == [("a1", 0), ("a2", 1)]
    assert [(r.values["id"], r.order) for r in plan] == first
    assert plan.problems == []
    assert plan.changed() == []


def test_a_plan_file_that_changes_between_passes_is_refused(
    engine: Engine, config: Config, tmp_path: Path, parallel: bool
) -> None:
    path = csv_plan(tmp_path / "a.csv", [f"a{i},riga,t,x{i}," for i in range(10)])
    plan = PlanFiles([path])
    real_scan = pipeline._scan

    def scan_then_edit(*args: Any) -> Any:
        found = real_scan(*args)
        csv_plan(path, [f"b{i},riga,t,x{i}," for i in range(12)])  # after the first pass
        return found

    pipeline._scan = scan_then_edit  # type: ignore[assignment]
    try:
        # Which process sees the change first depends on timing: either way it is refused.
        _, problems = run(engine, config, plan, parallel)
        said = [p.message for p in problems]
    except pipeline.ValidationProcessError as exc:
        said = [str(exc)]
    finally:
        pipeline._scan = real_scan  # type: ignore[assignment]
    assert any("changed while it was being imported" in m for m in said), said
    assert keys(engine) == []


def test_a_past_time_is_accepted_only_for_a_post_already_out_of_the_queue(
    engine: Engine, config: Config, tmp_path: Path, parallel: bool
) -> None:
    rows = [f"p{i},riga,t,text {i},2026-03-10 10:00" for i in range(7)]
    path = csv_plan(tmp_path / "plan.csv", rows)
    assert run(engine, config, PlanFiles([path]), parallel)[1] == []
    with engine.begin() as conn:  # p2 went out; the others still wait
        conn.execute(update(posts_t).where(posts_t.c.key == "p2").values(state=PostState.PUBLISHED))
    later = NOW + timedelta(days=30)
    # A month later the same plan holds one past time for a published post: no problem.
    _diff, problems = run(engine, config, PlanFiles([path]), parallel, later, network_check=None)
    past = [p for p in problems if "in the past" in p.message]
    # The posts still waiting were never sent: their times in the past are errors...
    assert sorted(p.item or "" for p in past) == [f"p{i}" for i in range(7) if i != 2]
    # ...but the published one is not, and an item with a past time and another problem
    # lists both, as validation does in one process.
    rows[2] = "p2,riga,t,text 2 changed,2026-03-10 10:00"
    rows[3] = "p3,,t,text 3,2026-03-10 10:00"
    _, problems = run(engine, config, PlanFiles([csv_plan(path, rows)]), parallel, later)
    assert not [p for p in problems if p.item == "p2"]
    assert [p.field for p in problems if p.item == "p3"] == ["account"]


def test_problems_are_kept_up_to_a_bound_and_counted(
    engine: Engine, config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parallel: bool
) -> None:
    monkeypatch.setattr(pipeline, "KEPT_PROBLEMS", 5)
    rows = [f"p{i},nowhere,t,x," for i in range(20)]
    rows.insert(1, "p0,riga,t,again,")
    diff, problems = run(engine, config, PlanFiles([csv_plan(tmp_path / "p.csv", rows)]), parallel)
    assert [p.line for p in problems] == [2, 3, 4, 5, 6]
    assert problems[1].message == "duplicate id 'p0'"
    assert diff.problem_count == 21
    assert keys(engine) == []


def _colliding(monkeypatch: pytest.MonkeyPatch, *ids: str) -> None:
    """Give ``ids`` the same 64-bit hash in the first pass (as two real ids could have)."""
    real = hash
    same = real(ids[0])
    monkeypatch.setattr(pipeline, "_id_hash", lambda key: same if key in ids else real(key))


def test_two_ids_that_share_a_hash_are_no_duplicate(
    engine: Engine, config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parallel: bool
) -> None:
    _colliding(monkeypatch, "p1", "p4", "p7")
    rows = [f"p{i},riga,t,text {i}," for i in range(9)]
    diff, problems = run(engine, config, PlanFiles([csv_plan(tmp_path / "p.csv", rows)]), parallel)
    assert problems == []
    assert diff.summary()["added"] == 9
    assert keys(engine) == [f"p{i}" for i in range(9)]


def test_a_real_duplicate_beside_a_shared_hash_is_the_only_one_reported(
    engine: Engine, config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parallel: bool
) -> None:
    _colliding(monkeypatch, "p1", "p4")
    rows = [f"p{i},riga,t,text {i}," for i in range(9)] + ["p4,riga,t,again,"]
    diff, problems = run(engine, config, PlanFiles([csv_plan(tmp_path / "p.csv", rows)]), parallel)
    assert [(p.line, p.message, p.hint) for p in problems] == [
        (11, "duplicate id 'p4'", "already used at " + str(tmp_path / "p.csv") + " row 6")
    ]
    assert diff.problem_count == 1
    assert keys(engine) == []


def test_ids_that_share_a_hash_are_compared_in_passes_of_a_bounded_size(
    engine: Engine, config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Four pairs of ids with a hash each: two hashes compared per pass, none a duplicate.
    monkeypatch.setattr(pipeline, "SUSPECTS_PER_PASS", 2)
    real = hash
    pairs = {f"p{i}": real(f"p{i % 4}") for i in range(8)}
    monkeypatch.setattr(pipeline, "_id_hash", lambda key: pairs.get(key, real(key)))
    rows = [f"p{i},riga,t,text {i}," for i in range(8)]
    diff, problems = run(engine, config, PlanFiles([csv_plan(tmp_path / "p.csv", rows)]), False)
    assert problems == []
    assert diff.summary()["added"] == 8


def test_a_re_import_keeps_the_first_changed_and_gone_posts_and_counts_them_all(
    engine: Engine, config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parallel: bool
) -> None:
    monkeypatch.setattr(importer, "KEPT_ENTRIES", 3)
    path = tmp_path / "p.csv"
    rows = [f"p{i},riga,t,text {i}," for i in range(20)]
    assert run(engine, config, PlanFiles([csv_plan(path, rows)]), parallel)[1] == []
    # Ten posts change, eight leave the plan (pruned: read and cancelled page by page).
    rows = [f"p{i},riga,t,new text {i}," for i in range(10)] + rows[10:12]
    diff, problems = run(engine, config, PlanFiles([csv_plan(path, rows)]), parallel, prune=True)
    assert problems == []
    summary = diff.summary()
    assert (summary["updated"], summary["unchanged"], summary["gone"]) == (10, 2, 8)
    assert summary["cancelled"] == 8
    assert [p.key for p, _ in diff.updated] == ["p0", "p1", "p2"]
    assert [g.key for g in diff.gone] == ["p12", "p13", "p14"]
    with engine.connect() as conn:
        states = dict(conn.execute(select(posts_t.c.key, posts_t.c.state)).all())
    assert sorted(k for k, v in states.items() if v == PostState.CANCELLED) == sorted(
        f"p{i}" for i in range(12, 20)
    )


def test_a_byte_that_is_not_utf8_deep_in_a_csv_voids_the_rows_read_before_it(
    engine: Engine, config: Config, tmp_path: Path, parallel: bool
) -> None:
    path = tmp_path / "plan.csv"
    good = "".join(f"p{i},nowhere,t,x,\n" for i in range(5000))
    path.write_bytes(b"id,account,type,text,at\n" + good.encode() + b"p,riga,t,\xff,\n")
    _, problems = run(engine, config, PlanFiles([path]), parallel)
    # Only the encoding, at its line: the rows before it are not reported as unknown accounts.
    assert [(p.line, p.message) for p in problems] == [(5002, "not UTF-8 text")]


def test_slots_handed_out_one_post_at_a_time_match_planning_them_all_at_once(
    engine: Engine, config: Config, tmp_path: Path
) -> None:
    rng = random.Random(7)
    rows = []
    for i in range(60):
        at = ""
        if rng.random() < 0.4:
            at = (NOW + timedelta(hours=rng.randrange(1, 400))).strftime("%Y-%m-%d %H:00")
        rows.append(f"s{i:02d},riga,t,x{i},{at}")
    assert run(engine, config, PlanFiles([csv_plan(tmp_path / "a.csv", rows)]), False)[1] == []
    account = config.accounts["riga"]
    with engine.connect() as conn:
        held = holding_posts(conn, [1])[1]
    new_fixed = [NOW + timedelta(hours=h, minutes=30) for h in range(5, 60, 7)]
    new_rows = [
        {"schedule": "queue", "plan_order": order, "content_type": "t", "due_at": None}
        for order in (3, 10, 10, 31, 45, 70, 71)
    ]
    expected_moves = plan_queue_slots(account, held, NOW, new_rows=new_rows, new_taken=new_fixed)
    from array import array

    planner = SlotPlanner(account, held, NOW, array("q", map(epoch_minute, new_fixed)))
    got = [planner.next(row["plan_order"]) for row in new_rows]
    assert got == [row["due_at"] for row in new_rows]
    assert sorted(planner.finish()) == sorted(expected_moves)
    assert expected_moves  # the new posts did move stored ones


@pytest.mark.parametrize(
    "text",
    [
        "- {id: a, account: riga, type: t, text: &t one}\n"
        "- {id: b, account: riga, type: t, text: *t}\n",
        "defaults: {account: riga, base: &b {type: t}}\nposts:\n  - {id: a, <<: *b, text: x}\n",
        # defaults after posts, and an anchor at the top: read whole, the same items
        "posts:\n  - {id: a, text: x}\ndefaults: {account: riga, type: t}\n",
        "&top\nposts:\n  - {id: a, account: riga, type: t, text: x}\n",
        "posts:\n  - {id: a, account: riga, type: t, text: x}\nposts: []\nextra: 1\n",
        "- {id: a, account: riga, type: t, text: x}\n- just text\n- [1, 2]\n",
    ],
)
def test_a_yaml_plan_read_item_by_item_gives_what_reading_it_whole_gives(
    tmp_path: Path, text: str
) -> None:
    from scheduler.plan.read import read_plan_file, read_yaml

    path = tmp_path / "plan.yaml"
    path.write_text(text, encoding="utf-8")
    streamed, problems = read_plan_file(path)
    whole, expected = read_yaml(text, str(path))
    assert [(r.line, r.values, r.field_lines) for r in streamed] == [
        (r.line, r.values, r.field_lines) for r in whole
    ]
    assert sorted(problems) == sorted(expected)


def test_a_yaml_error_after_some_items_voids_them_and_names_its_line(
    engine: Engine, config: Config, tmp_path: Path, parallel: bool
) -> None:
    items = "".join(f"- {{id: p{i}, account: nowhere, type: t, text: x}}\n" for i in range(50))
    path = tmp_path / "plan.yaml"
    path.write_text(items + "- {id: bad, text: [unclosed\n", encoding="utf-8")
    _, problems = run(engine, config, PlanFiles([path]), parallel)
    assert len(problems) == 1, problems
    assert problems[0].message.startswith("not valid YAML")
    assert (problems[0].line or 0) >= 51


def test_a_plan_file_that_cannot_be_read_is_refused_before_any_database_is_made(
    tmp_path: Path,
) -> None:
    from plan_support import invoke

    config = tmp_path / "config.toml"
    config.write_text(CONFIG, encoding="utf-8")
    db = tmp_path / "smm.db"
    result = invoke(config, f"sqlite:///{db}", "plan", "import", str(tmp_path / "gone.csv"))
    assert result.exit_code == 1
    assert "cannot read the file" in result.output
    assert not db.exists()
