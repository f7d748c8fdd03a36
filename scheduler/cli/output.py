"""Printing for people (aligned tables) and for scripts (JSON)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import click

from scheduler.timeutil import format_utc


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_utc(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def echo_json(data: Any) -> None:
    """Print ``data`` as JSON (UTC timestamps as ISO 8601 with a Z)."""
    click.echo(json.dumps(data, default=_default, ensure_ascii=False, indent=2))


@dataclass(frozen=True)
class Cell:
    """A table cell printed in colour: its width is that of ``text``, not of the codes."""

    text: str
    fg: str | None = None
    bold: bool = False


def safe(text: str, *, keep_newlines: bool = False) -> str:
    """``scheduler.text.safe``, imported on first use (tab completion never needs it)."""
    from scheduler.text import safe as escape

    return escape(text, keep_newlines=keep_newlines)


def _cell(value: Any) -> tuple[str, Cell | None]:
    if isinstance(value, Cell):
        return safe(value.text), value
    return ("" if value is None else safe(str(value))), None


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, empty: str = "nothing") -> None:
    """Print an aligned table; the last column may be long and is not padded.

    Widths are terminal columns (wide and combining characters count as they show); stored
    text is printed with control, bidi and zero-width characters escaped (``safe``); a
    ``Cell`` is coloured when colour is on (``--color``, ``NO_COLOR``, ``TERM=dumb``)."""
    if not rows:
        click.echo(f"({empty})")
        return
    from scheduler.text import display_width

    cells = [[_cell(v) for v in row] for row in rows]
    widths = [
        max(display_width(h), *(display_width(r[i][0]) for r in cells))
        for i, h in enumerate(headers)
    ]
    line = "  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True))
    click.echo(click.style(line.rstrip(), bold=True))
    for r in cells:
        out = []
        for (text, styled), w in zip(r, widths, strict=True):
            pad = " " * (w - display_width(text))
            shown = click.style(text, fg=styled.fg, bold=styled.bold) if styled else text
            out.append(shown + pad)
        click.echo("  ".join(out).rstrip())


def colour_setting(choice: str | None) -> bool | None:
    """Whether to print colour: ``--color always|never``, else never under ``NO_COLOR`` (any
    value) or ``TERM=dumb``, else None (click decides: colour on a terminal only)."""
    if choice == "always":
        return True
    if choice == "never":
        return False
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return None


def local_time(instant: datetime | None, tz: str | None) -> str:
    """``2026-12-01 09:00 EET``: an instant as the account's people read it."""
    if instant is None:
        return "-"
    try:
        zone = ZoneInfo(tz) if tz else None
    except Exception:
        zone = None
    local = instant.astimezone(zone) if zone else instant
    return local.strftime("%Y-%m-%d %H:%M %Z")


def preview(text: str, width: int = 48) -> str:
    """The text on one line, cut to ``width`` terminal columns, unsafe characters escaped."""
    from scheduler.text import display_width, graphemes

    flat = safe(" ".join(text.split()))
    if display_width(flat) <= width:
        return flat
    out, used = [], 0
    for cluster in graphemes(flat):
        w = display_width(cluster)
        if used + w > width - 1:
            break
        out.append(cluster)
        used += w
    return "".join(out) + "…"
