"""One plan item, many accounts: one post per account under ``ITEM@ACCOUNT``, variants per
network or account, re-imports reconciled member by member, ids that name a group or one
of its posts, and the ER loop counting each post in its own account."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from plan_support import validate_text
from sqlalchemy import Engine, select, update

from scheduler.cli import cli
from scheduler.config import Config, parse_config
from scheduler.db.engine import make_engine
from scheduler.db.models import PostState
from scheduler.er.readings import snapshots_t, sum_readings
from scheduler.errors import SmmError
from scheduler.plan import pipeline, validating
from scheduler.plan.importer import ImportDiff, apply_plan
from scheduler.plan.read import read_plan_files
from scheduler.plan.validate import validate_items
from scheduler.queue import accounts_t, events_t, find_post, find_posts, posts_t

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)

CONFIG = """
[accounts.riga_fb]
platform = "testnet"
timezone = "Europe/Riga"
slots = { daily = ["09:00"] }

[accounts.riga_x]
platform = "sim"
timezone = "Europe/Riga"
slots = { daily = ["10:00"] }

[accounts.riga_ig]
platform = "sim"
timezone = "Europe/Riga"
slots = { daily = ["11:00"] }
"""


@pytest.fixture
def config() -> Config:
    return parse_config(CONFIG, "config.toml")


#: (importer, database): the pipeline on both databases; validate-then-apply_plan, and the
#: pipeline with a forked process validating one item per chunk, on SQLite.
CASES = [
    pytest.param(("import_plan", "sqlite"), id="import_plan-sqlite"),
    pytest.param(
        ("import_plan", "postgres"), id="import_plan-postgres", marks=pytest.mark.postgres
    ),
    pytest.param(("apply_plan", "sqlite"), id="apply_plan-sqlite"),
    pytest.param(("import_plan_forked", "sqlite"), id="import_plan_forked-sqlite"),
]
RunImport = Callable[..., ImportDiff]


@pytest.fixture(params=CASES)
def case(request: pytest.FixtureRequest) -> tuple[str, str]:
    return tuple(request.param)  # type: ignore[return-value]


@pytest.fixture
def engine(case: tuple[str, str], request: pytest.FixtureRequest) -> Iterator[Engine]:
    engine = make_engine(str(request.getfixturevalue(f"{case[1]}_url")))
    yield engine
    engine.dispose()


@pytest.fixture
def sqlite_engine(sqlite_url: str) -> Iterator[Engine]:
    engine = make_engine(sqlite_url)
    yield engine
    engine.dispose()


@pytest.fixture
def run_import(case: tuple[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> RunImport:
    """Import a plan text the way the case says (as tests/test_import.py does)."""
    importer = case[0]
    if importer == "import_plan_forked":
        monkeypatch.setattr(validating, "CHUNK", 1)

    def run(
        engine: Engine, config: Config, text: str, *, now: datetime = NOW, **kw: Any
    ) -> ImportDiff:
        path = tmp_path / "plan.yaml"
        path.write_text(text, encoding="utf-8")
        raws, problems = read_plan_files([path])
        assert problems == []
        if importer == "apply_plan":
            items, bad = validate_items(raws, config, now)
            assert bad == []
            with engine.begin() as conn:
                return apply_plan(conn, items, config, now, **kw)
        with engine.begin() as conn:
            diff, bad = pipeline.import_plan(
                conn, raws, config, now, parallel=importer == "import_plan_forked", **kw
            )
        assert bad == []
        return diff

    return run


def stored(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        query = select(posts_t, accounts_t.c.name.label("account")).join(
            accounts_t, accounts_t.c.id == posts_t.c.account_id
        )
        return {r.key: r for r in conn.execute(query.order_by(posts_t.c.id))}


def publish(engine: Engine, key: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(posts_t)
            .where(posts_t.c.key == key)
            .values(state=PostState.PUBLISHED, remote_id=f"remote-{key}", published_at=NOW)
        )


GROUP = """
- id: riga-001
  account: [riga_fb, riga_x, riga_ig]
  type: tip
  text: The long version, for every network without a variant.
  tags: [smm]
  variants:
    sim: {{text: {sim}}}
    riga_ig: {{text: {ig}, first_comment: More in the comments}}
