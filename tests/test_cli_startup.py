"""``smm`` starts fast: --help, --version and completion load no database library.

Each command's module is imported when the command runs (scheduler/cli/__init__.py); these
tests keep that true, and keep ``smm --help``'s one-line helps equal to the commands' own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from scheduler.cli import COMMANDS, cli, short_help

HEAVY = (
    "sqlalchemy",
    "sqlmodel",
    "pydantic",
    "alembic",
    "httpx",
    "structlog",
    "scheduler.config",
    # Listing the commands plugins declare reads their metadata files, not this (~50 ms).
    "importlib.metadata",
)

PROBE = """
import json, sys
from scheduler.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
heavy = [m for m in {heavy!r} if m in sys.modules]
print("\\nLOADED " + json.dumps(heavy), file=sys.stderr)
"""


def _loaded(*args: str, env: dict[str, str] | None = None) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
        check=False,
    )
    line = result.stderr.rsplit("LOADED ", 1)[-1]
    return list(json.loads(line))


def test_the_help_of_every_command_is_its_own() -> None:
    cli.load_all()
    for name, (_, short) in COMMANDS.items():
        for limit in (30, 45, 60, 200):
            assert cli.commands[name].get_short_help_str(limit) == short_help(short, limit), (
                f"{name}: update its help in scheduler.cli.COMMANDS"
            )
    assert set(COMMANDS) <= set(cli.commands)


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (("--help",), None),
        (("--version",), None),
        ((), {"_SMM_COMPLETE": "bash_complete", "COMP_WORDS": "smm qu", "COMP_CWORD": "1"}),
        (
            (),
            {"_SMM_COMPLETE": "bash_complete", "COMP_WORDS": "smm queue sh", "COMP_CWORD": "2"},
        ),
        (("queue", "--help"), None),
    ],
    ids=["help", "version", "complete-command", "complete-subcommand", "queue-help"],
)
def test_start_up_loads_no_database_library(args: tuple[str, ...], env: dict[str, str]) -> None:
    # `smm queue --help` runs the group's callback, which sets up logging (structlog).
    allowed = {"structlog"} if args[:1] == ("queue",) else set()
    assert set(_loaded(*args, env=env)) <= allowed
