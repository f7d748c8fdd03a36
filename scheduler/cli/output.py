"""Printing for people (aligned tables) and for scripts (JSON)."""

from __future__ import annotations

import json
from collections.abc import Sequence
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


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, empty: str = "nothing") -> None:
    """Print an aligned table; the last column may be long and is not padded."""
    if not rows:
        click.echo(f"({empty})")
        return
    cells = [[("" if v is None else str(v)) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = "  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True))
    click.echo(click.style(line.rstrip(), bold=True))
    for r in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


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
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"
