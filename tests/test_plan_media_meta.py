"""Media items with alt text and a focal point: read from YAML and CSV, checked per network
(each plugin's alt-text limit), required per account, stored with the post and read back."""

from __future__ import annotations

import struct
from datetime import UTC, datetime
from pathlib import Path

import pytest
from plan_support import validate_text
from sqlalchemy import Engine, select, update

from scheduler import outgoing
from scheduler.adapter import MediaMeta, OutgoingPost
from scheduler.config import Config, parse_config
from scheduler.plan import pipeline
from scheduler.plan.items import stored_meta
from scheduler.plan.read import read_plan_file
from scheduler.plan.validate import validate_items
from scheduler.queue import posts_t

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 32

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

[accounts.sky]
platform = "bluesky"
timezone = "Europe/Riga"
options = { handle = "acme.bsky.social" }
slots = { daily = ["09:00"] }

[accounts.channel]
platform = "telegram"
timezone = "Europe/Riga"
slots = { daily = ["09:00"] }

[accounts.strict]
platform = "mastodon"
timezone = "Europe/Riga"
options = { instance = "https://mastodon.example" }
require_alt = true
slots = { daily = ["09:00"] }
"""


@pytest.fixture
def config() -> Config:
    return parse_config(CONFIG, "config.toml")


@pytest.fixture
def plan_dir(tmp_path: Path) -> Path:
    (tmp_path / "a.png").write_bytes(PNG)
    (tmp_path / "b.jpg").write_bytes(JPEG)
    return tmp_path


def check(plan_dir: Path, config: Config, text: str, name: str = "plan.yaml"):  # type: ignore[no-untyped-def]
    return validate_text(plan_dir, config, text, NOW, name)


def _checks(item, account):  # type: ignore[no-untyped-def]
    return outgoing.network_check(item, account)


ITEM = "- id: m1\n  account: {account}\n  type: t\n  text: hello\n  media:\n{media}"


def test_a_media_mapping_carries_alt_text_and_focus(plan_dir: Path, config: Config) -> None:
    items, problems = check(
        plan_dir,
        config,
        ITEM.format(
            account="toots",
            media='    - a.png\n    - {path: b.jpg, alt: "A red bike", focus: [0.2, -0.1]}\n',
        ),
    )
    assert problems == []
    (item,) = items
    assert item.media == (str(plan_dir / "a.png"), str(plan_dir / "b.jpg"))
    assert item.media_meta == (MediaMeta(), MediaMeta("A red bike", (0.2, -0.1)))
    post = outgoing.from_plan_item(item)
    assert post.meta(1).alt == "A red bike"
    assert post.meta(0) == MediaMeta()


def test_plain_strings_keep_no_metadata_and_their_digest(plan_dir: Path, config: Config) -> None:
    (plain,), _ = check(plan_dir, config, ITEM.format(account="toots", media="    - a.png\n"))
    (mapped,), _ = check(
        plan_dir, config, ITEM.format(account="toots", media="    - {path: a.png}\n")
    )
    assert plain.media_meta == mapped.media_meta == ()
    assert plain.content_hash() == mapped.content_hash()
    (alt,), _ = check(
        plan_dir, config, ITEM.format(account="toots", media="    - {path: a.png, alt: x}\n")
    )
    assert alt.content_hash() != plain.content_hash()  # a new alt text updates the post


def test_csv_media_alt_gives_one_alt_text_per_line(plan_dir: Path, config: Config) -> None:
    items, problems = check(
        plan_dir,
        config,
        'id,account,type,text,media,media_alt\nc1,toots,t,hi,"a.png;b.jpg","\nA red bike"\n',
        "plan.csv",
    )
    assert problems == []
    assert items[0].media_meta == (MediaMeta(), MediaMeta("A red bike"))


@pytest.mark.parametrize(
    ("account", "media", "needle"),
    [
        (
            "birds",
            "    - {path: a.png, alt: " + "x" * 1001 + "}\n",
            "1001 characters, over x's limit of 1000",
        ),
        (
            "toots",
            "    - {path: a.png, alt: " + "x" * 1501 + "}\n",
            "over mastodon's limit of 1500",
        ),
        ("channel", "    - {path: a.png, alt: A cat}\n", "telegram takes no alt text"),
        ("birds", "    - {path: a.png, focus: [0, 0.5]}\n", "x takes no focal point"),
        ("toots", "    - {path: a.png, focus: [2, 0]}\n", "focus must be two numbers from -1 to 1"),
        ("toots", "    - {path: a.png, focus: centre}\n", "focus must be two numbers"),
        ("toots", "    - {path: a.png, alt: [a, b]}\n", "alt must be text, got a list"),
        ("toots", "    - {path: a.png, title: x}\n", "unknown key 'title'"),
        ("toots", "    - {alt: x}\n", "'path' is missing"),
        ("strict", "    - a.png\n", "has no alt text, and account 'strict' requires it"),
    ],
)
def test_each_misuse_names_file_line_and_field(
    plan_dir: Path, config: Config, account: str, media: str, needle: str
) -> None:
    items, problems = check(plan_dir, config, ITEM.format(account=account, media=media))
    assert items == [] or problems
    (problem,) = problems
    assert needle in problem.message
    assert (problem.file, problem.line, problem.field, problem.item) == (
        str(plan_dir / "plan.yaml"),
        5,
        "media",
        "m1",
    )


def test_too_many_alt_texts_in_csv_name_the_row(plan_dir: Path, config: Config) -> None:
    _, problems = check(
        plan_dir,
        config,
        'id,account,type,text,media,media_alt\nc1,toots,t,hi,a.png,"x\ny"\n',
        "p.csv",
    )
    (problem,) = problems
    assert (problem.line, problem.field) == (2, "media_alt")
    assert "2 alt texts for 1 media file(s)" in problem.message


@pytest.mark.parametrize(
    ("account", "alt", "needle", "hint"),
    [
        ("channel", "A cat", "telegram takes no alt text", "empty its line of the media_alt"),
        ("birds", "x" * 1001, "over x's limit of 1000", "shorten it by 1"),
    ],
)
def test_an_alt_text_problem_in_csv_names_the_media_alt_column(
    plan_dir: Path, config: Config, account: str, alt: str, needle: str, hint: str
) -> None:
    """In CSV the alt texts are a column of their own: the problem names it, and says
    what to do with its cell, not with a YAML item's 'alt'."""
    _, problems = check(
        plan_dir,
        config,
        f"id,account,type,text,media,media_alt\nc1,{account},t,hi,a.png,{alt}\n",
        "p.csv",
    )
    (problem,) = problems
    assert (problem.line, problem.field) == (2, "media_alt")
    assert needle in problem.message
    assert problem.hint.startswith(hint)
    assert "'alt'" not in problem.hint


