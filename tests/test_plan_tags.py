"""Tags become hashtags where the network writes them into the text: a tag that would not be
one hashtag there is refused at validation, with its item, line and field."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from scheduler.cli import cli

CONFIG = """
[accounts.brand_masto]
platform = "mastodon"
timezone = "Europe/Riga"
slots.daily = ["09:00"]
options.instance = "https://mastodon.example"
credentials.access_token = { env = "SMM_TEST_TAGS_TOKEN" }

[accounts.brand_hook]
platform = "webhook"
timezone = "Europe/Riga"
slots.daily = ["09:00"]
options.url = "https://hooks.example/smm"
"""

GOOD = ["smm", "#tips", "new_product", "NewProduct", "naïve", "Straße", "हिन्दी", "日本語", "x2026"]
BAD = ["new product", "c++", "2026", "don't"]


def validate(tmp_path: Path, plan_name: str, plan: str) -> tuple[int, str]:
    config = tmp_path / "config.toml"
    config.write_text(CONFIG, encoding="utf-8")
    path = tmp_path / plan_name
    path.write_text(plan, encoding="utf-8")
    result = CliRunner().invoke(
        cli, ["--config", str(config), "plan", "validate", "--json", str(path)]
    )
    return result.exit_code, result.stdout


def test_tags_that_would_not_be_one_hashtag_are_refused_each_with_its_place(
    tmp_path: Path,
) -> None:
    tags = json.dumps(GOOD + BAD)
    plan = f"- id: t1\n  account: brand_masto\n  type: laugh\n  text: hello\n  tags: {tags}\n"
    code, out = validate(tmp_path, "plan.yaml", plan)
    assert code == 1, out
    problems = json.loads(out)["problems"]
    assert [p["code"] for p in problems] == ["tag_not_hashtag"] * len(BAD)
    assert all(p["field"] == "tags" and p["item"] == "t1" and p["line"] == 5 for p in problems)
    messages = " ".join(p["message"] for p in problems)
    for tag in BAD:
        assert repr(tag) in messages
    assert "would end it at '+'" in messages
    assert "a hashtag needs a letter" in messages


def test_a_csv_plans_tags_are_checked_as_its_cells_split_them(tmp_path: Path) -> None:
    plan = (
        "id,account,type,text,tags\n"
        'c1,brand_masto,laugh,hi,"#smm #tips"\n'
        "c2,brand_masto,laugh,hi,c++;ok\n"
    )
    code, out = validate(tmp_path, "plan.csv", plan)
    assert code == 1, out
    (problem,) = json.loads(out)["problems"]
    assert (problem["row"], problem["field"], problem["code"]) == (3, "tags", "tag_not_hashtag")


def test_a_network_that_sends_tags_as_a_field_takes_any(tmp_path: Path) -> None:
    tags = json.dumps(GOOD + BAD)
    plan = f"- id: t1\n  account: brand_hook\n  type: laugh\n  text: hello\n  tags: {tags}\n"
    code, out = validate(tmp_path, "plan.yaml", plan)
    assert code == 0, out
