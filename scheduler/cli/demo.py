"""``smm demo``: the whole product in one command, on a fresh machine, with nothing configured.

A throwaway SQLite database, the shipped example config and plan, the real importer, daemon
and ER loop in accelerated virtual time on the simulated network; then the ER report and a
static HTML report to open in a browser.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

import click

from scheduler.cli.app import App, pass_app
from scheduler.cli.plan import load_plan
from scheduler.cli.report import report as report_cmd
from scheduler.cli.simulate import truths_from_config
from scheduler.config import load_config
from scheduler.er.scenarios import START
from scheduler.er.simulate import Scenario, run_strategy
from scheduler.resources import shipped
from scheduler.timeutil import FixedClock


@click.command()
@click.option(
    "--days",
    type=click.IntRange(1, 365),
    default=28,
    show_default=True,
    help="Simulated days to run.",
)
@click.option("--seed", type=int, default=7, show_default=True)
@click.option(
    "--dir",
    "workdir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to keep the demo database and report (default: a new temp dir).",
)
@pass_app
def demo(app: App, days: int, seed: int, workdir: Path | None) -> None:
    """Run the example plan through the real daemon in virtual time, then show the ER report."""
    config_path = shipped("example.toml")
    plans = [str(shipped("example-plan.yaml")), str(shipped("example-plan.csv"))]
    workdir = workdir or Path(tempfile.mkdtemp(prefix="smm-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    db_url = f"sqlite:///{workdir / 'er.db'}"
    config = load_config(config_path)
    demo_app = App(config_path=str(config_path), db_url=db_url, clock=FixedClock(START))
    items = load_plan(demo_app, plans, use_db=False)
    click.echo(
        f"example plan: {len(items)} posts for {len(config.accounts)} accounts "
        f"({', '.join(config.accounts)}), simulated network, {days} days"
    )
    scenario = Scenario(config, items, truths_from_config(config.accounts), days, seed, START)

    shown = [0]
    bar = (
        click.progressbar(length=100, label="publishing", file=sys.stderr)
        if sys.stderr.isatty()
        else None
    )

    def progress(_strategy: str, share: float) -> None:
        step = int(share * 100)
        if bar is not None and step > shown[0]:
            bar.update(step - shown[0])
            shown[0] = step

    result = asyncio.run(run_strategy(scenario, "er", workdir, on_progress=progress))
    if bar is not None:
        bar.render_finish()
    click.echo(
        f"published {result.posts} posts; engagement over their lives: {result.engagement:,}"
    )
    click.echo("")
    from scheduler.cli import cli

    base = ["--db", db_url, "--config", str(config_path)]
    cli.main([*base, "er"], standalone_mode=False)
    html = workdir / "report.html"
    # The report covers the simulated weeks: "now" is the end of the simulation.
    at_end = App(
        config_path=str(config_path), db_url=db_url, clock=FixedClock(START + timedelta(days=days))
    )
    with click.Context(report_cmd, obj=at_end) as ctx:
        ctx.invoke(report_cmd, html_path=str(html), account=None, days=days)
    click.echo(f"\nHTML report: {html}")
    click.echo(
        f"demo database: {db_url}  (try: smm --db {db_url} --config {config_path} queue list)"
    )


def register(cli: click.Group) -> None:
    cli.add_command(demo)
