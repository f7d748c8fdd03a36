"""Reading plan files: YAML (with line numbers) and CSV (with spreadsheet row numbers).

Reading never judges the values; it only turns each file into ``RawItem`` records that know
where each field came from. Problems with the file as a whole (not UTF-8, not YAML, no header)
are reported as ``Problem`` records like any other.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import itertools
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from scheduler.errors import InvalidInput, Problem, excerpt
from scheduler.plan import safeyaml, yamlstream
from scheduler.plan.gcpause import gc_paused
from scheduler.plan.items import RawItem

# --------------------------------------------------------------------------- YAML


def read_yaml(text: str, file: str) -> tuple[list[RawItem], list[Problem]]:
    """Items of a YAML plan: a list of items, or a mapping with ``posts:`` and optional
    ``defaults:`` (values every item gets unless it sets its own). The file is read as
    hostile input (``scheduler.plan.safeyaml``): scalars are text, only plain tags, bounded
    aliases and nesting, duplicate keys reported."""
    try:
        node = safeyaml.compose(text)
    except (yaml.YAMLError, RecursionError) as exc:
        return [], [_yaml_problem(exc, file, lambda position: _line_at(text, position))]
    if node is None:
        return [], [Problem(file, 1, None, "the plan is empty", "add a list of posts")]
    try:
        doc, duplicates = safeyaml.build(node)
    except safeyaml.Refused as exc:
        return [], [Problem(file, exc.line, None, exc.message, exc.hint)]
    problems = [
        Problem(file, line, name, message, hint) for line, name, message, hint in duplicates
    ]
    defaults: safeyaml.LinedDict | None = None
    if isinstance(doc, safeyaml.LinedDict):
        unknown = set(doc) - {"posts", "defaults"}
        for key in sorted(unknown):
            problems.append(
                Problem(
                    file,
                    doc.key_lines.get(key),
                    key if len(key) <= 40 else excerpt(key, 40)[1:-1],
                    f"unknown top-level key {excerpt(key)}",
                    "a plan is a list of posts, or a mapping with 'posts' and 'defaults'",
                )
            )
        raw_defaults = doc.get("defaults") or {}
        if isinstance(raw_defaults, safeyaml.LinedDict):
            defaults = yamlstream.item_defaults(raw_defaults, file, problems)
        elif raw_defaults != {}:
            problems.append(
                Problem(
                    file, doc.key_lines.get("defaults"), "defaults", "defaults must be a mapping"
                )
            )
        posts = doc.get("posts")
        posts_line = doc.key_lines.get("posts", doc.line)
    else:
        posts, posts_line = doc, 1
    if not isinstance(posts, list):
        problems.append(
            Problem(
                file,
                posts_line,
                "posts",
                "expected a list of posts",
                "start each post with '- id:'",
            )
        )
        return [], problems
    items: list[RawItem] = []
    for index, entry in enumerate(posts):
        if not isinstance(entry, safeyaml.LinedDict):
            problems.append(
                Problem(
                    file,
                    _entry_line(node, index) or posts_line,
                    None,
                    f"a post must be a mapping of fields, got {excerpt(entry)}",
                    "start each post with '- id:'",
                )
            )
            continue
        if defaults:
            values, lines = {**defaults, **entry}, {**defaults.key_lines, **entry.key_lines}
        else:
            values, lines = entry, entry.key_lines
        items.append(RawItem(file, entry.line, "line", values, lines))
    return items, problems


def _entry_line(doc: Node, index: int) -> int | None:
    """The line of post ``index`` in the composed document (for entries that are not
    mappings, which carry no line of their own)."""
    posts: Node | None = doc
    if isinstance(doc, MappingNode):
        posts = next(
            (
                v
                for k, v in doc.value
                if isinstance(k, ScalarNode) and k.value.strip().lower() == "posts"
            ),
            None,
        )
    if isinstance(posts, SequenceNode) and index < len(posts.value):
        return int(posts.value[index].start_mark.line) + 1
    return None


def _line_at(text: str, position: int) -> int:
    """The line of ``position`` as the YAML reader counts it: libyaml in bytes of the UTF-8
    text, PyYAML's own reader in characters."""
    if safeyaml.LIBYAML:
        return text.encode("utf-8", "surrogatepass")[:position].count(b"\n") + 1
    return text.count("\n", 0, position) + 1


