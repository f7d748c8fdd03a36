"""Reading plan files: YAML (with line numbers) and CSV (with spreadsheet row numbers).

Reading never judges the values; it only turns each file into ``RawItem`` records that know
where each field came from. Problems with the file as a whole (not UTF-8, not YAML, no header)
are reported as ``Problem`` records like any other.
"""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from scheduler.errors import Problem
from scheduler.plan.gcpause import gc_paused
from scheduler.plan.items import RawItem

# --------------------------------------------------------------------------- YAML


# libyaml's parser when PyYAML was built with it (the wheels are): about ten times faster than
# the pure-Python one on a large plan, with the same marks (lines) and the same safe types.
_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _PlanLoader(_SafeLoader):  # type: ignore[valid-type,misc]
    """SafeLoader that keeps times as text (the account's zone decides what they mean) and
    records the line of every mapping key."""


_PlanLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


class _LinedDict(dict[str, Any]):
    line: int
    key_lines: dict[str, int]


def _construct_mapping(loader: _PlanLoader, node: yaml.MappingNode) -> _LinedDict:
    loader.flatten_mapping(node)
    result = _LinedDict()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    for key_node, value_node in node.value:
        key = str(loader.construct_object(key_node, deep=True)).strip().lower()
        if key == "id" and isinstance(value_node, yaml.ScalarNode):
            # Ids are names, not numbers: `id: 010` stays "010", not 8.
            value: Any = value_node.value
        else:
            value = loader.construct_object(value_node, deep=True)
        result[key] = value
        result.key_lines[key] = key_node.start_mark.line + 1
    return result


_PlanLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_yaml(text: str, file: str) -> tuple[list[RawItem], list[Problem]]:
    """Items of a YAML plan: a list of items, or a mapping with ``posts:`` and optional
    ``defaults:`` (values every item gets unless it sets its own)."""
    try:
        doc = yaml.load(text, Loader=_PlanLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(exc, "problem", None) or str(exc)
        hint = (
            'put text that contains ": " in quotes, or use a block: text: |'
            if "mapping values are not allowed" in reason
            else ""
        )
        return [], [Problem(file, line, None, f"not valid YAML: {reason}", hint)]
    if doc is None:
        return [], [Problem(file, None, None, "the plan is empty", "add a list of posts")]
    defaults: dict[str, Any] = {}
    problems: list[Problem] = []
    if isinstance(doc, dict):
        unknown = set(doc) - {"posts", "defaults"}
        for key in sorted(unknown):
            problems.append(
                Problem(
                    file,
                    doc.key_lines.get(key) if isinstance(doc, _LinedDict) else None,
                    key,
                    f"unknown top-level key {key!r}",
                    "a plan is a list of posts, or a mapping with 'posts' and 'defaults'",
                )
            )
        raw_defaults = doc.get("defaults") or {}
        if not isinstance(raw_defaults, dict):
            problems.append(Problem(file, None, "defaults", "defaults must be a mapping"))
        else:
            defaults = dict(raw_defaults)
        posts = doc.get("posts")
    else:
        posts = doc
    if not isinstance(posts, list):
        problems.append(
            Problem(file, None, "posts", "expected a list of posts", "start each post with '- id:'")
        )
        return [], problems
    items: list[RawItem] = []
    for entry in posts:
        if not isinstance(entry, _LinedDict):
            problems.append(
                Problem(file, None, None, f"a post must be a mapping of fields, got {entry!r}")
            )
            continue
        values = {**defaults, **entry}
        items.append(RawItem(file, entry.line, "line", values, dict(entry.key_lines)))
    return items, problems


# --------------------------------------------------------------------------- CSV

_DELIMITERS = ",;\t"


def _sniff_delimiter(header: str) -> str:
    """Spreadsheets in many locales export with ';' or tabs; pick what the header uses."""
    counts = {d: header.count(d) for d in _DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def read_csv(lines: Iterable[str], file: str) -> tuple[list[RawItem], list[Problem]]:
    """Items of a CSV plan (UTF-8, header row), given as its lines with their line ends (a
    file opened with ``newline=""``, read as it goes). Rows are numbered as a spreadsheet
    shows them: the header is row 1. Blank rows are skipped; column names are
    case-insensitive."""
    rest = iter(lines)
    first_line = next(rest, "")
    reader = csv.reader(
        itertools.chain((first_line,), rest), delimiter=_sniff_delimiter(first_line)
    )
    try:
        header = next(reader)
    except StopIteration:
        return [], [Problem(file, None, None, "the plan is empty", "add a header row and posts")]
    except csv.Error as exc:
        return [], [Problem(file, 1, None, f"not valid CSV: {exc}", unit="row")]
    columns = [h.strip().lower() for h in header]
    problems: list[Problem] = []
    seen: set[str] = set()
    for col in columns:
        if col and col in seen:
            problems.append(Problem(file, 1, col, f"column {col!r} appears twice", unit="row"))
        seen.add(col)
    all_named = all(columns)
    items: list[RawItem] = []
    append, width = items.append, len(columns)
    row = 1
    try:
        for cells in reader:
            row += 1
            if len(cells) != width or not cells[0] or cells[0].isspace():
                # Not the common full row that starts with an id: blank (no cell holds
                # anything but whitespace), or more cells than columns?
                if not "".join(cells).strip():
                    continue
                if len(cells) > width and any(c.strip() for c in cells[width:]):
                    problems.append(
                        Problem(
                            file,
                            row,
                            None,
                            f"{len(cells)} cells but the header has {width} columns",
                            "quote cells that contain the delimiter",
                            unit="row",
                        )
                    )
                    continue
            if all_named:
                values = dict(zip(columns, cells, strict=False))
            else:
                values = {col: cell for col, cell in zip(columns, cells, strict=False) if col}
            append(RawItem(file, row, "row", values))
    except csv.Error as exc:
        # The reader failed on the row after the last one it returned.
        problems.append(Problem(file, row + 1, None, f"not valid CSV: {exc}", unit="row"))
    return items, problems


# --------------------------------------------------------------------------- files


def read_plan_file(path: Path) -> tuple[list[RawItem], list[Problem]]:
    """Read one plan file; the format follows the extension (.yaml/.yml or .csv)."""
    file = str(path)
    suffix = path.suffix.lower()
    if suffix not in (".yaml", ".yml", ".csv"):
        return [], [
            Problem(file, None, None, f"unknown plan format {suffix!r}", "use .yaml, .yml or .csv")
        ]
    if suffix == ".csv":
        # Streamed from the file: the decoded text of a large plan is never held whole.
        try:
            with path.open(encoding="utf-8-sig", newline="") as lines:
                return read_csv(lines, file)
        except OSError as exc:
            return [], [Problem(file, None, None, f"cannot read the file: {exc.strerror}")]
        except UnicodeDecodeError:
            pass  # reported below, with the line of the first bad byte
    try:
        data = path.read_bytes()
    except OSError as exc:
        return [], [Problem(file, None, None, f"cannot read the file: {exc.strerror}")]
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        return [], [
            Problem(
                file,
                line,
                None,
                "not UTF-8 text",
                "save the file as UTF-8 (in a spreadsheet: CSV UTF-8)",
                unit="line",
            )
        ]
    if suffix == ".csv":
        return read_csv(io.StringIO(text, newline=""), file)
    return read_yaml(text, file)


@gc_paused
def read_plan_files(paths: Iterable[Path]) -> tuple[list[RawItem], list[Problem]]:
    """Read several plan files in order; items are numbered in plan order across files."""
    items: list[RawItem] = []
    problems: list[Problem] = []
    for path in paths:
        found, bad = read_plan_file(path)
        items.extend(found)
        problems.extend(bad)
    for i, item in enumerate(items):
        item.order = i
    return items, problems
