"""Generated hostile plans, YAML and CSV, through ``smm plan validate`` and ``smm plan import``.

Each case is a small plan file built from good values, hostile values (control and
invisible characters, YAML tags, aliases and merge keys, deep nesting, times out of range,
broken links, huge numbers...) and hostile structure (duplicate keys, unclosed quotes,
blank rows, extra cells, a byte-order mark, bytes that are not UTF-8, random cuts and
insertions). For every case:

* neither command ends in a traceback, and the exit code is 0 or 1;
* exit 1 comes with problems that each name the file and a line (YAML) or row (CSV);
* ``validate`` and ``import`` agree (a plan that validates imports, and the other way);
* an import that exits 1 leaves the database byte-identical (every table's rows hashed).

The examples are derandomised (profile ``plan-fuzz``): every run tries the same 1,050 cases,
so a failure reproduces. Each test then insists that all its cases ran and that every class
of case was generated, and prints the counts (``pytest -s`` shows them).
"""

from __future__ import annotations

import codecs
import collections
import csv
import io
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from plan_support import CONFIG, invoke, sqlite_hash

settings.register_profile(
    "plan-fuzz",
    derandomize=True,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FUZZ = settings.get_profile("plan-fuzz")
YAML_CASES, CSV_CASES = 600, 450

# --------------------------------------------------------------------------- values

GOOD: dict[str, list[str]] = {
    "id": ["p1", "p2", "a-1", "010", "riga-001"],
    "account": ["riga", "ny", "noslots"],
    "type": ["laugh", "Medal", "instruction", "promo"],
    "text": ["hello", "two\nlines", "Hot take: yes", "ā 😀 👨\u200d👩\u200d👧", "tab\there"],
    "link": ["https://example.com/x", "http://example.org/?a=1&b=2", ""],
    "tags": ["smm", "#brand", "a;b", "x, y", ""],
    "evergreen": ["yes", "no", "", "TRUE", "0"],
    "at": ["2030-06-03 10:00", "2030-06-03T10:00+02:00", "2030-03-31 03:30", "", "2030-06-03"],
    "approval": ["none", "required", ""],
    "content_warning": ["", "spoilers"],
    "sensitive": ["no", "yes"],
    "visibility": ["public", "unlisted"],
    "language": ["en", "lv"],
}
#: ``media`` is left out: media entries are resolved (files) and looked up (URLs, in DNS),
#: which tests/test_media.py covers; a fuzz of plans must not depend on the network.
FIELDS = list(GOOD)
HOSTILE: list[str] = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\x1b[31mred",
    "\x1b]0;title\x07",
    "\r",
    "a\rb",
    "a\r\nb",
    "\u202egnp.exe",
    "\u200bzero",
    "\ufeffbom",
    "\x85next",
    "\u2028",
    "\u2066iso\u2069",
    "0x1F",
    "yes",
    "~",
    "null",
    "1e300",
    "1e999999",
    ".inf",
    "-.nan",
    "9" * 60,
    "x" * 300,
    "0001-01-01T00:30+05:00",
    "9999-12-31T23:30-05:00",
    "0001-01-01 00:00",
    "2030-02-30 10:00",
    "2030-03-31 03:30",
    "10:00",
    "https://[::1",
    "https://[::1]:99999/",
    "http://",
    "javascript:alert(1)",
    "//example.com",
    "\\",
    '"',
    "'",
    "#",
    ": ",
    "- ",
    "&a",
    "*a",
    "{",
    "[",
    "ID",
    "<<",
]
#: YAML written as is in a value position: tags, collections, aliases, deep nesting.
YAML_VALUES: list[str] = [
    "[1, 2]",
    "[]",
    "{x: 1}",
    "{}",
    "!!set {a, b}",
    "!!binary aGVsbG8=",
    "!!float x",
    "!!float 1.5",
    "!!float 1.0e+999",
    "!!int 0x1F",
    "!!int " + "9" * 120,
    "!!int 1:2:3",
    "!!bool yes",
    "!!bool maybe",
    "!!str 5",
    "!!null ''",
    "!!null x",
    "!!timestamp 2030-01-01",
    "!!omap [a: 1]",
    "!!python/object/apply:os.system ['true']",
    "!foo x",
    "! x",
    "*base",
    "*nowhere",
    "&here value",
    "[" * 20 + "]" * 20,
    "{a: " * 18 + "x" + "}" * 18,
    "[" * 400 + "]" * 400,
    "? [complex]",
]


def rare(draw: Callable[..., Any], n: int) -> bool:
    """True about once in ``n`` draws (Hypothesis favours the first of the choices, so a
    rare event is the last one; ``integers(0, n) == 0`` would fire far more often)."""
    return bool(draw(st.sampled_from([False] * (n - 1) + [True])))


def text_values() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from([v for values in GOOD.values() for v in values]),
        st.sampled_from(HOSTILE),
        st.text(max_size=12),
    )


