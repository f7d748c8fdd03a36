"""``smm report --html``: the static page of the ER loop (charts, table, decisions)."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from er_support import DAY, HOUR, T0, Builder, cli_at_t0
from sqlalchemy import Engine

from scheduler.cli import cli
from scheduler.cli.report import build_report, mean_trajectory, register, week_buckets
from scheduler.config import ERSettings, empty_config
from scheduler.db.models import Account, MetricSnapshot, Post, PriorityDecision
from scheduler.er import html as page
from scheduler.er.recompute import recompute

if "report" not in cli.commands:
    register(cli)

accounts_t = Account.__table__  # type: ignore[attr-defined]
posts_t = Post.__table__  # type: ignore[attr-defined]
snapshots_t = MetricSnapshot.__table__  # type: ignore[attr-defined]
decisions_t = PriorityDecision.__table__  # type: ignore[attr-defined]

EVIL = "<script>alert('x')</script>"
RIGA_ER = {"instruction": 0.04, "laugh": 0.03, "medal": 0.02}
#: Charts per section: ER over time, the priority trajectory, the heatmap.
CHARTS = 3


# ============================================================================ reading the page

VOID = {"meta", "link", "br", "hr", "img", "input", "wbr", "col", "source"}


@dataclass
class Chart:
    id: str
    title: str = ""
    series: list[str] = field(default_factory=list)
    cells: int = 0
    blank: int = 0
    point_titles: list[str] = field(default_factory=list)
    cell_titles: list[str] = field(default_factory=list)


class Page(HTMLParser):
    """The page's structure: nesting errors, headings, charts and their parts, table rows."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, dict[str, str]]] = []
        self.errors: list[str] = []
        self.charts: list[Chart] = []
        self.sections: list[str] = []
        self.tables: list[tuple[str, list[list[str]]]] = []
        self.text: list[str] = []
        self.tags: set[str] = set()
        self._capture: list[str] | None = None
        self._capture_into: tuple[str, Any] | None = None
        self.feed(text)
        self.close()
        if self.stack:
            self.errors.append(f"unclosed: {[t for t, _ in self.stack]}")

    def _open(self, tag: str, attrs: dict[str, str]) -> None:
        self.tags.add(tag)
        classes = attrs.get("class", "").split()
        if tag == "svg":
            self.charts.append(Chart(attrs.get("id", "")))
        elif self.charts and any(t == "svg" for t, _ in self.stack):
            chart = self.charts[-1]
            if tag == "g" and "series" in classes:
                chart.series.append(attrs["data-type"])
            elif "cell" in classes and "unread" not in classes:
                chart.cells += 1
            elif "blank" in classes:
                chart.blank += 1
        if tag == "section":
            self.sections.append(attrs.get("id", ""))
        if tag == "table":
            self.tables.append((attrs.get("class", ""), []))
        if tag == "tr" and self.tables:
            self.tables[-1][1].append([])

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self._open(tag, a)
        if tag == "title" and self.charts and self.stack:
            self._capture = []
            parent, pattrs = self.stack[-1]
            self._capture_into = (parent, pattrs.get("class", "").split())
        if tag in ("td", "th") and self.tables:
            self._capture = []
            self._capture_into = ("cell", None)
        if tag not in VOID:
            self.stack.append((tag, a))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._open(tag, {k: v or "" for k, v in attrs})

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        if not self.stack or self.stack[-1][0] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1][0] if self.stack else None}")
            return
        self.stack.pop()
        if self._capture is not None and tag in ("title", "td", "th"):
            text = "".join(self._capture)
            where, classes = self._capture_into or ("", None)
            if where == "cell":
                self.tables[-1][1][-1].append(text.strip())
            elif where == "svg":
                self.charts[-1].title = text
            elif where == "g" and "point" in classes:
                self.charts[-1].point_titles.append(text)
            elif where == "g" and "cell" in classes:
                self.charts[-1].cell_titles.append(text)
            self._capture = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._capture is not None:
            self._capture.append(data)

    def table(self, kind: str, index: int = 0) -> list[list[str]]:
        return [rows for k, rows in self.tables if k == kind][index]

    def chart(self, suffix: str, section: int = 0) -> Chart:
        return next(c for c in self.charts if c.id == f"s{section}-{suffix}")