- {{id: solo, account: riga_fb, type: tip, text: one account}}
"""


def group_plan(sim: str = "Short for sim", ig: str = "For Instagram") -> str:
    return GROUP.format(sim=sim, ig=ig)


def test_an_item_with_several_accounts_makes_one_post_per_account(
    run_import: RunImport, engine: Engine, config: Config
) -> None:
    diff = run_import(engine, config, group_plan())
    assert diff.summary()["added"] == 4
    posts = stored(engine)
    assert list(posts) == ["riga-001@riga_fb", "riga-001@riga_x", "riga-001@riga_ig", "solo"]
    fb, x, ig, solo = posts.values()
    assert [p.group_key for p in (fb, x, ig)] == ["riga-001"] * 3
    assert solo.group_key is None  # an item with one account keeps its id
    assert [p.account for p in (fb, x, ig)] == ["riga_fb", "riga_x", "riga_ig"]
    # No variant: the item's text; the network's variant; the account's over the network's.
    assert fb.text == "The long version, for every network without a variant."
    assert x.text == "Short for sim"
    assert ig.text == "For Instagram"
    assert ig.post_options == {"first_comment": "More in the comments"}
    assert fb.post_options is None
    assert x.post_options is None
    assert fb.tags == x.tags == ig.tags == ["smm"]
    # Each post takes its own account's slot.
    assert fb.due_at == datetime(2026, 3, 3, 7, 0, tzinfo=UTC)
    assert x.due_at == datetime(2026, 3, 3, 8, 0, tzinfo=UTC)
    assert ig.due_at == datetime(2026, 3, 3, 9, 0, tzinfo=UTC)
    assert len({p.idempotency_key for p in posts.values()}) == 4


def test_reimporting_the_same_group_changes_nothing(
    run_import: RunImport, engine: Engine, config: Config
) -> None:
    run_import(engine, config, group_plan())
    before = {k: (r.updated_at, r.idempotency_key, r.due_at) for k, r in stored(engine).items()}
    diff = run_import(engine, config, group_plan(), now=NOW + timedelta(minutes=5))
    assert diff.summary()["unchanged"] == 4
    assert not (diff.added)
    assert not (diff.updated)
    assert not (diff.dropped)
    assert not (diff.renamed)
    after = {k: (r.updated_at, r.idempotency_key, r.due_at) for k, r in stored(engine).items()}
    assert after == before


def test_reimport_updates_changed_members_leaves_published_ones_and_cancels_removed_accounts(
    run_import: RunImport, engine: Engine, config: Config
) -> None:
    run_import(engine, config, group_plan())
    publish(engine, "riga-001@riga_x")
    original = stored(engine)
    changed = group_plan(sim="A new short text", ig="A new Instagram text").replace(
        "[riga_fb, riga_x, riga_ig]", "[riga_fb, riga_x]"
    )
    # riga_ig left the list: its variant must go too (or it is an error, tested below).
    changed = changed.replace(
        "    riga_ig: {text: A new Instagram text, first_comment: More in the comments}\n", ""
    )
    diff = run_import(engine, config, changed, now=NOW + timedelta(minutes=5))
    assert [old.key for _, old in diff.locked] == ["riga-001@riga_x"]
    assert [d.key for d in diff.dropped] == ["riga-001@riga_ig"]
    assert diff.gone == []  # not "gone from the plan": its item is still there
    assert diff.summary()["cancelled"] == 1
    posts = stored(engine)
    # The published post is never touched, though its variant changed.
    assert posts["riga-001@riga_x"].text == "Short for sim"
    assert posts["riga-001@riga_x"].updated_at == original["riga-001@riga_x"].updated_at
    assert posts["riga-001@riga_x"].state == PostState.PUBLISHED
    assert posts["riga-001@riga_ig"].state == PostState.CANCELLED
    assert posts["riga-001@riga_fb"].state == PostState.QUEUED
    with engine.connect() as conn:
        reasons = conn.execute(
            select(events_t.c.reason).where(events_t.c.post_id == posts["riga-001@riga_ig"].id)
        ).scalars()
        assert list(reasons) == ["its account was taken off the plan item"]


def test_a_changed_variant_updates_only_its_members(
    run_import: RunImport, engine: Engine, config: Config
) -> None:
    run_import(engine, config, group_plan())
    diff = run_import(engine, config, group_plan(ig="Changed"), now=NOW + timedelta(minutes=5))
    assert [item.key for item, _ in diff.updated] == ["riga-001@riga_ig"]
    assert diff.unchanged == 3
    assert stored(engine)["riga-001@riga_ig"].text == "Changed"


def test_an_item_that_gains_accounts_keeps_its_published_post(
    run_import: RunImport, engine: Engine, config: Config
) -> None:
    run_import(engine, config, "- {id: news, account: riga_fb, type: tip, text: hello}\n")
    publish(engine, "news")
    diff = run_import(
        engine,
        config,
        "- {id: news, account: [riga_fb, riga_x], type: tip, text: hello}\n",
        now=NOW + timedelta(minutes=5),
    )
    # The published post becomes the riga_fb member; only riga_x gets a new post.
    assert [(old.key, item.key) for item, old in diff.renamed] == [("news", "news@riga_fb")]
    assert [p.key for p in diff.added] == ["news@riga_x"]
    posts = stored(engine)
    assert list(posts) == ["news@riga_fb", "news@riga_x"]
    assert posts["news@riga_fb"].state == PostState.PUBLISHED
    assert posts["news@riga_fb"].remote_id == "remote-news"
    assert posts["news@riga_fb"].group_key == "news"


def test_an_item_back_to_one_account_keeps_that_post_and_cancels_the_others(
    run_import: RunImport, engine: Engine, config: Config
) -> None:
    run_import(engine, config, "- {id: news, account: [riga_fb, riga_x], type: tip, text: hi}\n")
    first = stored(engine)["news@riga_x"]
    diff = run_import(
        engine,
        config,
        "- {id: news, account: riga_x, type: tip, text: hi}\n",
        now=NOW + timedelta(minutes=5),
    )
    assert [(old.key, item.key) for item, old in diff.renamed] == [("news@riga_x", "news")]
    assert [d.key for d in diff.dropped] == ["news@riga_fb"]
    assert diff.added == []
    posts = stored(engine)
    assert posts["news"].id == first.id
    assert posts["news"].group_key is None
    assert posts["news@riga_fb"].state == PostState.CANCELLED


# --------------------------------------------------------------------------- validation


VARIANT_CONFIG = """
[accounts.riga_fb]
platform = "facebook"
timezone = "Europe/Riga"
options = { page_id = "123" }
slots = { daily = ["09:00"] }