def _yaml_problem(
    exc: yaml.YAMLError | RecursionError, file: str, line_at: Callable[[int], int]
) -> Problem:
    """What a YAML file that cannot be read says; ``line_at`` turns the reader's position of
    a character YAML does not allow into its line."""
    if isinstance(exc, RecursionError):  # the pure-Python parser, on very deep nesting
        return Problem(file, 1, None, "not valid YAML: nested too deeply")
    if isinstance(exc, yaml.reader.ReaderError):  # a character YAML does not allow
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        return Problem(
            file,
            line_at(exc.position),
            None,
            f"not valid YAML: the character U+{code:04X} is not allowed in a YAML file",
            'write control characters as escapes in double quotes: "\\t", "\\x1b"...',
        )
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line = mark.line + 1 if mark is not None else 1
    reason = getattr(exc, "problem", None) or str(exc)
    if isinstance(exc, yaml.composer.ComposerError) and exc.context:
        reason = f"{exc.context}, {reason}"  # "expected a single document..., but found"
    if "mapping values are not allowed" in reason:
        hint = 'put text that contains ": " in quotes, or use a block: text: |'
    elif "another document" in reason:
        hint = "a plan is one YAML document: remove the second '---', or use two files"
    else:
        hint = ""
    return Problem(file, line, None, f"not valid YAML: {excerpt(reason, 200)[1:-1]}", hint)


def _utf8_line_at(path: Path, position: int) -> int:
    """The line of byte ``position`` of the file's text as UTF-8 (libyaml's count), read
    block by block."""
    lines = 1
    with path.open("r", encoding="utf-8-sig", errors="surrogateescape", newline="") as f:
        while position > 0 and (block := f.read(1 << 16)):
            data = block.encode("utf-8", "surrogateescape")[:position]
            lines += data.count(b"\n")
            position -= len(data)
    return lines


# --------------------------------------------------------------------------- CSV

_DELIMITERS = ",;\t"
#: The line Excel reads as the file's separator, and hides (``sep=;``): some exports begin
#: with it, a few padded with the separator itself (``sep=;;;``).
_SEP_LINE = re.compile(r'(?i)sep=([^"\r\n])\1*')


