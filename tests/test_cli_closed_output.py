"""``smm`` whose reader goes away (``smm status | head -1``) or whose output cannot be written:
the command's own exit code, and no traceback or "Exception ignored" on standard error.

These run ``smm`` as its own process: the streams are the real file descriptors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from scheduler.cli.status import NEEDS_ATTENTION

REPO = Path(__file__).resolve().parent.parent
SMM = "from scheduler.cli import main; main()"


def environment(db_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "SMM_CONFIG": str(REPO / "config" / "example.toml"),
        "SMM_DATABASE_URL": db_url,
    }


def smm(*args: str, stdout: int, db_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", SMM, *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(db_url),
        timeout=60,
        check=False,
    )


def closed_pipe_run(*args: str, db_url: str) -> subprocess.CompletedProcess[str]:
    """``smm ARGS`` writing into a pipe whose reader has already gone: every write is EPIPE."""
    read, write = os.pipe()
    os.close(read)
    try:
        return smm(*args, stdout=write, db_url=db_url)
    finally:
        os.close(write)


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["status"], NEEDS_ATTENTION),  # no daemon alive: it needs attention
        (["status", "--json"], NEEDS_ATTENTION),
        (["queue", "list"], 0),
        (["--help"], 0),
    ],
)
def test_a_command_whose_reader_went_away_exits_quietly_with_its_own_code(
    sqlite_url: str, args: list[str], code: int
) -> None:
    result = closed_pipe_run(*args, db_url=sqlite_url)
    assert (result.returncode, result.stderr) == (code, "")


def test_a_reader_that_stops_after_the_first_line_leaves_the_exit_code_alone(
    sqlite_url: str,
) -> None:
    # As `smm status | head -1`: read one line, then close the pipe.
    read, write = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-c", SMM, "status"],
        stdout=write,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(sqlite_url),
    )
    os.close(write)
    with os.fdopen(read, "rb") as reader:
        first = reader.readline()
    _, stderr = proc.communicate(timeout=60)
    assert first.startswith(b"needs attention")
    assert (proc.returncode, stderr) == (NEEDS_ATTENTION, "")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_output_that_cannot_be_written_is_one_line_and_exit_1(sqlite_url: str) -> None:
    with open("/dev/full", "w") as full:
        result = smm("status", stdout=full.fileno(), db_url=sqlite_url)
    assert result.returncode == 1
    assert result.stderr == "error: cannot write standard output: No space left on device\n"
