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


DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_the_exit_codes_named_include_smm_status_needing_attention() -> None:
    from scheduler.cli.status import NEEDS_ATTENTION

    codes = re.search(r"Exit codes: (.*?)\n\n", README, re.S)
    assert codes, "the README no longer lists the exit codes"
    assert re.search(rf"`smm status`\s+exits {NEEDS_ATTENTION}\b", codes.group(1))
    table = (DOCS / "cli.md").read_text(encoding="utf-8")
    assert re.search(rf"^\| `{NEEDS_ATTENTION}` \| .*`smm status`", table, re.M)


def test_every_built_in_network_is_named_where_the_networks_are_listed() -> None:
    pages = sorted((DOCS / "plugins" / "networks").glob("*.md"))
    names = []
    for page in pages:
        if page.stem in {"sim", "webhook"}:  # named as "a signed webhook", "a simulated network"
            continue
        title = page.read_text(encoding="utf-8").splitlines()[0]
        names.append(title.removeprefix("# ").split()[0])  # "# Facebook Pages" -> Facebook
    assert len(names) >= 13
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    for where, text in (("README.md", README), ("docs/index.md", index)):
        listed = re.search(r"Every network is a plugin\**:?\**(.*?)ship as", text, re.S)
        assert listed, f"{where} no longer lists the networks"
        missing = [n for n in names if not re.search(rf"\b{re.escape(n)}\b", listed.group(1))]
        assert not missing, f"{where} does not name {missing}"


def test_the_tour_installs_the_web_extra_and_a_user_before_smm_web() -> None:
    lines = [line.split("  #")[0].strip() for line in _blocks()[1].splitlines()]
    web = lines.index("smm web")
    extra = next(i for i, line in enumerate(lines) if "pip install" in line and "[web]" in line)
    user = next(i for i, line in enumerate(lines) if line.startswith("smm web user add "))
    assert extra < user < web
