"""Local media confinement (scheduler.media) and plan validation of media entries.

A plan may only name files under a media root (its own directory, ``[media] roots``), regular
files only, of a type the network takes by their bytes; the file is checked again, through
the descriptor, when it is opened to be sent.
"""

from __future__ import annotations

import ast
import asyncio
import json
import os
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner

from scheduler import media
from scheduler.adapter import Capabilities, Rejected, VideoLimits
from scheduler.cli import cli
from scheduler.config import MediaSettings, load_config
from scheduler.errors import InvalidInput

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\0" * 32
IMAGES = Capabilities(text_limit=100, media_types=("image/jpeg", "image/png"))

CONFIG = """
[accounts.fb]
platform = "facebook"
timezone = "UTC"
options = { page_id = "1234" }
credentials = { page_access_token = { env = "SMM_TEST_FB_TOKEN" } }

[accounts.li]
platform = "linkedin"
timezone = "UTC"
options = { author = "urn:li:organization:5" }
credentials = { access_token = { env = "SMM_TEST_LI_TOKEN" } }
"""


@pytest.fixture
def plan_dir(tmp_path: Path) -> Path:
    """A plan's folder (the default media root) with one good image in it."""
    folder = tmp_path / "plans"
    (folder / "img").mkdir(parents=True)
    (folder / "img" / "cat.png").write_bytes(PNG)
    return folder


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A private file (0600) beside the plan's folder, outside every media root."""
    secret = tmp_path / "secret.png"
    secret.write_bytes(PNG)
    secret.chmod(0o600)
    return secret


def roots(plan_dir: Path) -> tuple[Path, ...]:
    return (plan_dir.resolve(),)


# --------------------------------------------------------------------------- locate


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        ("/proc/self/environ", "kernel or device file"),
        ("/etc/passwd", "outside the media roots"),
        ("~/../etc/passwd", "'~' is not expanded"),
        ("../../../../etc/hostname", "outside the media roots"),
        ("img/../../secret.png", "outside the media roots"),
        ("/dev/zero", "kernel or device file"),
    ],
)
def test_a_path_outside_the_media_roots_is_refused(
    plan_dir: Path, outside: Path, entry: str, why: str
) -> None:
    with pytest.raises(media.MediaError, match=why):
        media.locate(entry, plan_dir, roots(plan_dir))


def test_a_private_file_outside_the_root_is_refused_by_its_absolute_path(
    plan_dir: Path, outside: Path
) -> None:
    with pytest.raises(media.MediaError, match="outside the media roots"):
        media.locate(str(outside), plan_dir, roots(plan_dir))


def test_a_symlink_inside_the_root_that_leaves_it_is_refused(plan_dir: Path, outside: Path) -> None:
    (plan_dir / "img" / "link.png").symlink_to(outside)
    with pytest.raises(media.MediaError, match="outside the media roots"):
        media.locate("img/link.png", plan_dir, roots(plan_dir))


def test_a_fifo_is_not_a_regular_file(plan_dir: Path) -> None:
    os.mkfifo(plan_dir / "img" / "pipe.png")
    with pytest.raises(media.MediaError, match="not a regular file"):
        media.locate("img/pipe.png", plan_dir, roots(plan_dir))


def test_a_file_under_the_root_is_located_as_its_resolved_path(plan_dir: Path) -> None:
    found = media.locate("img/./../img/cat.png", plan_dir, roots(plan_dir))
    assert found == (plan_dir / "img" / "cat.png").resolve()


# --------------------------------------------------------------------------- reading


def read(entry: str, policy: media.MediaPolicy, caps: Capabilities = IMAGES) -> media.MediaFile:
    with media.using(policy):
        return asyncio.run(media.read(entry, caps))


def test_a_file_is_read_with_the_type_its_bytes_say(plan_dir: Path) -> None:
    (plan_dir / "img" / "photo.png").write_bytes(JPEG)  # a JPEG, whatever its name says
    got = read(str(plan_dir / "img" / "photo.png"), media.MediaPolicy(roots(plan_dir)))
    assert (got.name, got.content, got.mime) == ("photo.png", JPEG, "image/jpeg")


def test_a_text_file_named_like_an_image_is_refused(plan_dir: Path) -> None:
    (plan_dir / "img" / "passwd.png").write_text("root:x:0:0:root:/root:/bin/bash\n")
    with pytest.raises(Rejected, match="not a recognised media type"):
        read(str(plan_dir / "img" / "passwd.png"), media.MediaPolicy(roots(plan_dir)))


def test_a_file_over_the_networks_limit_is_refused(plan_dir: Path) -> None:
    (plan_dir / "img" / "big.png").write_bytes(PNG + b"\0" * 1000)
    small = Capabilities(text_limit=100, media_types=("image/png",), max_media_bytes=100)
    with pytest.raises(Rejected, match="more than the limit of 100"):
        read(str(plan_dir / "img" / "big.png"), media.MediaPolicy(roots(plan_dir)), small)


