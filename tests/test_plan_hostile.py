"""Plan files as hostile input: each way a plan once crashed, blew up or lost content.

Every test runs ``smm plan validate`` or ``smm plan import`` as a user would (click's
CliRunner, a real database) and asserts exit 1, a message that names the file and the
line or row, no traceback, and for imports an untouched database.
"""

from __future__ import annotations

import resource
import textwrap
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from plan_support import CONFIG, database_hash, invoke

from scheduler.db.engine import make_engine
from scheduler.errors import InvalidInput, Problem, excerpt
from scheduler.plan.read import read_plan_file

ITEM = "- {id: a1, account: riga, type: laugh, text: hello}\n"


@pytest.fixture
def smm(tmp_path: Path, sqlite_url: str):  # type: ignore[no-untyped-def]
    """``smm(*args, db=URL)``: the CLI with the test config; returns the click Result."""
    config = tmp_path / "config.toml"
    config.write_text(CONFIG + "\n[plan]\nmax_file_bytes = 1_000_000\n", encoding="utf-8")

    def run(*args: str, db: str = sqlite_url) -> Result:
        return invoke(config, db, *args)

    return run


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def refused(result: Result, path: Path, where: str, *words: str) -> None:
    """Exit 1, with a problem at ``where`` (e.g. "line 3") of ``path`` saying ``words``."""
    assert result.exit_code == 1, result.output
    located = [ln for ln in result.output.splitlines() if ln.startswith(f"  {path}, {where}")]
    assert located, result.output
    for word in words:
        assert any(word in ln for ln in located), (word, result.output)


# --------------------------------------------------------------------------- YAML: aliases

LAUGH = '["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]'


def bomb(levels: int) -> str:
    """Anchors of a billion laughs: level k repeats level k-1 nine times."""
    lines = [f"    l0: &l0 {LAUGH}"]
    for k in range(1, levels):
        lines.append(f"    l{k}: &l{k} [" + ", ".join([f"*l{k - 1}"] * 9) + "]")
    return "\n".join(lines)


@pytest.mark.parametrize("place", ["id", "account", "type", "evergreen", "key", "item"])
def test_an_alias_bomb_is_refused_at_once_wherever_it_is(smm, tmp_path: Path, place: str) -> None:  # type: ignore[no-untyped-def]
    item = {
        "id": "- {id: *l8, account: riga, type: laugh, text: hi}",
        "account": "- {id: a, account: *l8, type: laugh, text: hi}",
        "type": "- {id: a, account: riga, type: *l8, text: hi}",
        "evergreen": "- {id: a, account: riga, type: laugh, text: hi, evergreen: *l8}",
        "key": "- {id: a, account: riga, type: laugh, text: hi, *l8 : x}",
        "item": "- *l8",
    }[place]
    path = write(tmp_path, "plan.yaml", f"defaults:\n  _anchors:\n{bomb(9)}\nposts:\n  {item}\n")
    assert path.stat().st_size < 1000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = smm("plan", "validate", str(path))
    refused(result, path, "line", "aliases repeat more than 10,000 values")
    # The peak memory of the process grew by less than 50 MiB (unbounded, it is gigabytes).
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50 * 1024
    assert len(result.output) < 1000