[accounts.riga_x]
platform = "x"
timezone = "Europe/Riga"
slots = { daily = ["09:00"] }
"""


@pytest.fixture
def networks() -> Config:
    return parse_config(VARIANT_CONFIG, "config.toml")


def test_a_variant_for_an_account_not_in_the_item_is_an_error(
    tmp_path: Path, networks: Config
) -> None:
    plan = (
        "posts:\n"
        "  - id: riga-001\n"
        "    account: [riga_fb, riga_x]\n"
        "    type: tip\n"
        "    text: hello\n"
        "    variants:\n"
        "      linkedin:\n"
        "        text: for LinkedIn\n"
    )
    _items, problems = validate_text(tmp_path, networks, plan, NOW)
    assert [(p.line, p.field, p.item) for p in problems] == [(7, "variants.linkedin", "riga-001")]
    assert "not one of the item's accounts (riga_fb, riga_x)" in problems[0].message
    assert str(problems[0]).startswith(f"{tmp_path / 'plan.yaml'}, line 7, item 'riga-001'")


def test_a_variant_over_its_networks_limit_names_the_variant_field(
    tmp_path: Path, networks: Config
) -> None:
    plan = (
        "posts:\n"
        "  - id: riga-001\n"
        "    account: [riga_fb, riga_x]\n"
        "    type: tip\n"
        "    text: fine everywhere\n"
        "    variants:\n"
        "      x:\n"
        "        first_comment: a reply\n"
        f"        text: {'y' * 300}\n"
    )
    _, problems = validate_text(tmp_path, networks, plan, NOW)
    assert [(p.line, p.field, p.item) for p in problems] == [
        (9, "variants.x.text", "riga-001@riga_x")
    ]
    assert "over the limit of 280" in problems[0].message


def test_the_items_text_over_one_networks_limit_names_that_member(
    tmp_path: Path, networks: Config
) -> None:
    plan = f"- id: long\n  account: [riga_fb, riga_x]\n  type: tip\n  text: {'z' * 300}\n"
    _, problems = validate_text(tmp_path, networks, plan, NOW)
    assert [(p.line, p.field, p.item) for p in problems] == [(4, "text", "long@riga_x")]


def test_misused_accounts_and_variants_are_each_reported(tmp_path: Path, networks: Config) -> None:
    plan = (
        "- id: a@b\n"
        "  accounts: [riga_fb, riga_fb, nope]\n"
        "  type: tip\n"
        "  text: hi\n"
        "  variants:\n"
        "    x: {text: hi}\n"
        "    facebook: {at: '2027-01-01 10:00', txt: typo}\n"
    )
    _, problems = validate_text(tmp_path, networks, plan, NOW)
    got = {(p.line, p.field, p.message.split(":")[0]) for p in problems}
    assert (2, "accounts", "account 'riga_fb' is listed twice") in got
    assert (2, "accounts", "unknown account 'nope' (hint") not in got  # the hint is apart
    assert any(f == "accounts" and m.startswith("unknown account 'nope'") for _, f, m in got)
    assert any(f == "variants.x" for _, f, _ in got)  # riga_x is not in the item
    assert (7, "variants.facebook.at", "at cannot change per network") in got
    assert any(f == "variants.facebook.txt" for _, f, _ in got)


def test_an_items_id_may_not_clash_with_a_groups_post_id(tmp_path: Path, networks: Config) -> None:
    plan = (
        "- {id: news, account: [riga_fb, riga_x], type: tip, text: hi}\n"
        "- {id: news@riga_x, account: riga_x, type: tip, text: hi}\n"
    )
    _, problems = validate_text(tmp_path, networks, plan, NOW)
    assert [(p.line, p.field, p.message) for p in problems] == [
        (2, "id", "duplicate id 'news@riga_x'")
    ]


def test_csv_names_accounts_with_pipes_and_variants_as_columns(
    tmp_path: Path, networks: Config
) -> None:
    plan = (
        "id,account,type,text,variants.x.text,variants.riga_fb.first_comment\n"
        "c1,riga_fb|riga_x,tip,The long one,Short for X,See the link\n"
        "c2,riga_fb;riga_x,tip,Both the same,,\n"
    )
    items, problems = validate_text(tmp_path, networks, plan, NOW, "plan.csv")
    assert problems == []
    got = {i.key: (i.account, i.text, i.options.first_comment, i.group) for i in items}
    assert got == {
        "c1@riga_fb": ("riga_fb", "The long one", "See the link", "c1"),
        "c1@riga_x": ("riga_x", "Short for X", None, "c1"),
        "c2@riga_fb": ("riga_fb", "Both the same", None, "c2"),
        "c2@riga_x": ("riga_x", "Both the same", None, "c2"),
    }


def test_a_csv_variant_over_the_limit_names_its_row_and_column(
    tmp_path: Path, networks: Config
) -> None:
    plan = f"id,account,type,text,variants.x.text\nc1,riga_fb|riga_x,tip,ok,{'w' * 300}\n"
    _, problems = validate_text(tmp_path, networks, plan, NOW, "plan.csv")
    assert [(p.line, p.unit, p.field) for p in problems] == [(2, "row", "variants.x.text")]


# --------------------------------------------------------------------------- ids


def test_ids_name_a_group_or_one_of_its_posts(
    sqlite_engine: Engine, config: Config, tmp_path: Path
) -> None:
    engine = sqlite_engine
    path = tmp_path / "plan.yaml"
    path.write_text(group_plan(), encoding="utf-8")
    raws, _ = read_plan_files([path])
    with engine.begin() as conn:
        _, bad = pipeline.import_plan(conn, raws, config, NOW)
        assert bad == []
    with engine.connect() as conn:
        assert [r.key for r in find_posts(conn, ["riga-001"])] == [
            "riga-001@riga_fb",
            "riga-001@riga_x",
            "riga-001@riga_ig",
        ]
        assert find_post(conn, "riga-001@riga_x").account == "riga_x"
        # ITEM@ACCOUNT also names the post of an item with one account, on that account.
        assert find_post(conn, "solo@riga_fb").key == "solo"
        with pytest.raises(SmmError, match="names 3 posts, one per account"):
            find_post(conn, "riga-001")
        with pytest.raises(SmmError, match="no post with id 'solo@riga_x'"):
            find_posts(conn, ["solo@riga_x"])


def test_an_action_looks_its_ids_up_in_a_few_statements_whatever_their_number(
    sqlite_engine: Engine, config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """cancel, retry, approve and reject name their posts by any kind of id; the batch is
    looked up at once (one statement per kind of id), not once, then again, per id."""
    from sqlalchemy import event

    from scheduler import queue
    from scheduler.states import CANCELLABLE

    engine = sqlite_engine
    solos = "".join(f"- {{id: s{i}, account: riga_fb, type: tip, text: hi}}\n" for i in range(40))
    path = tmp_path / "plan.yaml"
    path.write_text(group_plan() + solos, encoding="utf-8")
    raws, _ = read_plan_files([path])
    with engine.begin() as conn:
        assert pipeline.import_plan(conn, raws, config, NOW)[1] == []
    publish(engine, "riga-001@riga_ig")
    with engine.connect() as conn:
        solo_id = str(find_post(conn, "s3").id)
    refs = ["riga-001", "solo@riga_fb", solo_id, "riga-001@riga_x", *(f"s{i}" for i in range(40))]
    monkeypatch.setattr(queue, "_LOOKUP_CHUNK", 16)  # the batch goes in several statements
    statements: list[str] = []

    def count(*args: Any) -> None:
        if args[2].startswith("SELECT"):
            statements.append(args[2])

    with engine.connect() as conn:
        event.listen(engine, "before_cursor_execute", count)
        try:
            rows, aside = queue.find_for_action(conn, refs, CANCELLABLE)
        finally:
            event.remove(engine, "before_cursor_execute", count)
    # By plan id in 3 statements of 16, then the database id, the group, ITEM@ACCOUNT.
    assert len(statements) == 6, statements
    assert [r.key for r in rows] == [
        "riga-001@riga_fb",
        "riga-001@riga_x",
        "solo",
        "s3",
        "riga-001@riga_x",
        *(f"s{i}" for i in range(40)),
    ]
    assert [r.key for r in aside] == ["riga-001@riga_ig"]  # published: set aside
    # Unknown ids are all named at once, as before.
    with engine.connect() as conn, pytest.raises(SmmError) as refused:
        queue.find_for_action(conn, ["s1", "nope", "riga-001@nowhere", *refs], CANCELLABLE)
    assert str(refused.value) == "no post with id 'nope', 'riga-001@nowhere'"


def test_an_evergreen_repeat_of_a_groups_post_is_named_by_the_item_and_left_by_reimports(
    run_import: RunImport, engine: Engine, config: Config
) -> None:
    """A repeat of one of an item's posts carries the item's group: the item's id names it
    with the others (`smm queue show/cancel riga-001`); a re-import of the plan, which lists
    no repeat, neither cancels it nor takes it for one of the item's posts."""
    from scheduler.er.recycle import recycle_evergreen

    plan = group_plan().replace("  type: tip\n", "  type: tip\n  evergreen: true\n", 1)
    run_import(engine, config, plan)
    publish(engine, "riga-001@riga_x")
    later = NOW + timedelta(days=40)
    x = stored(engine)["riga-001@riga_x"]
    with engine.begin() as conn:
        (made,) = recycle_evergreen(conn, x.account_id, later, min_queue=2)
    assert made.key == "riga-001@riga_x~r1"
    assert stored(engine)[made.key].group_key == "riga-001"

    diff = run_import(engine, config, plan, now=later + timedelta(minutes=5))
    assert (diff.dropped, diff.renamed, diff.gone) == ([], [], [])
    posts = stored(engine)
    assert posts[made.key].state == PostState.QUEUED
    with engine.connect() as conn:
        assert [r.key for r in find_posts(conn, ["riga-001"])] == [
            "riga-001@riga_fb",
            "riga-001@riga_x",
            "riga-001@riga_ig",
            "riga-001@riga_x~r1",
        ]