def test_a_file_over_the_operators_cap_says_which_setting_refused_it(plan_dir: Path) -> None:
    """A network that takes larger files than ``[media] fetch_max_bytes`` allows: the
    message names the setting, so the operator knows what to raise."""
    (plan_dir / "img" / "big.png").write_bytes(PNG + b"\0" * 1000)
    roomy = Capabilities(text_limit=100, media_types=("image/png",), max_media_bytes=10_000)
    policy = media.MediaPolicy(roots(plan_dir), MediaSettings(fetch_max_bytes=500))
    with pytest.raises(Rejected, match=r"more than the limit of 500 \(\[media\] fetch_max_bytes"):
        read(str(plan_dir / "img" / "big.png"), policy, roomy)
    with pytest.raises(media.MediaError, match=r"limit of 500 \(\[media\] fetch_max_bytes"):
        media.inspect(str(plan_dir / "img" / "big.png"), roomy, policy)
    strict = Capabilities(text_limit=100, media_types=("image/png",), max_media_bytes=100)
    with pytest.raises(media.MediaError) as caught:
        media.inspect(str(plan_dir / "img" / "big.png"), strict, policy)
    assert str(caught.value).endswith("more than the limit of 100")  # the network's own


def _mp4(path: Path, seconds: float | None, size: int = 4096) -> None:
    """An MP4 of ``size`` bytes; its moov/mvhd says it lasts ``seconds`` (None: no moov)."""
    head = struct.pack(">I4s", 16, b"ftyp") + b"isom\0\0\0\0"
    if seconds is not None:
        payload = struct.pack(">B3xIIII", 0, 0, 0, 1000, int(seconds * 1000)) + b"\0" * 80
        mvhd = struct.pack(">I4s", 8 + len(payload), b"mvhd") + payload
        head += struct.pack(">I4s", 8 + len(mvhd), b"moov") + mvhd
    path.write_bytes(
        head + struct.pack(">I4s", size - len(head), b"mdat").ljust(size - len(head), b"\1")
    )


VIDEOS = Capabilities(
    text_limit=100,
    media_types=("image/png", "video/mp4"),
    max_media_bytes=100,  # the images' limit; videos have their own
    video=VideoLimits(min_bytes=1000, max_bytes=8192, min_seconds=3, max_seconds=60),
)


@pytest.mark.parametrize(
    ("seconds", "size", "problem"),
    [
        (10, 4096, None),
        (None, 4096, None),  # no duration stated: the network judges
        (2.5, 4096, "a video of 2.5 s, shorter than the 3 s the network takes at least"),
        (61, 4096, "a video of 61.0 s, longer than the 60 s the network takes at most"),
        (10, 900, "a video of 900 bytes, less than the 1000 the network takes at least"),
        (10, 9000, "9000 bytes, more than the limit of 8192"),
    ],
)
def test_a_video_is_held_to_the_networks_video_limits(
    plan_dir: Path, seconds: float | None, size: int, problem: str | None
) -> None:
    clip = plan_dir / "img" / "clip.mp4"
    _mp4(clip, seconds, size)
    policy = media.MediaPolicy(roots(plan_dir))
    if problem is None:
        info = media.inspect(str(clip), VIDEOS, policy)
        assert (info.mime, info.size, info.duration) == ("video/mp4", size, seconds)
    else:
        with pytest.raises(media.MediaError) as caught:
            media.inspect(str(clip), VIDEOS, policy)
        assert str(caught.value) == f"{clip}: {problem}"


def test_without_a_policy_no_local_file_is_read(plan_dir: Path) -> None:
    with pytest.raises(Rejected, match="no media roots"):
        asyncio.run(media.read(str(plan_dir / "img" / "cat.png"), IMAGES))


@pytest.mark.parametrize("entry", ["/proc/self/environ", "/etc/passwd"])
def test_system_files_are_never_read(plan_dir: Path, entry: str) -> None:
    # Even with "/etc" as a root (a careless config), /proc stays off limits and
    # /etc/passwd is refused for what its bytes are.
    policy = media.MediaPolicy((plan_dir.resolve(), Path("/etc")))
    with pytest.raises(Rejected, match=r"kernel or device file|not a recognised media type"):
        read(entry, policy)


def test_a_file_swapped_for_a_symlink_after_validation_is_not_followed(
    plan_dir: Path, outside: Path
) -> None:
    stored = str(media.locate("img/cat.png", plan_dir, roots(plan_dir)))
    Path(stored).unlink()
    Path(stored).symlink_to(outside)
    with pytest.raises(Rejected, match="symbolic link"):
        read(stored, media.MediaPolicy(roots(plan_dir)))


def test_a_folder_swapped_for_a_symlink_is_caught_on_the_opened_file(
    plan_dir: Path, outside: Path, tmp_path: Path
) -> None:
    stored = str(media.locate("img/cat.png", plan_dir, roots(plan_dir)))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "cat.png").write_bytes(PNG)
    (plan_dir / "img").rename(tmp_path / "old-img")
    (plan_dir / "img").symlink_to(elsewhere)
    with pytest.raises(Rejected, match="outside the media roots"):
        read(stored, media.MediaPolicy(roots(plan_dir)))