def test_required_alt_is_met_by_a_media_alt_cell(plan_dir: Path, config: Config) -> None:
    _, problems = check(
        plan_dir,
        config,
        "id,account,type,text,media,media_alt\nc1,strict,t,hi,a.png,A cat\n",
        "p.csv",
    )
    assert problems == []


def test_bluesky_counts_alt_text_in_graphemes(plan_dir: Path, config: Config) -> None:
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"  # one grapheme, five code points
    _, problems = check(
        plan_dir,
        config,
        ITEM.format(account="sky", media=f"    - {{path: a.png, alt: '{family * 2000}'}}\n"),
    )
    assert problems == []


# --------------------------------------------------------------------------- storage


def _import(engine: Engine, config: Config, path: Path) -> None:
    raws, problems = read_plan_file(path)
    assert problems == []
    with engine.begin() as conn:
        _diff, found = pipeline.import_plan(conn, raws, config, NOW, parallel=False)
    assert found == []


def test_metadata_is_stored_and_read_back_for_publishing(
    engine: Engine, config: Config, plan_dir: Path
) -> None:
    path = plan_dir / "plan.yaml"
    path.write_text(
        ITEM.format(
            account="toots",
            media="    - a.png\n    - {path: b.jpg, alt: A red bike, focus: [0.2, -0.1]}\n",
        )
        + "- {id: m2, account: toots, type: t, text: plain, media: [a.png]}\n",
        encoding="utf-8",
    )
    _import(engine, config, path)
    with engine.connect() as conn:
        rows = {r.key: r for r in conn.execute(select(posts_t))}
    assert rows["m1"].media_meta == [{}, {"alt": "A red bike", "focus": [0.2, -0.1]}]
    assert rows["m2"].media_meta is None  # no metadata: NULL, as rows written before it
    post = outgoing.from_row(rows["m1"], "toots")
    assert post.media_meta == (MediaMeta(), MediaMeta("A red bike", (0.2, -0.1)))
    assert outgoing.from_row(rows["m2"], "toots").media_meta == ()

    # Re-importing with a changed alt text updates the post.
    path.write_text(path.read_text().replace("A red bike", "A blue bike"), encoding="utf-8")
    _import(engine, config, path)
    with engine.connect() as conn:
        meta = conn.execute(select(posts_t.c.media_meta).where(posts_t.c.key == "m1")).scalar()
    assert meta == [{}, {"alt": "A blue bike", "focus": [0.2, -0.1]}]


