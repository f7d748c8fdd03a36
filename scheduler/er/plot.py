"""Terminal charts from plain Unicode blocks: the priority trajectory and ER per type.

No dependency and no colour required, so the output reads the same in a pipe, a log or an
SSH session.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

SPARKS = "▁▂▃▄▅▆▇█"
#: Eighths of a block, for horizontal bars.
EIGHTHS = " ▏▎▍▌▋▊▉█"


def resample(values: Sequence[float], width: int) -> list[float]:
    """At most ``width`` points: consecutive values averaged into equal buckets."""
    if len(values) <= width:
        return list(values)
    out = []
    for i in range(width):
        lo = i * len(values) // width
        hi = max((i + 1) * len(values) // width, lo + 1)
        bucket = values[lo:hi]
        out.append(sum(bucket) / len(bucket))
    return out


def sparkline(values: Sequence[float], top: float, width: int = 60) -> str:
    """One character per point (bucketed to ``width``), 0 at the bottom, ``top`` full height."""
    if top <= 0:
        return SPARKS[0] * min(len(values), width)
    chars = []
    for v in resample(values, width):
        level = round(min(max(v / top, 0.0), 1.0) * (len(SPARKS) - 1))
        chars.append(SPARKS[level])
    return "".join(chars)


def bar(value: float, top: float, width: int = 30) -> str:
    """A horizontal bar ``value / top`` of ``width`` cells, in eighths of a cell."""
    if top <= 0 or value <= 0:
        return ""
    eighths = round(min(value / top, 1.0) * width * 8)
    full, rest = divmod(eighths, 8)
    return "█" * full + (EIGHTHS[rest] if rest else "")


def trajectory_lines(points: Sequence[Mapping[str, Any]], width: int = 60) -> list[str]:
    """One sparkline per content type: its weight after each recompute, then the latest."""
    if not points:
        return ["(no recomputes yet)"]
    types = sorted({t for p in points for t in p["weights"]})
    series = {t: [float(p["weights"].get(t, 0.0)) for p in points] for t in types}
    top = max((max(v) for v in series.values()), default=0.0)
    pad = max(len(t) for t in types)
    lines = []
    for t in sorted(types, key=lambda t: (-series[t][-1], t)):
        lines.append(f"{t.ljust(pad)}  {sparkline(series[t], top, width)}  {series[t][-1]:.2f}")
    return lines


def er_lines(types: Sequence[Mapping[str, Any]], width: int = 30) -> list[str]:
    """One bar per content type: ER (the bar) with its interval in figures."""
    measured = [t for t in types if t.get("er") is not None]
    if not measured:
        return ["(no ER measured yet)"]
    top = max(float(t.get("er_high") or t["er"]) for t in measured)
    pad = max(len(t["type"]) for t in types)
    lines = []
    for t in sorted(types, key=lambda t: (-(t.get("er") or -1.0), t["type"])):
        if t.get("er") is None:
            lines.append(f"{t['type'].ljust(pad)}  {'':<{width}}  no ER yet")
            continue
        drawn = bar(float(t["er"]), top, width)
        interval = f"{float(t['er_low']) * 100:.1f}-{float(t['er_high']) * 100:.1f}%"
        lines.append(
            f"{t['type'].ljust(pad)}  {drawn:<{width}}  {float(t['er']) * 100:.1f}% ({interval})"
        )
    return lines
