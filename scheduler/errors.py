"""Errors that point at the exact place of bad input.

Every check over user input (config, plan, CLI arguments) collects ``Problem`` records instead
of stopping at the first one, then raises ``InvalidInput`` with all of them, so a user fixes a
file in one pass.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


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

    def location(self) -> str:
        """``plan.csv, row 4, field at``: where to look."""
        parts = [self.file]
        if self.line is not None:
            parts.append(f"{self.unit} {self.line}")
        if self.item:
            parts.append(f"item {self.item!r}")
        if self.field:
            parts.append(f"field {self.field!r}")
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
            "field": self.field,
            "message": self.message,
            "hint": self.hint,
        }


class SmmError(Exception):
    """Base of the errors the CLI reports without a traceback (exit code 1)."""


class InvalidInput(SmmError):
    """Input was rejected; ``problems`` lists everything found wrong."""

    def __init__(self, problems: list[Problem], what: str = "input") -> None:
        self.problems = sorted(problems, key=lambda p: (p.file, p.line or 0, p.field or ""))
        self.what = what
        n = len(self.problems)
        super().__init__(
            f"{what} has {n} problem{'s' if n != 1 else ''}:\n"
            + "\n".join(f"  {p}" for p in self.problems)
        )


class NotFound(SmmError):
    """A post, account or file named by the user does not exist."""


class DatabaseNotReady(SmmError):
    """The database schema is missing or older than this version needs."""
