"""Per-post options by network-neutral names: read from YAML and CSV, refused (naming the
network) where the account's network cannot honour them, checked against its limits, stored
with the post and sent as each network takes them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from plan_support import validate_text
from sqlalchemy import Engine, select

from scheduler import adapter as adapter_module
from scheduler import outgoing
from scheduler.adapter import NO_OPTIONS, Poll, PostOptions
from scheduler.config import Config, parse_config
from scheduler.plan import pipeline
from scheduler.plan.post_options import stored_options
from scheduler.plan.read import read_plan_file
from scheduler.queue import posts_t

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)

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

[accounts.chat]
platform = "telegram"
timezone = "Europe/Riga"
options = { chat_id = "@acme" }
slots = { daily = ["09:00"] }

[accounts.sky]
platform = "bluesky"
timezone = "Europe/Riga"
options = { handle = "acme.bsky.social" }
slots = { daily = ["09:00"] }
"""


@pytest.fixture
def config() -> Config:
    return parse_config(CONFIG, "config.toml")


def check(tmp_path: Path, config: Config, text: str, name: str = "plan.yaml"):  # type: ignore[no-untyped-def]
    return validate_text(tmp_path, config, text, NOW, name)


ITEM = "- id: o1\n  account: {account}\n  type: t\n  text: hello\n{extra}"


def test_every_option_is_read_from_yaml(tmp_path: Path, config: Config) -> None:
    (item,), problems = check(
        tmp_path,
        config,
        ITEM.format(
            account="toots",
            extra="  content_warning: Spoilers for episode 3\n  sensitive: yes\n"
            "  visibility: followers\n  language: lv\n  reply_to: '109372843234'\n"
            "  poll: {options: [Yes, No, Maybe], duration: 6h, multiple: yes}\n",
        ),
    )
    assert problems == []
    assert item.options == PostOptions(
        content_warning="Spoilers for episode 3",
        sensitive=True,
        visibility="followers",
        language="lv",
        reply_to="109372843234",
        poll=Poll(("Yes", "No", "Maybe"), timedelta(hours=6), multiple=True),
    )


def test_csv_spells_the_poll_in_three_columns(tmp_path: Path, config: Config) -> None:
    (item,), problems = check(
        tmp_path,
        config,
        "id,account,type,text,poll,poll_duration,poll_multiple,language\n"
        "c1,toots,t,Which one?,Tea; Coffee,2d,no,en\n",
        "plan.csv",
    )
    assert problems == []
    assert item.options.poll == Poll(("Tea", "Coffee"), timedelta(days=2))
    assert item.options.language == "en"


def test_an_item_without_options_keeps_its_digest(tmp_path: Path, config: Config) -> None:
    (plain,), _ = check(tmp_path, config, ITEM.format(account="toots", extra=""))
    assert plain.options is NO_OPTIONS
    (cw,), _ = check(tmp_path, config, ITEM.format(account="toots", extra="  language: en\n"))
    assert cw.content_hash() != plain.content_hash()


@pytest.mark.parametrize(
    ("account", "extra", "field", "needle"),
    [
        ("sky", "  poll: {options: [a, b]}\n", "poll", "bluesky cannot honour 'poll'"),
        ("birds", "  content_warning: careful\n", "content_warning", "x cannot honour"),
        ("birds", "  visibility: unlisted\n", "visibility", "x cannot honour 'visibility'"),
        ("birds", "  poll: {options: [a, b], multiple: yes}\n", "poll", "one answer per voter"),
        (
            "birds",
            "  poll: {options: [a, b, c, d, e]}\n",
            "poll",
            "5 poll options, X takes at most 4",
        ),
        ("birds", "  poll: {options: [a, b], duration: 8d}\n", "poll", "X takes 5 to 10080"),
        ("toots", "  poll: {options: [a, b, c, d, e]}\n", "poll", "instance takes at most 4"),
        ("toots", "  poll: {options: [a, b], duration: 2m}\n", "poll", "instance takes 300"),
        ("toots", "  poll: {options: [only]}\n", "poll", "at least two options"),
        ("toots", "  poll: {options: [a, a]}\n", "poll", "two poll options are the same"),
        ("toots", "  poll: {options: [a, b], duration: soon}\n", "poll", "as a poll duration"),
        ("toots", "  poll: {options: [a, b], closes: 1d}\n", "poll", "unknown key 'closes'"),
        ("toots", "  visibility: friends\n", "visibility", "visibility must be one of"),
        ("toots", "  language: english please\n", "language", "not a language tag"),
        ("toots", "  sensitive: maybe\n", "sensitive", "sensitive must be yes or no"),
        ("toots", "  reply_to: [1]\n", "reply_to", "reply_to must be text, got a list"),
        ("toots", "  poll: {options: [a, b], multiple: maybe}\n", "poll", "must be yes or no"),
    ],
)
def test_each_misuse_names_file_line_and_field(
    tmp_path: Path, config: Config, account: str, extra: str, field: str, needle: str
) -> None:
    _, problems = check(tmp_path, config, ITEM.format(account=account, extra=extra))
    assert len(problems) == 1, problems
    (problem,) = problems
    assert needle in problem.message
    assert (problem.line, problem.field, problem.item) == (5, field, "o1")