# --------------------------------------------------------------------------- YAML


def yaml_scalar(draw: Callable[..., Any], value: str) -> str:
    """``value`` as YAML: plain, double-quoted (JSON escapes), single-quoted, or a block."""
    style = draw(st.sampled_from(["plain", "double", "double-raw", "single", "block"]))
    if style == "plain":
        return value
    if style == "double":
        return json.dumps(value)
    if style == "double-raw":
        return json.dumps(value, ensure_ascii=False)
    if style == "single":
        return "'" + value.replace("'", "''") + "'"
    return "|\n" + "".join(f"      {line}\n" for line in value.split("\n")).rstrip("\n")


@st.composite
def yaml_item(draw: Callable[..., Any], classes: set[str], base: bool) -> str:
    """One item; ``base``: the plan defines the anchor ``&base`` (a mapping) to merge."""
    names = draw(st.lists(st.sampled_from(FIELDS), min_size=0, max_size=len(FIELDS), unique=True))
    if draw(st.booleans()):  # half the items have every required field: some plans import
        names = ["id", "account", "type", "text"] + [n for n in names if n not in FIELDS[:4]]
    lines = []
    for name in names:
        key = name
        if rare(draw, 10):
            key = draw(st.sampled_from([name.upper(), f" {name}", name.title(), f"'{name} '"]))
            classes.add("yaml:key-variant")
        kind = draw(st.integers(0, 19))
        if kind < 15:
            value = yaml_scalar(draw, draw(st.sampled_from(GOOD[name])))
        elif kind < 18:
            value = yaml_scalar(draw, draw(text_values()))
            classes.add("value:hostile")
        else:
            value = draw(st.sampled_from(YAML_VALUES))
            classes.add("yaml:tag-alias-nesting")
        lines.append(f"{key}: {value}")
    if rare(draw, 8) and names:
        # The same field again, perhaps in another case or with spaces around it.
        name = draw(st.sampled_from(names))
        lines.append(f"{draw(st.sampled_from([name, name.upper(), f' {name}']))}: again")
        classes.add("yaml:duplicate-key")
    if base and rare(draw, 3):
        lines.append(draw(st.sampled_from(["<<: *base", "<<: [*base, *base]", "<<: x"])))
        classes.add("yaml:merge-key")
    if rare(draw, 13):
        lines.append(draw(st.sampled_from(["titel: x", "? [a]\n  : b", "~: x", "1: x"])))
    if not lines:
        return "- " + draw(st.sampled_from(["~", "x", "[a]", "*base", "{}"]))
    return "- " + "\n  ".join(lines)


