"""Reading plan files: YAML with line numbers, CSV with spreadsheet rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from scheduler.plan.read import read_plan_file, read_plan_files


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_yaml_items_remember_the_line_of_each_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "plan.yaml",
        "posts:\n"
        "  - id: a\n"
        "    account: acme\n"
        "    text: hello\n"
        "\n"
        "  - id: b\n"
        "    account: acme\n"
        "    at: 2030-01-01 09:00\n",
    )
    items, problems = read_plan_file(path)
    assert problems == []
    assert [i.line for i in items] == [2, 6]
    assert items[1].line_of("at") == 8
    assert items[0].unit == "line"


def test_yaml_keeps_times_as_text_for_the_account_zone_to_interpret(tmp_path: Path) -> None:
    path = write(tmp_path, "plan.yaml", "- id: a\n  at: 2030-01-01 09:00:00\n")
    items, _ = read_plan_file(path)
    assert items[0].values["at"] == "2030-01-01 09:00:00"


def test_yaml_defaults_apply_unless_an_item_overrides_them(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "plan.yaml",
        "defaults:\n  account: acme\n  type: laugh\n"
        "posts:\n  - id: a\n  - id: b\n    type: medal\n",
    )
    items, _ = read_plan_file(path)
    assert [(i.values["account"], i.values["type"]) for i in items] == [
        ("acme", "laugh"),
        ("acme", "medal"),
    ]


@pytest.mark.parametrize("defaults_last", [False, True], ids=["streamed", "read-whole"])
def test_a_typo_under_yaml_defaults_is_reported_once_at_its_own_line(
    tmp_path: Path, defaults_last: bool
) -> None:
    defaults = "defaults:\n  acount: acme\n  type: laugh\n"
    posts = "posts:\n  - id: a\n    text: hi\n  - id: b\n    text: hi\n"
    path = write(tmp_path, "plan.yaml", posts + defaults if defaults_last else defaults + posts)
    items, problems = read_plan_file(path)
    line = 7 if defaults_last else 2
    assert [(p.line, p.field, p.message, p.hint) for p in problems] == [
        (line, "defaults.acount", "unknown field 'acount'", "did you mean 'account'?")
    ]
    assert [sorted(i.values) for i in items] == [["id", "text", "type"]] * 2


def test_invalid_yaml_is_reported_with_its_line_and_a_hint(tmp_path: Path) -> None:
    path = write(tmp_path, "plan.yaml", "- id: a\n  text: Hot take: no\n")
    items, problems = read_plan_file(path)
    assert items == []
    assert problems[0].line == 2
    assert "quotes" in problems[0].hint


def test_unknown_top_level_key_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "plan.yaml", "post:\n  - id: a\n")
    _, problems = read_plan_file(path)
    assert any(p.field == "post" and p.line == 1 for p in problems)


def test_csv_rows_are_numbered_as_a_spreadsheet_shows_them(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "plan.csv",
        'id,account,text\na,acme,"two\nlines"\n,,\nb,acme,hi\n',
    )
    items, problems = read_plan_file(path)
    assert problems == []
    # Header is row 1; the multi-line cell is still one row; the blank row is skipped.
    assert [(i.values["id"], i.line) for i in items] == [("a", 2), ("b", 4)]
    assert items[0].unit == "row"


def test_csv_header_is_case_insensitive_and_semicolons_are_detected(tmp_path: Path) -> None:
    path = write(tmp_path, "plan.csv", "ID;Account;Text\na;acme;hello, world\n")
    items, problems = read_plan_file(path)
    assert problems == []
    assert items[0].values == {"id": "a", "account": "acme", "text": "hello, world"}


def test_csv_whose_first_line_declares_its_separator_uses_it_and_skips_the_line(
    tmp_path: Path,
) -> None:
    # Excel reads `sep=|` as the separator and hides the line: the header is row 1.
    path = write(
        tmp_path,
        "plan.csv",
        '\ufeffsep=|\r\nid|account|text\r\na|acme|"hello, world"\r\n\r\n'
        "b|acme|hi|extra\r\n".encode(),
    )
    items, problems = read_plan_file(path)
    assert [(i.values, i.line) for i in items] == [
        ({"id": "a", "account": "acme", "text": "hello, world"}, 2)
    ]
    assert [(p.line, p.unit, p.message) for p in problems] == [
        (4, "row", "4 cells but the header has 3 columns")
    ]


def test_a_declared_separator_padded_with_itself_is_read_and_lines_count_it(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, "plan.csv", 'SEP=;;;\nid;text\na;"two\nlines"\nb;"open\n')
    items, problems = read_plan_file(path)
    assert [(i.values["id"], i.line) for i in items] == [("a", 2)]
    (problem,) = problems
    assert (problem.line, problem.unit) == (3, "row")
    assert "begins in row 3, line 5 of the file" in problem.message


def test_csv_with_a_byte_order_mark_reads_the_first_column(tmp_path: Path) -> None:
    path = write(tmp_path, "plan.csv", "\ufeffid,account\na,acme\n".encode())
    items, _ = read_plan_file(path)
    assert items[0].values["id"] == "a"


def test_csv_row_with_extra_cells_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "plan.csv", "id,text\na,hello,world\n")
    items, problems = read_plan_file(path)
    assert items == []
    assert problems[0].line == 2
    assert problems[0].unit == "row"


def test_a_file_that_is_not_utf8_is_reported_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "plan.csv", b"id,text\na,ok\nb,caf\xe9\n")
    _, problems = read_plan_file(path)
    assert problems[0].line == 3
    assert "UTF-8" in problems[0].message


def test_a_bad_byte_deep_in_a_large_csv_is_reported_with_its_line_and_nothing_else(
    tmp_path: Path,
) -> None:
    # A CSV plan is decoded as it is read, so the error comes after thousands of good rows.
    rows = b"".join(b"p%d,acme,hello\n" % i for i in range(5000))
    path = write(tmp_path, "plan.csv", b"id,account,text\n" + rows + b"bad,acme,caf\xe9\n")
    items, problems = read_plan_file(path)
    assert items == []
    assert [(p.line, p.unit, p.message) for p in problems] == [(5002, "line", "not UTF-8 text")]


def test_a_directory_named_like_a_plan_cannot_be_read(tmp_path: Path) -> None:
    (tmp_path / "plan.csv").mkdir()
    items, problems = read_plan_file(tmp_path / "plan.csv")
    assert items == []
    assert problems[0].message.startswith("cannot read the file")


def test_unknown_extension_and_missing_file_are_reported(tmp_path: Path) -> None:
    _, p1 = read_plan_file(write(tmp_path, "plan.txt", "x"))
    _, p2 = read_plan_file(tmp_path / "missing.yaml")
    assert "format" in p1[0].message
    assert "cannot read" in p2[0].message


def test_items_are_numbered_in_plan_order_across_files(tmp_path: Path) -> None:
    a = write(tmp_path, "a.yaml", "- id: a1\n- id: a2\n")
    b = write(tmp_path, "b.csv", "id\nb1\n")
    items, _ = read_plan_files([a, b])
    assert [(i.values["id"], i.order) for i in items] == [("a1", 0), ("a2", 1), ("b1", 2)]


def test_yaml_plans_are_parsed_by_libyaml_when_pyyaml_has_it() -> None:
    """The C parser reads a large plan several times faster; its lines are the same, and
    every plain scalar stays the text it is written as."""
    import yaml

    from scheduler.plan import read, safeyaml

    if yaml.__with_libyaml__:
        assert issubclass(safeyaml.PlanLoader, yaml.CSafeLoader)
    items, problems = read.read_yaml(
        "- id: 010\n  at: 2026-01-01 10:00\n  evergreen: yes\n  n: 3\n", "plan.yaml"
    )
    assert problems == []
    assert items[0].values == {"id": "010", "at": "2026-01-01 10:00", "evergreen": "yes", "n": "3"}
    assert items[0].field_lines == {"id": 1, "at": 2, "evergreen": 3, "n": 4}


def test_csv_blank_rows_are_skipped_and_rows_without_an_id_are_kept(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "plan.csv",
        "id,account,text\n\n  ,\t, \n ,acme,no id here\na,acme,hi,,\nb,acme\n",
    )
    items, problems = read_plan_file(path)
    assert problems == []
    # Row 2 is empty and row 3 only whitespace: skipped, but counted. A row with a blank id
    # is an item (validation reports the missing id on its row); empty extra cells are fine,
    # and a short row simply lacks the last columns.
    assert [(i.line, i.values) for i in items] == [
        (4, {"id": " ", "account": "acme", "text": "no id here"}),
        (5, {"id": "a", "account": "acme", "text": "hi"}),
        (6, {"id": "b", "account": "acme"}),
    ]


def test_csv_that_cannot_be_parsed_names_the_row_and_keeps_what_came_before(
    tmp_path: Path,
) -> None:
    huge = "x" * 200_000  # over the csv module's field size limit
    path = write(tmp_path, "plan.csv", f'id,text\na,"two\nlines"\nb,"{huge}"\nc,hi\n')
    items, problems = read_plan_file(path)
    assert [i.values["id"] for i in items] == ["a"]
    assert len(problems) == 1
    assert (problems[0].line, problems[0].unit) == (3, "row")
    assert problems[0].message.startswith("not valid CSV: a cell of the record begun in row 3")
