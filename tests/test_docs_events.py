"""Docs beside the code: the log events docs/operations.md lists are the ones the code logs, at
the levels it gives; the schema revision examples show is the latest."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _source() -> str:
    files = [*(REPO / "scheduler").rglob("*.py"), *(REPO / "plugins").rglob("*.py")]
    return "".join(p.read_text(encoding="utf-8") for p in files)


def _documented() -> list[tuple[list[str], list[str]]]:
    page = (REPO / "docs" / "operations.md").read_text(encoding="utf-8")
    table = page.split("| event | level | meaning |", 1)[1].split("\n\n", 1)[0]
    rows = []
    for line in table.splitlines()[2:]:
        event, level = line.split("|")[1:3]
        rows.append((re.findall(r"`(\w+)`", event), [w.strip() for w in level.split(",")]))
    return rows


def test_every_documented_event_is_logged_at_its_level() -> None:
    source = _source()
    rows = _documented()
    assert len(rows) >= 8
    for events, levels in rows:
        for index, event in enumerate(events):
            logged = re.findall(rf'log\.(\w+)\(\s*"{event}"', source)
            assert logged, f"docs/operations.md lists {event!r}, which nothing logs"
            level = levels[index] if len(levels) == len(events) else levels[0]
            assert level in logged, f"{event!r} is logged at {logged}, documented as {level}"


def test_the_schema_the_docs_show_is_the_latest() -> None:
    from scheduler.db.migrate import head_revision

    head = head_revision()
    shown = []
    for page in (REPO / "docs").glob("*.md"):
        text = page.read_text(encoding="utf-8")
        shown += re.findall(r"ready \(schema (\d{4})\)", text)
        shown += re.findall(r"latest (\d{4}); up to date", text)
        shown += re.findall(r"older than this version's (\d{4})", text)
    assert len(shown) >= 4
    assert set(shown) == {head}, f"docs show schema {sorted(set(shown))}, the latest is {head}"