def alias_bomb(levels: int) -> str:
    rows = ['  l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    rows += [f"  l{k}: &l{k} [" + ", ".join([f"*l{k - 1}"] * 9) + "]" for k in range(1, levels)]
    return "\n".join(rows)


@st.composite
def yaml_plan(draw: Callable[..., Any], classes: set[str]) -> bytes:
    shape = draw(st.sampled_from(["list", "mapping", "anchors", "bomb", "odd"]))
    items = draw(st.lists(yaml_item(classes, shape == "anchors"), min_size=1, max_size=4))
    posts = "\n".join(items)
    classes.add(f"yaml:{shape}")
    if shape == "list":
        text = posts + "\n"
    elif shape == "mapping":
        defaults = draw(st.sampled_from(["", "defaults: {account: riga, type: laugh}\n"]))
        extra = draw(st.sampled_from(["", "posts: []\n", "post: x\n", "defaults: [x]\n"]))
        text = defaults + "posts:\n" + _indent(posts) + "\n" + extra
    elif shape == "anchors":
        text = (
            "defaults:\n  _base: &base {account: riga, type: laugh, text: shared}\n"
            "posts:\n" + _indent(posts) + "\n"
        )
    elif shape == "bomb":
        levels = draw(st.integers(2, 9))
        target = draw(st.sampled_from(["id", "text", "tags", "item"]))
        use = f"- *l{levels - 1}" if target == "item" else f"- {{{target}: *l{levels - 1}}}"
        text = f"defaults:\n _x:\n{alias_bomb(levels)}\nposts:\n  {use}\n" + _indent(posts) + "\n"
    else:
        text = draw(
            st.sampled_from(
                ["", "# only a comment\n", "x\n", "[1, 2]\n", "--- a\n--- b\n", "posts: x\n"]
            )
        )
    data = text.encode("utf-8", "surrogatepass")
    return mutate(draw, data, classes, "yaml")


def _indent(text: str) -> str:
    return "".join(f"  {line}\n" for line in text.split("\n")).rstrip("\n")


# --------------------------------------------------------------------------- CSV


@st.composite
def csv_plan(draw: Callable[..., Any], classes: set[str]) -> bytes:
    columns = draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=len(FIELDS), unique=True))
    header = list(columns)
    if rare(draw, 6):
        variant = draw(st.sampled_from([" ID", "Text ", "notes", "", "titel", columns[0], "_x"]))
        header.insert(draw(st.integers(0, len(header))), variant)
        classes.add("csv:header-variant")
    rows: list[list[str]] = []
    for _ in range(draw(st.integers(1, 4))):
        row = []
        for name in header:
            known = name.strip().lower()
            if known in GOOD and draw(st.integers(0, 2)) > 0:
                row.append(draw(st.sampled_from(GOOD[known])))
            else:
                row.append(draw(text_values()))
                classes.add("value:hostile")
        if rare(draw, 7):
            row.append(draw(text_values()))
            classes.add("csv:extra-cell")
        if rare(draw, 7):
            row = row[: draw(st.integers(0, len(row)))]
        rows.append(row)
    delimiter = draw(st.sampled_from([",", ";", "\t"]))
    ending = draw(st.sampled_from(["\n", "\r\n"]))
    quoting = draw(st.sampled_from(["proper", "raw"]))
    classes.add(f"csv:{quoting}")
    out = io.StringIO(newline="")
    if quoting == "proper":
        writer = csv.writer(out, delimiter=delimiter, lineterminator=ending)
        writer.writerow(header)
        for row in rows:
            writer.writerow(row)
    else:  # written by hand: quotes and line breaks in cells are not escaped
        out.write(delimiter.join(header) + ending)
        for row in rows:
            out.write(delimiter.join(row) + ending)
    text = out.getvalue()
    if rare(draw, 6):
        lines = text.split(ending)
        at = draw(st.integers(0, len(lines)))
        lines[at:at] = ["", " ", delimiter * 3][: draw(st.integers(1, 3))]
        text = ending.join(lines)
        classes.add("csv:blank-rows")
    if rare(draw, 6):
        at = draw(st.integers(0, len(text)))
        text = text[:at] + '"' + text[at:]
        classes.add("csv:stray-quote")
    data = text.encode("utf-8", "surrogatepass")
    if rare(draw, 10):
        data = codecs.BOM_UTF8 + data
        classes.add("csv:bom")
    return mutate(draw, data, classes, "csv")


# --------------------------------------------------------------------------- both


def mutate(draw: Callable[..., Any], data: bytes, classes: set[str], fmt: str) -> bytes:
    """Sometimes cut, repeat or corrupt part of the file, as an editor or a transfer might."""
    kind = draw(st.sampled_from(["none"] * 6 + ["cut", "insert", "repeat", "truncate", "byte"]))
    if kind == "none" or not data:
        return data
    classes.add(f"{fmt}:mutated")
    i = draw(st.integers(0, len(data)))
    j = draw(st.integers(i, min(len(data), i + 40)))
    if kind == "cut":
        return data[:i] + data[j:]
    if kind == "insert":
        return data[:i] + draw(st.binary(max_size=6)) + data[i:]
    if kind == "repeat":
        return data[:j] + data[i:j] + data[j:]
    if kind == "truncate":
        return data[:i]
    classes.add(f"{fmt}:not-utf8")
    return data[:i] + b"\xff\xfe\xc3" + data[i:]


#: What ran in the current fuzz test: cases, outcomes and classes of case.
CASES: collections.Counter[str] = collections.Counter()

