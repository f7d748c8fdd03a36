"""Video limits at plan validation: each network's size and length limits (its
``capabilities.video``) checked by the core, by content (the length read from the file's
MP4/MOV container), each problem naming the file, the line and the field; a file that does
not state its length is left for the network."""

from __future__ import annotations

import struct
from datetime import UTC, datetime
from pathlib import Path

import pytest
from plan_support import validate_text

from scheduler.config import Config, parse_config

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
CONFIG = """
[accounts.brand_li]
platform = "linkedin"
timezone = "Europe/Riga"
options = { author = "urn:li:organization:2414183" }
slots = { daily = ["09:00"] }

[accounts.brand_fb]
platform = "facebook"
timezone = "Europe/Riga"
options = { page_id = "1234567890" }
slots = { daily = ["09:00"] }

[accounts.brand_ig]
platform = "instagram"
timezone = "Europe/Riga"
options = { ig_user_id = "17841400000000000" }
slots = { daily = ["09:00"] }

[media]
fetch_max_bytes = 21474836480
"""
KB, MB = 1024, 1024 * 1024


def video(folder: Path, *, size: int, seconds: float | None, name: str = "clip.mp4") -> None:
    """An MP4 of ``size`` bytes (sparse past its head) whose moov/mvhd says it lasts
    ``seconds`` (None: no moov box, its length unknown)."""
    head = struct.pack(">I4s", 16, b"ftyp") + b"isom\0\0\0\0"
    if seconds is not None:
        payload = struct.pack(">B3xIIII", 0, 0, 0, 1000, int(seconds * 1000)) + b"\0" * 80
        mvhd = struct.pack(">I4s", 8 + len(payload), b"mvhd") + payload
        head += struct.pack(">I4s", 8 + len(mvhd), b"moov") + mvhd
    with (folder / name).open("wb") as f:
        f.write(head + struct.pack(">I4s", 0, b"mdat"))  # 0: to the end of the file
        f.truncate(size)


@pytest.fixture
def config() -> Config:
    return parse_config(CONFIG, "config.toml")


def plan(account: str) -> str:
    return f"- id: v1\n  account: {account}\n  type: t\n  text: Spring\n  media:\n    - clip.mp4\n"


@pytest.mark.parametrize(
    ("account", "size", "seconds", "problem"),
    [
        ("brand_li", 100 * KB, 2, "a video of 2.0 s, shorter than the 3 s the network takes"),
        ("brand_li", 100 * KB, 1801, "a video of 1801.0 s, longer than the 30 min"),
        ("brand_li", 70 * KB, 60, "a video of 71680 bytes, less than the 76800"),
        ("brand_li", 501 * MB, 60, "525336576 bytes, more than the limit of 524288000"),
        ("brand_fb", 100 * KB, 241 * 60, "a video of 14460.0 s, longer than the 240 min"),
        ("brand_fb", 10 * 1024 * MB + 1, 60, "10737418241 bytes, more than the limit of"),
        ("brand_ig", 100 * KB, 2, "a video of 2.0 s, shorter than the 3 s"),
        ("brand_ig", 100 * KB, 16 * 60, "a video of 960.0 s, longer than the 15 min"),
        ("brand_ig", 301 * MB, 60, "315621376 bytes, more than the limit of 314572800"),
    ],
)
def test_a_video_over_its_networks_limits_is_named_by_file_line_and_field(
    tmp_path: Path, config: Config, account: str, size: int, seconds: float, problem: str
) -> None:
    video(tmp_path, size=size, seconds=seconds)
    _, problems = validate_text(tmp_path, config, plan(account), NOW)
    (found,) = problems
    assert (found.file, found.line, found.item, found.field) == (
        str(tmp_path / "plan.yaml"),
        5,
        "v1",
        "media",
    )
    assert found.message.startswith(f"media file refused: {tmp_path / 'clip.mp4'}: ")
    assert problem in found.message


@pytest.mark.parametrize("account", ["brand_li", "brand_fb", "brand_ig"])
def test_a_video_within_the_limits_or_of_unknown_length_passes(
    tmp_path: Path, config: Config, account: str
) -> None:
    video(tmp_path, size=100 * KB, seconds=3)
    items, problems = validate_text(tmp_path, config, plan(account), NOW)
    assert problems == []
    assert [i.key for i in items] == ["v1"]
    video(tmp_path, size=100 * KB, seconds=None)  # no moov: the network judges
    _, problems = validate_text(tmp_path, config, plan(account), NOW)
    assert problems == []


def test_the_operators_cap_is_named_when_it_is_what_refuses(tmp_path: Path) -> None:
    config = parse_config(CONFIG.replace("21474836480", "104857600"), "config.toml")
    video(tmp_path, size=200 * MB, seconds=60)
    _, problems = validate_text(tmp_path, config, plan("brand_li"), NOW)
    (found,) = problems
    assert "more than the limit of 104857600 ([media] fetch_max_bytes" in found.message