@pytest.fixture
def cli_setup(tmp_path: Path) -> Callable[..., Any]:
    config = tmp_path / "config.toml"
    # Networks the CLI knows (the other tests' "testnet" is not a plugin).
    mastodon = 'platform = "mastodon"\noptions = { instance = "https://mastodon.example" }'
    config.write_text(CONFIG.replace('platform = "testnet"', mastodon), encoding="utf-8")
    db = f"sqlite:///{tmp_path / 'smm.db'}"
    plan = group_plan().replace(", first_comment: More in the comments", "")
    (tmp_path / "plan.yaml").write_text(plan, encoding="utf-8")

    def smm(*args: str) -> Any:
        result = CliRunner().invoke(cli, ["--db", db, "--config", str(config), *args])
        assert "Traceback" not in result.output, result.output
        return result

    imported = smm("plan", "import", str(tmp_path / "plan.yaml"))
    assert imported.exit_code == 0, imported.output
    return smm


def test_queue_show_of_a_group_lists_each_post_with_its_account_state_and_link(
    cli_setup: Callable[..., Any], tmp_path: Path
) -> None:
    smm = cli_setup
    engine = make_engine(f"sqlite:///{tmp_path / 'smm.db'}")
    try:
        with engine.begin() as conn:
            conn.execute(
                update(posts_t)
                .where(posts_t.c.key == "riga-001@riga_x")
                .values(
                    state=PostState.PUBLISHED,
                    remote_id="1789",
                    remote_url="https://sim.example/p/1789",
                    published_at=NOW,
                )
            )
    finally:
        engine.dispose()
    shown = smm("queue", "show", "riga-001")
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert lines[0].startswith("riga-001  group of 3 posts")
    x_line = next(line for line in lines if line.startswith("riga-001@riga_x"))
    assert "riga_x" in x_line
    assert "published" in x_line
    assert "1789 https://sim.example/p/1789" in x_line
    fb_line = next(line for line in lines if line.startswith("riga-001@riga_fb"))
    assert "queued" in fb_line
    data = json.loads(smm("queue", "show", "riga-001", "--json").output)
    assert data["group"] is True
    assert [(p["id"], p["account"], p["state"], p["remote_url"]) for p in data["posts"]] == [
        ("riga-001@riga_fb", "riga_fb", "queued", None),
        ("riga-001@riga_x", "riga_x", "published", "https://sim.example/p/1789"),
        ("riga-001@riga_ig", "riga_ig", "queued", None),
    ]
    one = smm("queue", "show", "riga-001@riga_ig")
    assert one.output.startswith("riga-001@riga_ig  [queued]  riga_ig / tip")
    assert "group riga-001, 3 posts:" in one.output


