"""Plan validation: every problem found at once, each with file, line/row, field and a hint."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from scheduler.adapter import Issue
from scheduler.config import Config, parse_config
from scheduler.plan.items import PlanItem
from scheduler.plan.read import read_plan_file, read_plan_files
from scheduler.plan.validate import validate_items

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

CONFIG = """
[accounts.riga]
platform = "testnet"
timezone = "Europe/Riga"
slots = { daily = ["09:00"] }

[accounts.ny]
platform = "testnet"
timezone = "America/New_York"
slots = { daily = ["09:00"] }

[accounts.noslots]
platform = "testnet"
timezone = "UTC"
"""


@pytest.fixture
def config() -> Config:
    return parse_config(CONFIG, "config.toml")


def validate(tmp_path: Path, config: Config, name: str, text: str):  # type: ignore[no-untyped-def]
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    raws, problems = read_plan_file(path)
    assert problems == []
    return validate_items(raws, config, NOW)


def test_a_valid_item_becomes_a_plan_item_with_utc_time(tmp_path: Path, config: Config) -> None:
    items, problems = validate(
        tmp_path,
        config,
        "plan.yaml",
        "- id: a\n  account: riga\n  type: Instruction\n  text: hi\n  tags: '#one, two'\n"
        "  at: 2026-07-01 09:00\n  evergreen: yes\n",
    )
    assert problems == []
    (item,) = items
    assert isinstance(item, PlanItem)
    assert item.at == datetime(2026, 7, 1, 6, 0, tzinfo=UTC)  # Riga summer time is UTC+3
    assert item.content_type == "instruction"
    assert item.tags == ("one", "two")
    assert item.evergreen is True


def test_explicit_offset_overrides_the_account_zone(tmp_path: Path, config: Config) -> None:
    items, _ = validate(
        tmp_path,
        config,
        "plan.yaml",
        "- {id: a, account: riga, type: t, text: hi, at: '2026-07-01T09:00+00:00'}\n",
    )
    assert items[0].at == datetime(2026, 7, 1, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("field", "line", "needle"),
    [
        ("account", "account: rigga", "did you mean 'riga'"),
        ("at", "at: next tuesday", "YYYY-MM-DD HH:MM"),
        ("at", "at: 2020-01-01 09:00", "past"),
        ("at", "at: 2026-03-29 03:30", "does not exist"),  # Riga's spring-forward gap
        ("text", "text: '   '", "missing or empty"),
        ("link", "link: example.com", "https://"),
        (
            "link",
            "link: https://example.com/a b",
            "contains a space (hint: percent-encode it: %20)",
        ),
        ("link", "link: https://example.com/a\u00a0b", "U+00A0 (hint: percent-encode it: %C2%A0)"),
        ("media", "media: [missing.png]", "not found"),
        ("evergreen", "evergreen: maybe", "yes or no"),
        ("tpye", "tpye: laugh", "did you mean 'type'"),
    ],
)
def test_each_kind_of_bad_field_is_reported_with_line_and_hint(
    tmp_path: Path, config: Config, field: str, line: str, needle: str
) -> None:
    base = {"id": "x1", "account": "riga", "type": "laugh", "text": "hello"}
    key = line.split(":", 1)[0]
    base.pop(key, None)
    text = "- " + "\n  ".join([f"{k}: {v}" for k, v in base.items()] + [line]) + "\n"
    items, problems = validate(tmp_path, config, "plan.yaml", text)
    assert items == []
    (problem,) = problems
    assert problem.field == field
    assert problem.item == "x1"
    assert problem.line == len(base) + 1  # the offending field's own line
    assert needle in str(problem)


def test_a_link_with_a_space_is_refused_at_its_row_and_accepted_percent_encoded(
    tmp_path: Path, config: Config
) -> None:
    header = "id,account,type,text,link\n"
    items, problems = validate(
        tmp_path,
        config,
        "plan.csv",
        header
        + "a,riga,laugh,hi,https://example.com/a%20b\nb,riga,laugh,hi,https://example.com/a b\n",
    )
    assert [i.link for i in items] == ["https://example.com/a%20b"]
    (problem,) = problems
    assert (problem.file, problem.unit, problem.line) == (str(tmp_path / "plan.csv"), "row", 3)
    assert (problem.item, problem.field) == ("b", "link")


def test_a_bad_value_under_yaml_defaults_is_reported_at_its_line(
    tmp_path: Path, config: Config
) -> None:
    items, problems = validate(
        tmp_path,
        config,
        "plan.yaml",
        "defaults:\n  account: riga\n  evergreen: maybe\nposts:\n"
        "  - {id: a, type: laugh, text: hi}\n  - {id: b, type: laugh, text: hi, evergreen: no}\n",
    )
    assert [i.key for i in items] == ["b"]
    assert [(p.line, p.item, p.field) for p in problems] == [(3, "a", "evergreen")]


def test_missing_required_fields_are_each_reported(tmp_path: Path, config: Config) -> None:
    _, problems = validate(tmp_path, config, "plan.yaml", "- evergreen: no\n")
    assert {p.field for p in problems} == {"id", "account", "type", "text"}


def test_queue_item_for_an_account_without_slots_is_an_error(
    tmp_path: Path, config: Config
) -> None:
    _, problems = validate(
        tmp_path, config, "plan.yaml", "- {id: a, account: noslots, type: t, text: hi}\n"
    )
    assert problems[0].field == "at"
    assert "no posting slots" in problems[0].message


def test_errors_on_three_items_are_all_reported_with_their_rows(
    tmp_path: Path, config: Config
) -> None:
    csv_text = (
        "id,account,type,text,at\n"
        "ok-1,riga,laugh,fine,\n"
        "bad-1,nobody,laugh,hi,\n"
        "ok-2,ny,medal,fine,\n"
        "bad-2,ny,laugh,,\n"
        "bad-3,riga,laugh,hi,31/12/2026\n"
    )
    items, problems = validate(tmp_path, config, "plan.csv", csv_text)
    assert [i.key for i in items] == ["ok-1", "ok-2"]
    assert [(p.item, p.line, p.field, p.unit) for p in problems] == [
        ("bad-1", 3, "account", "row"),
        ("bad-2", 5, "text", "row"),
        ("bad-3", 6, "at", "row"),
    ]


def test_duplicate_ids_across_files_name_both_places(tmp_path: Path, config: Config) -> None:
    (tmp_path / "a.yaml").write_text("- {id: same, account: riga, type: t, text: one}\n")
    (tmp_path / "b.csv").write_text("id,account,type,text\nsame,riga,t,two\n")
    raws, _ = read_plan_files([tmp_path / "a.yaml", tmp_path / "b.csv"])
    items, problems = validate_items(raws, config, NOW)
    assert len(items) == 1
    (problem,) = problems
    assert problem.file.endswith("b.csv")
    assert problem.line == 2
    assert "a.yaml line 1" in problem.hint


def test_media_paths_resolve_relative_to_the_plan_file(tmp_path: Path, config: Config) -> None:
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "cat.png").write_bytes(b"\x89PNG")
    items, problems = validate(
        tmp_path,
        config,
        "plan.yaml",
        "- {id: a, account: riga, type: t, text: hi, media: [img/cat.png, 'https://x.org/a.jpg']}\n",
    )
    assert problems == []
    assert items[0].media == (str(tmp_path / "img" / "cat.png"), "https://x.org/a.jpg")


def test_notes_columns_are_ignored(tmp_path: Path, config: Config) -> None:
    items, problems = validate(
        tmp_path,
        config,
        "plan.csv",
        "id,account,type,text,notes,_owner\na,riga,t,hi,ask legal,anna\n",
    )
    assert problems == []
    assert len(items) == 1


def test_network_check_problems_point_at_the_item(tmp_path: Path, config: Config) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text("- id: long\n  account: riga\n  type: t\n  text: way too long\n")
    raws, _ = read_plan_file(path)

    def check(item, account):  # type: ignore[no-untyped-def]
        return [Issue("text", f"{len(item.text)} characters, over 5", "shorten it")]

    _items, problems = validate_items(raws, config, NOW, network_check=check)
    (problem,) = problems
    assert (problem.field, problem.line, problem.item) == ("text", 4, "long")
    assert "over 5" in problem.message


def test_fold_time_takes_the_first_occurrence(tmp_path: Path, config: Config) -> None:
    # 2026-11-01 01:30 happens twice in New York; the first is EDT (UTC-4).
    items, problems = validate(
        tmp_path,
        config,
        "plan.yaml",
        "- {id: a, account: ny, type: t, text: hi, at: '2026-11-01 01:30'}\n",
    )
    assert problems == []
    assert items[0].at == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)