LONG = "v" * 5000


@pytest.mark.parametrize(("account", "length", "limit"), [("toots", 501, 500), ("birds", 281, 280)])
def test_a_first_comment_is_held_to_the_length_of_a_reply(
    tmp_path: Path, config: Config, account: str, length: int, limit: int
) -> None:
    """On Mastodon and X the first comment is a reply: a post of its own, as long as one."""
    fits = f"  first_comment: {'c' * limit}\n"
    _, problems = check(tmp_path, config, ITEM.format(account=account, extra=fits))
    assert problems == []

    over = f"  first_comment: {'c' * length}\n"
    _, problems = check(tmp_path, config, ITEM.format(account=account, extra=over))
    (problem,) = problems
    assert (problem.line, problem.field) == (5, "first_comment")
    assert f"first comment: {length} characters" in problem.message
    assert f"over the limit of {limit}" in problem.message


def test_mastodon_counts_the_content_warning_with_the_text(tmp_path: Path, config: Config) -> None:
    """Mastodon's StatusLengthValidator measures spoiler_text and text together; the
    warning goes on every part of a thread, so each part is held to it too."""
    text = "t" * 300
    ok = f"  content_warning: {'w' * 200}\n"
    _, problems = check(
        tmp_path, config, ITEM.format(account="toots", extra=ok).replace("hello", text)
    )
    assert problems == []

    over = f"  content_warning: {'w' * 201}\n  thread: [{'p' * 299}, {'q' * 300}]\n"
    _, problems = check(
        tmp_path, config, ITEM.format(account="toots", extra=over).replace("hello", text)
    )
    assert [(p.field, p.message.split(",")[0]) for p in problems] == [
        ("text", "501 characters as Mastodon counts them (graphemes"),
        ("thread[1]", "thread part 3 of 3: 501 characters as Mastodon counts them (graphemes"),
    ], problems
    assert all("content warning included" in p.message for p in problems)


@pytest.mark.parametrize(
    ("account", "extra", "field"),
    [
        ("toots", f"  visibility: {LONG}\n", "visibility"),
        ("toots", f"  language: {LONG}\n", "language"),
        ("toots", f"  sensitive: {LONG}\n", "sensitive"),
        ("toots", f"  poll: {{options: [a, b], duration: {LONG}}}\n", "poll"),
        ("toots", f"  poll: {{options: [a, b], multiple: {LONG}}}\n", "poll"),
        ("birds", f"  poll: {{options: [{LONG}, b]}}\n", "poll"),
        ("toots", f"  media: [{{path: a.png, focus: {LONG}}}]\n", "media"),
    ],
)
def test_a_long_bad_value_is_quoted_cut_short(
    tmp_path: Path, config: Config, account: str, extra: str, field: str
) -> None:
    _, problems = check(tmp_path, config, ITEM.format(account=account, extra=extra))
    (problem,) = problems
    assert (problem.line, problem.field) == (5, field)
    assert "vvvv" in problem.message
    assert len(problem.message) < 200, problem.message


def test_a_poll_beside_media_is_refused_on_mastodon(tmp_path: Path, config: Config) -> None:
    (tmp_path / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 16)
    _, problems = check(
        tmp_path,
        config,
        ITEM.format(account="toots", extra="  media: [a.png]\n  poll: {options: [a, b]}\n"),
    )
    assert [p.message for p in problems] == ["a Mastodon status takes a poll or media, not both"]


