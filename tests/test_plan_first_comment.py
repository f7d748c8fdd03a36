"""A first comment posted as a comment (Facebook, Instagram, YouTube) is held to the
network's comment limit at validation, named by file, line and ``first_comment``."""

from __future__ import annotations

import struct
from datetime import UTC, datetime
from pathlib import Path

import pytest
from plan_support import validate_text

from scheduler.config import Config, parse_config

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
CONFIG = """
[accounts.fb]
platform = "facebook"
timezone = "Europe/Riga"
options = { page_id = "1234567890" }
slots = { daily = ["09:00"] }

[accounts.ig]
platform = "instagram"
timezone = "Europe/Riga"
options = { ig_user_id = "17841400000000000" }
slots = { daily = ["09:00"] }

[accounts.yt]
platform = "youtube"
timezone = "Europe/Riga"
slots = { daily = ["09:00"] }
"""


@pytest.fixture
def config() -> Config:
    return parse_config(CONFIG, "config.toml")


def clip(folder: Path) -> None:
    """A short MP4 (10 s, by its moov/mvhd) every one of these networks takes."""
    payload = struct.pack(">B3xIIII", 0, 0, 0, 1000, 10_000) + b"\0" * 80
    mvhd = struct.pack(">I4s", 8 + len(payload), b"mvhd") + payload
    head = struct.pack(">I4s", 16, b"ftyp") + b"isom\0\0\0\0"
    head += struct.pack(">I4s", 8 + len(mvhd), b"moov") + mvhd
    (folder / "clip.mp4").write_bytes(head + struct.pack(">I4s", 8, b"mdat") + b"\0" * 4096)


def plan(account: str, comment: str) -> str:
    return (
        f"- id: c1\n  account: {account}\n  type: t\n  text: Spring\n"
        f"  media: [clip.mp4]\n  first_comment: {comment}\n"
    )


@pytest.mark.parametrize(("account", "limit"), [("fb", 8000), ("ig", 2200), ("yt", 10_000)])
def test_a_first_comment_over_the_comment_limit_is_refused(
    tmp_path: Path, config: Config, account: str, limit: int
) -> None:
    clip(tmp_path)
    _, problems = validate_text(tmp_path, config, plan(account, "c" * limit), NOW)
    assert problems == []

    _, problems = validate_text(tmp_path, config, plan(account, "c" * (limit + 1)), NOW)
    (found,) = problems
    assert (found.file, found.line, found.field) == (
        str(tmp_path / "plan.yaml"),
        6,
        "first_comment",
    )
    assert f"first comment: {limit + 1} characters" in found.message
    assert f"comment limit of {limit}" in found.message