def test_cancel_and_retry_take_one_post_of_a_group(cli_setup: Callable[..., Any]) -> None:
    smm = cli_setup
    cancelled = smm("queue", "cancel", "riga-001@riga_ig", "--json")
    assert json.loads(cancelled.output)["changed"] == [
        {"id": "riga-001@riga_ig", "from": "queued", "to": "cancelled"}
    ]
    retried = smm("queue", "retry", "riga-001@riga_ig", "--json")
    assert json.loads(retried.output)["count"] == 1
    everyone = smm("queue", "cancel", "riga-001", "--json")  # the item's id: every post
    assert [c["id"] for c in json.loads(everyone.output)["changed"]] == [
        "riga-001@riga_fb",
        "riga-001@riga_x",
        "riga-001@riga_ig",
    ]
    refused = smm("queue", "reschedule", "riga-001", "--at", "2026-04-01 10:00")
    assert refused.exit_code == 1
    assert "riga-001@riga_fb, riga-001@riga_x, riga-001@riga_ig" in refused.output


def test_acting_on_a_group_leaves_members_it_does_not_apply_to_and_says_so(
    cli_setup: Callable[..., Any], tmp_path: Path
) -> None:
    smm = cli_setup
    engine = make_engine(f"sqlite:///{tmp_path / 'smm.db'}")
    try:
        publish(engine, "riga-001@riga_x")
    finally:
        engine.dispose()
    # The item's id cancels the posts still waiting; the published one is named, not an error.
    cancelled = smm("queue", "cancel", "riga-001")
    assert cancelled.exit_code == 0, cancelled.output
    assert "riga-001@riga_fb: queued -> cancelled" in cancelled.output
    assert "riga-001@riga_x: published, left as it is" in cancelled.output
    assert "2 post(s) cancelled" in cancelled.output
    # ... and retry queues them again, leaving the published one alone.
    retried = json.loads(smm("queue", "retry", "riga-001", "--json").output)
    assert [c["id"] for c in retried["changed"]] == ["riga-001@riga_fb", "riga-001@riga_ig"]
    assert retried["left"] == [{"id": "riga-001@riga_x", "state": "published"}]
    # A post named on its own keeps the strict rule: published is not cancellable.
    alone = smm("queue", "cancel", "riga-001@riga_x")
    assert alone.exit_code == 1
    assert "cannot cancel a post that is published" in alone.output
    # A group none of whose posts the action fits still explains each one.
    smm("queue", "cancel", "riga-001")
    approve = smm("queue", "approve", "riga-001")
    assert approve.exit_code == 1
    assert "riga-001@riga_fb: cannot approve a post that is cancelled" in approve.output


