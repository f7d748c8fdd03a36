"""The fast path for common plan items gives exactly ``validate_item``'s item, or leaves the
item to it: over many good, odd and bad values of every field it takes, it never accepts
an item the full path refuses, never builds a different item, and takes the common ones."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

from scheduler.config import parse_config
from scheduler.errors import Problem
from scheduler.plan.items import RawItem
from scheduler.plan.validate import plain_item, validate_item, validate_raw
from tests.plan_support import CONFIG

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

#: Values of each field: plain good ones first, then odd ones the full path accepts, then
#: bad ones (None: the field is left out).
VALUES: dict[str, list[Any]] = {
    "id": [
        "p1",
        " p2 ",
        "p-3\t",
        "",
        "  ",
        None,
        5,
        ["x"],
        "a" * 201,
        "a\u202eb",
        "a\u00a0b",
        "é\u0301",
        "x\x00",
    ],
    "account": ["riga", " ny ", "noslots", "Riga", "nobody", "", None, 3, "r" * 201],
    "type": ["tip", " Medal ", "", None, "t" * 101, "a\u200bb", True, "x\u00a0y"],
    "text": [
        "Hello",
        "  Hi\r\nthere \n",
        "emoji 🚀\ttab",
        "",
        "   ",
        None,
        ["t"],
        "bad\x1b[31m",
        "nul\x00",
        "\u0085next",
        "lone \ud800",
        "a" * 5000,
    ],
    "link": [
        None,
        "",
        "https://example.com/p/1",
        " http://a.b/c?d=1 ",
        "ftp://x.y",
        "https://[::1",
        "https://exa mple.com",
        "not a url",
        5,
        "https://é.com/x",
        "https://a.b/\u202e",
    ],
    "tags": [None, "", "smm;tips", "#a, #b c", ";;", "##", ["a", "b"], "a\u200bb", 7, "x\ny"],
    "evergreen": [None, "", "yes", " No ", "x", "maybe", True, False, 1, ["y"]],
    "at": [
        None,
        "",
        "  ",
        "2026-04-01 09:00",
        "2026-04-01T09:00:00+02:00",
        "2026-01-01 09:00",
        "2026-03-29 03:30",
        "2026-11-01 01:30",
        "2026-04-01",
        "tomorrow",
        20260401,
        "9999-12-31 23:59-05:00",
        "x" * 70,
    ],
    "approval": [None, "", "required", " None ", "REQUIRED", "maybe", True],
    "media": [None, "", "a.png"],
    "visibility": [None, "", "public"],
    "notes": [None, "keep me"],
    "_own": [None, "a note"],
    "Text": [None, "wrong case"],
    "bogus": [None, "x"],
}


def _raw(rng: random.Random, number: int, unit: str) -> RawItem:
    values: dict[str, Any] = {}
    for name, pool in VALUES.items():
        # Mostly the plain good value, so that many items pass; sometimes anything.
        value = pool[0] if rng.random() < 0.6 else rng.choice(pool)
        if name == "id" and value == "p1":
            value = f"p{number}"
        if value is not None:
            values[name] = value
    return RawItem("plan.csv" if unit == "row" else "plan.yaml", number + 2, unit, values)


def test_the_fast_path_gives_the_full_paths_item_or_leaves_it_to_it() -> None:
    config = parse_config(CONFIG, "config.toml")
    rng = random.Random(18)
    fast = 0
    for number in range(6000):
        raw = _raw(rng, number, rng.choice(["row", "line"]))
        problems: list[Problem] = []
        full = validate_item(raw, config, NOW, problems)
        quick = plain_item(raw, config, NOW)
        if quick is None:
            continue
        fast += 1
        assert problems == [], (raw.values, problems)
        assert quick == full, raw.values
        assert quick.content_hash() == full.content_hash()
    # The common items take it (one in twenty of these mixed ones is plain and good).
    assert fast > 200


def test_a_plain_item_takes_the_fast_path_and_a_past_time_the_full_one() -> None:
    config = parse_config(CONFIG, "config.toml")
    values = {"id": "a", "account": "riga", "type": "tip", "text": "Hello", "at": ""}
    assert plain_item(RawItem("p.csv", 2, "row", values), config, NOW) is not None
    # A time in the past is a problem unless the post is settled: only the full path asks.
    past = RawItem("p.csv", 3, "row", {**values, "at": "2026-02-01 09:00"})
    assert plain_item(past, config, NOW) is None
    problems: list[Problem] = []
    assert validate_raw(past, config, NOW, problems, [], settled={"a"}) != []
    assert problems == []
    assert validate_raw(past, config, NOW, problems, []) == []
    assert [p.field for p in problems] == ["at"]
