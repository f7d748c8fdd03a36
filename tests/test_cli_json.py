"""Every command a script may call has ``--json``; the ones added last, end to end."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import click
from click.testing import CliRunner

from scheduler.cli import cli
from scheduler.db.migrate import SCHEMA_HEAD

#: Commands that run until stopped and print progress for a person, and the web app's user
#: commands, which talk to a person at a terminal (password prompts).
NO_JSON = {"run", "demo", "web", "web user add", "web user passwd", "web user set"}


def leaves(cmd: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    if isinstance(cmd, click.Group):
        if cmd.invoke_without_command and path:
            yield path
        for name, sub in cmd.commands.items():
            yield from leaves(sub, (*path, name))
    else:
        yield path


def test_every_command_has_json() -> None:
    cli.load_all()
    missing = [
        " ".join(path)
        for path in leaves(cli)
        if " ".join(path) not in NO_JSON
        and not any("--json" in p.opts for p in _command(path).params)
    ]
    assert missing == []


def _command(path: tuple[str, ...]) -> click.Command:
    cmd: click.Command = cli
    for name in path:
        assert isinstance(cmd, click.Group)
        cmd = cmd.commands[name]
    return cmd


def test_init_db_current_config_check_and_report_print_json(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[accounts.riga]\nplatform = "sim"\ntimezone = "Europe/Riga"\n', "utf-8")
    base = ["--db", f"sqlite:///{tmp_path / 'x.db'}", "--config", str(config)]

    def smm(*args: str, expect: int = 0) -> dict[str, object]:
        result = CliRunner().invoke(cli, [*base, *args])
        assert result.exit_code == expect, result.output
        return dict(json.loads(result.stdout))

    init = smm("init", "--json")
    assert (init["created"], init["schema"], init["accounts"]) == (True, SCHEMA_HEAD, 1)
    assert smm("init", "--json")["created"] is False
    current = smm("db", "current", "--json")
    assert (current["schema"], current["up_to_date"]) == (SCHEMA_HEAD, True)
    assert smm("db", "upgrade", "--json") == {
        "schema_before": SCHEMA_HEAD,
        "schema": SCHEMA_HEAD,
        "upgraded": False,
    }
    checked = smm("config", "check", "--json")
    assert checked["ok"] is True
    assert checked["accounts"] == [
        {
            "name": "riga",
            "platform": "sim",
            "timezone": "Europe/Riga",
            "weekly_slots": 0,
            "credentials": {},
        }
    ]
    page = tmp_path / "r.html"
    report = smm("report", "--html", str(page), "--json")
    assert report == {"path": str(page), "accounts": 0, "days": 90, "empty": True}
    assert page.is_file()


def test_config_check_json_lists_the_problems_and_exits_1(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[accounts.a]\nplatform = "myspace"\ntimezone = "UTC"\n', "utf-8")
    result = CliRunner().invoke(cli, ["--config", str(config), "config", "check", "--json"])
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["ok"] is False
    (problem,) = data["problems"]
    assert problem["field"] == "accounts.a.platform"
    assert "myspace" in problem["message"]