# --------------------------------------------------------------------------- ER


def test_the_er_loop_counts_each_post_of_a_group_in_its_own_account(
    sqlite_engine: Engine, config: Config, tmp_path: Path
) -> None:
    engine = sqlite_engine
    path = tmp_path / "plan.yaml"
    path.write_text(group_plan(), encoding="utf-8")
    raws, _ = read_plan_files([path])
    with engine.begin() as conn:
        pipeline.import_plan(conn, raws, config, NOW)
    posts = stored(engine)
    published = NOW + timedelta(days=1)
    likes = {"riga-001@riga_fb": 10, "riga-001@riga_x": 50, "riga-001@riga_ig": 200}
    with engine.begin() as conn:
        for key, count in likes.items():
            conn.execute(
                update(posts_t)
                .where(posts_t.c.key == key)
                .values(state=PostState.PUBLISHED, remote_id=key, published_at=published)
            )
            conn.execute(
                snapshots_t.insert().values(
                    post_id=posts[key].id,
                    collected_at=published + timedelta(hours=24),
                    age_seconds=24 * 3600,
                    likes=count,
                    comments=0,
                    shares=0,
                    reach=1000,
                )
            )
    with engine.connect() as conn:
        ids = dict(conn.execute(select(accounts_t.c.name, accounts_t.c.id)).all())
        sums = sum_readings(
            conn,
            ages=[timedelta(hours=24)],
            now=published + timedelta(days=2),
            half_life=timedelta(days=30),
            horizon=NOW - timedelta(days=30),
            reach_accounts=set(ids.values()),
        )
    for key, count in likes.items():
        (age,) = sums[(ids[posts[key].account], "tip")]
        assert age.count == 1  # each account counts its own post, once
        assert age.total / age.weight == pytest.approx(count / 1000)