# ============================================================================ fixtures


@pytest.fixture
def smm(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run ``smm`` on the test database with "now" fixed at T0 (no config file)."""
    return cli_at_t0(db_url, monkeypatch)


@pytest.fixture
def seeded(engine: Engine) -> None:
    """riga (Europe/Riga, UTC+2 in February): 21 daily posts at 09:00 UTC over three weeks,
    three types of steady ER. oslo (UTC): 10 daily posts at 15:00, one of them a type named
    like a script. Two recomputes, a day apart."""
    with engine.begin() as conn:
        b = Builder(conn)
        riga = b.account("riga")
        oslo = b.account("oslo")
        conn.execute(
            accounts_t.update().where(accounts_t.c.id == riga).values(timezone="Europe/Riga")
        )
        types = sorted(RIGA_ER)
        for i in range(21):
            t = types[i % 3]
            b.measured(riga, t, RIGA_ER[t], published_at=(T0 - (i + 4) * DAY).replace(hour=9))
        for i in range(10):
            b.measured(
                oslo,
                ["laugh", EVIL][i % 2],
                0.02,
                published_at=(T0 - (i + 4) * DAY).replace(hour=15),
            )
    recompute(engine, empty_config(), T0 - DAY)
    recompute(engine, empty_config(), T0)


def report_of(smm: Any, tmp_path: Path, *args: str) -> tuple[Page, str]:
    out = tmp_path / "report.html"
    result = smm("report", "--html", str(out), *args)
    assert f"wrote {out}" in result.output
    text = out.read_text(encoding="utf-8")
    return Page(text), text


# ============================================================================ the page


def test_report_writes_a_well_formed_page(smm: Any, seeded: None, tmp_path: Path) -> None:
    parsed, text = report_of(smm, tmp_path)
    assert text.startswith("<!DOCTYPE html>")
    assert parsed.errors == []
    assert {"html", "head", "body", "header", "main", "section", "table", "svg"} <= parsed.tags
    # The summary first, then the accounts by name; one SVG per chart, each with a title.
    assert parsed.sections == ["s0", "s1", "s2", "posts"]  # the posts last
    assert len(parsed.charts) == CHARTS * 3
    assert all(c.title for c in parsed.charts)
    assert "Generated 2026-03-01 12:00 UTC" in "".join(parsed.text)
    assert "2025-12-01" in "".join(parsed.text)  # the period's start: 90 days back


def test_report_is_self_contained(smm: Any, seeded: None, tmp_path: Path) -> None:
    parsed, text = report_of(smm, tmp_path)
    assert "script" not in parsed.tags
    assert "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in text


def test_er_chart_has_one_series_per_type(smm: Any, seeded: None, tmp_path: Path) -> None:
    parsed, _ = report_of(smm, tmp_path)
    assert parsed.chart("er", 0).series == sorted([*RIGA_ER, EVIL])  # all accounts
    assert parsed.chart("er", 1).series == sorted(["laugh", EVIL])  # oslo
    assert parsed.chart("er", 2).series == sorted(RIGA_ER)  # riga


def test_weekly_points_are_the_loops_er(smm: Any, seeded: None, tmp_path: Path) -> None:
    parsed, _ = report_of(smm, tmp_path)
    riga = parsed.chart("er", 2)
    instruction = [t for t in riga.point_titles if t.startswith("instruction,")]
    # 21 days of posts, counted back from T0 - 4 days: four weeks have posts.
    assert len(instruction) == 4
    assert all("ER 4.00%" in t for t in instruction)
    assert sum(int(t.split(" over ")[1].split()[0]) for t in instruction) == 7


def test_summary_pools_accounts_per_week(smm: Any, seeded: None, tmp_path: Path) -> None:
    parsed, _ = report_of(smm, tmp_path)
    laugh = [t for t in parsed.chart("er", 0).point_titles if t.startswith("laugh,")]
    # The last week (from T0 - 7 days) holds riga's laugh post of T0 - 5 days - 3 h (3%) and
    # oslo's of T0 - 4 days + 3 h and T0 - 6 days + 3 h (2%): their mean, per post.
    last = laugh[-1]
    riga_n, oslo_n = 1, 2
    pooled = (0.03 * riga_n + 0.02 * oslo_n) / (riga_n + oslo_n)
    assert f"ER {pooled * 100:.2f}% over {riga_n + oslo_n} posts" in last


def test_trajectory_has_one_series_per_weighed_type(smm: Any, seeded: None, tmp_path: Path) -> None:
    parsed, _ = report_of(smm, tmp_path)
    riga = parsed.chart("weights", 2)
    assert riga.series == sorted(RIGA_ER)
    assert len([t for t in riga.point_titles if t.startswith("instruction:")]) == 2


def test_heatmap_cells_are_local_weekday_and_hour(smm: Any, seeded: None, tmp_path: Path) -> None:
    parsed, _ = report_of(smm, tmp_path)
    riga = parsed.chart("heat", 2)
    # 21 consecutive days at 09:00 UTC: every weekday once, at 11:00 in Riga.
    assert riga.cells == 7
    assert riga.blank == 7 * 24 - 7
    assert all("11:00–12:00" in t for t in riga.cell_titles)
    assert all("3 of 3 posts read" in t for t in riga.cell_titles)
    oslo = parsed.chart("heat", 1)
    assert oslo.cells == 7  # ten days: every weekday, three of them twice
    assert all("15:00–16:00" in t for t in oslo.cell_titles)
    assert parsed.chart("heat", 0).cells == 14


def test_heatmap_cell_is_mean_engagements_per_post(smm: Any, seeded: None, tmp_path: Path) -> None:
    parsed, _ = report_of(smm, tmp_path)
    # oslo: ER 2% of a reach of 10,000 is 200 engagements per post, in every cell.
    assert all(t.split(": ")[1].startswith("200.0 engagements per post") for t in
               parsed.chart("heat", 1).cell_titles)  # fmt: skip


def test_table_shows_each_type_with_interval_weight_and_flag(
    smm: Any, seeded: None, tmp_path: Path
) -> None:
    parsed, _ = report_of(smm, tmp_path, "--account", "riga")
    header, *rows = parsed.table("types")
    assert header == [
        "content type", "published", "posts counted", "ER (90% interval)", "weight", "trend",
        "flag",
    ]  # fmt: skip
    by_type = {r[0]: r for r in rows}
    assert set(by_type) == set(RIGA_ER)
    instruction = by_type["instruction"]
    assert instruction[1] == "7"
    assert instruction[3].count("%") == 3  # ER (low–high)
    assert float(instruction[4]) > float(by_type["medal"][4])
    # Heaviest first.
    assert rows[0][0] == "instruction"


def test_weekly_figures_are_also_a_table(smm: Any, seeded: None, tmp_path: Path) -> None:
    parsed, _ = report_of(smm, tmp_path, "--account", "riga")
    header, *rows = parsed.table("data")
    assert header == ["published", *sorted(RIGA_ER)]
    assert len(rows) == 13  # 90 days: 13 weeks
    assert rows[-1][0] == "week of 2026-02-22"
    assert rows[-1][1] == "4.00% (1)"
    assert rows[0][1:] == ["–", "–", "–"]


def test_latest_decisions_show_their_reasons(smm: Any, seeded: None, tmp_path: Path) -> None:
    _, text = report_of(smm, tmp_path, "--account", "riga")
    assert text.count('<li><time datetime="2026-') == 2
    assert "instruction up" in text


def test_content_types_are_escaped(smm: Any, seeded: None, tmp_path: Path) -> None:
    parsed, text = report_of(smm, tmp_path)
    assert "<script" not in text
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in text
    assert "script" not in parsed.tags
    assert EVIL in parsed.chart("er", 1).series  # read back intact


def test_account_filters_the_page(smm: Any, seeded: None, tmp_path: Path) -> None:
    parsed, text = report_of(smm, tmp_path, "--account", "oslo")
    assert parsed.sections == ["s0", "posts"]  # no summary for one account
    assert len(parsed.charts) == CHARTS
    assert "riga" not in text
    assert "instruction" not in text
    assert parsed.chart("er").series == sorted(["laugh", EVIL])


def test_unknown_account_is_an_error(smm: Any, seeded: None, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    result = smm("report", "--html", str(out), "--account", "nowhere", expect=1)
    assert "no account 'nowhere'" in result.output
    assert not out.exists()


def test_empty_database_says_no_published_posts_yet(smm: Any, tmp_path: Path) -> None:
    parsed, text = report_of(smm, tmp_path)
    assert parsed.errors == []
    assert "No published posts yet" in text
    assert parsed.charts == []


def test_account_without_posts_says_so(smm: Any, engine: Engine, tmp_path: Path) -> None:
    with engine.begin() as conn:
        Builder(conn).account("quiet")
    parsed, text = report_of(smm, tmp_path, "--account", "quiet")
    assert "No published posts yet" in text
    assert parsed.charts == []


def test_days_narrows_the_period(smm: Any, seeded: None, tmp_path: Path) -> None:
    parsed, _ = report_of(smm, tmp_path, "--account", "riga", "--days", "14")
    instruction = [t for t in parsed.chart("er").point_titles if t.startswith("instruction,")]
    assert len(instruction) == 2  # two weeks
    assert parsed.chart("heat").cells == 7  # days 4..14 back cover every weekday
    assert "(14 days)" in "".join(parsed.text)


def test_old_posts_only_leave_the_charts_empty(smm: Any, engine: Engine, tmp_path: Path) -> None:
    with engine.begin() as conn:
        b = Builder(conn)
        acc = b.account("old")
        b.measured(acc, "laugh", 0.03, published_at=T0 - 200 * DAY)
    parsed, text = report_of(smm, tmp_path)
    assert parsed.errors == []
    assert "No published posts in this period" in text


def test_html_to_standard_output(smm: Any, seeded: None) -> None:
    text = smm("report", "--html", "-", "--account", "riga").output
    assert text.startswith("<!DOCTYPE html>")
    assert Page(text).errors == []


# ============================================================================ speed


@pytest.fixture
def ninety_days(engine: Engine) -> Engine:
    """A history as the daemon leaves it after 90 days: 3 accounts, 5 posts a day of 5
    types, metrics at 1 h, 6 h, 24 h, 72 h and 7 days, an hourly recompute of each account."""
    rng = random.Random(7)
    types = ["provocation", "instruction", "medal", "laugh", "promo"]
    true_er = dict(zip(types, [0.01, 0.015, 0.02, 0.03, 0.04], strict=True))
    start = T0 - 90 * DAY
    with engine.begin() as conn:
        b = Builder(conn)
        accounts = [b.account(f"acc{i}") for i in range(3)]
        n = 0
        posts = []
        for a in accounts:
            for d in range(90):
                for k in range(5):
                    n += 1
                    posts.append(
                        {
                            "key": f"k{n}", "account_id": a, "content_type": rng.choice(types),
                            "text": "x", "media": [], "tags": [], "evergreen": False,
                            "schedule": "queue", "plan_order": n, "content_hash": "0" * 64,
                            "state": "published", "idempotency_key": f"i{n}",
                            "attempt_count": 1, "repeat_count": 0, "remote_id": f"r{n}",
                            "published_at": start + d * DAY + (8 + 3 * k) * HOUR
                            + timedelta(minutes=rng.randrange(60)),
                            "created_at": T0, "updated_at": T0,
                        }
                    )  # fmt: skip
        conn.execute(posts_t.insert(), posts)
        snaps = []
        for pid, at, t in conn.execute(
            posts_t.select().with_only_columns(
                posts_t.c.id, posts_t.c.published_at, posts_t.c.content_type
            )
        ):
            for hours in (1, 6, 24, 72, 168):
                if at + hours * HOUR > T0:
                    break
                reach = 1000 * hours
                snaps.append(
                    {
                        "post_id": pid, "collected_at": at + hours * HOUR,
                        "age_seconds": hours * 3600,
                        "likes": int(reach * true_er[t] * rng.uniform(0.5, 1.5)),
                        "comments": 1, "shares": 0, "reach": reach,
                    }
                )  # fmt: skip
        conn.execute(snapshots_t.insert(), snaps)
        inputs = {"types": {t: {"er": 0.02, "posts": 40} for t in types}}
        weights = dict.fromkeys(types, 0.2)
        conn.execute(
            decisions_t.insert(),
            [
                {
                    "account_id": a, "created_at": start + h * HOUR, "policy": "thompson",
                    "inputs": inputs, "old_weights": weights, "new_weights": weights,
                    "reason": "no change", "frozen": False,
                }
                for a in accounts
                for h in range(1, 90 * 24)
            ],
        )  # fmt: skip
    recompute(engine, empty_config(), T0)
    return engine


def test_ninety_days_render_well_under_a_second(ninety_days: Engine) -> None:
    # CPU time of this process, not wall time: a guard against a slow path, not a benchmark,
    # so other processes on a busy machine must not make it fail.
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        with ninety_days.connect() as conn:
            report = build_report(conn, ERSettings(), T0)
        assert report is not None
        text = page.render(report)
        best = min(best, time.process_time() - started)
    parsed = Page(text)
    assert parsed.errors == []
    assert len(parsed.charts) == CHARTS * 4
    assert len(parsed.chart("er").series) == 5
    assert best < 1.0, f"{best:.2f} s"


# ============================================================================ pieces


def test_weeks_count_back_from_now() -> None:
    weeks = week_buckets(T0 - 10 * DAY, T0)
    assert weeks == [(T0 - 10 * DAY, T0 - 7 * DAY), (T0 - 7 * DAY, T0)]


def test_long_periods_get_points_of_several_weeks() -> None:
    weeks = week_buckets(T0 - 3650 * DAY, T0)
    assert len(weeks) <= 60
    assert weeks[-1] == (T0 - 9 * 7 * DAY, T0)
    assert weeks[0][0] == T0 - 3650 * DAY


def test_unwritable_file_is_an_error(smm: Any, seeded: None, tmp_path: Path) -> None:
    out = tmp_path / "missing" / "report.html"
    result = smm("report", "--html", str(out), expect=1)
    assert f"cannot write {out}" in result.output


def test_summary_trajectory_averages_accounts_decided_so_far() -> None:
    at = [T0, T0 + HOUR]
    steps = [
        (1, at[0], {"a": 0.6, "b": 0.4}),
        (2, at[0], {"a": 0.2, "c": 0.8}),
        (1, at[1], {"a": 1.0}),
    ]
    assert mean_trajectory(steps) == [
        (at[0], pytest.approx({"a": 0.4, "b": 0.2, "c": 0.4})),
        (at[1], pytest.approx({"a": 0.6, "c": 0.4})),
    ]


def test_nice_ticks_cover_the_top() -> None:
    assert page.nice_ticks(0.043) == pytest.approx([0, 0.01, 0.02, 0.03, 0.04, 0.05])
    assert page.nice_ticks(0.0) == [0.0, 1.0]


def test_render_marks_blank_and_unread_cells() -> None:
    section = page.Section(
        title="a",
        account="a",
        basis="followers",
        local_time="UTC",
        published=3,
        heatmap={(0, 9): page.HeatCell(2, 2, 30.0), (4, 18): page.HeatCell(1, 0, 0.0)},
    )
    text = page.render(page.Report(T0, T0 - 7 * DAY, T0, [section]))
    chart = Page(text).chart("heat")
    assert chart.cells == 1
    assert chart.blank == 7 * 24 - 2
    assert chart.cell_titles == ["Mon 09:00–10:00: 15.0 engagements per post (2 of 2 posts read)"]
    assert "Fri 18:00–19:00: 1 posts, none read yet" in text


def test_every_type_keeps_its_style_across_charts() -> None:
    styles = page.styles_for(["b", "a", "c"])
    assert list(styles) == ["a", "b", "c"]
    assert len({(s.colour, s.dash, s.marker) for s in styles.values()}) == 3


def test_types_differ_without_colour() -> None:
    styles = page.styles_for([f"type{i:02d}" for i in range(36)])
    assert len({(s.dash, s.marker) for s in styles.values()}) == 36


def test_report_without_sections_is_the_empty_page() -> None:
    text = page.render(page.Report(T0, T0 - DAY, T0, []))
    assert "No published posts yet" in text
