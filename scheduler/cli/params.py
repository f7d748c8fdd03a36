"""Command-line values checked as text first: numbers are ASCII digits within a range.

Python's ``int()`` reads fullwidth (``０１``) and Arabic-Indic (``٠١``) digits as numbers, and
has no upper bound: a limit of 10**23 would reach the database driver and overflow there.
"""

from __future__ import annotations

from typing import Any

import click

__all__ = ["MAX_COUNT", "Count"]

#: The largest count any option takes (what SQLite's and PostgreSQL's LIMIT hold, with room).
MAX_COUNT = 2**31 - 1


class Count(click.IntRange):
    """A whole number written in ASCII digits, from ``low`` to ``high``."""

    def __init__(self, low: int = 0, high: int = MAX_COUNT) -> None:
        super().__init__(low, high)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, int):
            text = str(value).strip()
            if not (text.isascii() and text.isdigit()) or len(text) > len(str(self.max)):
                shown = text if len(text) <= 30 else text[:29] + "…"
                self.fail(f"{shown!r} is not a whole number from {self.min} to {self.max}")
        return super().convert(value, param, ctx)