def _sniff_delimiter(header: str) -> str:
    """Spreadsheets in many locales export with ';' or tabs; pick what the header uses."""
    counts = {d: header.count(d) for d in _DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


#: Problems of one kind a file reports one by one; the rest are counted in one more problem
#: (so that the first ones and the count fit in what an error lists).
MAX_FILE_PROBLEMS = InvalidInput.MAX_LISTED - 1

_QUOTE_HINT = 'close the quote; a quote inside a quoted cell is written twice ("")'


def _csv_error(exc: csv.Error, file: str, row: int, line: int) -> Problem:
    """What went wrong at the record that begins at ``row`` (line ``line`` of the file)."""
    reason = str(exc)
    at = f"row {row}" if row == line else f"row {row}, line {line} of the file"
    if reason.startswith("unexpected end of data"):
        message = (
            f"not valid CSV: a quoted cell that begins in {at} is never closed: "
            "the rest of the file would become part of it"
        )
    elif reason.endswith("expected after '\"'"):
        message = f"not valid CSV: text follows the closing quote of a cell begun in {at}"
    elif reason.startswith("field larger than field limit"):
        message = (
            f"not valid CSV: a cell of the record begun in {at} is longer than "
            f"{csv.field_size_limit():,} characters"
        )
    else:
        return Problem(file, row, None, f"not valid CSV: {excerpt(reason)[1:-1]}", unit="row")
    return Problem(file, row, None, message, _QUOTE_HINT, unit="row")


def read_csv(lines: Iterable[str], file: str) -> tuple[list[RawItem], list[Problem]]:
    """Items of a CSV plan (UTF-8, header row), given as its lines with their line ends (a
    file opened with ``newline=""``, read as it goes). Rows are numbered as a spreadsheet
    shows them: the header is row 1. Blank rows are skipped; column names are
    case-insensitive.

    Quoting is strict: a quote that is never closed, or text after a closing quote, is an
    error naming the row where the cell began (a stray quote would otherwise swallow the
    rows after it into one cell)."""
    problems: list[Problem] = []
    return list(iter_csv(lines, file, problems)), problems


def iter_csv(lines: Iterable[str], file: str, problems: list[Problem]) -> Iterator[RawItem]:
    """``read_csv`` one item at a time: yields each item as its row is read, appending the
    file's problems to ``problems``; nothing but the current row is held."""
    rest = iter(lines)
    first_line = next(rest, "")
    # A declared separator wins over the header's guess; the line is no row of the
    # spreadsheet, so the header stays row 1 and only the file's lines count it.
    declared = _SEP_LINE.fullmatch(first_line.rstrip("\r\n"))
    skipped = 1 if declared else 0
    if declared:
        first_line = next(rest, "")
    if not first_line:
        problems.append(
            Problem(file, 1, None, "the plan is empty", "add a header row and posts", unit="row")
        )
        return
    reader = csv.reader(
        itertools.chain((first_line,), rest),
        delimiter=declared.group(1) if declared else _sniff_delimiter(first_line),
        strict=True,
    )
    try:
        header = next(reader)
    except StopIteration:
        problems.append(
            Problem(file, 1, None, "the plan is empty", "add a header row and posts", unit="row")
        )
        return
    except csv.Error as exc:
        problems.append(_csv_error(exc, file, 1, 1 + skipped))
        return
    columns = [h.strip().lower() for h in header]
    if not any(columns):
        problems.append(
            Problem(
                file,
                1,
                None,
                "the first row names no columns",
                "a CSV plan starts with a header row: id,account,type,text,...",
                unit="row",
            )
        )
        return
    seen: set[str] = set()
    for col in columns:
        if col and col in seen:
            problems.append(
                Problem(file, 1, col, f"column {excerpt(col)} appears twice", unit="row")
            )
        seen.add(col)
    all_named = all(columns)
    width = len(columns)
    row = 1
    wide = 0  # rows with more cells than columns
    first_unlisted = 0
    ended = reader.line_num  # the line where the last record read ends
    try:
        for cells in reader:
            row += 1
            if len(cells) != width or not cells[0] or cells[0].isspace():
                # Not the common full row that starts with an id: blank (no cell holds
                # anything but whitespace), or more cells than columns?
                if not "".join(cells).strip():
                    ended = reader.line_num
                    continue
                if len(cells) > width and any(c.strip() for c in cells[width:]):
                    wide += 1
                    if wide == MAX_FILE_PROBLEMS + 1:
                        first_unlisted = row
                    if wide <= MAX_FILE_PROBLEMS:
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
                    ended = reader.line_num
                    continue
            if all_named:
                values = dict(zip(columns, cells, strict=False))
            else:
                values = {col: cell for col, cell in zip(columns, cells, strict=False) if col}
            ended = reader.line_num
            yield RawItem(file, row, "row", values)
    except csv.Error as exc:
        # The reader failed on the record after the last one it returned.
        problems.append(_csv_error(exc, file, row + 1, ended + 1 + skipped))
    if wide > MAX_FILE_PROBLEMS:
        problems.append(
            Problem(
                file,
                first_unlisted,
                None,
                f"this and {wide - MAX_FILE_PROBLEMS - 1:,} more rows have more cells than "
                f"the header has columns (the first {MAX_FILE_PROBLEMS} are listed one by one)",
                unit="row",
            )
        )


# --------------------------------------------------------------------------- files

#: The largest plan file read when the config does not say (``[plan] max_file_bytes``).
DEFAULT_MAX_FILE_BYTES = 50_000_000


def _not_utf8(file: str, line: int) -> Problem:
    return Problem(
        file,
        line,
        None,
        "not UTF-8 text",
        "save the file as UTF-8 (in a spreadsheet: CSV UTF-8)",
        unit="line",
    )


def _bad_utf8_line(f: IO[bytes]) -> int:
    """The line of the first byte of ``f`` that is not UTF-8, read block by block."""
    f.seek(0)
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    lines = 0
    while block := f.read(1 << 20):
        try:
            decoder.decode(block)
        except UnicodeDecodeError as exc:
            # exc.object: the few bytes the decoder held back (never a line end) and block.
            return lines + bytes(exc.object[: exc.start]).count(b"\n") + 1
        lines += block.count(b"\n")
    return lines + 1


def file_problem(path: Path, max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> Problem | None:
    """Why the plan file at ``path`` is refused unread (missing, not a regular file, an
    unknown format, over ``max_bytes``), or None."""
    file = str(path)
    try:
        # Looked at before it is opened: opening a FIFO would wait for a writer.
        info = os.stat(path)
    except OSError as exc:
        return _file_problem(file, f"cannot read the file: {exc.strerror}")
    if not stat.S_ISREG(info.st_mode):
        kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        return _file_problem(file, f"cannot read the file: {kind}", "name a plan file")
    suffix = path.suffix.lower()
    if suffix not in (".yaml", ".yml", ".csv"):
        return _file_problem(
            file, f"unknown plan format {excerpt(suffix)}", "use .yaml, .yml or .csv"
        )
    if info.st_size > max_bytes:
        return _file_problem(
            file,
            f"the file is {info.st_size:,} bytes, over the limit of {max_bytes:,}",
            "split the plan into several files, or raise [plan] max_file_bytes in the config",
        )
    return None


def iter_plan_file(
    path: Path,
    max_bytes: int = DEFAULT_MAX_FILE_BYTES,
    problems: list[Problem] | None = None,
    voided: list[str] | None = None,
) -> Iterator[RawItem]:
    """The items of one plan file as they are read (a CSV file row by row), appending the
    file's problems to ``problems``. When the file turns out unreadable after some items
    were yielded (a byte that is not UTF-8 deep in a CSV file), its name is appended to
    ``voided``: those items count for nothing, as if none had been read."""
    problems = [] if problems is None else problems
    file = str(path)
    suffix = path.suffix.lower()
    refused = file_problem(path, max_bytes)
    if refused is not None:
        problems.append(refused)
        return
    try:
        with path.open("rb") as f:
            if suffix == ".csv":
                # Streamed from the file: the decoded text of a large plan is never held whole.
                yielded = False
                text_lines = io.TextIOWrapper(f, encoding="utf-8-sig", newline="")
                try:
                    for item in iter_csv(text_lines, file, problems):
                        yielded = True
                        yield item
                except UnicodeDecodeError:
                    problems.append(_not_utf8(file, _bad_utf8_line(text_lines.detach())))
                    if yielded and voided is not None:
                        voided.append(file)
                    return
                return
        if safeyaml.LIBYAML:
            # Streamed item by item (``yamlstream``), unless the layout is read whole.
            before = len(problems)
            yielded = False
            try:
                for item in yamlstream.iter_yaml(
                    lambda: path.open("r", encoding="utf-8-sig", newline=""), file, problems
                ):
                    yielded = True
                    yield item
                return
            except yamlstream.Unusual:
                pass
            except UnicodeDecodeError:
                del problems[before:]
                with path.open("rb") as f:
                    problems.append(_not_utf8(file, _bad_utf8_line(f)))
                if yielded and voided is not None:
                    voided.append(file)
                return
            except (yaml.YAMLError, RecursionError, safeyaml.Refused) as exc:
                # The file cannot be read: its items count for nothing, as if none was read.
                del problems[before:]
                if isinstance(exc, safeyaml.Refused):
                    problems.append(Problem(file, exc.line, None, exc.message, exc.hint))
                else:
                    problems.append(
                        _yaml_problem(exc, file, lambda position: _utf8_line_at(path, position))
                    )
                if yielded and voided is not None:
                    voided.append(file)
                return
        with path.open("rb") as f:
            # At most one byte over the limit: a file that grows while it is read is caught.
            data = f.read(max_bytes + 1)
    except OSError as exc:
        problems.append(_file_problem(file, f"cannot read the file: {exc.strerror}"))
        return
    if len(data) > max_bytes:
        problems.append(_file_problem(file, f"the file is over the limit of {max_bytes:,} bytes"))
        return
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        problems.append(_not_utf8(file, data[: exc.start].count(b"\n") + 1))
        return
    del data
    items, found = read_yaml(text, file)
    problems += found
    yield from items


def _file_problem(file: str, message: str, hint: str = "") -> Problem:
    return Problem(file, None, None, message, hint)


def read_plan_file(
    path: Path, max_bytes: int = DEFAULT_MAX_FILE_BYTES
) -> tuple[list[RawItem], list[Problem]]:
    """Read one plan file; the format follows the extension (.yaml/.yml or .csv). A file
    that is not a regular file, or is larger than ``max_bytes``, is refused unread."""
    problems: list[Problem] = []
    voided: list[str] = []
    items = list(iter_plan_file(path, max_bytes, problems, voided))
    return ([] if voided else items), problems


@gc_paused
def read_plan_files(
    paths: Iterable[Path], max_bytes: int = DEFAULT_MAX_FILE_BYTES
) -> tuple[list[RawItem], list[Problem]]:
    """Read several plan files in order; items are numbered in plan order across files.
    ``max_bytes``: the largest file read (``[plan] max_file_bytes``)."""
    items: list[RawItem] = []
    problems: list[Problem] = []
    for path in paths:
        found, bad = read_plan_file(path, max_bytes)
        items.extend(found)
        problems.extend(bad)
    for i, item in enumerate(items):
        item.order = i
    return items, problems


class PlanFiles:
    """Plan files read as a stream, as often as needed: each iteration reads the files again
    and yields their items in plan order (``order`` numbered across files), so a plan of any
    size is never held whole. ``problems`` and ``voided`` describe the latest iteration.

    A file that changes between two iterations (or while one reads it) would give them
    different items: the iteration that notices reports it and voids the file."""

    def __init__(self, paths: Iterable[Path], max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> None:
        self.paths = list(paths)
        self.max_bytes = max_bytes
        self.problems: list[Problem] = []
        self.voided: list[str] = []
        self._stamps: dict[Path, tuple[int, int, int] | None] = {}

    def refused(self) -> list[Problem]:
        """The problems of files refused unread (``file_problem``): cheap, no file read."""
        return [p for p in (file_problem(path, self.max_bytes) for path in self.paths) if p]

    def files(self) -> list[str]:
        """The files' names, as items and problems give them."""
        return [str(p) for p in self.paths]

    def size(self) -> int:
        """The files' size in bytes (0 for those that cannot be read)."""
        total = 0
        for path in self.paths:
            with contextlib.suppress(OSError):
                total += os.stat(path).st_size
        return total

    def _stamp(self, path: Path) -> tuple[int, int, int] | None:
        try:
            info = os.stat(path)
        except OSError:
            return None
        return info.st_size, info.st_mtime_ns, info.st_ino

    def changed(self) -> list[Problem]:
        """A problem for each file that changed since the first iteration read it."""
        return [
            _file_problem(
                str(path),
                "the file changed while it was being imported",
                "import it again once nothing writes to it",
            )
            for path, stamp in self._stamps.items()
            if self._stamp(path) != stamp
        ]

    def __iter__(self) -> Iterator[RawItem]:
        problems: list[Problem] = []
        voided: list[str] = []
        self.problems, self.voided = problems, voided
        order = 0
        for path in self.paths:
            before = self._stamp(path)
            known = self._stamps.setdefault(path, before)
            for item in iter_plan_file(path, self.max_bytes, problems, voided):
                item.order = order
                order += 1
                yield item
            after = self._stamp(path)
            changed = before != known or after != before
            if changed:
                problems.append(
                    _file_problem(
                        str(path),
                        "the file changed while it was being imported",
                        "import it again once nothing writes to it",
                    )
                )
                voided.append(str(path))