def test_the_policy_of_a_post_adds_its_plan_folder_to_the_configured_roots(
    tmp_path: Path,
) -> None:
    settings = MediaSettings(roots=(tmp_path / "shared",))
    policy = media.policy_for(settings, str(tmp_path / "plans" / "week.yaml"))
    assert policy.roots == (tmp_path / "shared", (tmp_path / "plans").resolve())
    assert media.policy_for(settings, "/plan.yaml").roots == (tmp_path / "shared",)


# --------------------------------------------------------------------------- smm plan validate


def validate(tmp_path: Path, plan: Path, config_text: str = CONFIG) -> tuple[int, dict]:  # type: ignore[type-arg]
    config = tmp_path / "config.toml"
    config.write_text(config_text, encoding="utf-8")
    db = f"sqlite:///{tmp_path / 'smm.db'}"
    result = CliRunner().invoke(
        cli, ["--db", db, "--config", str(config), "plan", "validate", "--json", str(plan)]
    )
    return result.exit_code, json.loads(result.output)


def media_plan(plan_dir: Path, entries: list[str], account: str = "fb") -> Path:
    lines = [
        f"- {{id: m{i}, account: {account}, type: t, text: hi, at: '2031-01-01 10:00', "
        f"media: [{json.dumps(entry)}]}}"
        for i, entry in enumerate(entries)
    ]
    plan = plan_dir / "plan.yaml"
    plan.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return plan


HOSTILE = [
    "/proc/self/environ",
    "/etc/passwd",
    "~/../etc/passwd",
    "../../../../etc/hostname",
    "../secret.png",
    "http://127.0.0.1/a.png",
    "http://[::1]/a.png",
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "http://[::ffff:169.254.169.254]/latest",
    "http://10.0.0.5/a.png",
    "https://localhost/a.png",
    "https://[::1",
    "ftp://cdn.example.com/a.png",
]


def test_plan_validate_refuses_each_hostile_media_entry_by_name(
    tmp_path: Path, plan_dir: Path, outside: Path
) -> None:
    plan = media_plan(plan_dir, [*HOSTILE, "img/cat.png", "https://cdn.example.com/a.png"])
    code, report = validate(tmp_path, plan)
    assert code == 1
    refused = {p["item"]: p for p in report["problems"]}
    assert set(refused) == {f"m{i}" for i in range(len(HOSTILE))}
    for i in range(len(HOSTILE)):
        problem = refused[f"m{i}"]
        assert (problem["field"], problem["line"]) == ("media", i + 1)
        assert "refused" in problem["message"]
    assert "169.254.169.254 is a cloud metadata address" in refused["m7"]["message"]
    assert "127.0.0.1 is a loopback address" in refused["m5"]["message"]


def test_plan_validate_checks_the_content_against_the_network(
    tmp_path: Path, plan_dir: Path
) -> None:
    (plan_dir / "img" / "notes.png").write_text("not an image\n")
    code, report = validate(tmp_path, media_plan(plan_dir, ["img/notes.png", "img/cat.png"]))
    assert code == 1
    (problem,) = report["problems"]
    assert problem["item"] == "m0"
    assert "not a recognised media type" in problem["message"]


def test_configured_roots_and_allow_lists_widen_what_validates(
    tmp_path: Path, plan_dir: Path, outside: Path
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "logo.png").write_bytes(PNG)
    config = CONFIG + '\n[media]\nroots = ["shared"]\nallow_networks = ["10.0.0.0/8"]\n'
    plan = media_plan(plan_dir, [str(shared / "logo.png"), "http://10.0.0.5/a.png"], "li")
    code, report = validate(tmp_path, plan, config)
    assert code == 0, report
    assert report["ok"] is True


def test_media_config_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[media]\nroots = ["/"]\nallow_networks = ["10.0.0.0/33"]\nnope = 1\n')
    with pytest.raises(InvalidInput) as info:
        load_config(path)
    text = "\n".join(p.message for p in info.value.problems)
    assert "cannot be a media root" in text
    assert "not a network" in text
    assert "unknown key 'nope'" in text


# --------------------------------------------------------------------------- the plugins

PLUGINS = Path(__file__).resolve().parent.parent / "plugins"
#: The simulated network keeps its own delivery ledger, a file its options name.
OWN_FILES = {"smm_sim"}


def test_no_built_in_plugin_opens_files_or_follows_redirects_itself() -> None:
    # Media are read and fetched through scheduler.media only: a plugin that opens a path or
    # lets httpx follow redirects would bypass the media roots or the address checks.
    found = []
    for source in sorted(PLUGINS.glob("smm_*/**/*.py")):
        if source.relative_to(PLUGINS).parts[0] in OWN_FILES:
            continue
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "attr", getattr(node.func, "id", ""))
            redirects = any(
                k.arg == "follow_redirects" and getattr(k.value, "value", False) is True
                for k in node.keywords
            )
            if name in {"open", "read_bytes", "read_text", "fdopen"} or redirects:
                found.append(f"{source.relative_to(PLUGINS)}:{node.lineno} {name}")
    assert found == []
