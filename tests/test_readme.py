"""The README's tour works as written, right after its first command."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click

from scheduler.cli import cli

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def _blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", README, re.S)


def test_the_tour_uses_the_virtual_environment_the_first_command_makes() -> None:
    install, tour = _blocks()[0], _blocks()[1]
    venv = re.search(r"python3 -m venv (\S+)", install)
    assert venv, "the first command no longer makes a virtual environment"
    first = next(line for line in tour.splitlines() if line.strip())
    assert first.split("#")[0].strip() == f". {venv.group(1)}/bin/activate"


def test_every_command_of_the_tour_exists_with_its_options() -> None:
    tour = _blocks()[1]
    lines = [line.split("  #")[0].strip() for line in tour.splitlines()]
    commands = [shlex.split(line)[1:] for line in lines if line.startswith("smm ")]
    assert len(commands) > 10
    ctx = click.Context(cli)
    for args in commands:
        command: click.Command = cli
        words = list(args)
        while isinstance(command, click.Group) and words and not words[0].startswith("-"):
            sub = command.get_command(ctx, words[0])
            assert sub is not None, f"`smm {' '.join(args)}`: no command {words[0]!r}"
            command, words = sub, words[1:]
        known = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
        options = {w.split("=")[0] for w in words if w.startswith("-")}
        assert options <= known | {"--help", "-h"}, f"`smm {' '.join(args)}`"
