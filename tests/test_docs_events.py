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


def _outcome_events() -> dict[str, list[str]]:
    """The events and levels of the daemon's outcome lines, which a batch writes together
    (not through ``log.<level>("event")``): asked of the code for every post state."""
    import logging
    from types import SimpleNamespace

    from scheduler.daemon.worker import _outcome_event
    from scheduler.db.models import PostState

    found: dict[str, list[str]] = {}
    for state in PostState:
        claimed = SimpleNamespace(row=SimpleNamespace(key="p1"), account="a", attempt_number=1)
        result = SimpleNamespace(
            claimed=claimed,
            state=state,
            remote_url=None,
            remote_id="r1",
            outcome="x",
            message="m",
            next_attempt_at=None,
        )
        level, event = _outcome_event(result)  # type: ignore[arg-type]
        found.setdefault(event["event"], []).append(logging.getLevelName(level).lower())
    return found


def test_every_documented_event_is_logged_at_its_level() -> None:
    source = _source()
    rows = _documented()
    outcome_events = _outcome_events()
    assert {"post_published", "post_retry", "post_failed", "post_unconfirmed"} <= set(
        outcome_events
    )
    assert len(rows) >= 8
    for events, levels in rows:
        for index, event in enumerate(events):
            logged = re.findall(rf'log\.(\w+)\(\s*"{event}"', source)
            logged += outcome_events.get(event, [])
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
