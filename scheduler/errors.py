"""Errors that point at the exact place of bad input.

Every check over user input (config, plan, CLI arguments) collects ``Problem`` records instead
of stopping at the first one, then raises ``InvalidInput`` with all of them, so a user fixes a
file in one pass.
"""

from __future__ import annotations

import dataclasses
import heapq
import reprlib
from dataclasses import dataclass

#: Longest excerpt of an input value a message quotes (longer ones are cut, with "…").
EXCERPT_CHARS = 80
#: Longest field path a problem names: a key is input too (a 5,000-character YAML field or
#: TOML key), while real paths (``accounts.NAME.credentials.KEY``) stay well under it.
FIELD_CHARS = 200

_SHORT_REPR = reprlib.Repr()
_SHORT_REPR.maxlevel, _SHORT_REPR.maxlist, _SHORT_REPR.maxdict = 2, 4, 4
_SHORT_REPR.maxstring = _SHORT_REPR.maxother = EXCERPT_CHARS


def excerpt(value: object, limit: int = EXCERPT_CHARS) -> str:
    """``value`` quoted for a message: as ``repr`` writes it (control, bidi and zero-width
    characters escaped), cut to its first ``limit`` characters plus "…". Bounded work and
    size whatever the value (a huge string, a deeply nested list)."""
    if isinstance(value, str):
        text = repr(value[:limit])
        return text[:-1] + "…" + text[-1] if len(value) > limit else text
    text = _SHORT_REPR.repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with the input: where it is, which field, what, and how to fix it."""

    file: str
    line: int | None  # a line (YAML, TOML) or a row (CSV); None when the whole file is meant
    field: str | None
    message: str
    hint: str = ""
    #: "line" or "row": how ``line`` is spoken of.
    unit: str = dataclasses.field(default="line", compare=False)
    item: str | None = dataclasses.field(default=None, compare=False)
    #: What kind of problem it is, for code to match on rather than its words: the
    #: network's ``Issue.code`` (``scheduler.adapter.IssueCode``); None when none is given.
    code: str | None = dataclasses.field(default=None, compare=False)

    def location(self) -> str:
        """``plan.csv, row 4, field at``: where to look."""
        parts = [_shown_file(self.file)]
        if self.line is not None:
            parts.append(f"{self.unit} {self.line}")
        if self.item:
            parts.append(f"item {excerpt(self.item)}")
        if self.field:
            parts.append(f"field {excerpt(self.field, FIELD_CHARS)}")
        return ", ".join(parts)

    def __str__(self) -> str:
        text = f"{self.location()}: {self.message}"
        if self.hint:
            text += f" (hint: {self.hint})"
        return text

    def as_dict(self) -> dict[str, object]:
        return {
            "file": self.file,
            self.unit: self.line,
            "item": self.item,
            "field": self.field
            if self.field is None or len(self.field) <= FIELD_CHARS
            else self.field[:FIELD_CHARS] + "…",
            "message": self.message,
            "hint": self.hint,
            "code": self.code,
        }


def _shown_file(name: str) -> str:
    """A file's name as printed: one a user named is input too, so its control, bidi and
    line-separating characters are escaped (a plain name is left as it is)."""
    if name.isprintable():
        return name
    from scheduler.text import safe  # only for such a name: safe needs the regex module

    return safe(name)


class SmmError(Exception):
    """Base of the errors the CLI reports without a traceback (exit code 1)."""


class InvalidInput(SmmError):
    """Input was rejected; ``problems`` lists what was found wrong, in file order: all of
    it, or the first ``MAX_LISTED`` of ``total`` when there are more."""

    #: Most problems one error lists: a huge bad file gets a bounded report and a count.
    MAX_LISTED = 100

    def __init__(self, problems: list[Problem], what: str = "input", total: int = 0) -> None:
        # ``total``: how many problems were found, when only the first of them were kept.
        self.total = n = max(total, len(problems))
        self.problems = heapq.nsmallest(
            self.MAX_LISTED, problems, key=lambda p: (p.file, p.line or 0, p.field or "")
        )
        self.what = what = _shown_file(what)
        listed = f" (the first {len(self.problems)} are listed)" if n > len(self.problems) else ""
        super().__init__(
            f"{what} has {n:,} problem{'s' if n != 1 else ''}{listed}:\n"
            + "\n".join(f"  {p}" for p in self.problems)
        )


class NotFound(SmmError):
    """A post, account or file named by the user does not exist."""


class DatabaseNotReady(SmmError):
    """The database schema is missing or older than this version needs."""
