"""The smm command line, end to end on SQLite and PostgreSQL (click's CliRunner)."""

from __future__ import annotations

import csv
import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from sqlalchemy import select

from scheduler.cli import cli
from scheduler.db.engine import make_engine
from scheduler.queue import events_t, posts_t

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_CONFIG = REPO / "config" / "example.toml"
EXAMPLE_PLANS = [REPO / "config" / "example-plan.yaml", REPO / "config" / "example-plan.csv"]

CONFIG = """
[accounts.riga]
platform = "sim"
timezone = "Europe/Riga"
slots = { daily = ["09:00", "18:00"] }

[accounts.ny]
platform = "sim"
timezone = "America/New_York"
slots = { weekdays = ["10:00"] }
"""

PLAN = """\
- {id: a1, account: riga, type: laugh, text: one}
- {id: a2, account: riga, type: medal, text: two}
- {id: a3, account: ny, type: laugh, text: three, at: "2030-06-03 10:00"}
"""


@pytest.fixture
def smm(db_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Run ``smm`` with the test config and database; returns the click Result."""
    config = tmp_path / "config.toml"
    config.write_text(CONFIG, encoding="utf-8")

    def run(*args: str, config_path: Path | None = config, expect: int | None = 0) -> Result:
        base = ["--db", db_url] + (["--config", str(config_path)] if config_path else [])
        result = CliRunner().invoke(cli, [*base, *args], catch_exceptions=False)
        if expect is not None:
            assert result.exit_code == expect, result.output
        return result

    return run


def snapshot(db_url: str) -> dict[str, list[tuple[Any, ...]]]:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            return {
                "posts": [tuple(r) for r in conn.execute(select(posts_t).order_by(posts_t.c.id))],
                "events": [
                    tuple(r) for r in conn.execute(select(events_t).order_by(events_t.c.id))
                ],
            }
    finally:
        engine.dispose()


def test_example_plan_imports_and_lists_every_post_with_utc_due_time(
    db_url: str, tmp_path: Path
) -> None:
    runner = CliRunner()
    base = ["--db", db_url, "--config", str(EXAMPLE_CONFIG)]
    assert runner.invoke(cli, [*base, "init"]).exit_code == 0
    result = runner.invoke(cli, [*base, "plan", "import", *map(str, EXAMPLE_PLANS)])
    assert result.exit_code == 0, result.output
    listed = json.loads(runner.invoke(cli, [*base, "queue", "list", "--json"]).output)
    # Read the plans independently of the importer: plain PyYAML and csv.
    yaml_plan = yaml.safe_load(EXAMPLE_PLANS[0].read_text(encoding="utf-8"))
    with EXAMPLE_PLANS[1].open(encoding="utf-8", newline="") as f:
        csv_ids = {row["id"] for row in csv.DictReader(f)}
    expected_ids = {post["id"] for post in yaml_plan["posts"]} | csv_ids
    assert len(expected_ids) > 10
    assert {p["id"] for p in listed} == expected_ids
    for post in listed:
        assert {"id", "account", "type", "state", "due_at"} <= set(post)
        assert post["state"] == "queued"
        assert post["due_at"].endswith("Z")


def test_plan_with_three_bad_items_exits_1_lists_all_and_changes_nothing(
    smm,
    db_url: str,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(PLAN, encoding="utf-8")
    smm("plan", "import", str(good))
    before = snapshot(db_url)
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "id,account,type,text,at\n"
        "a1,riga,laugh,one changed,\n"
        "b1,rigaa,laugh,x,\n"
        "b2,riga,laugh,,\n"
        "b3,ny,laugh,x,2030-02-30 10:00\n"
        "b4,ny,laugh,fine,\n",
        encoding="utf-8",
    )
    result = smm("plan", "import", str(bad), expect=1)
    assert "3 problems" in result.output
    for row, field in ((3, "account"), (4, "text"), (5, "at")):
        assert f"row {row}, item 'b{row - 2}', field '{field}'" in result.output
    assert snapshot(db_url) == before


def test_reimport_adds_and_updates_nothing(smm, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN, encoding="utf-8")
    first = json.loads(smm("plan", "import", "--json", str(plan)).output)
    second = json.loads(smm("plan", "import", "--json", str(plan)).output)
    assert first["added"] == 3
    assert (second["added"], second["updated"], second["unchanged"]) == (0, 0, 3)


def test_dry_run_prints_the_diff_and_writes_nothing(smm, db_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN, encoding="utf-8")
    smm("init")
    before = snapshot(db_url)
    result = smm("plan", "import", "--dry-run", str(plan))
    assert "3 added" in result.output
    assert "dry run" in result.output
    assert snapshot(db_url) == before


def test_validate_reports_json_problems(smm, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    plan = tmp_path / "plan.yaml"
    plan.write_text("- {id: x, account: nobody, type: t, text: hi}\n", encoding="utf-8")
    result = smm("plan", "validate", "--json", str(plan), expect=1)
    data = json.loads(result.output)
    assert data["ok"] is False
    assert data["problems"][0]["field"] == "account"
    assert data["problems"][0]["line"] == 1


def test_queue_list_filters(smm, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN, encoding="utf-8")
    smm("plan", "import", str(plan))
    by_account = json.loads(smm("queue", "list", "--account", "ny", "--json").output)
    by_type = json.loads(smm("queue", "list", "--type", "LAUGH", "--json").output)
    limited = json.loads(smm("queue", "list", "--limit", "1", "--json").stdout)
    assert [p["id"] for p in by_account] == ["a3"]
    assert {p["id"] for p in by_type} == {"a1", "a3"}
    assert len(limited) == 1
    table = smm("queue", "list").output
    assert ("a1" in table and "riga" in table and "EET" in table) or "EEST" in table


def test_cancel_retry_and_show_history(smm, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN, encoding="utf-8")
    smm("plan", "import", str(plan))
    smm("queue", "cancel", "a1")
    # The freed slot goes to a2, the next post in riga's queue.
    listed = {p["id"]: p for p in json.loads(smm("queue", "list", "--json").output)}
    assert listed["a1"]["state"] == "cancelled"
    smm("queue", "retry", "a1")
    shown = json.loads(smm("queue", "show", "a1", "--json").output)
    assert shown["state"] == "queued"
    assert [(h["from"], h["to"]) for h in shown["history"]] == [
        ("queued", "cancelled"),
        ("cancelled", "queued"),
    ]


def test_show_lists_attempts_in_the_order_they_were_made_across_a_retry(
    smm,
    db_url: str,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    from scheduler.db.models import Attempt

    attempts_t = Attempt.__table__  # type: ignore[attr-defined]
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN, encoding="utf-8")
    smm("plan", "import", str(plan))
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            post_id = conn.execute(select(posts_t.c.id).where(posts_t.c.key == "a1")).scalar_one()
            # Two failed attempts, then `queue retry` gave a fresh budget: numbering restarts.
            conn.execute(
                attempts_t.insert(),
                [
                    {
                        "post_id": post_id,
                        "number": number,
                        "idempotency_key": "k",
                        "owner": "test",
                        "started_at": datetime(2030, 1, day, 9, tzinfo=UTC),
                        "outcome": outcome,
                    }
                    for number, day, outcome in ((1, 1, "transient"), (2, 2, "rejected"))
                ]
                + [
                    {
                        "post_id": post_id,
                        "number": 1,
                        "idempotency_key": "k",
                        "owner": "test",
                        "started_at": datetime(2030, 1, 5, 9, tzinfo=UTC),
                        "outcome": "published",
                    }
                ],
            )
    finally:
        engine.dispose()
    shown = json.loads(smm("queue", "show", "a1", "--json").output)
    log = [(a["number"], a["of_budget"], a["outcome"]) for a in shown["attempt_log"]]
    assert log == [(1, 1, "transient"), (2, 2, "rejected"), (3, 1, "published")]
    text = smm("queue", "show", "a1").output
    assert text.index("#1 ") < text.index("#2 ") < text.index("#3 ")


def test_retrying_a_waiting_post_is_refused_with_a_reason(smm, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN, encoding="utf-8")
    smm("plan", "import", str(plan))
    result = smm("queue", "retry", "a1", expect=1)
    assert "cannot retry a post that is queued" in result.output


def test_unknown_post_id_exits_1(smm) -> None:  # type: ignore[no-untyped-def]
    assert "no post with id 'nope'" in smm("queue", "show", "nope", expect=1).output


def test_reschedule_uses_the_account_zone(smm, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN, encoding="utf-8")
    smm("plan", "import", str(plan))
    smm("queue", "reschedule", "a2", "--at", "2030-07-01 12:00")
    shown = json.loads(smm("queue", "show", "a2", "--json").output)
    assert shown["due_at"] == "2030-07-01T09:00:00Z"  # Riga summer time, UTC+3
    assert shown["schedule"] == "fixed"
    bad = smm("queue", "reschedule", "a2", "--at", "soon", expect=2)
    assert "--at" in bad.output


def test_pause_and_resume_an_account(smm, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN, encoding="utf-8")
    smm("plan", "import", str(plan))
    smm("queue", "pause", "--account", "riga")
    states = {p["id"]: p["state"] for p in json.loads(smm("queue", "list", "--json").output)}
    assert states == {"a1": "paused", "a2": "paused", "a3": "queued"}
    accounts = {a["name"]: a for a in json.loads(smm("accounts", "list", "--json").output)}
    assert accounts["riga"]["paused"] is True
    assert accounts["ny"]["paused"] is False
    smm("queue", "resume", "--account", "riga")
    states = {p["id"]: p["state"] for p in json.loads(smm("queue", "list", "--json").output)}
    assert set(states.values()) == {"queued"}


def test_usage_errors_exit_2(smm) -> None:  # type: ignore[no-untyped-def]
    assert smm("queue", "list", "--state", "bogus", expect=2).exit_code == 2
    assert smm("queue", "list", "--limit", "0", expect=2).exit_code == 2
    assert smm("nonsense", expect=2).exit_code == 2


def test_config_check_reports_problems_and_exits_1(smm, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.toml"
    bad.write_text('[accounts.a]\nplatform = "nope"\ntimezone = "Mars/Base"\n', encoding="utf-8")
    result = smm("config", "check", config_path=bad, expect=1)
    assert "Mars/Base" in result.output
    assert "line 3" in result.output


def test_config_check_names_platforms_without_a_plugin(smm, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "c.toml"
    cfg.write_text('[accounts.a]\nplatform = "myspace"\ntimezone = "UTC"\n', encoding="utf-8")
    result = smm("config", "check", config_path=cfg, expect=1)
    assert "no installed plugin provides platform 'myspace'" in result.output
    assert "did you mean" not in result.output


def test_config_check_names_plugin_problems_in_the_same_pass(smm, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[accounts.a]\nplatform = "myspace"\ntimezone = "UTC"\n\n'
        '[accounts.m]\nplatform = "mastodon"\ntimezone = "UTC"\n\n'
        "[plan]\nmax_file_bytes = -5\n",
        encoding="utf-8",
    )
    text = smm("config", "check", config_path=cfg, expect=1).output
    assert "has 4 problems" in text
    assert "line 2, field 'accounts.a.platform': no installed plugin" in text
    assert "field 'accounts.m.options.instance': missing" in text
    assert "field 'accounts.m.credentials.access_token': missing" in text
    assert "line 10, field 'plan.max_file_bytes'" in text
    listed = json.loads(smm("config", "check", "--json", config_path=cfg, expect=1).output)
    assert [p["field"] for p in listed["problems"]] == [
        "accounts.a.platform",
        "accounts.m.credentials.access_token",
        "accounts.m.options.instance",
        "plan.max_file_bytes",
    ]


def test_config_check_suggests_the_platform_a_typo_meant(smm, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "c.toml"
    cfg.write_text('[accounts.a]\nplatform = "Mastadon"\ntimezone = "UTC"\n', encoding="utf-8")
    result = smm("config", "check", config_path=cfg, expect=1)
    assert "line 2, field 'accounts.a.platform'" in result.output
    assert "(hint: did you mean 'mastodon'? installed: bluesky," in result.output


MASTODON = """\
[accounts.toots]
platform = "mastodon"
timezone = "UTC"
options.instance = "https://mastodon.example"
credentials.access_token = { env = "SMM_TEST_CHECK_TOKEN" }
"""


def config_check(
    tmp_path: Path, text: str, *args: str, expect: int
) -> tuple[str, str, dict[str, Any]]:
    """``smm config check ARGS`` of ``text``: its standard output and error, and its --json."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(text, encoding="utf-8")
    results = [
        CliRunner().invoke(cli, ["--config", str(cfg), "config", "check", *args, *extra])
        for extra in ([], ["--json"])
    ]
    assert [r.exit_code for r in results] == [expect, expect], results[0].output
    return results[0].stdout, results[0].stderr, json.loads(results[1].stdout)


def test_config_check_fails_on_a_credential_whose_variable_is_not_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SMM_TEST_CHECK_TOKEN", raising=False)
    _, err, listed = config_check(tmp_path, MASTODON, expect=1)
    assert (
        "c.toml, line 5, field 'accounts.toots.credentials.access_token': environment variable "
        "SMM_TEST_CHECK_TOKEN is not set (hint: set SMM_TEST_CHECK_TOKEN in the daemon's "
        "environment (systemd: Environment= or EnvironmentFile=); to check the file where the "
        "secrets are not: --skip-credentials)"
    ) in err
    (problem,) = listed["problems"]
    assert (problem["line"], problem["field"]) == (5, "accounts.toots.credentials.access_token")

    monkeypatch.setenv("SMM_TEST_CHECK_TOKEN", "s3cr3t-token-value")
    out, err, listed = config_check(tmp_path, MASTODON, expect=0)
    assert "credentials: available" in out
    assert listed["warnings"] == []
    assert "s3cr3t" not in out + err + json.dumps(listed)


def test_config_check_skipping_credentials_still_names_those_it_cannot_read(
    tmp_path: Path,
) -> None:
    secret = tmp_path / "no-such-token"
    text = MASTODON.replace('{ env = "SMM_TEST_CHECK_TOKEN" }', f'{{ file = "{secret}" }}')
    _, err, _ = config_check(tmp_path, text, expect=1)
    assert f"cannot read file {secret}: No such file or directory (hint: create {secret}" in err

    out, err, listed = config_check(tmp_path, text, "--skip-credentials", expect=0)
    assert "OK, 1 account(s)" in out
    assert err.startswith(
        f"warning: {tmp_path / 'c.toml'}, line 5, field "
        f"'accounts.toots.credentials.access_token': cannot read file {secret}"
    )
    assert [w["field"] for w in listed["warnings"]] == ["accounts.toots.credentials.access_token"]


def test_config_check_warns_of_a_systemd_credential_outside_the_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    text = MASTODON.replace('{ env = "SMM_TEST_CHECK_TOKEN" }', '{ credential = "toots" }')
    _, err, listed = config_check(tmp_path, text, expect=0)
    assert "field 'accounts.toots.credentials.access_token': systemd credential toots is " in err
    assert "readable only inside the service (hint: check inside the service" in err
    assert len(listed["warnings"]) == 1


def test_config_check_needs_no_credential_of_a_disabled_account(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SMM_TEST_CHECK_TOKEN", raising=False)
    out, err, _ = config_check(tmp_path, MASTODON + "enabled = false\n", expect=0)
    assert "credentials: missing access_token" in out
    assert err == ""


def test_commands_needing_a_config_say_how_to_give_one(smm, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "empty"))
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN, encoding="utf-8")
    result = smm("plan", "validate", str(plan), config_path=None, expect=1)
    assert "--config" in result.output