def test_old_and_malformed_rows_read_as_no_metadata(
    engine: Engine, config: Config, plan_dir: Path
) -> None:
    path = plan_dir / "plan.yaml"
    path.write_text("- {id: m2, account: toots, type: t, text: plain, media: [a.png]}\n")
    _import(engine, config, path)
    with engine.begin() as conn:
        conn.execute(update(posts_t).values(media_meta=[{"alt": 5, "focus": "x"}, "junk"]))
        row = conn.execute(select(posts_t)).one()
    assert outgoing.from_row(row, "toots").media_meta == (MediaMeta(),)
    assert stored_meta(["a", "b"], None) == ()


# --------------------------------------------------------------------------- media types

#: configuration.media_attachments.supported_mime_types of the recorded Mastodon 4.6 instance
#: (tests/fixtures/mastodon/test_instance.yaml), with a file name of each type.
RECORDED_TYPES = {
    "image/jpeg": "a.jpg",
    "image/png": "a.png",
    "image/gif": "a.gif",
    "image/heic": "a.heic",
    "image/heif": "a.heif",
    "image/webp": "a.webp",
    "image/avif": "a.avif",
    "video/webm": "a.webm",
    "video/mp4": "a.mp4",
    "video/quicktime": "a.mov",
    "video/ogg": "a.ogv",
    "audio/wave": "a.wav",
    "audio/wav": "b.wav",
    "audio/x-wav": "c.wav",
    "audio/x-pn-wave": "d.wav",
    "audio/vnd.wave": "e.wav",
    "audio/ogg": "a.ogg",
    "audio/vorbis": "a.oga",
    "audio/mpeg": "a.mp3",
    "audio/mp3": "b.mp3",
    "audio/webm": "a.weba",
    "audio/flac": "a.flac",
    "audio/aac": "a.aac",
    "audio/m4a": "a.m4a",
    "audio/x-m4a": "b.m4a",
    "audio/mp4": "c.m4a",
    "audio/3gpp": "a.3gp",
    "video/x-ms-asf": "a.asf",
}


def test_the_recorded_instances_28_types_are_all_taken_by_name() -> None:
    import json

    import yaml
    from smm_mastodon.instance import InstanceLimits

    cassette = Path(__file__).parent / "fixtures" / "mastodon" / "test_instance.yaml"
    body = yaml.safe_load(cassette.read_text())["interactions"][0]["response"]["body"]["string"]
    limits = InstanceLimits.from_instance(json.loads(body))
    assert set(limits.supported_mime_types) == set(RECORDED_TYPES)
    assert len(RECORDED_TYPES) == 28
    assert limits.description_limit == 10000
    adapter = outgoing.offline_adapter("mastodon")
    account = outgoing.account_view(parse_config(CONFIG, "c.toml").accounts["toots"])
    for kind, name in RECORDED_TYPES.items():
        issues = adapter.validate(OutgoingPost("k", "toots", "t", "hi", media=(name,)), account)
        assert issues == [], (kind, name, issues)


