"""What the benchmarks share: the machine's state, medians, and one JSON record of figures.

Every benchmark measures a figure beside its peer or its limit in the same run and reports
the ratio, with the load average before and after (a busy machine shows up there, not as a
mystery in the figures). With ``--json FILE`` a benchmark also writes its figures as one JSON
document; ``run_all.py`` collects those documents.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def load() -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages."""
    one, five, fifteen = os.getloadavg()
    return round(one, 2), round(five, 2), round(fifteen, 2)


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "load": load(),
    }


def median(values: Sequence[float]) -> float:
    """The median; NaN for no values (a scenario that produced nothing)."""
    return statistics.median(values) if values else float("nan")


@dataclass
class Figure:
    """One measured figure, with the peer or limit it is judged against.

    ``ratio`` is ours over the peer's when higher is better (throughput), the peer's over
    ours when lower is better (time, memory): above 1 means ahead of the peer either way.
    """

    name: str
    value: float
    unit: str
    runs: list[float] = field(default_factory=list)
    peer: str | None = None
    peer_value: float | None = None
    peer_runs: list[float] = field(default_factory=list)
    ratio: float | None = None
    target: str | None = None
    ok: bool | None = None


@dataclass
class Report:
    """The figures of one benchmark run."""

    bench: str
    settings: dict[str, Any] = field(default_factory=dict)
    figures: list[Figure] = field(default_factory=list)
    machine_before: dict[str, Any] = field(default_factory=machine)
    load_after: tuple[float, float, float] | None = None

    def add(
        self,
        name: str,
        runs: Sequence[float],
        unit: str,
        *,
        peer: str | None = None,
        peer_runs: Sequence[float] = (),
        higher_is_better: bool = True,
        target: str | None = None,
        ok: bool | None = None,
    ) -> Figure:
        """Record the median of ``runs`` (and of ``peer_runs``) and their ratio."""
        value = median(runs)
        peer_value = median(peer_runs) if peer_runs else None
        ratio = None
        if peer_value is not None and value and peer_value:
            ratio = value / peer_value if higher_is_better else peer_value / value
        fig = Figure(
            name,
            value,
            unit,
            list(runs),
            peer,
            peer_value,
            list(peer_runs),
            ratio,
            target,
            ok,
        )
        self.figures.append(fig)
        return fig

    def write(self, path: str | Path | None) -> None:
        """Write the report as JSON to ``path`` (nothing when ``path`` is None)."""
        self.load_after = load()
        if path is None:
            return
        Path(path).write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", metavar="FILE", help="also write the figures here as JSON")


def load_line() -> str:
    """The load average, for the heading of a benchmark's printout."""
    one, five, fifteen = load()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"
