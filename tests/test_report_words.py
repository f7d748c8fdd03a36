"""The engagement report as a manager reads it: decisions in plain words, axis titles, and
the all-accounts weekday x hour view normalised per account."""

from __future__ import annotations

from datetime import UTC, datetime

from scheduler.cli.report import merge_cells
from scheduler.er import html as page

T = datetime(2026, 3, 1, tzinfo=UTC)


def decision(old: dict[str, float], new: dict[str, float], frozen: bool = False) -> str:
    row = page.DecisionRow(T, "acme", "thompson", "p=0.93", frozen, old != new, old, new)
    return page.plain_words(row)


def test_a_decision_in_plain_words() -> None:
    words = decision({"laugh": 0.30, "medal": 0.20}, {"laugh": 0.25, "medal": 0.25})
    assert words == "More medal (20% → 25%); fewer laugh (30% → 25%) of the slots."
    assert decision({"laugh": 0.5}, {"laugh": 0.5}).startswith("No change")
    assert decision({"laugh": 0.5}, {"laugh": 0.6}, frozen=True).startswith("Weights frozen")


def test_decisions_show_plain_words_and_the_policys_reason() -> None:
    row = page.DecisionRow(T, "acme", "thompson", "p=0.93", False, True, {"a": 0.5}, {"a": 0.6})
    section = page.Section("acme", "acme", "reach", "UTC", 1, decisions=[row])
    text = page._decisions(section)
    assert '<span class="plain">More a (50% → 60%) of the slots.</span>' in text
    assert '<span class="reason">Why: p=0.93</span>' in text


def test_charts_have_axis_titles() -> None:
    styles = page.styles_for(["laugh"])
    chart = page.line_chart(
        "c",
        "t",
        "d",
        {"laugh": [(T, 0.02, "n")]},
        styles,
        start=T,
        end=datetime(2026, 3, 8, tzinfo=UTC),
        y_title="ER by reach",
        x_title="week the posts were published",
    )
    assert ">ER by reach</text>" in chart
    assert ">week the posts were published</text>" in chart
    heat = page.heatmap("h", "t", {(0, 9): page.HeatCell(1, 1, 5.0)})
    assert ">hour of publishing, in local time</text>" in heat
    assert ">weekday</text>" in heat


def test_the_summary_heatmap_weighs_each_account_alike() -> None:
    big = {(0, 9): page.HeatCell(1, 1, 3000.0), (0, 10): page.HeatCell(1, 1, 1000.0)}
    small = {(0, 9): page.HeatCell(1, 1, 10.0), (0, 10): page.HeatCell(1, 1, 30.0)}
    merged = merge_cells([big, small])
    # big: 1.5x and 0.5x its mean; small: 0.5x and 1.5x its mean -> both hours 1.0
    assert merged[(0, 9)].mean == 1.0
    assert merged[(0, 10)].mean == 1.0
    text = page.heatmap("h", "t", merged, relative=True)
    assert "× the account&#x27;s average" in text or "× the account's average" in text


def test_an_unchanged_mix_is_told_in_the_policys_words_not_contradicted() -> None:
    """Weights already at the ceiling for a type that clearly leads must not read as 'the
    evidence does not favour any type' (the reason beside it says the opposite)."""
    from scheduler.cli.report import _decision

    weights = {"laugh": 0.6, "medal": 0.4}
    said = (
        "No change: the slots already follow what the posts show; laugh is the best of your "
        "two types (3.3% of the people who saw them)."
    )
    record = {
        "at": T,
        "policy": "thompson",
        "reason": "no change: the weights already follow the evidence (laugh best in 100% "
        "of draws)",
        "frozen": False,
        "changed": False,
        "old_weights": weights,
        "new_weights": dict(weights),
        "summary": said,
    }
    assert page.plain_words(_decision(record, "acme")) == said
    # A policy that wrote no words of its own: its reason stands as the summary; nothing is
    # claimed about the evidence.
    wordless = _decision({**record, "summary": record["reason"]}, "acme")
    assert page.plain_words(wordless) == "No change to the mix of content types."
