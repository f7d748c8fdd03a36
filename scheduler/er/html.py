"""The HTML report: one self-contained static page with inline SVG charts.

Pure functions from plain data (``Report``) to text: no database, no JavaScript, nothing
fetched, so the file opens offline and can be mailed or archived. Every piece of user text
(content types, account names, reasons) goes through ``html.escape``.

Accessibility: every chart is an ``<svg role="img">`` with a ``<title>`` and a ``<desc>``;
every series, point and heatmap cell has its own ``<title>``. A content type keeps one colour
*and* one dash pattern, marker shape and text label across the whole page, and heatmap cells
print their value, so the page reads the same in greyscale.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from scheduler.er.plot import resample
from scheduler.timeutil import UTC

# ============================================================================ the data


@dataclass(frozen=True)
class TypeRow:
    """One content type in a section's table."""

    content_type: str
    #: Posts published in the report's period.
    published: int
    #: Posts the ER loop counts (read at a configured age within its horizon).
    counted: int | None
    er: float | None
    er_low: float | None
    er_high: float | None
    weight: float | None
    trend: float | None
    demoted: bool = False
    #: For the all-accounts summary: on how many accounts the type is demoted.
    demoted_on: int = 0


@dataclass(frozen=True)
class DecisionRow:
    """One priority decision, as the page lists it."""

    at: datetime
    account: str
    policy: str
    reason: str
    frozen: bool = False
    changed: bool = True
    #: The shares before and after, for the plain-words summary of the decision.
    old_weights: Mapping[str, float] = field(default_factory=dict)
    new_weights: Mapping[str, float] = field(default_factory=dict)
    #: The policy's own sentences (``er.words.summarise``), when it wrote any.
    summary: str | None = None


@dataclass(frozen=True)
class HeatCell:
    """Posts published in one (weekday, hour) of local time, and their engagements."""

    posts: int = 0
    #: Posts with a reading at a configured age (only they count toward the mean).
    read: int = 0
    engagements: float = 0.0

    @property
    def mean(self) -> float | None:
        return self.engagements / self.read if self.read else None


@dataclass(frozen=True)
class WeekPoint:
    """A content type's ER over the posts published in one week (``None``: no readings)."""

    er: float | None
    posts: int = 0


@dataclass(frozen=True)
class Section:
    """One account, or the all-accounts summary (``account`` None)."""

    title: str
    account: str | None
    #: What ER is a share of: "reach", "followers" or "mixed" (the summary).
    basis: str
    #: Where the heatmap's weekdays and hours are read: a zone name, or a phrase.
    local_time: str
    published: int
    #: ``(start, end)`` of each week, oldest first.
    weeks: Sequence[tuple[datetime, datetime]] = ()
    #: Per content type, one point per week.
    er_weekly: Mapping[str, Sequence[WeekPoint]] = field(default_factory=dict)
    #: ``(time, weights)`` after each recompute, oldest first.
    trajectory: Sequence[tuple[datetime, Mapping[str, float]]] = ()
    #: ``(weekday 0=Monday, hour)`` -> cell; missing cells had no posts.
    heatmap: Mapping[tuple[int, int], HeatCell] = field(default_factory=dict)
    types: Sequence[TypeRow] = ()
    decisions: Sequence[DecisionRow] = ()
    #: The trajectory is a mean over accounts (the summary).
    trajectory_note: str = ""


@dataclass(frozen=True)
class Report:
    """The whole page: when, which period, and its sections (summary first)."""

    generated_at: datetime
    since: datetime
    until: datetime
    sections: Sequence[Section]
    #: Under the header: which accounts, which settings.
    scope: str = ""
    #: The posts section, drawn (``scheduler.er.postlist.render_posts``), after the others.
    posts_html: str = ""


# ============================================================================ styles

#: Okabe-Ito colours (distinguishable with the common colour-vision deficiencies).
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#7F7F7F")
DASHES = ("", "7 3", "2 3", "9 3 2 3", "14 4", "4 2 4 6")
MARKERS = ("circle", "square", "triangle", "diamond", "cross", "plus")
#: Trajectories longer than this are averaged into this many points.
MAX_TRAJECTORY_POINTS = 240
#: Markers are drawn on every point of a series up to this many points.
MAX_MARKED_POINTS = 60
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")

