"""``smm queue`` as an operator meets it: times, errors, JSON, tables, colour, completion."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.shell_completion import ShellComplete
from click.testing import CliRunner, Result
from sqlalchemy import update

from scheduler.cli import cli
from scheduler.db.engine import make_engine
from scheduler.queue import posts_t

CONFIG = """
[accounts.riga]
platform = "sim"
timezone = "Europe/Riga"
slots = { daily = ["09:00", "18:00"] }

[accounts.ny]
platform = "sim"
timezone = "America/New_York"
"""

PLAN = """\
- {id: a1, account: riga, type: laugh, text: "one", tags: [x, y]}
- {id: a2, account: riga, type: medal, text: two, media: ["https://example.com/a.png"]}
- {id: b1, account: ny, type: laugh, text: "日本語のテキスト", at: "2030-06-03 10:00"}
"""

Smm = Callable[..., Result]
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture
def smm(sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Smm:
    monkeypatch.delenv("NO_COLOR", raising=False)
    config = tmp_path / "config.toml"
    config.write_text(CONFIG, encoding="utf-8")
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN, encoding="utf-8")
    base = ["--db", sqlite_url, "--config", str(config)]

    def run(*args: str, expect: int = 0, color: bool = False) -> Result:
        result = CliRunner().invoke(cli, [*base, *args], color=color)
        assert result.exit_code == expect, result.output
        return result

    run("plan", "import", str(plan))
    return run


def test_reschedule_with_an_offset_is_converted_to_the_account_zone(smm: Smm) -> None:
    out = smm("queue", "reschedule", "a2", "--at", "2030-07-01T01:30:00Z").output
    # 01:30 UTC is 04:30 in Riga in summer (EEST, UTC+3), not "01:30Z Europe/Riga".
    assert out.strip() == "a2: now due 2030-07-01 04:30 EEST (2030-07-01T01:30:00Z)"
    out = smm("queue", "reschedule", "a2", "--at", "2030-07-01 03:30+02:00").output
    assert "now due 2030-07-01 04:30 EEST" in out
    data = json.loads(smm("queue", "reschedule", "a2", "--at", "2030-07-02 10:00", "--json").output)
    assert data == {
        "id": "a2",
        "due_at": "2030-07-02T07:00:00Z",
        "due_local": "2030-07-02 10:00 EEST",
    }


def test_listing_an_unknown_account_is_an_error_like_pausing_one(smm: Smm) -> None:
    listed = smm("queue", "list", "--account", "nobody", expect=1).output
    paused = smm("queue", "pause", "--account", "nobody", expect=1).output
    assert "no account 'nobody'" in listed
    assert listed == paused


def test_show_lines_its_values_up_in_one_column(smm: Smm) -> None:
    out = smm("queue", "show", "a1").output
    lines = {line.split(":")[0].strip(): line for line in out.splitlines() if ":" in line}
    columns = {
        label: len(line) - len(line[line.index(":") + 1 :].lstrip())
        for label, line in lines.items()
        if label in ("due", "schedule", "source", "tags")
    }
    assert len(set(columns.values())) == 1, columns
    assert "tags:      x, y" in out


def test_show_says_when_a_retry_is_due(smm: Smm, sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(
            update(posts_t)
            .where(posts_t.c.key == "b1")
            .values(state="retry_wait", next_attempt_at=datetime(2030, 6, 3, 14, 5, tzinfo=UTC))
        )
    engine.dispose()
    out = smm("queue", "show", "b1").output
    assert "due:       2030-06-03 10:00 EDT  (2030-06-03T14:00:00Z)" in out
    assert "next try:  2030-06-03 10:05 EDT  (2030-06-03T14:05:00Z)" in out
    assert "next try" not in smm("queue", "show", "a1").output


#: Text a plan can no longer hold, but a database written by an older version (or by hand) can.
HOSTILE = "one \x1b[2J\r wiped \u202e reversed"


def test_stored_control_and_bidi_characters_are_printed_escaped(smm: Smm, sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(update(posts_t).where(posts_t.c.key == "a1").values(text=HOSTILE))
    engine.dispose()
    for args in (("queue", "list"), ("queue", "show", "a1")):
        out = smm(*args).output
        assert "\x1b" not in out
        assert "\r" not in out
        assert "\u202e" not in out
        assert "\\x1b[2J" in out
        assert "\\u202e" in out
    assert "\\x1b[2J\\r wiped" in smm("queue", "show", "a1").output


def test_the_list_lines_up_wide_characters(smm: Smm) -> None:
    out = smm("queue", "list").output.splitlines()
    header, rows = out[0], out[1:]
    text_col = header.index("TEXT")
    from scheduler.text import display_width

    for row in rows:
        assert display_width(row[: row.index(row.split("  ")[-1])]) >= text_col - 2
        cells = re.split(r"\s{2,}", row)
        assert display_width(row) - display_width(cells[-1]) == text_col, row


def test_changes_print_json_when_asked(smm: Smm) -> None:
    cancelled = json.loads(smm("queue", "cancel", "a1", "--json").output)
    assert cancelled == {
        "changed": [{"id": "a1", "from": "queued", "to": "cancelled"}],
        "count": 1,
        "left": [],
    }
    retried = json.loads(smm("queue", "retry", "a1", "--json").output)
    assert retried["changed"] == [{"id": "a1", "from": "cancelled", "to": "queued"}]
    paused = json.loads(smm("queue", "pause", "--account", "riga", "--json").output)
    assert paused == {"paused": ["riga"], "posts_held": 2}
    resumed = json.loads(smm("queue", "resume", "--account", "riga", "--json").output)
    assert resumed == {"resumed": ["riga"], "posts_queued": 2}


def _unconfirm(sqlite_url: str, key: str) -> None:
    engine = make_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(update(posts_t).where(posts_t.c.key == key).values(state="unconfirmed"))
    engine.dispose()


def test_resolve_takes_the_remote_id_an_optional_url_and_time(smm: Smm, sqlite_url: str) -> None:
    _unconfirm(sqlite_url, "a1")
    _unconfirm(sqlite_url, "a2")
    # A network without post addresses: the id is enough.
    out = smm("queue", "resolve", "a1", "--published", "9001").output
    assert "a1: published as 9001" in out
    assert "published time set to now; pass --at TIME" in out
    refused = smm("queue", "resolve", "a2", "--published", "https://x.invalid/p/1", expect=2)
    assert "give the network's id for the post" in refused.output
    data = json.loads(
        smm(
            "queue",
            "resolve",
            "a2",
            "--published",
            "at://did:plc:abc/app.bsky.feed.post/3k",
            "--url",
            "https://bsky.app/profile/abc/post/3k",
            "--at",
            "2026-01-05 10:00",
            "--json",
        ).output
    )
    assert data["remote_id"] == "at://did:plc:abc/app.bsky.feed.post/3k"
    assert data["published_at"] == "2026-01-05T08:00:00Z"  # Riga winter time, UTC+2
    shown = json.loads(smm("queue", "show", "a2", "--json").output)
    assert (shown["remote_id"], shown["remote_url"], shown["published_at"]) == (
        "at://did:plc:abc/app.bsky.feed.post/3k",
        "https://bsky.app/profile/abc/post/3k",
        "2026-01-05T08:00:00Z",
    )


@pytest.mark.parametrize(
    ("action", "comment", "needle"),
    [
        ("approve", "c" * 5000, "5,000 characters"),
        ("reject", "c" * 5000, "5,000 characters"),
        ("reject", "fix\x1b]0;pwned\x07 it", "control character"),
        ("approve", "ok\u202e", "control character"),
    ],
)
def test_an_approval_comment_is_bounded_text(
    smm: Smm, sqlite_url: str, action: str, comment: str, needle: str
) -> None:
    """A comment is kept in the post's history, printed by `smm queue show` and the web app."""
    engine = make_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(update(posts_t).where(posts_t.c.key == "a1").values(state="pending_approval"))
    engine.dispose()
    refused = smm("queue", action, "a1", "--comment", comment, expect=1)
    assert needle in refused.output
    assert len(refused.output) < 400
    assert json.loads(smm("queue", "show", "a1", "--json").output)["state"] == "pending_approval"
    smm("queue", action, "a1", "--comment", "line one\nline two")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--published", "1", "--url", "javascript:alert(1)"), "not an http(s) address"),
        (("--published", "1", "--url", "https://"), "not an http(s) address"),
        (("--published", "1", "--url", "https://x.invalid/a b"), "has a space"),
        (("--published", "1", "--url", "https://x.invalid/" + "p" * 5000), "characters"),
        (("--published", "12\x1b[2J"), "control"),
        (("--published", "1 2"), "control"),
        (("--published", "9" * 5000), "characters"),
    ],
)
def test_resolve_refuses_an_address_or_id_no_network_gives(
    smm: Smm, sqlite_url: str, args: tuple[str, ...], needle: str
) -> None:
    """What --url and --published give is shown as a link and sent back to the network:
    a javascript: address, a cut-off one or an id with control characters never is."""
    _unconfirm(sqlite_url, "a1")
    refused = smm("queue", "resolve", "a1", *args, expect=2)
    assert needle in refused.output
    assert len(refused.output) < 600
    shown = json.loads(smm("queue", "show", "a1", "--json").output)
    assert shown["state"] == "unconfirmed"