def test_options_are_stored_and_read_back(engine: Engine, config: Config, tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(
        ITEM.format(
            account="toots",
            extra="  content_warning: CW\n  poll: {options: [Yes, No], duration: 1h}\n",
        )
        + "- {id: o2, account: toots, type: t, text: plain}\n"
    )
    raws, _ = read_plan_file(path)
    with engine.begin() as conn:
        _diff, found = pipeline.import_plan(conn, raws, config, NOW, parallel=False)
    assert found == []
    with engine.connect() as conn:
        rows = {r.key: r for r in conn.execute(select(posts_t))}
    assert rows["o1"].post_options == {
        "content_warning": "CW",
        "poll": {"options": ["Yes", "No"], "duration": 3600, "multiple": False},
    }
    assert rows["o2"].post_options is None
    post = outgoing.from_row(rows["o1"], "toots")
    assert post.options.poll == Poll(("Yes", "No"), timedelta(hours=1))
    assert outgoing.from_row(rows["o2"], "toots").options == NO_OPTIONS
    assert stored_options({"poll": {"options": "x"}, "sensitive": "yes"}) == NO_OPTIONS


def test_a_thread_is_read_from_yaml_and_csv(tmp_path: Path, config: Config) -> None:
    (item,), problems = check(
        tmp_path,
        config,
        ITEM.format(account="toots", extra="  thread:\n    - Part two\n    - {text: Part three}\n"),
    )
    assert problems == []
    assert [part.text for part in item.options.thread] == ["Part two", "Part three"]
    (row,), problems = check(
        tmp_path,
        config,
        'id,account,type,text,thread\nc1,toots,t,One,"Two\n---\nThree"\n',
        "plan.csv",
    )
    assert problems == []
    assert [part.text for part in row.options.thread] == ["Two", "Three"]


@pytest.mark.parametrize(
    ("account", "extra", "field", "needle"),
    [
        (
            "toots",
            "  thread: [ok, '" + "x" * 501 + "']\n",
            "thread[1]",  # the part, counted from 0 in the list
            "thread part 3 of 3: 501 characters",
        ),
        ("chat", "  thread: [Part two]\n", "thread", "telegram cannot honour 'thread'"),
        ("toots", "  thread: [ok, [nested]]\n", "thread", "thread part 3 must be text, got a list"),
        ("toots", "  thread: ['']\n", "thread", "thread part 2 is empty"),
    ],
)
def test_each_thread_misuse_names_file_line_and_field(
    tmp_path: Path, config: Config, account: str, extra: str, field: str, needle: str
) -> None:
    _, problems = check(tmp_path, config, ITEM.format(account=account, extra=extra))
    (problem,) = problems
    assert needle in problem.message
    assert (problem.line, problem.field, problem.item) == (5, field, "o1")


def test_queue_show_lists_the_options_and_each_thread_part(
    engine: Engine, config: Config, tmp_path: Path
) -> None:
    import click
    import click.testing

    from scheduler.cli.queue import _print_options
    from scheduler.queue import find_posts

    path = tmp_path / "plan.yaml"
    path.write_text(
        ITEM.format(account="toots", extra="  content_warning: CW\n  thread: [Two, Three]\n")
    )
    raws, _ = read_plan_file(path)
    with engine.begin() as conn:
        pipeline.import_plan(conn, raws, config, NOW, parallel=False)
    with engine.connect() as conn:
        (row,) = find_posts(conn, ["o1"])

    @click.command()
    def show() -> None:
        _print_options(row)

    out = click.testing.CliRunner().invoke(show).output
    assert "  content warning: CW\n" in out
    assert "  thread:    2. Two\n" in out
    assert "             3. Three\n" in out


TELEGRAM = """
[accounts.channel]
platform = "telegram"
timezone = "Europe/Riga"
options = { chat_id = "@acme" }
credentials = { bot_token = { env = "SMM_TEST_TG_TOKEN" } }
slots = { daily = ["09:00"] }
"""


def test_a_telegram_poll_is_read_and_held_to_telegrams_duration(tmp_path: Path) -> None:
    config = parse_config(CONFIG + TELEGRAM, "config.toml")
    (item,), problems = check(
        tmp_path,
        config,
        ITEM.format(account="channel", extra="  poll: {options: [Yes, No], duration: 10m}\n"),
    )
    assert problems == []
    assert item.options.poll == Poll(("Yes", "No"), timedelta(minutes=10))
    # the plan's default duration (a day) is longer than a bot's poll can stay open
    _, problems = check(
        tmp_path, config, ITEM.format(account="channel", extra="  poll: {options: [Yes, No]}\n")
    )
    assert [(p.field, p.line) for p in problems] == [("poll", 5)]
    assert "Telegram closes a poll at most 10 minutes" in problems[0].message


def test_an_option_one_member_cannot_honour_is_dropped_for_it_by_a_variant(
    tmp_path: Path, config: Config
) -> None:
    """An item of several accounts is told how to keep its poll for the networks that take
    it: a variant that drops it for the one that does not (YAML's ``~``)."""
    plan = (
        "- id: o1\n  account: [toots, sky]\n  type: t\n  text: hello\n  poll: {options: [a, b]}\n"
    )
    _, problems = check(tmp_path, config, plan)
    (problem,) = problems
    assert (problem.line, problem.field, problem.item) == (5, "poll", "o1@sky")
    assert "bluesky cannot honour 'poll'" in problem.message
    assert "`variants: {bluesky: {poll: ~}}`" in problem.hint

    # The hint's form works: the poll goes to Mastodon only.
    fixed = plan + "  variants: {bluesky: {poll: ~}}\n"
    items, problems = check(tmp_path, config, fixed)
    assert problems == []
    assert {i.account: i.options.poll is not None for i in items} == {"toots": True, "sky": False}

    # CSV cannot drop a value with a variant: the hint says what CSV can do.
    csv = "id,account,type,text,poll\no1,toots|sky,t,hello,a;b\n"
    _, problems = check(tmp_path, config, csv, "plan.csv")
    (problem,) = problems
    assert problem.field == "poll"
    assert "row of its own" in problem.hint
    assert "~" not in problem.hint

    # A single account: removing it is the answer.
    _, problems = check(
        tmp_path, config, ITEM.format(account="sky", extra="  poll: {options: [a, b]}\n")
    )
    (problem,) = problems
    assert problem.hint.startswith("remove it from the item")


def test_a_field_problem_and_the_networks_are_reported_in_one_run(
    tmp_path: Path, config: Config
) -> None:
    """A missing media file leaves the rest of the item checkable: its text and first
    comment are held to the network's limits in the same run, not after the file is fixed."""
    extra = f"  media: [nowhere.png]\n  first_comment: {'c' * 281}\n"
    plan = ITEM.format(account="birds", extra=extra).replace("hello", "t" * 281)
    items, problems = check(tmp_path, config, plan)
    assert items == []
    assert sorted((p.field, p.line) for p in problems) == [
        ("first_comment", 6),
        ("media", 5),
        ("text", 4),
    ], problems
    (media,) = [p for p in problems if p.field == "media"]
    assert "nowhere.png" in media.message


def test_an_option_refusal_is_known_by_its_code_whatever_its_words(
    tmp_path: Path, config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The variant that drops an option for one network of a several-account item is
    offered on the refusal's code, not on the words of its hint."""
    from scheduler import plugins
    from scheduler.adapter import Adapter, Issue, IssueCode

    sky = plugins.adapter_class("bluesky")

    def refuse(self: Adapter, post: object, account: object) -> list[Issue]:
        return [Issue("poll", "no polls on bluesky", "worded anew", IssueCode.OPTION_NOT_TAKEN)]

    monkeypatch.setattr(sky, "option_issues", refuse)
    outgoing.clear_caches()
    plan = (
        "- id: o1\n  account: [toots, sky]\n  type: t\n  text: hello\n  poll: {options: [a, b]}\n"
    )
    (problem,) = check(tmp_path, config, plan)[1]
    assert (problem.item, problem.message, problem.code) == (
        "o1@sky",
        "no polls on bluesky",
        "option_not_taken",
    )
    assert "`variants: {bluesky: {poll: ~}}`" in problem.hint
    # Without the code, the network's own hint stands, whatever it says.
    monkeypatch.setattr(
        sky,
        "option_issues",
        lambda self, post, account: [Issue("poll", "no polls", adapter_module.CANNOT_HONOUR_HINT)],
    )
    (problem,) = check(tmp_path, config, plan)[1]
    assert (problem.hint, problem.code) == (adapter_module.CANNOT_HONOUR_HINT, None)
