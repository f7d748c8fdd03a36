"""Start-up time of the installed ``smm`` command, beside ``python -c pass`` in the same run.

Measures, as medians of interleaved runs (each a new process, as a shell starts it):

* ``python -c pass``: the interpreter alone, the floor every command stands on;
* ``smm --help`` and ``smm --version``;
* a completion request (what bash asks on TAB after ``smm queue sh``);
* completing a post id (``smm queue show <TAB>``) on an empty SQLite database;
* ``smm queue list`` on an empty SQLite database (a command that reads the database).

Each figure is printed with its ratio to ``python -c pass`` and the load average before and
after, since a shared machine slows every row alike. The target is 0.25 s for --help,
--version and completion.

    python benchmarks/bench_cli.py [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET = 0.25


def _smm() -> str:
    beside = Path(sys.executable).with_name("smm")
    found = str(beside) if beside.exists() else shutil.which("smm")
    if not found:
        sys.exit("the smm command is not installed (pip install -e .)")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    smm = _smm()
    tmp = Path(tempfile.mkdtemp(prefix="bench-cli-"))
    db = f"sqlite:///{tmp / 'smm.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SMM_", "_SMM_"))}
    env.update({"XDG_CONFIG_HOME": str(tmp / "config"), "SMM_DATABASE_URL": db})
    subprocess.run([smm, "init"], env=env, check=True, capture_output=True)

    def complete(words: str, cword: int) -> dict[str, str]:
        return {
            **env,
            "_SMM_COMPLETE": "bash_complete",
            "COMP_WORDS": words,
            "COMP_CWORD": str(cword),
        }

    cases: list[tuple[str, list[str], dict[str, str]]] = [
        ("python -c pass", [sys.executable, "-c", "pass"], env),
        ("smm --help", [smm, "--help"], env),
        ("smm --version", [smm, "--version"], env),
        ("complete `smm queue sh`", [smm], complete("smm queue sh", 2)),
        ("complete `smm queue show `", [smm], complete("smm queue show ", 3)),
        ("smm queue list (empty db)", [smm, "queue", "list"], env),
    ]
    times: dict[str, list[float]] = {name: [] for name, _, _ in cases}
    load_before = os.getloadavg()
    for _ in range(args.runs):
        for name, cmd, case_env in cases:  # interleaved: drifts in load hit every row alike
            started = time.perf_counter()
            subprocess.run(cmd, env=case_env, check=True, capture_output=True)
            times[name].append(time.perf_counter() - started)
    load_after = os.getloadavg()
    shutil.rmtree(tmp, ignore_errors=True)

    floor = statistics.median(times["python -c pass"])
    print(
        f"{args.runs} runs each, interleaved; load average {load_before[0]:.2f} -> "
        f"{load_after[0]:.2f} on {os.cpu_count()} CPUs"
    )
    print(f"{'command':32} {'median':>8} {'x python':>9}  target")
    for name, _, _ in cases:
        median = statistics.median(times[name])
        target = ""
        if name.startswith(("smm --", "complete")):
            target = f"<= {TARGET:.2f} s: " + ("met" if median <= TARGET else "MISSED")
        print(f"{name:32} {median:7.3f}s {median / floor:8.1f}x  {target}")


if __name__ == "__main__":
    main()