# --------------------------------------------------------------------------- web


def test_the_web_app_shows_a_group_and_each_posts_siblings(tmp_path: Path) -> None:
    import httpx
    from web_support import Server, build_site, csrf_of, login

    from scheduler.web.app import create_app

    site = build_site(tmp_path)
    plan = tmp_path / "group.yaml"
    at = (site.next_monday + timedelta(days=3, hours=12)).strftime("%Y-%m-%d %H:%M")
    plan.write_text(
        "- id: grp\n"
        "  account: [riga_masto, ny_x]\n"
        f"  at: {at}\n"
        "  type: tip\n"
        "  text: Both <networks>\n"
        "  variants: {x: {text: Only on <x>}}\n",
        encoding="utf-8",
    )
    code, out = site.cli("plan", "import", str(plan))
    assert code == 0, out
    with site.engine.begin() as conn:
        conn.execute(
            update(posts_t)
            .where(posts_t.c.key == "grp@ny_x")
            .values(
                state=PostState.PUBLISHED,
                remote_id="42",
                remote_url="https://x.com/acme/status/42",
                published_at=NOW,
            )
        )
    served = Server(create_app(site.engine, site.config))
    try:
        with httpx.Client(base_url=served.url, follow_redirects=True) as c:
            assert login(c, "vic").status_code == 200
            group = c.get("/post/grp")
            one = c.get("/post/grp%40riga_masto")
        with httpx.Client(base_url=served.url, follow_redirects=True) as c:
            assert login(c, "ed").status_code == 200
            page = c.get("/post/grp@riga_masto")
            cancelled = c.post("/post/grp@riga_masto/cancel", data={"csrf": csrf_of(page.text)})
        with site.engine.connect() as conn:
            states = dict(conn.execute(select(posts_t.c.key, posts_t.c.state)).all())
    finally:
        served.stop()
        site.engine.dispose()
    assert group.status_code == 200
    assert "group of 2 posts" in group.text
    assert '<a href="/post/grp%40riga_masto">grp@riga_masto</a>' in group.text
    assert '<a href="https://x.com/acme/status/42" rel="noopener noreferrer">42</a>' in group.text
    assert "Only on &lt;x&gt;" in group.text  # stored text is escaped
    assert "<x>" not in group.text
    assert one.status_code == 200
    # The post's own page lists its group, the post itself unlinked.
    assert "The item's posts (grp)" in one.text
    assert '<tr aria-current="page" data-member="grp@riga_masto">' in one.text
    assert '<a href="/post/grp%40ny_x">grp@ny_x</a>' in one.text
    # Each network's preview shows the item's post for it: X its variant.
    articles = dict(
        re.findall(
            r'<article class="preview[^"]*"[^>]*data-platform="(\w+)">(.*?)</article>',
            one.text,
            re.S,
        )
    )
    assert "Only on &lt;x&gt;" in articles["x"]
    assert '(the item\'s post <a href="/post/grp%40ny_x">grp@ny_x</a>' in articles["x"]
    assert "Both &lt;networks&gt;" in articles["mastodon"]
    assert "this post's network" in articles["mastodon"]
    # An action on one post of the group moves that post only.
    assert cancelled.status_code == 200
    assert "grp@riga_masto: queued -&gt; cancelled" in cancelled.text
    assert states["grp@riga_masto"] == PostState.CANCELLED
    assert states["grp@ny_x"] == PostState.PUBLISHED