WIDTH = 760
#: On every chart's root: the charts style themselves, so they read the same cut out of the page.
SVG_ATTRS = 'xmlns="http://www.w3.org/2000/svg" font-family="system-ui, sans-serif" font-size="11"'
PLOT = (60, 150, 20, 36)  # margins: left, right (end labels), top, bottom


@dataclass(frozen=True)
class Style:
    """How one content type is drawn: colour, dash pattern and marker shape."""

    colour: str
    dash: str
    marker: str


def styles_for(types: Sequence[str]) -> dict[str, Style]:
    """One style per content type (sorted by name, so a type looks the same everywhere).

    Dash and marker together tell up to 36 types apart without colour."""
    return {
        t: Style(
            PALETTE[i % len(PALETTE)],
            DASHES[(i + i // len(MARKERS)) % len(DASHES)],
            MARKERS[i % len(MARKERS)],
        )
        for i, t in enumerate(sorted(set(types)))
    }


def esc(value: object) -> str:
    """Text made safe for HTML content and quoted attributes."""
    return html.escape(str(value), quote=True)


def basis_text(basis: str) -> str:
    """What ER is a share of, in words."""
    if basis == "mixed":
        return "ER by reach where the network gives it, else by followers"
    return f"ER by {basis}"


def pct(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value * 100:.{digits}f}%"


def when(dt: datetime) -> str:
    """``2026-03-01 12:00 UTC``."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def day(dt: datetime) -> str:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).strftime("%Y-%m-%d")


def nice_ticks(top: float, count: int = 5) -> list[float]:
    """Round tick values from 0 to at least ``top``: steps of 1, 2, 2.5 or 5 times 10^k."""
    if top <= 0 or not math.isfinite(top):
        return [0.0, 1.0]
    raw = top / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    n = math.ceil(top / step - 1e-9)
    return [i * step for i in range(n + 1)]


def date_ticks(start: datetime, end: datetime, most: int = 8) -> list[datetime]:
    """Midnights (UTC) between ``start`` and ``end``, a whole number of days or weeks apart."""
    span = (end - start).total_seconds() / 86400
    step = next((d for d in (1, 2, 7, 14, 28, 56, 91, 182) if span / d <= most), 364)
    first = start.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if first < start:
        first += timedelta(days=1)
    if step >= 7:  # weekly ticks fall on Mondays
        first += timedelta(days=(7 - first.weekday()) % 7)
    out = []
    t = first
    while t <= end:
        out.append(t)
        t += timedelta(days=step)
    return out


# ============================================================================ SVG pieces


def _marker(shape: str, x: float, y: float, colour: str, r: float = 3.6) -> str:
    if shape == "circle":
        return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r:.1f}" fill="{colour}"/>'
    if shape == "square":
        return (
            f'<rect x="{x - r:.1f}" y="{y - r:.1f}" width="{2 * r:.1f}" height="{2 * r:.1f}" '
            f'fill="{colour}"/>'
        )
    if shape == "triangle":
        apex, half = y - 1.2 * r, 1.1 * r
        pts = f"{x:.1f},{apex:.1f} {x - half:.1f},{y + r:.1f} {x + half:.1f},{y + r:.1f}"
        return f'<polygon points="{pts}" fill="{colour}"/>'
    if shape == "diamond":
        top, bottom = y - 1.3 * r, y + 1.3 * r
        pts = f"{x:.1f},{top:.1f} {x + r:.1f},{y:.1f} {x:.1f},{bottom:.1f} {x - r:.1f},{y:.1f}"
        return f'<polygon points="{pts}" fill="{colour}"/>'
    if shape == "cross":
        return (
            f'<path d="M{x - r:.1f},{y - r:.1f}L{x + r:.1f},{y + r:.1f}M{x - r:.1f},{y + r:.1f}'
            f'L{x + r:.1f},{y - r:.1f}" stroke="{colour}" stroke-width="2"/>'
        )
    return (
        f'<path d="M{x - r:.1f},{y:.1f}H{x + r:.1f}M{x:.1f},{y - r:.1f}V{y + r:.1f}" '
        f'stroke="{colour}" stroke-width="2"/>'
    )


def _legend(types: Sequence[str], styles: Mapping[str, Style], top: float) -> tuple[str, float]:
    """A legend in rows under the plot: swatch (colour, dash, marker) and the type's name."""
    parts = ['<g class="legend">']
    x, y = float(PLOT[0]), top
    for item, t in enumerate(types):
        s = styles[t]
        label = t if len(t) <= 24 else t[:23] + "…"
        w = 40 + 7 * len(label)
        if x + w > WIDTH - 10 and item:
            x, y = float(PLOT[0]), y + 18
        dash = f' stroke-dasharray="{s.dash}"' if s.dash else ""
        parts.append(
            f'<g><title>{esc(t)}</title><line x1="{x:.0f}" y1="{y:.0f}" x2="{x + 26:.0f}" '
            f'y2="{y:.0f}" stroke="{s.colour}" stroke-width="2"{dash}/>'
            + _marker(s.marker, x + 13, y, s.colour)
            + f'<text x="{x + 32:.0f}" y="{y + 4:.0f}">{esc(label)}</text></g>'
        )
        x += w
    parts.append("</g>")
    return "".join(parts), y + 14


def _end_labels(ends: list[tuple[float, str, str]], top: float, bottom: float) -> list[str]:
    """Type names at the right end of their lines, pushed apart so that none overlap."""
    gap = 13.0
    ends = sorted(ends)
    placed: list[float] = []
    for y, _, _ in ends:
        placed.append(max(y, placed[-1] + gap) if placed else y)
    # Pushed past the bottom: shift the stack back up.
    overflow = (placed[-1] - bottom) if placed else 0.0
    if overflow > 0:
        placed = [p - overflow for p in placed]
        for i in range(len(placed) - 2, -1, -1):
            placed[i] = min(placed[i], placed[i + 1] - gap)
    x = WIDTH - PLOT[1] + 8
    out = []
    for (_, name, colour), y in zip(ends, placed, strict=True):
        label = name if len(name) <= 18 else name[:17] + "…"
        out.append(
            f'<text class="end" x="{x}" y="{max(y, top) + 4:.1f}" fill="{colour}" '
            f'font-weight="600">{esc(label)}</text>'
        )
    return out


def line_chart(
    chart_id: str,
    title: str,
    desc: str,
    series: Mapping[str, Sequence[tuple[datetime, float | None, str]]],
    styles: Mapping[str, Style],
    *,
    start: datetime,
    end: datetime,
    y_top: float | None = None,
    y_format: str = "pct",
    height: int = 250,
    y_title: str = "",
    x_title: str = "",
) -> str:
    """A time-series chart: one line per series (``(time, value, note)`` points, ``None``
    breaks the line), y from 0, axis titles, a legend, and the name of each series at its
    end."""
    left, right, top, bottom = PLOT
    x0, x1, y0 = left, WIDTH - right, height - bottom
    values = [v for pts in series.values() for _, v, _ in pts if v is not None]
    ticks = nice_ticks(max(values, default=0.0) if y_top is None else y_top)
    y_max = ticks[-1]
    span = max((end - start).total_seconds(), 1.0)

    def sx(t: datetime) -> float:
        return x0 + (t - start).total_seconds() / span * (x1 - x0)

    def sy(v: float) -> float:
        return y0 - v / y_max * (y0 - top)

    def fmt(v: float) -> str:
        if y_format == "pct":
            return f"{v * 100:.{0 if y_max >= 0.05 else 1}f}%"
        return f"{v:.2f}"

    body = [
        f'<rect class="frame" x="{x0}" y="{top}" width="{x1 - x0}" height="{y0 - top}" '
        'fill="none" stroke="#bbbbbb"/>',
        '<g class="axis y" stroke="#e4e4e4" fill="#444444">',
    ]
    for v in ticks:
        y = sy(v)
        body.append(
            f'<line x1="{x0}" y1="{y:.1f}" x2="{x1}" y2="{y:.1f}"/>'
            f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end" stroke="none">{fmt(v)}</text>'
        )
    body.append('</g><g class="axis x" stroke="#999999" fill="#444444">')
    for t in date_ticks(start, end):
        x = sx(t)
        body.append(
            f'<line x1="{x:.1f}" y1="{y0}" x2="{x:.1f}" y2="{y0 + 4}"/>'
            f'<text x="{x:.1f}" y="{y0 + 16}" text-anchor="middle" stroke="none">'
            f"{t:%b} {t.day}</text>"
        )
    body.append("</g>")
    if y_title:
        mid = (top + y0) / 2
        body.append(
            f'<text class="axis-title" x="12" y="{mid:.1f}" text-anchor="middle" '
            f'transform="rotate(-90 12 {mid:.1f})" fill="#444444">{esc(y_title)}</text>'
        )
    if x_title:
        body.append(
            f'<text class="axis-title" x="{(x0 + x1) / 2:.1f}" y="{y0 + 30}" '
            f'text-anchor="middle" fill="#444444">{esc(x_title)}</text>'
        )
    ends: list[tuple[float, str, str]] = []
    drawn = [t for t in sorted(series) if series[t]]
    for name in drawn:
        s = styles[name]
        pts = series[name]
        dash = f' stroke-dasharray="{s.dash}"' if s.dash else ""
        body.append(f'<g class="series" data-type="{esc(name)}"><title>{esc(name)}</title>')
        run: list[str] = []
        for at, value, _note in [*pts, (end, None, "")]:
            if value is None:
                if len(run) > 1:
                    body.append(
                        f'<polyline points="{" ".join(run)}" fill="none" stroke="{s.colour}" '
                        f'stroke-width="2"{dash}/>'
                    )
                run = []
                continue
            run.append(f"{sx(at):.1f},{sy(value):.1f}")
        if len(pts) <= MAX_MARKED_POINTS:
            for at, value, note in pts:
                if value is not None:
                    body.append(
                        f'<g class="point"><title>{esc(note)}</title>'
                        + _marker(s.marker, sx(at), sy(value), s.colour)
                        + "</g>"
                    )
        last = next((value for _, value, _ in reversed(pts) if value is not None), None)
        if last is not None:
            ends.append((sy(last), name, s.colour))
        body.append("</g>")
    body += _end_labels(ends, top, y0)
    legend, legend_bottom = _legend(drawn, styles, y0 + (46 if x_title else 32))
    total = int(legend_bottom + 6) if drawn else height
    return (
        f'<svg class="chart" id="{esc(chart_id)}" viewBox="0 0 {WIDTH} {total}" role="img" '
        f'aria-labelledby="{esc(chart_id)}-t {esc(chart_id)}-d" {SVG_ATTRS}>'
        f'<title id="{esc(chart_id)}-t">{esc(title)}</title>'
        f'<desc id="{esc(chart_id)}-d">{esc(desc)}</desc>' + "".join(body) + legend + "</svg>"
    )


def _heat_colour(fraction: float) -> tuple[str, str]:
    """Fill and text colour for a cell: light to dark blue (one hue: reads in greyscale)."""
    lo, hi = (0xD6, 0xE6, 0xF4), (0x08, 0x30, 0x6B)
    f = min(max(fraction, 0.0), 1.0)
    rgb = "".join(f"{round(a + (b - a) * f):02x}" for a, b in zip(lo, hi, strict=True))
    return f"#{rgb}", ("#ffffff" if f > 0.5 else "#111111")


def _compact(value: float) -> str:
    """A number in at most four characters, to fit a heatmap cell."""
    if value >= 9999.5:
        return f"{value / 1000:.0f}k"
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}"


def heatmap(
    chart_id: str,
    title: str,
    cells: Mapping[tuple[int, int], HeatCell],
    *,
    relative: bool = False,
) -> str:
    """Weekday (rows) by hour (columns): mean engagements per post, printed in each cell;
    cells without posts are left blank. ``relative``: the cells hold engagements as a
    multiple of their account's mean per post (1.0: as good as the account's average)."""
    unit = "× the account's average" if relative else "engagements per post"
    left, top, cw, ch = 58, 34, 29, 24
    width, height = left + 24 * cw + 8, top + 7 * ch + 30
    means = [c.mean for c in cells.values() if c.mean is not None]
    # The scale spans the measured cells, lightest to darkest, so the best slots stand out;
    # the printed numbers keep the absolute level.
    low, high = min(means, default=0.0), max(means, default=0.0)
    parts = [
        f'<svg class="chart heatmap" id="{esc(chart_id)}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-labelledby="{esc(chart_id)}-t {esc(chart_id)}-d" '
        f"{SVG_ATTRS}>"
        f'<title id="{esc(chart_id)}-t">{esc(title)}</title>'
        f'<desc id="{esc(chart_id)}-d">Rows are weekdays, columns hours of publishing; each '
        f"cell shows the mean {unit} of the posts published then, darker for more; blank "
        "cells had no posts.</desc>",
        f'<text class="axis-title" x="{left + 12 * cw:.1f}" y="11" text-anchor="middle" '
        'fill="#444444">hour of publishing, in local time</text>',
        f'<text class="axis-title" x="10" y="{top + 3.5 * ch:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 10 {top + 3.5 * ch:.1f})" fill="#444444">weekday</text>',
        '<g class="axis x">',
    ]
    for h in range(24):
        parts.append(
            f'<text x="{left + h * cw + cw / 2:.1f}" y="{top - 7}" text-anchor="middle">'
            f"{h:02d}</text>"
        )
    parts.append('</g><g class="axis y">')
    for d, name in enumerate(WEEKDAYS):
        parts.append(f'<text x="{left - 6}" y="{top + d * ch + ch / 2 + 4:.1f}" '
                     f'text-anchor="end">{name}</text>')  # fmt: skip
    parts.append("</g>")
    for d in range(7):
        for h in range(24):
            x, y = left + h * cw, top + d * ch
            slot = f"{WEEKDAYS[d]} {h:02d}:00–{(h + 1) % 24:02d}:00"
            cell = cells.get((d, h))
            if cell is None or cell.posts == 0:
                parts.append(
                    f'<rect class="blank" x="{x}" y="{y}" width="{cw - 1}" height="{ch - 1}" '
                    'fill="none" stroke="#eeeeee">'
                    f"<title>{slot}: no posts</title></rect>"
                )
                continue
            mean = cell.mean
            if mean is None:
                parts.append(
                    f'<rect class="cell unread" x="{x}" y="{y}" width="{cw - 1}" '
                    f'height="{ch - 1}" fill="#ffffff" stroke="#999999" stroke-dasharray="2 2">'
                    f"<title>{slot}: {cell.posts} posts, none read yet"
                    "</title></rect>"
                )
                continue
            fill, ink = _heat_colour((mean - low) / (high - low) if high > low else 1.0)
            label = f"{mean:.1f}" if relative else _compact(mean)
            parts.append(
                f'<g class="cell"><title>{slot}: {mean:.1f} {unit} '
                f"({cell.read} of {cell.posts} posts read)</title>"
                f'<rect x="{x}" y="{y}" width="{cw - 1}" height="{ch - 1}" fill="{fill}"/>'
                f'<text x="{x + cw / 2 - 0.5:.1f}" y="{y + ch / 2 + 3.5:.1f}" '
                f'text-anchor="middle" fill="{ink}" font-size="9.5">{label}</text></g>'
            )
    # The scale: what light and dark mean.
    sy = top + 7 * ch + 10
    for i in range(5):
        fill, _ = _heat_colour(i / 4)
        parts.append(f'<rect x="{left + i * 22}" y="{sy}" width="21" height="10" fill="{fill}"/>')
    parts.append(
        f'<text x="{left + 5 * 22 + 6}" y="{sy + 9}">{low:.1f} → {high:.1f} {unit}</text></svg>'
    )
    return "".join(parts)


# ============================================================================ the page

CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1a1a1a;
margin:0 auto;max-width:820px;padding:1rem 1.2rem 3rem}
h1{font-size:1.6rem;margin:.4rem 0}h2{margin-top:2.4rem;border-bottom:2px solid #ddd}
h3{font-size:1.05rem;margin:1.6rem 0 .4rem}
.meta,.note,figcaption{color:#555;font-size:.9rem}
nav ul{padding-left:1.2rem;columns:2}
svg.chart{width:100%;height:auto;display:block;margin:.3rem 0}
figure{margin:0}
table{border-collapse:collapse;width:100%;font-size:.92rem}
th,td{padding:.3rem .5rem;border-bottom:1px solid #e4e4e4;text-align:right}
th:first-child,td:first-child{text-align:left}
thead th{border-bottom:2px solid #bbb}caption{text-align:left;color:#555;padding:.3rem 0}
.demoted{font-weight:700}.swatch{display:inline-block;width:.8em;height:.8em;
margin-right:.35em;vertical-align:-.05em}
ol.decisions li{margin:.35rem 0}.plain{display:block;font-weight:600}
.reason{display:block;color:#555}
details{margin:.2rem 0 .6rem;font-size:.9rem}summary{cursor:pointer;color:#555}
.empty{padding:2rem;border:2px dashed #ccc;text-align:center;font-size:1.1rem}
article.post{border-top:1px solid #e4e4e4;padding:.4rem 0 .8rem}
article.post h4{margin:.3rem 0 0;font-size:1rem}.state{color:#555;font-weight:400}
.text{white-space:pre-wrap;margin:.3rem 0}ul.media{margin:.2rem 0;padding-left:1.2rem}
.no-alt{color:#8a4b00}dl.options{display:grid;grid-template-columns:max-content 1fr;
gap:0 .6rem;margin:.2rem 0;font-size:.9rem}dl.options dd{margin:0}
ol.thread{margin:.2rem 0}table.group{margin:.3rem 0;font-size:.88rem}
table.group td,table.group th{text-align:left}
@media print{h2{break-before:page}}
""".strip()


def _page(title: str, body: Sequence[str]) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="generator" content="smm-scheduler">\n'
        f"<title>{esc(title)}</title>\n<style>\n{CSS}\n</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def _header(report: Report) -> list[str]:
    days = round((report.until - report.since).total_seconds() / 86400)
    out = [
        "<header>",
        "<h1>Engagement report</h1>",
        f'<p class="meta">Generated <time datetime="{report.generated_at.isoformat()}">'
        f"{when(report.generated_at)}</time> · period "
        f'<time datetime="{report.since.isoformat()}">{day(report.since)}</time> to '
        f'<time datetime="{report.until.isoformat()}">{day(report.until)}</time> '
        f"({days} days)</p>",
    ]
    if report.scope:
        out.append(f'<p class="meta">{esc(report.scope)}</p>')
    out.append("</header>")
    return out


def render_empty(
    generated_at: datetime,
    since: datetime,
    until: datetime,
    scope: str = "",
    posts_html: str = "",
) -> str:
    """The page for a database (or account) with nothing published yet (and the posts that
    wait, when ``posts_html`` lists them)."""
    report = Report(generated_at, since, until, (), scope)
    return _page(
        "Engagement report: no published posts yet",
        [
            *_header(report),
            '<main><p class="empty">No published posts yet: charts appear once posts are '
            f"published and their metrics collected.</p>{posts_html}</main>",
        ],
    )


def _span(lo: datetime, hi: datetime) -> str:
    if hi - lo <= timedelta(days=7):
        return f"week of {day(lo)}"
    return f"{day(lo)} to {day(hi - timedelta(microseconds=1))}"


def _er_chart(section: Section, sid: str, styles: Mapping[str, Style], report: Report) -> str:
    series: dict[str, list[tuple[datetime, float | None, str]]] = {}
    for t, points in section.er_weekly.items():
        if not any(p.er is not None for p in points):
            continue
        series[t] = [
            (
                lo + (hi - lo) / 2,
                p.er,
                f"{t}, {_span(lo, hi)}: "
                + (f"ER {pct(p.er, 2)} over {p.posts} posts" if p.er is not None else "no posts"),
            )
            for (lo, hi), p in zip(section.weeks, points, strict=True)
        ]
    if not series:
        return '<p class="note">No ER readings in this period yet.</p>'
    return line_chart(
        f"{sid}-er",
        f"{basis_text(section.basis)} per content type, week by week: {section.title}",
        "One line per content type; each point is the mean ER of the posts published in its "
        "week (weeks, over long periods), read at the latest configured age they reached. "
        f"{len(series)} content types, {len(section.weeks)} points.",
        series,
        styles,
        start=report.since,
        y_title=basis_text(section.basis),
        x_title="week the posts were published",
        end=report.until,
    ) + _er_data(section, sorted(series))


def _er_data(section: Section, types: Sequence[str]) -> str:
    """The weekly figures as a table, folded away: for screen readers and for copying."""
    head = "".join(f'<th scope="col">{esc(t)}</th>' for t in types)
    rows = []
    for i, (lo, hi) in enumerate(section.weeks):
        cells = []
        for t in types:
            p = section.er_weekly[t][i]
            cells.append("<td>–</td>" if p.er is None else f"<td>{pct(p.er, 2)} ({p.posts})</td>")
        rows.append(f'<tr><th scope="row">{_span(lo, hi)}</th>{"".join(cells)}</tr>')
    return (
        "<details><summary>The figures (ER, and posts in brackets)</summary>"
        f'<table class="data"><thead><tr><th scope="col">published</th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></details>"
    )


def _trajectory_chart(
    section: Section, sid: str, styles: Mapping[str, Style], report: Report
) -> str:
    steps = section.trajectory
    if not steps:
        return '<p class="note">No priority recompute in this period.</p>'
    types = sorted({t for _, w in steps for t in w})
    n = len(steps)
    times = resample([s[0].timestamp() for s in steps], MAX_TRAJECTORY_POINTS)
    per_bucket = n / len(times)
    series: dict[str, list[tuple[datetime, float | None, str]]] = {}
    for t in types:
        values = resample([float(w.get(t, 0.0)) for _, w in steps], MAX_TRAJECTORY_POINTS)
        series[t] = [
            (
                datetime.fromtimestamp(ts, UTC),
                v,
                f"{t}: weight {v:.2f} at {when(datetime.fromtimestamp(ts, UTC))}"
                + (f" (mean of {per_bucket:.0f} recomputes)" if per_bucket > 1.5 else ""),
            )
            for ts, v in zip(times, values, strict=True)
        ]
    return line_chart(
        f"{sid}-weights",
        f"Priority weight per content type after each recompute: {section.title}",
        f"One line per content type: its share of the queue after each of the {n} recomputes "
        f"in the period{section.trajectory_note}. {len(types)} content types.",
        series,
        styles,
        start=report.since,
        end=report.until,
        y_top=max(0.5, max(v for _, w in steps for v in w.values()) if types else 0.5),
        y_format="weight",
        y_title="share of the slots (weight)",
        x_title="date of the recompute",
    )


def _trend(value: float | None) -> str:
    if value is None:
        return "–"
    arrow = "▲" if value > 0.005 else "▼" if value < -0.005 else "="
    return f"{arrow} {value * 100:+.0f}%"


def _table(section: Section, styles: Mapping[str, Style]) -> str:
    if not section.types:
        return '<p class="note">No content types yet.</p>'
    summary = section.account is None
    rows = []
    for r in section.types:
        s = styles.get(r.content_type)
        swatch = (
            f'<span class="swatch" style="background:{s.colour}" aria-hidden="true"></span>'
            if s
            else ""
        )
        er = pct(r.er)
        if r.er is not None and r.er_low is not None and r.er_high is not None:
            er += f" ({pct(r.er_low)}–{pct(r.er_high)})"
        weight = "–" if r.weight is None else f"{r.weight:.2f}"
        if summary:
            flag = f"demoted on {r.demoted_on}" if r.demoted_on else ""
        else:
            flag = "demoted" if r.demoted else ""
        rows.append(
            f'<tr><th scope="row">{swatch}{esc(r.content_type)}</th><td>{r.published}</td>'
            f"<td>{'–' if r.counted is None else r.counted}</td><td>{er}</td><td>{weight}</td>"
            f"<td>{_trend(r.trend)}</td>"
            f"<td{' class=demoted' if flag else ''}>{flag or '–'}</td></tr>"
        )
    weight_head = "mean weight" if summary else "weight"
    pooled = (
        " Pooled over the accounts; the weight is the mean over the accounts that weigh the type."
        if summary
        else ""
    )
    return (
        f'<table class="types"><caption>{esc(basis_text(section.basis))} with its 90% interval, '
        "as the ER loop measures it (decayed and shrunk toward the account mean); trend is "
        f"recent posts against older ones.{pooled}</caption>"
        '<thead><tr><th scope="col">content type</th><th scope="col">published</th>'
        '<th scope="col">posts counted</th><th scope="col">ER (90% interval)</th>'
        f'<th scope="col">{weight_head}</th><th scope="col">trend</th>'
        '<th scope="col">flag</th></tr></thead><tbody>' + "".join(rows) + "</tbody></table>"
    )


def plain_words(d: DecisionRow) -> str:
    """A decision as a manager reads it: which content types get more or fewer slots."""
    if d.frozen:
        return "Weights frozen: the mix of content types stays as it is."
    old, new = d.old_weights, d.new_weights
    moves = sorted(
        ((new.get(t, 0.0) - old.get(t, 0.0), t) for t in set(old) | set(new)),
        key=lambda m: (-abs(m[0]), m[1]),
    )
    more = [
        f"{t} ({old.get(t, 0) * 100:.0f}% → {new[t] * 100:.0f}%)" for x, t in moves if x > 0.005
    ]
    fewer = [
        f"{t} ({old[t] * 100:.0f}% → {new.get(t, 0) * 100:.0f}%)" for x, t in moves if x < -0.005
    ]
    if not more and not fewer:
        # Why nothing moved is the policy's to say: the types may be too close to tell apart,
        # or one may lead already at its ceiling.
        return d.summary or "No change to the mix of content types."
    parts = []
    if more:
        parts.append("More " + ", ".join(more))
    if fewer:
        parts.append("fewer " + ", ".join(fewer))
    return "; ".join(parts) + " of the slots."


def _decisions(section: Section) -> str:
    if not section.decisions:
        return '<p class="note">No decisions yet.</p>'
    items = []
    for d in section.decisions:
        who = "" if section.account is not None else f"{esc(d.account)} · "
        flags = (" · frozen" if d.frozen else "") + ("" if d.changed else " · no change")
        items.append(
            f'<li><time datetime="{d.at.isoformat()}">{when(d.at)}</time> · {who}'
            f'{esc(d.policy)}{flags}<span class="plain">{esc(plain_words(d))}</span>'
            f'<span class="reason">Why: {esc(d.reason)}</span></li>'
        )
    return '<ol class="decisions">' + "".join(items) + "</ol>"


def _section(section: Section, sid: str, styles: Mapping[str, Style], report: Report) -> str:
    head = (
        f'<section id="{sid}" aria-labelledby="{sid}-h"><h2 id="{sid}-h">'
        f"{esc(section.title)}</h2>"
        f'<p class="meta">{esc(basis_text(section.basis))} · {section.published} posts published '
        "in the period</p>"
    )
    if section.published == 0 and not section.trajectory and not section.types:
        return head + '<p class="note">No published posts in this period.</p></section>'
    return "".join(
        [
            head,
            "<h3>ER per content type over time</h3>",
            f"<figure>{_er_chart(section, sid, styles, report)}</figure>",
            "<h3>Priority trajectory</h3>",
            f"<figure>{_trajectory_chart(section, sid, styles, report)}</figure>",
            "<h3>Engagement by weekday and hour of publishing</h3>",
            "<figure>",
            heatmap(
                f"{sid}-heat",
                f"Engagement by weekday and hour, against each account's average: {section.title}"
                if section.account is None
                else f"Mean engagements per post by weekday and hour: {section.title}",
                section.heatmap,
                relative=section.account is None,
            )
            if section.heatmap
            else '<p class="note">No posts published in this period.</p>',
            f"<figcaption>Hours in {esc(section.local_time)}; engagements read at the latest "
            "configured age each post reached.</figcaption></figure>",
            "<h3>Content types</h3>",
            _table(section, styles),
            "<h3>Latest decisions</h3>",
            _decisions(section),
            "</section>",
        ]
    )


def render(report: Report) -> str:
    """The whole page. Sections with nothing published say so; see ``render_empty`` for a
    report with no sections at all."""
    if not report.sections:
        return render_empty(
            report.generated_at, report.since, report.until, report.scope, report.posts_html
        )
    types = {
        t
        for s in report.sections
        for t in [
            *s.er_weekly,
            *(r.content_type for r in s.types),
            *(t for _, w in s.trajectory for t in w),
        ]
    }
    styles = styles_for(sorted(types))
    ids = [f"s{i}" for i in range(len(report.sections))]
    body = _header(report)
    if len(report.sections) > 1:
        body.append('<nav aria-label="Sections"><ul>')
        body += [
            f'<li><a href="#{sid}">{esc(s.title)}</a></li>'
            for sid, s in zip(ids, report.sections, strict=True)
        ]
        if report.posts_html:
            body.append('<li><a href="#posts">Posts</a></li>')
        body.append("</ul></nav>")
    body.append("<main>")
    body += [_section(s, sid, styles, report) for sid, s in zip(ids, report.sections, strict=True)]
    if report.posts_html:
        body.append(report.posts_html)
    body.append("</main>")
    accounts = [s.title for s in report.sections if s.account is not None]
    title = "Engagement report" + (f": {accounts[0]}" if len(accounts) == 1 else "")
    return _page(title, body)