@pytest.mark.parametrize(
    ("env", "args", "coloured"),
    [
        ({}, (), True),
        ({"NO_COLOR": "1"}, (), False),
        ({"TERM": "dumb"}, (), False),
        ({"NO_COLOR": "1"}, ("--color", "always"), True),
        ({}, ("--color", "never"), False),
    ],
)
def test_colour_follows_no_color_term_and_the_option(
    sqlite_url: str, env: dict[str, str], args: tuple[str, ...], coloured: bool
) -> None:
    from datetime import timedelta

    from scheduler.daemon import store
    from scheduler.timeutil import utcnow

    engine = make_engine(sqlite_url)
    info = {"hostname": "h", "pid": 1, "version": "0.1"}
    store.heartbeat(engine, "a-long-daemon-name:1234", info, utcnow(), "running")
    store.heartbeat(engine, "d2", info, utcnow() - timedelta(seconds=2), "running")
    engine.dispose()
    result = CliRunner(env={"TERM": "xterm", **env}).invoke(
        cli, ["--db", sqlite_url, *args, "status"], color=True
    )
    assert ("\x1b[" in result.output) is coloured, result.output
    # Colour or not, the daemon table lines up: widths count what is seen, not the codes.
    table = ANSI.sub("", result.output).split("\ndaemons\n")[1].split("\n\n")[0].splitlines()
    starts = {
        line.index(word) for line, word in zip(table, ("STATE", "alive", "alive"), strict=True)
    }
    assert len(starts) == 1, table


def _complete(args: list[str], incomplete: str) -> list[str]:
    completer = ShellComplete(cli, {}, "smm", "_SMM_COMPLETE")
    return [c.value for c in completer.get_completions(args, incomplete)]


def test_completion_offers_post_ids_and_account_names(smm: Smm, sqlite_url: str) -> None:
    base = ["--db", sqlite_url]
    assert _complete([*base, "queue", "show"], "a") == ["a1", "a2"]
    assert _complete([*base, "queue", "cancel", "a1"], "") == ["a1", "a2", "b1"]
    assert _complete([*base, "queue", "list", "--account"], "r") == ["riga"]
    assert _complete([*base, "queue", "pause", "--account"], "") == ["ny", "riga"]
    assert _complete([*base, "er", "--account"], "n") == ["ny"]
    assert _complete([*base, "report", "--account"], "") == ["ny", "riga"]
    assert "queue" in _complete([], "qu")


def test_completion_of_a_missing_database_offers_nothing_and_creates_nothing(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "no" / "x.db"
    assert _complete(["--db", f"sqlite:///{missing}", "queue", "show"], "") == []
    assert not (tmp_path / "no").exists()
