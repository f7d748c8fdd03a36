"""Thread parts with media: each part text and optional media (paths or ``{path, alt,
focus}``), resolved and checked per network at import with file, line and the field of the
part and file (``thread[1].media[0]``), stored with the post and read back for publishing."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from plan_support import validate_text
from sqlalchemy import Engine, select

from scheduler import outgoing
from scheduler.adapter import MediaMeta, ThreadPart
from scheduler.config import Config, parse_config
from scheduler.plan import pipeline
from scheduler.plan.read import read_plan_file
from scheduler.queue import posts_t

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32

CONFIG = """
[accounts.toots]
platform = "mastodon"
timezone = "Europe/Riga"
options = { instance = "https://mastodon.example" }
slots = { daily = ["09:00"] }

[accounts.birds]
platform = "x"
timezone = "Europe/Riga"
slots = { daily = ["09:00"] }

[accounts.strict]
platform = "mastodon"
timezone = "Europe/Riga"
options = { instance = "https://mastodon.example" }
require_alt = true
slots = { daily = ["09:00"] }
"""

#: An item whose thread's second part (thread[1]) carries ``{media}``; its media key is on
#: line 9.
ITEM = """\
- id: t1
  account: {account}
  type: t
  text: Part one
  thread:
    - Part two
    - text: Part three
      media:
{media}"""


@pytest.fixture
def config() -> Config:
    return parse_config(CONFIG, "config.toml")


@pytest.fixture
def plan_dir(tmp_path: Path) -> Path:
    (tmp_path / "a.png").write_bytes(PNG)
    (tmp_path / "b.png").write_bytes(PNG)
    return tmp_path


def test_a_part_carries_its_own_media_and_alt_text(config: Config, plan_dir: Path) -> None:
    media = "        - a.png\n        - {path: b.png, alt: A bike, focus: [0.1, 0.2]}\n"
    (item,), problems = validate_text(
        plan_dir, config, ITEM.format(account="toots", media=media), NOW
    )
    assert problems == []
    two, three = item.options.thread
    assert two == ThreadPart("Part two")
    assert three.text == "Part three"
    assert three.media == (str(plan_dir / "a.png"), str(plan_dir / "b.png"))
    assert three.media_meta == (MediaMeta(), MediaMeta("A bike", (0.1, 0.2)))


@pytest.mark.parametrize(
    ("account", "media", "field", "line", "needle"),
    [
        # The file is not there: named by part and file, at the part's media key.
        ("toots", "        - gone.png\n", "thread[1].media[0]", 8, "thread part 3: media file"),
        # Alt text over Mastodon's 1,500 characters, on the second file of the part.
        (
            "toots",
            "        - a.png\n        - {path: b.png, alt: '" + "x" * 1501 + "'}\n",
            "thread[1].media[1]",
            8,
            "thread part 3 of 3: media 2 (b.png): alt text of 1501 characters",
        ),
        # An account that requires alt text: the part's file without one.
        ("strict", "        - a.png\n", "thread[1].media[0]", 8, "thread part 3: media 1 (a.png)"),
        # A mapping key a media entry does not take.
        ("toots", "        - {path: a.png, caption: x}\n", "thread[1].media[0]", 8, "unknown key"),
        # X takes no URLs for media: a problem of the part's media as the network sees it.
        (
            "birds",
            "        - https://example.com/a.png\n",
            "thread[1].media",
            8,
            "X needs image files, not URLs",
        ),
    ],
)
def test_each_part_media_problem_names_file_line_and_field(
    config: Config,
    plan_dir: Path,
    account: str,
    media: str,
    field: str,
    line: int,
    needle: str,
) -> None:
    _, problems = validate_text(plan_dir, config, ITEM.format(account=account, media=media), NOW)
    assert [(p.field, p.line, p.item) for p in problems] == [(field, line, "t1")], problems
    (problem,) = problems
    assert needle in problem.message
    assert problem.file.endswith("plan.yaml")


def test_an_unknown_key_in_a_part_is_refused_at_the_part(config: Config, plan_dir: Path) -> None:
    text = ITEM.format(account="toots", media="        - a.png\n").replace(
        "      media:", "      pictures: [a.png]\n      media:"
    )
    _, problems = validate_text(plan_dir, config, text, NOW)
    ((field, line, message),) = [(p.field, p.line, p.message) for p in problems]
    assert (field, line) == ("thread[1]", 7)
    assert "unknown key 'pictures'" in message


def test_a_part_of_media_alone_is_a_part(config: Config, plan_dir: Path) -> None:
    text = ITEM.format(account="toots", media="        - a.png\n").replace(
        "    - text: Part three\n      media:", "    - media:"
    )
    (item,), problems = validate_text(plan_dir, config, text, NOW)
    assert problems == []
    assert item.options.thread[1] == ThreadPart("", (str(plan_dir / "a.png"),))


def test_part_media_are_stored_and_read_back_for_publishing(
    engine: Engine, config: Config, plan_dir: Path
) -> None:
    path = plan_dir / "plan.yaml"
    media = "        - {path: a.png, alt: A cup}\n"
    path.write_text(ITEM.format(account="toots", media=media), encoding="utf-8")
    raws, problems = read_plan_file(path)
    assert problems == []
    with engine.begin() as conn:
        _diff, found = pipeline.import_plan(conn, raws, config, NOW, parallel=False)
    assert found == []
    with engine.connect() as conn:
        row = conn.execute(select(posts_t)).one()
    # A part without media is stored as its text, as before parts had media.
    assert row.post_options["thread"] == [
        "Part two",
        {
            "text": "Part three",
            "media": [str(plan_dir / "a.png")],
            "media_meta": [{"alt": "A cup"}],
        },
    ]
    post = outgoing.from_row(row, "toots")
    parts = post.chain()
    assert [p.text for p in parts] == ["Part one", "Part two", "Part three"]
    assert parts[2].media == (str(plan_dir / "a.png"),)
    assert parts[2].meta(0) == MediaMeta("A cup")


def test_queue_show_names_how_many_media_a_part_carries() -> None:
    from scheduler.cli.queue import _part_line

    assert _part_line("Part two\nmore") == "Part two"
    assert _part_line({"text": "Part three", "media": ["/p/a.png", "/p/b.png"]}) == (
        "Part three  [+2 media]"
    )