def test_an_item_naming_too_many_accounts_is_one_problem_and_plans_nothing(
    tmp_path: Path, networks: Config
) -> None:
    from scheduler.plan.groups import MAX_ACCOUNTS, post_keys
    from scheduler.plan.read import read_plan_file

    names = "|".join(f"acc{i}" for i in range(5_000))
    path = tmp_path / "plan.csv"
    path.write_text(f"id,account,type,text\nbig,{names},tip,hi\n", encoding="utf-8")
    (raw,), _ = read_plan_file(path)
    assert post_keys(raw) == []  # nothing looked up or given a slot for an invalid item
    _, problems = validate_items([raw], networks, NOW)
    assert [(p.field, p.message) for p in problems] == [
        ("account", f"5000 accounts; one item may name at most {MAX_ACCOUNTS}")
    ]


def test_a_problem_only_some_posts_have_names_those_posts(tmp_path: Path) -> None:
    noslots = parse_config(CONFIG.replace('slots = { daily = ["11:00"] }\n', ""), "config.toml")
    plan = "- {id: both, account: [riga_fb, riga_ig], type: tip, text: hi}\n"
    _, problems = validate_text(tmp_path, noslots, plan, NOW)
    # Only riga_ig lacks slots: the problem names its post, not the item.
    assert [(p.field, p.item) for p in problems] == [("at", "both@riga_ig")]
    shared = "- {id: both, account: [riga_fb, riga_ig], type: tip, text: ''}\n"
    _, problems = validate_text(tmp_path, noslots, shared, NOW)
    # A field both posts share is wrong once, for the item.
    assert [(p.field, p.item) for p in problems] == [("text", "both"), ("at", "both@riga_ig")]