def test_a_smaller_alias_bomb_gives_a_short_error(smm, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # Within the alias budget, but an id the size of a book: the message quotes 80 characters.
    path = write(
        tmp_path,
        "plan.yaml",
        f"defaults:\n  _anchors:\n{bomb(3)}\nposts:\n  - {{id: a, account: riga, type: *l2, "
        "text: hi}\n",
    )
    result = smm("plan", "validate", str(path))
    refused(result, path, "line 7", "type must be text, got a list")
    assert len(result.output) < 1000


def test_aliases_for_shared_fields_still_work(smm, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write(
        tmp_path,
        "plan.yaml",
        "base: &base {account: riga, type: laugh}\n"
        "posts:\n"
        "  - {<<: *base, id: a, text: one}\n"
        "  - {<<: *base, id: b, text: two, type: medal}\n",
    )
    result = smm("plan", "validate", str(path))
    # 'base' is not a plan key, but the merge worked: nothing else is reported.
    refused(result, path, "line 1", "unknown top-level key 'base'")
    assert result.output.count(str(path)) == 1
    path.write_text(
        "defaults: {_base: &base {account: riga, type: laugh}}\n"
        "posts:\n"
        "  - {<<: *base, id: a, text: one}\n"
        "  - {<<: *base, id: b, text: two, type: medal}\n",
        encoding="utf-8",
    )
    assert smm("plan", "validate", str(path)).exit_code == 0


# --------------------------------------------------------------------------- YAML: duplicates


def test_posts_written_twice_is_an_error_naming_both_lines(smm, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write(
        tmp_path,
        "plan.yaml",
        "posts:\n"
        "  - {id: a, account: riga, type: laugh, text: one}\n"
        "posts:\n"
        "  - {id: b, account: riga, type: laugh, text: two}\n",
    )
    refused(smm("plan", "validate", str(path)), path, "line 3", "lines 1 and 3", "'posts'")


@pytest.mark.parametrize(
    ("first", "second"), [("text", "Text"), ("id", "ID"), ("' id'", "id"), ("type", "TYPE ")]
)
def test_a_field_written_twice_in_other_case_or_spacing_is_an_error(
    smm, tmp_path: Path, first: str, second: str
) -> None:  # type: ignore[no-untyped-def]
    values = {"text": "one", "id": "a", "type": "laugh"}
    name = first.strip("' ").lower()
    lines = [f"{k}: {v}" for k, v in {"id": "a", "account": "riga", **values}.items() if k != name]
    lines += [f"{first}: {values[name]}", f"{second}: other"]
    path = write(tmp_path, "plan.yaml", "- " + "\n  ".join(lines) + "\n")
    n = len(lines)
    refused(smm("plan", "validate", str(path)), path, f"line {n}", f"lines {n - 1} and {n}")


# --------------------------------------------------------------------------- YAML: tags, types


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("[2030-01-01, '10:00']", "got a list"),
        ("{day: 2030-01-01}", "got a mapping"),
        ("!!set {a, b}", "'!!set' is not accepted"),
        ("!!binary aGVsbG8=", "'!!binary' is not accepted"),
        ("!!timestamp 2030-01-01 10:00", "'!!timestamp' is not accepted"),
        ("!!python/object/apply:os.system [true]", "is not accepted"),
        ("0001-01-01T00:30+05:00", "out of the range of dates"),
        ("9999-12-31T23:30-05:00", "out of the range of dates"),
        ("'" + "9" * 10_000 + "'", "cannot read '999"),
    ],
)
def test_a_time_that_is_not_a_time_is_a_located_error(
    smm, tmp_path: Path, value: str, words: str
) -> None:  # type: ignore[no-untyped-def]
    path = write(
        tmp_path,
        "plan.yaml",
        f"- id: a\n  account: riga\n  type: laugh\n  text: hi\n  at: {value}\n",
    )
    result = smm("plan", "validate", str(path))
    refused(result, path, "line 5", words)
    assert len(result.output) < 1000


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("!!float x", "'x' is not a float value"),
        ("!!int 0x1G", "is not a int value"),
        ("!!int " + "9" * 5000, "is not a int value"),
        ("!!bool maybe", "is not a bool value"),
        ("!!float 1.0e+999", "text must be text, got a number"),
        ("!!str &x [1]", "'!!str' is not accepted"),
        ("!custom x", "'!custom' is not accepted"),
    ],
)
def test_tags_other_than_plain_types_or_not_matching_their_value_are_refused(
    smm, tmp_path: Path, value: str, words: str
) -> None:  # type: ignore[no-untyped-def]
    path = write(
        tmp_path, "plan.yaml", f"- id: a\n  account: riga\n  type: laugh\n  text: {value}\n"
    )
    refused(smm("plan", "validate", str(path)), path, "line 4", words)


@pytest.mark.parametrize(
    "depth_yaml",
    [
        "- id: a\n  text: " + "[" * 1000 + "]" * 1000 + "\n",
        "- id: a\n  text: " + "{a: " * 300 + "x" + "}" * 300 + "\n",
        "- id: a\n  text:\n" + "".join("  " * (i + 2) + "-\n" for i in range(700)),
    ],
    ids=["flow-list-1000", "flow-map-300", "block-700"],
)
def test_deep_nesting_is_a_located_error(smm, tmp_path: Path, depth_yaml: str) -> None:  # type: ignore[no-untyped-def]
    path = write(tmp_path, "plan.yaml", depth_yaml)
    result = smm("plan", "validate", str(path))
    assert result.exit_code == 1
    assert f"{path}, line " in result.output
    assert "nest" in result.output