def _wav() -> bytes:
    fmt = struct.pack("<IHHIIHH", 16, 1, 1, 8000, 8000, 1, 8)
    return b"RIFF" + struct.pack("<I", 36) + b"WAVEfmt " + fmt + b"data" + struct.pack("<I", 0)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("voice.wav", _wav()),
        ("song.flac", b"fLaC\x00\x00\x00\x22" + b"\x00" * 34),
        ("talk.m4a", b"\x00\x00\x00\x20ftypM4A \x00\x00\x00\x00M4A mp42isom" + b"\x00" * 8),
        ("clip.ogv", b"OggS\x00\x02" + b"\x00" * 22 + b"\x01\x1etheora"),
    ],
)
def test_audio_and_ogg_files_pass_import_for_mastodon(
    plan_dir: Path, config: Config, name: str, content: bytes
) -> None:
    (plan_dir / name).write_bytes(content)
    items, problems = check(
        plan_dir, config, f"- {{id: w, account: toots, type: t, text: hi, media: [{name}]}}\n"
    )
    assert problems == []
    assert len(items) == 1


@pytest.mark.parametrize("name", ["example-posts.yaml", "example-posts.csv"])
def test_the_shipped_examples_with_alt_text_validate(name: str) -> None:
    repo = Path(__file__).resolve().parent.parent
    config = parse_config((repo / "config" / "networks.example.toml").read_text(), "n.toml")
    raws, problems = read_plan_file(repo / "config" / name)
    assert problems == []
    items, problems = validate_items(raws, config, NOW, network_check=_checks)
    assert problems == []
    assert all(item.media_meta or item.options.given() for item in items)
    if name.endswith(".yaml"):  # focus has no CSV column
        assert any(m.focus for item in items for m in item.media_meta)


def test_queue_show_lists_each_file_with_its_alt_text(
    engine: Engine, config: Config, plan_dir: Path
) -> None:
    from scheduler.cli.queue import _print_media
    from scheduler.queue import find_posts

    path = plan_dir / "plan.yaml"
    path.write_text(
        ITEM.format(
            account="toots",
            media="    - a.png\n    - {path: b.jpg, alt: A red bike, focus: [0.2, -0.1]}\n",
        )
    )
    _import(engine, config, path)
    with engine.connect() as conn:
        (row,) = find_posts(conn, ["m1"])
    import click.testing

    @click.command()
    def show() -> None:
        _print_media(row)

    out = click.testing.CliRunner().invoke(show).output
    assert f"media:     {plan_dir / 'a.png'}  (no alt text)\n" in out
    assert f'{plan_dir / "b.jpg"}  alt: "A red bike"  focus: 0.2,-0.1\n' in out


def test_an_alt_refusal_is_known_by_its_code_whatever_its_words(
    plan_dir: Path, config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CSV wording of an alt-text refusal follows the issue's code: a network that words
    its refusal its own way (or a reworded core message) gets it all the same, and the
    problem carries the code."""
    from scheduler import plugins
    from scheduler.adapter import Issue, IssueCode

    def refuse(self: object, post: OutgoingPost, account: object) -> list[Issue]:
        return [
            Issue("media", "alt texts are not a thing here", "drop it", IssueCode.ALT_NOT_TAKEN)
        ]

    monkeypatch.setattr(plugins.adapter_class("telegram"), "media_meta_issues", refuse)
    outgoing.clear_caches()
    csv = "id,account,type,text,media,media_alt\nc1,channel,t,hi,a.png,A cat\n"
    (problem,) = check(plan_dir, config, csv, "p.csv")[1]
    assert (problem.field, problem.message) == ("media_alt", "alt texts are not a thing here")
    assert problem.hint.startswith("empty its line of the media_alt cell")
    assert problem.code == "alt_not_taken"
    assert problem.as_dict()["code"] == "alt_not_taken"
    # In YAML the network's own words and hint stand.
    yaml = ITEM.format(account="channel", media="    - {path: a.png, alt: A cat}\n")
    (problem,) = check(plan_dir, config, yaml)[1]
    assert (problem.field, problem.hint, problem.code) == ("media", "drop it", "alt_not_taken")
    # A problem of another kind on the media field is not taken for an alt text's.
    monkeypatch.setattr(
        plugins.adapter_class("telegram"),
        "media_meta_issues",
        lambda self, post, account: [Issue("media", "takes no alt text", "x", "focus_not_taken")],
    )
    (problem,) = check(plan_dir, config, csv, "p.csv")[1]
    assert (problem.field, problem.hint) == ("media", "x")
