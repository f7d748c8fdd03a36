"""Every benchmark in one run: each beside its peer or limit, medians, ratios and the load.

    python benchmarks/run_all.py [--quick] [--only import dispatch ...] [--out results.json]

Runs the benchmarks one after another, each in its own process (so memory figures are each
benchmark's own), with the arguments below; each benchmark interleaves its own runs with its
peer's. Every benchmark that takes ``--json`` writes its figures there; this runner prints one
table of all of them (median, peer median, ratio, target) with the load average before and
after each benchmark, and writes them all to ``--out``. A benchmark that fails is reported and
the others still run; the exit status is 1 if any failed.

``--quick`` runs smaller sizes and fewer repetitions: for checking that the benchmarks work,
not for figures.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchlib import load_line, machine

HERE = Path(__file__).resolve().parent

#: name -> (script, full arguments, --quick arguments). Scripts not present are skipped.
BENCHMARKS: dict[str, tuple[str, list[str], list[str]]] = {
    "cli": ("bench_cli.py", [], ["--runs", "3"]),
    "import": (
        "bench_import.py",
        ["--sizes", "10000", "100000", "1000000", "--runs", "3"],
        ["--sizes", "2000", "10000", "--runs", "2"],
    ),
    "dispatch": (
        "bench_dispatch.py",
        ["--runs", "5"],
        [
            "--posts",
            "2000",
            "--runs",
            "2",
            "--burst",
            "500",
            "--steady-seconds",
            "3",
            "--queued",
            "20000",
            "--skip",
            "apscheduler-million",
        ],
    ),
    "queue": ("bench_queue.py", [], ["--posts", "100000", "--runs", "3"]),
    "er": ("bench_er.py", [], ["--snapshots", "100000", "--runs", "2"]),
    "simulate": ("bench_simulate.py", [], []),
    "web": ("bench_web.py", [], []),
}


def takes_json(script: Path) -> bool:
    """Whether the benchmark writes its figures with ``--json FILE``."""
    return "--json" in script.read_text(encoding="utf-8")


def run_one(name: str, script: Path, args: list[str], out_dir: Path) -> dict[str, Any]:
    json_path = out_dir / f"{name}.json"
    cmd = [sys.executable, str(script), *args]
    if takes_json(script):
        cmd += ["--json", str(json_path)]
    print(f"\n##### {name}: {' '.join(cmd[1:])}\n##### {load_line()}", flush=True)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, check=False)
    record: dict[str, Any] = {
        "name": name,
        "command": cmd[1:],
        "exit": done.returncode,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    if json_path.exists():
        record["report"] = json.loads(json_path.read_text(encoding="utf-8"))
    return record


def fmt(value: float | None) -> str:
    if value is None or value != value:  # None or NaN
        return "-"
    return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"


def summary(records: list[dict[str, Any]]) -> None:
    print("\n======== summary (medians; a ratio above 1 means ahead of the peer) ========")
    for rec in records:
        report = rec.get("report")
        status = "ok" if rec["exit"] == 0 else f"FAILED (exit {rec['exit']})"
        print(f"\n{rec['name']}: {status}, {rec['seconds']} s")
        if not report:
            continue
        before = report["machine_before"]["load"]
        print(f"  load before {before}, after {report['load_after']}")
        for fig in report["figures"]:
            peer = ""
            if fig["peer"]:
                peer = f"  vs {fig['peer']} {fmt(fig['peer_value'])}  ratio {fmt(fig['ratio'])}"
            verdict = ""
            if fig["target"]:
                verdict = (
                    f"  target {fig['target']}: "
                    + {True: "ok", False: "NOT MET", None: "?"}[fig["ok"]]
                )
            print(f"  {fig['name']}: {fmt(fig['value'])} {fig['unit']}{peer}{verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), help="run only these")
    parser.add_argument("--out", default="benchmark-results.json", help="all figures, as JSON")
    args = parser.parse_args()
    records = []
    with tempfile.TemporaryDirectory(prefix="smm-bench-") as tmp:
        for name, (script_name, full, quick) in BENCHMARKS.items():
            if args.only and name not in args.only:
                continue
            script = HERE / script_name
            if not script.exists():
                continue
            records.append(run_one(name, script, quick if args.quick else full, Path(tmp)))
    summary(records)
    Path(args.out).write_text(
        json.dumps({"machine": machine(), "benchmarks": records}, indent=2) + "\n",
        encoding="utf-8",
    )
    print(f"\nall figures written to {args.out}")
    sys.exit(1 if any(r["exit"] for r in records) else 0)


if __name__ == "__main__":
    main()