def test_plain_scalars_in_text_fields_are_the_text_as_written(
    smm, tmp_path: Path, sqlite_url: str
) -> None:  # type: ignore[no-untyped-def]
    path = write(
        tmp_path,
        "plan.yaml",
        "- {id: 010, account: riga, type: yes, text: 0x1F, tags: [no, 1e3]}\n",
    )
    assert smm("plan", "import", str(path)).exit_code == 0
    engine = make_engine(sqlite_url)
    try:
        with engine.connect() as conn:
            row = conn.exec_driver_sql("SELECT key, content_type, text, tags FROM posts").one()
    finally:
        engine.dispose()
    assert row[:3] == ("010", "yes", "0x1F")
    assert "1e3" in row[3]
    assert "no" in row[3]


def test_binary_text_is_refused_not_published_as_bytes(smm, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write(
        tmp_path, "plan.yaml", "- {id: a, account: riga, type: laugh, text: !!binary aGVsbG8=}\n"
    )
    refused(smm("plan", "validate", str(path)), path, "line 1", "'!!binary' is not accepted")


# --------------------------------------------------------------------------- text hygiene


@pytest.mark.parametrize("field", ["id", "type", "tags", "link"])
@pytest.mark.parametrize(
    "char", ["\x1b", "\r", "\u202e", "\x00", "\u200b", "\x85", "\t", "\u2066", "\ufeff"]
)
def test_control_and_invisible_characters_are_refused_in_names(
    smm, tmp_path: Path, field: str, char: str
) -> None:  # type: ignore[no-untyped-def]
    if field == "tags" and char.isspace():
        pytest.skip("white space separates tags")
    values = {"id": "abc", "type": "laugh", "tags": "brand", "link": "https://example.com/x"}
    values[field] = values[field][:2] + char + values[field][2:]
    cells = ",".join(f'"{v}"' for v in values.values())
    path = write(tmp_path, "plan.csv", f"account,text,{','.join(values)}\nriga,hi,{cells}\n")
    result = smm("plan", "validate", str(path))
    refused(result, path, "row 2", f"U+{ord(char):04X}")
    assert char not in result.output


@pytest.mark.parametrize("char", ["\x00", "\x1b", "\x07", "\x7f", "\x9b"])
def test_control_characters_in_text_are_refused(smm, tmp_path: Path, char: str) -> None:  # type: ignore[no-untyped-def]
    path = write(tmp_path, "plan.csv", f'id,account,type,text\na,riga,laugh,"x{char}y"\n')
    refused(smm("plan", "validate", str(path)), path, "row 2", f"U+{ord(char):04X}")


def test_text_keeps_tabs_line_breaks_and_joined_emoji(smm, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    text = "line one\\r\\n\\tline two 👨\u200d👩\u200d👧 \u202bשלום\u202c"
    path = write(
        tmp_path, "plan.yaml", f'- {{id: a, account: riga, type: laugh, text: "{text}"}}\n'
    )
    assert smm("plan", "validate", str(path)).exit_code == 0


def test_a_nul_in_text_never_reaches_postgresql(postgres_url: str, smm, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write(tmp_path, "plan.yaml", '- {id: a, account: riga, type: laugh, text: "a\\0b"}\n')
    before = database_hash(postgres_url)
    result = smm("plan", "import", str(path), db=postgres_url)
    refused(result, path, "line 1", "U+0000")
    assert database_hash(postgres_url) == before


# --------------------------------------------------------------------------- links


@pytest.mark.parametrize("link", ["https://[::1", "https://[v1.x", "http://", "ftp://x/"])
def test_a_link_urlparse_chokes_on_is_a_located_error(smm, tmp_path: Path, link: str) -> None:  # type: ignore[no-untyped-def]
    path = write(
        tmp_path,
        "plan.yaml",
        f"- {{id: a, account: riga, type: laugh, text: hi, link: '{link}'}}\n",
    )
    refused(smm("plan", "validate", str(path)), path, "line 1", "is not an http(s) URL")


def test_a_huge_value_is_quoted_as_a_short_excerpt(smm, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    link = "x" * 100_000
    path = write(
        tmp_path,
        "plan.csv",
        f"id,account,type,text,link,evergreen\na,riga,laugh,hi,{link},{link}\n",
    )
    result = smm("plan", "validate", str(path))
    refused(result, path, "row 2", "'" + "x" * 80 + "…'")
    assert len(result.output) < 1500


# --------------------------------------------------------------------------- CSV


def test_an_unclosed_quote_is_an_error_at_the_row_where_the_cell_began(smm, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write(
        tmp_path,
        "plan.csv",
        "id,account,type,text\n"
        'a,riga,laugh,"two\nlines"\n'
        'b,riga,laugh,"Hello\n'
        "c,riga,laugh,swallowed\n"
        "d,riga,laugh,swallowed too\n",
    )
    refused(
        smm("plan", "validate", str(path)), path, "row 3", "begins in row 3, line 4 of the file"
    )


def test_a_stray_quote_closed_rows_later_is_an_error(smm, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write(
        tmp_path,
        "plan.csv",
        'id,account,type,text\na,riga,laugh,"Hello\nb,riga,laugh,x\nc,riga,laugh,"Bye"\n',
    )
    refused(smm("plan", "validate", str(path)), path, "row 2", "closing quote")


@pytest.mark.parametrize("text", ["\n\n\n", "\r\n\r\n", ",,,\n\n", "   \n"])
def test_a_csv_of_blank_lines_is_a_located_error(smm, tmp_path: Path, text: str) -> None:  # type: ignore[no-untyped-def]
    path = write(tmp_path, "plan.csv", text)
    refused(smm("plan", "validate", str(path)), path, "row 1", "names no columns")


def test_many_bad_rows_are_listed_up_to_a_bound_and_counted(smm, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rows = "".join(f"p{i},riga,laugh,hi,extra\n" for i in range(5000))
    path = write(tmp_path, "plan.csv", "id,account,type,text\n" + rows)
    result = smm("plan", "validate", str(path))
    refused(result, path, "row 2", "5 cells but the header has 4 columns")
    assert "this and 4,900 more rows have more cells" in result.output
    assert result.output.count(str(path)) == 100


def test_many_bad_values_are_listed_up_to_a_bound_and_counted(smm, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rows = "".join(f"p{i},nobody,laugh,hi\n" for i in range(1000))
    path = write(tmp_path, "plan.csv", "id,account,type,text\n" + rows)
    result = smm("plan", "validate", str(path))
    assert result.exit_code == 1
    assert "the plan has 1,000 problems (the first 100 are listed)" in result.output
    assert result.output.count(str(path)) == 100


# --------------------------------------------------------------------------- size


def test_a_plan_over_the_size_limit_is_refused_before_it_is_read(
    smm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    path = write(tmp_path, "plan.yaml", ITEM + "#" * 1_000_001)
    parsed: list[Any] = []
    monkeypatch.setattr("scheduler.plan.read.read_yaml", lambda *a: parsed.append(a) or ([], []))
    result = smm("plan", "validate", str(path))
    assert result.exit_code == 1
    assert "over the limit of 1,000,000" in result.output
    assert "max_file_bytes" in result.output
    assert parsed == []


def test_the_size_limit_comes_from_the_config(tmp_path: Path) -> None:
    from scheduler.config import parse_config

    config = parse_config("[plan]\nmax_file_bytes = 10\n", "c.toml")
    assert config.plan.max_file_bytes == 10
    with pytest.raises(InvalidInput, match=r"plan\.max_file_bytes"):
        parse_config("[plan]\nmax_file_bytes = -1\n", "c.toml")
    path = write(tmp_path, "plan.yaml", ITEM)
    _, problems = read_plan_file(path, max_bytes=10)
    assert "over the limit of 10" in problems[0].message


def test_a_fifo_named_like_a_plan_is_refused_without_waiting(tmp_path: Path) -> None:
    import os

    os.mkfifo(tmp_path / "plan.csv")
    _, problems = read_plan_file(tmp_path / "plan.csv")
    assert problems[0].message == "cannot read the file: not a regular file"


# --------------------------------------------------------------------------- messages


def test_an_excerpt_is_bounded_and_escapes_what_a_terminal_would_obey() -> None:
    assert excerpt("a" * 100) == "'" + "a" * 80 + "…'"
    assert excerpt("\x1b]0;title\x07\u202e") == "'\\x1b]0;title\\x07\\u202e'"
    nested: list[Any] = []
    for _ in range(50):
        nested = [nested, nested]
    assert len(excerpt(nested)) <= 81


def test_an_item_id_in_a_location_is_an_excerpt() -> None:
    problem = Problem("p.yaml", 3, "id", "id is longer than 200 characters", item="x" * 10_000)
    assert len(str(problem)) < 200


def test_problems_of_a_whole_file_still_name_a_line(tmp_path: Path) -> None:
    for name, text in [("a.yaml", "# nothing\n"), ("b.csv", "")]:
        _, problems = read_plan_file(write(tmp_path, name, text))
        assert (problems[0].line, problems[0].message) == (1, "the plan is empty")


def test_an_import_refused_for_any_of_these_reasons_changes_nothing(
    smm, tmp_path: Path, db_url: str
) -> None:  # type: ignore[no-untyped-def]
    good = write(tmp_path, "good.yaml", ITEM)
    assert smm("plan", "import", str(good), db=db_url).exit_code == 0
    before = database_hash(db_url)
    bad = write(
        tmp_path,
        "bad.yaml",
        textwrap.dedent(
            """\
            - {id: a1, account: riga, type: laugh, text: changed}
            - {id: a2, account: riga, type: laugh, text: "nul \\0 here"}
            - {id: a3, account: riga, type: laugh, text: hi, at: [1]}
            """
        ),
    )
    result = smm("plan", "import", str(bad), db=db_url)
    refused(result, bad, "line 2", "U+0000")
    refused(result, bad, "line 3", "got a list")
    assert database_hash(db_url) == before


def test_a_raw_control_character_in_a_yaml_file_is_located_after_multibyte_text(
    smm, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    path = write(
        tmp_path,
        "plan.yaml",
        "- {id: ā😀, account: riga, type: laugh, text: āāā}\n"
        "- {id: b, account: riga, type: laugh, text: \x1b[2J}\n",
    )
    refused(smm("plan", "validate", str(path)), path, "line 2", "U+001B is not allowed")


def test_validate_json_lists_the_first_problems_and_counts_them_all(smm, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import json

    rows = "".join(f"p{i},nobody,laugh,hi\n" for i in range(250))
    path = write(tmp_path, "plan.csv", "id,account,type,text\n" + rows)
    result = smm("plan", "validate", "--json", str(path))
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert (data["ok"], data["total"], len(data["problems"])) == (False, 250, 100)
    assert [p["row"] for p in data["problems"]] == list(range(2, 102))


def test_a_second_yaml_document_is_refused_with_its_line(smm, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write(tmp_path, "plan.yaml", f"---\n{ITEM}---\n{ITEM}")
    refused(smm("plan", "validate", str(path)), path, "line 3", "found another document")


@pytest.mark.parametrize(
    "name", ["evil\x1b]0;pwned\x07.yaml", "two\nlines.yaml", "rlo\u202egnp.yaml"]
)
def test_a_file_name_with_control_characters_is_printed_escaped(  # type: ignore[no-untyped-def]
    smm, tmp_path: Path, name: str
) -> None:
    """A plan's name is input too: its escape sequences never reach the terminal, and a
    line break in it never starts a line of its own in the report."""
    path = write(tmp_path, name, "- {id: a, account: nope, type: t, text: hi}\n")
    result = smm("plan", "validate", str(path))
    assert result.exit_code == 1
    assert "unknown account 'nope'" in result.output
    for char in ("\x1b", "\x07", "\u202e"):
        assert char not in result.output
    problem_lines = [ln for ln in result.output.splitlines() if ln.startswith("  ")]
    assert len(problem_lines) == 1
    assert "unknown account 'nope'" in problem_lines[0]


def test_a_config_name_with_control_characters_is_printed_escaped(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from scheduler.cli import cli

    bad = tmp_path / "bad\x1b]0;pwned\x07.toml"
    bad.write_text("[x]\n", encoding="utf-8")
    good = tmp_path / "good\x1b]0;pwned\x07.toml"
    good.write_text(CONFIG, encoding="utf-8")
    for args in (
        ["--config", str(bad), "config", "check"],
        ["--config", str(good), "config", "check"],
        ["--config", str(good), "--db", f"sqlite:///{tmp_path}/d.db", "doctor"],
    ):
        result = CliRunner().invoke(cli, args)
        assert "pwned" in result.output
        assert "\x1b" not in result.output
        assert "\x07" not in result.output