YAML_CLASSES = {
    "yaml:list",
    "yaml:mapping",
    "yaml:anchors",
    "yaml:bomb",
    "yaml:odd",
    "yaml:key-variant",
    "yaml:duplicate-key",
    "yaml:merge-key",
    "yaml:tag-alias-nesting",
    "yaml:mutated",
    "yaml:not-utf8",
}
CSV_CLASSES = {
    "csv:proper",
    "csv:raw",
    "csv:header-variant",
    "csv:extra-cell",
    "csv:blank-rows",
    "csv:stray-quote",
    "csv:bom",
    "csv:mutated",
    "csv:not-utf8",
}
PROBLEM_LINE = re.compile(r"^  (?P<file>.+?), (?:line|row) \d+(?:, |: )")


def check_case(tmp: Path, template: Path, template_hash: str, name: str, data: bytes) -> None:
    """Validate and import one generated plan; assert what every case must satisfy."""
    plan = tmp / name
    plan.write_bytes(data)
    db = tmp / "fuzz.db"
    if not db.exists():  # a fresh copy after each import that changed it
        shutil.copyfile(template, db)
    config = tmp / "config.toml"
    # validate never writes; without a database it skips looking up stored posts, which a
    # fresh database has none of anyway.
    validated = invoke(config, f"sqlite:///{tmp / 'none.db'}", "plan", "validate", str(plan))
    imported = invoke(config, f"sqlite:///{db}", "plan", "import", str(plan))
    assert validated.exit_code == imported.exit_code, (validated.output, imported.output)
    CASES[f"exit {imported.exit_code}"] += 1
    if imported.exit_code == 0:
        for path in tmp.glob("fuzz.db*"):
            path.unlink()
        return
    for result in (validated, imported):
        problems = [ln for ln in result.output.splitlines() if ln.startswith("  ")]
        assert problems, result.output
        for line in problems:
            m = PROBLEM_LINE.match(line)
            assert m is not None, f"problem without file and line/row: {line!r}"
            assert m.group("file") == str(plan), line
        assert len(result.output) < 200 * 1000
    assert sqlite_hash(db) == template_hash, "a refused import changed the database"
    CASES["database unchanged after exit 1"] += 1


@pytest.fixture
def fuzz_dir(tmp_path: Path, sqlite_template: Path) -> tuple[Path, Path, str]:
    (tmp_path / "config.toml").write_text(CONFIG, encoding="utf-8")
    return tmp_path, sqlite_template, sqlite_hash(sqlite_template)


def run_fuzz(
    fuzz_dir: tuple[Path, Path, str],
    fmt: str,
    plans: Callable[[set[str]], st.SearchStrategy[bytes]],
    cases: int,
    classes: set[str],
) -> None:
    """Run ``cases`` generated plans of format ``fmt``; then insist that they all ran and
    that every class of case in ``classes`` was generated."""
    tmp, template, template_hash = fuzz_dir
    CASES.clear()

    @settings(FUZZ, max_examples=cases)
    @given(st.data())
    def case(data: st.DataObject) -> None:
        found: set[str] = set()
        plan = data.draw(plans(found))
        CASES[fmt] += 1
        CASES.update(found)
        check_case(tmp, template, template_hash, f"plan.{fmt}", plan)

    case()
    assert CASES[fmt] >= cases
    missing = (classes | {"value:hostile"}) - set(CASES)
    assert not missing, missing
    assert CASES["exit 0"] > 0
    assert CASES["database unchanged after exit 1"] == CASES["exit 1"] > 0
    print(f"\nplan fuzz ({fmt}):", dict(sorted(CASES.items())))


@pytest.mark.slow
@pytest.mark.timeout(900)  # 3.5 minutes on a loaded 2-core machine
def test_generated_yaml_plans_never_crash_and_never_half_apply(
    fuzz_dir: tuple[Path, Path, str],
) -> None:
    run_fuzz(fuzz_dir, "yaml", yaml_plan, YAML_CASES, YAML_CLASSES)


@pytest.mark.slow
@pytest.mark.timeout(600)  # over a minute on a loaded 2-core machine
def test_generated_csv_plans_never_crash_and_never_half_apply(
    fuzz_dir: tuple[Path, Path, str],
) -> None:
    run_fuzz(fuzz_dir, "csv", csv_plan, CSV_CASES, CSV_CLASSES)
