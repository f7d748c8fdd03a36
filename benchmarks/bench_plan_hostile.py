"""Peak memory and time of ``smm plan validate`` on the largest hostile plans.

Each plan is validated in a fresh process, and its peak RSS is printed beside that of the
same command on a one-item plan (the interpreter and the imports: the floor), as a ratio:

* an alias bomb ("billion laughs", 9 levels: 387 million strings if expanded), 1 KB;
* a 100 MB CSV whose every row has more cells than the header has columns;
* a 100 MB CSV whose every row names an unknown account (bad values, read in full);

each with the default ``[plan] max_file_bytes`` (50 MB: the CSVs are refused unread) and
with the limit raised to 200 MB (the CSVs are read).

    python benchmarks/bench_plan_hostile.py [--mb 100]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SMM = [sys.executable, "-c", "from scheduler.cli import main; main()"]
CONFIG = """
[accounts.riga]
platform = "sim"
timezone = "Europe/Riga"
slots = { daily = ["09:00"] }
"""


def bomb() -> str:
    lines = ['    l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"    l{k}: &l{k} [" + ", ".join([f"*l{k - 1}"] * 9) + "]" for k in range(1, 9)]
    return (
        "defaults:\n  _x:\n" + "\n".join(lines) + "\nposts:\n"
        "  - {id: *l8, account: riga, type: laugh, text: hi}\n"
    )


def big_csv(path: Path, megabytes: int, row: str) -> None:
    target = megabytes * 1_000_000
    with path.open("w", encoding="utf-8") as f:
        f.write("id,account,type,text\n")
        written, i = 0, 0
        chunk = []
        while written < target:
            line = row.format(i=i)
            chunk.append(line)
            written += len(line)
            i += 1
            if len(chunk) == 10_000:
                f.write("".join(chunk))
                chunk = []
        f.write("".join(chunk))


def validate(config: Path, plan: Path) -> tuple[float, float, int, str]:
    """(seconds, peak RSS in MiB, exit code, last line of output) of one fresh process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [*SMM, "--config", str(config), "plan", "validate", str(plan)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "SMM_DATABASE_URL": f"sqlite:///{config.parent / 'none.db'}"},
    )
    assert proc.stdout is not None
    output = proc.stdout.read().decode("utf-8", "replace")
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t0
    first = output.strip().splitlines()[0] if output.strip() else ""
    return elapsed, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status), first[:100]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=100, help="size of the large CSV plans")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        default = d / "default.toml"
        default.write_text(CONFIG, encoding="utf-8")
        raised = d / "raised.toml"
        raised.write_text(CONFIG + "\n[plan]\nmax_file_bytes = 200_000_000\n", encoding="utf-8")
        floor = d / "floor.yaml"
        floor.write_text("- {id: a, account: riga, type: laugh, text: hi}\n", encoding="utf-8")
        plans = {"alias bomb (1 KB)": d / "bomb.yaml"}
        plans["alias bomb (1 KB)"].write_text(bomb(), encoding="utf-8")
        wide = d / "wide.csv"
        big_csv(wide, args.mb, "p{i},riga,laugh,hello there,extra,cells\n")
        plans[f"{args.mb} MB CSV, rows with extra cells"] = wide
        bad = d / "bad.csv"
        big_csv(bad, args.mb, "post-{i:08d},nobody,laugh,a post for an account that is not there\n")
        plans[f"{args.mb} MB CSV, rows naming an unknown account"] = bad
        _, floor_mb, code, _ = validate(default, floor)
        assert code == 0
        print(f"floor: smm plan validate on a one-item plan, peak RSS {floor_mb:.0f} MiB")
        for label, config in (("default limit (50 MB)", default), ("limit 200 MB", raised)):
            print(f"{label}:")
            for name, plan in plans.items():
                seconds, peak, code, first = validate(config, plan)
                print(
                    f"  {name:45s} exit {code}  {seconds:6.1f} s  peak RSS {peak:6.0f} MiB"
                    f" ({peak / floor_mb:4.1f} x floor)  {first}"
                )


if __name__ == "__main__":
    main()
