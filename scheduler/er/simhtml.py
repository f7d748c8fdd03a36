"""A simulation summary (``trials.summary``) as one self-contained HTML page: figures per seed
and the loop's priority trajectory, as inline SVG. No script, nothing fetched; every piece
of text is escaped."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

_COLOURS = ("#1b6ca8", "#d1495b", "#2e933c", "#edae49", "#6a4c93", "#00798c", "#8d6a9f",
            "#c36f09", "#3d405b", "#81b29a")  # fmt: skip
_DASHES = ("", "6 3", "2 2", "8 3 2 3", "1 3", "10 4", "4 2 1 2", "3 5", "12 2", "5 1")


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def trajectory_svg(account: str, points: Sequence[Mapping[str, Any]]) -> str:
    """Each content type's weight after every recompute, one line per type."""
    series: dict[str, list[tuple[float, float]]] = {}
    for p in points:
        for t, w in p["weights"].items():
            series.setdefault(t, []).append((float(p["day"]), float(w)))
    if not series:
        return ""
    width, height, pad = 640, 220, 36
    last_day = max(d for s in series.values() for d, _ in s) or 1.0

    def xy(day: float, w: float) -> str:
        x = pad + day / last_day * (width - 2 * pad)
        y = height - pad - w * (height - 2 * pad)
        return f"{x:.1f},{y:.1f}"

    lines = []
    for i, (t, pts) in enumerate(sorted(series.items())):
        colour, dash = _COLOURS[i % len(_COLOURS)], _DASHES[i % len(_DASHES)]
        path = " ".join(xy(d, w) for d, w in pts)
        end = pts[-1]
        lines.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="2" '
            f'stroke-dasharray="{dash}" points="{path}"><title>{_e(t)}: '
            f"{end[1]:.2f} at the end</title></polyline>"
            f'<text x="{width - pad + 4}" y="{xy(end[0], end[1]).split(",")[1]}" '
            f'font-size="11" fill="{colour}">{_e(t)}</text>'
        )
    axis = (
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" '
        f'y2="{height - pad}" stroke="#888"/>'
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="#888"/>'
        f'<text x="{pad - 4}" y="{pad + 4}" font-size="11" text-anchor="end">1</text>'
        f'<text x="{pad - 4}" y="{height - pad}" font-size="11" text-anchor="end">0</text>'
        f'<text x="{width / 2}" y="{height - 8}" font-size="11" text-anchor="middle">'
        f"day (0-{last_day:.0f})</text>"
    )
    return (
        f'<svg role="img" viewBox="0 0 {width + 90} {height}" width="{width + 90}" '
        f'height="{height}"><title>Priority trajectory of {_e(account)}</title>'
        f"<desc>Each content type's share of the queue slots after every recompute.</desc>"
        f"{axis}{''.join(lines)}</svg>"
    )


def render_summary(data: Mapping[str, Any]) -> str:
    """The page for one simulation summary."""
    o = data.get("of_oracle") or {}
    rr = data.get("over_round_robin") or {}
    parts = [
        f"<h1>Simulation: {_e(data['world'])}</h1>",
        f"<p>{_e(data.get('description') or '')}</p>",
        f"<p>{data['days']} simulated days, {data['accounts']} account(s), "
        f"{len(data['seeds'])} seed(s).</p>",
    ]
    if o:
        parts.append(
            f"<p>The ER loop reached <strong>{_pct(o['mean'])}</strong> of the oracle's expected "
            f"engagement on average (worst {_pct(o['worst'])} on seed {o['worst_seed']}, "
            f"spread {_pct(o['spread'])})"
            + (f", {rr['mean']:+.1%} over round-robin" if rr else "")
            + ".</p>"
        )
    for event in data.get("drift", []):
        follow = ", ".join("never" if f is None else f"{f:.0f}" for f in event["days_to_lead"])
        parts.append(
            f"<p>Day {event['day']:.0f}: {_e(event['new_best'])} became the best type and took "
            f"the lead after {_e(follow)} days.</p>"
        )
    rows = []
    for r in data["per_seed"]:
        cells = [str(r["seed"])]
        for s in ("er", "oracle", "round_robin"):
            cells.append(f"{r[s]['value']:,.0f}" if s in r else "-")
        cells.append(_pct(r.get("of_oracle")))
        cells.append("-" if "over_round_robin" not in r else f"{r['over_round_robin']:+.1%}")
        rows.append("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>")
    parts.append(
        "<table><caption>Expected engagement per seed</caption><thead><tr><th>seed</th>"
        "<th>ER loop</th><th>oracle</th><th>round-robin</th><th>of oracle</th>"
        "<th>over round-robin</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )
    points = data.get("trajectory", [])
    for account in sorted({p["account"] for p in points}):
        parts.append(f"<h2>{_e(account)}: priority trajectory (seed {data['seeds'][0]})</h2>")
        parts.append(trajectory_svg(account, [p for p in points if p["account"] == account]))
    style = (
        "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;color:#222}"
        "table{border-collapse:collapse}td,th{padding:.2rem .6rem;border-bottom:1px solid #ddd;"
        "text-align:right}caption{text-align:left;font-weight:bold}"
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Simulation: {_e(data['world'])}</title><style>{style}</style></head><body>"
        + "\n".join(parts)
        + "</body></html>\n"
    )