def test_example_config_passes_config_check() -> None:
    result = CliRunner().invoke(cli, ["--config", str(EXAMPLE_CONFIG), "config", "check"])
    assert result.exit_code == 0, result.output


def test_the_networks_example_has_an_account_on_every_built_in_network() -> None:
    """config/networks.example.toml says it has one account per built-in network."""
    import tomllib

    from scheduler import plugins

    example = REPO / "config" / "networks.example.toml"
    accounts = tomllib.loads(example.read_text(encoding="utf-8"))["accounts"]
    built_in = {
        name
        for name, info in plugins.platforms().items()
        if info.adapter.__module__.startswith("smm_") and not name.startswith("sim")
    }
    assert built_in - {a["platform"] for a in accounts.values()} == set()
    # Its secrets are where the daemon runs, not here.
    args = ["--config", str(example), "config", "check", "--skip-credentials"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output


def test_version() -> None:
    from scheduler import __version__

    assert __version__ in CliRunner().invoke(cli, ["--version"]).output


@pytest.mark.parametrize("name", ["example-plan.yaml", "example-plan.csv"])
def test_shipped_example_plans_validate(name: str, tmp_path: Path) -> None:
    shutil.copy(REPO / "config" / name, tmp_path / name)
    result = CliRunner().invoke(
        cli, ["--config", str(EXAMPLE_CONFIG), "plan", "validate", str(tmp_path / name)]
    )
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("command", ["validate", "import"])
def test_a_plan_path_that_is_no_file_is_bad_input_like_a_missing_one(
    command: str, tmp_path: Path
) -> None:
    os.mkfifo(tmp_path / "fifo.yaml")
    db = f"sqlite:///{tmp_path / 'smm.db'}"
    for path in (tmp_path, tmp_path / "fifo.yaml", tmp_path / "missing.yaml"):
        result = CliRunner().invoke(
            cli, ["--config", str(EXAMPLE_CONFIG), "--db", db, "plan", command, str(path)]
        )
        assert result.exit_code == 1, result.output
        assert f"{path}: cannot read the file" in result.output
        assert "Traceback" not in result.output


@pytest.mark.parametrize("command", ["validate", "import"])
def test_an_unreadable_plan_is_left_to_the_reader_not_refused_as_a_usage_error(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text("- id: [unclosed\n")
    # As the CLI's argument checks would see a file of another user's (root reads anything).
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda p, *a, **k: str(p) != str(plan) and real_access(p, *a, **k)
    )
    result = CliRunner().invoke(
        cli,
        ["--config", str(EXAMPLE_CONFIG), "--db", f"sqlite:///{tmp_path / 'smm.db'}", "plan",
         command, str(plan)],
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert f"{plan}" in result.output


def test_an_unreachable_database_is_one_line_without_the_password(tmp_path: Path) -> None:
    url = "postgresql+psycopg://someone:hunter2@/nodb?host=" + str(tmp_path)
    result = CliRunner().invoke(cli, ["--db", url, "queue", "list"])
    assert result.exit_code == 1
    assert "cannot use the database" in result.output
    assert "hunter2" not in result.output
    assert "Traceback" not in result.output


def test_reimporting_a_plan_with_published_past_posts_is_not_an_error(
    smm,
    db_url: str,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        '- {id: old, account: ny, type: t, text: x, at: "2030-01-07 10:00"}\n', encoding="utf-8"
    )
    smm("plan", "import", str(plan))
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(
            posts_t.update().values(state="published", due_at=datetime(2020, 1, 1, tzinfo=UTC))
        )
    engine.dispose()
    plan.write_text(
        '- {id: old, account: ny, type: t, text: x, at: "2020-01-07 10:00"}\n', encoding="utf-8"
    )
    result = smm("plan", "import", str(plan))  # exit 0: the past time is expected here
    assert "old: changed in the plan but published; not touched" in result.output


def test_yaml_field_names_are_case_insensitive_and_ids_stay_text(smm, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    plan = tmp_path / "plan.yaml"
    plan.write_text("- {ID: 010, Account: riga, Type: laugh, Text: hello}\n", encoding="utf-8")
    smm("plan", "import", str(plan))
    listed = json.loads(smm("queue", "list", "--json").output)
    assert [p["id"] for p in listed] == ["010"]


@pytest.mark.parametrize(
    "args",
    [
        ["queue", "list", "--state", "x" * 5000],
        ["--color", "y" * 5000, "status"],
        ["queue", "list", "--limit", "9" * 5000],
    ],
    ids=["subcommand-choice", "group-choice", "number"],
)
def test_a_usage_error_quotes_only_an_excerpt_of_a_huge_argument(args: list[str]) -> None:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert len(result.output) < 1500
    assert "…" in result.output
