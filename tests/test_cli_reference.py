"""docs/reference/cli.md is what ``python -m scheduler.cli.reference`` prints today."""

from __future__ import annotations

import difflib
import sys
from pathlib import Path

import click
import pytest
from venv_support import run

from scheduler.cli.reference import render

REPO = Path(__file__).resolve().parent.parent
PAGE = REPO / "docs" / "reference" / "cli.md"
REGENERATE = "python -m scheduler.cli.reference > docs/reference/cli.md"


@pytest.mark.slow
def test_the_cli_reference_page_is_up_to_date() -> None:
    # In a fresh process: commands a plugin added to the group in this one must not count.
    result = run(sys.executable, "-m", "scheduler.cli.reference", cwd=REPO)
    assert result.returncode == 0, result.stderr

    current = PAGE.read_text(encoding="utf-8")

    if current != result.stdout:
        diff = "".join(
            difflib.unified_diff(
                current.splitlines(keepends=True),
                result.stdout.splitlines(keepends=True),
                "docs/reference/cli.md",
                "generated",
                n=1,
            )
        )
        raise AssertionError(
            f"docs/reference/cli.md is out of date with the commands; regenerate it with\n"
            f"    {REGENERATE}\nand commit the result. The difference:\n{diff[:4000]}"
        )


def _toy() -> click.Group:
    @click.group()
    @click.option("--config", envvar="TOY_CONFIG", type=click.Path(), help="A config <file>.")
    def toy(config: str | None) -> None:
        """Toy tool.

        \b
        keep
        these lines

        Second paragraph.\f
        Not shown.
        """

    @toy.group()
    def jobs() -> None:
        """Jobs."""

    @jobs.command("run")
    @click.argument("names", nargs=-1, required=True)
    @click.option("--retries", type=click.IntRange(0, 9), default=3, help="How often.")
    @click.option("--mode", type=click.Choice(["fast", "safe"]), default="safe", help="How.")
    @click.option("--tag", multiple=True, help="A tag.")
    @click.option("--dry-run/--no-dry-run", default=False, help="Try.")
    @click.option("--at", required=True, help="When | where.")
    def run_(**_: object) -> None:
        """Run jobs."""

    @jobs.command(hidden=True)
    def secret() -> None:
        """Not listed."""

    return toy


def test_every_command_is_a_section_with_its_usage() -> None:
    page = render(_toy(), "toy")

    assert "## toy\n" in page
    assert "## toy jobs\n" in page
    assert "### toy jobs run\n" in page
    assert "Usage: toy jobs run [OPTIONS] NAMES..." in page
    assert "[`toy jobs run`](#toy-jobs-run)" in page
    assert "Commands: [`run`](#toy-jobs-run)." in page


def test_hidden_commands_are_left_out() -> None:
    assert "secret" not in render(_toy(), "toy")


def test_options_show_values_defaults_ranges_and_repeatability() -> None:
    page = render(_toy(), "toy")

    assert "| `--retries` | `INTEGER RANGE` | How often. Default: `3`. Range: `0<=x<=9`. |" in page
    assert "| `--mode` | `fast`, `safe` | How. Default: `safe`. |" in page
    assert "| `--tag` | `TEXT` | A tag. Repeatable. |" in page
    assert "| `--dry-run` / `--no-dry-run` |  | Try. Default: `--no-dry-run`. |" in page
    assert "| `--at` | `TEXT` | When \\| where. Required. |" in page
    assert "| `NAMES...` | Required; one or more. |" in page


def test_environment_variables_are_listed() -> None:
    page = render(_toy(), "toy")

    assert "| `--config` | `PATH` | A config &lt;file&gt;. Env: `TOY_CONFIG`. |" in page
    assert "| `TOY_CONFIG` | [`toy`](#toy) `--config` |" in page


def test_help_text_keeps_click_markers_meaning() -> None:
    page = render(_toy(), "toy")

    assert "keep  \nthese lines\n\nSecond paragraph." in page
    assert "Not shown" not in page


def test_the_real_cli_names_every_registered_command() -> None:
    from scheduler.cli import cli

    page = render()

    for name in cli.commands:
        assert f"## smm {name}\n" in page
