"""``smm simulate``: how the ER loop does against the oracle and round-robin, in virtual time."""

from __future__ import annotations

import asyncio
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
import yaml

from scheduler.cli.app import App, pass_app
from scheduler.cli.output import echo_json, table
from scheduler.cli.plan import load_plan
from scheduler.er.plot import sparkline
from scheduler.er.scenarios import START
from scheduler.er.simulate import STRATEGIES, RunResult, Scenario, Truth, simulate
from scheduler.errors import InvalidInput, Problem
from scheduler.timeutil import FixedClock


def read_truth(path: Path, accounts: Mapping[str, Any]) -> dict[str, Truth]:
    """A truth file (TOML or YAML): ``true_er`` and optional ``drift`` at the top (for every
    account) or under each account's name."""
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise InvalidInput([Problem(str(path), None, None, f"cannot read: {exc}")]) from None
    if not isinstance(data, dict):
        raise InvalidInput([Problem(str(path), None, None, "expected a table of true rates")])
    truths = {}
    for name in accounts:
        block = data.get(name, data)
        try:
            truths[name] = Truth.from_options(block)
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(
                [Problem(str(path), None, name, f"bad truth: {exc}", "see docs/er.md")]
            ) from None
        if not truths[name].true_er:
            raise InvalidInput(
                [Problem(str(path), None, name, "no true_er table", "true_er = { laugh = 0.02 }")]
            )
    return truths


def truths_from_config(accounts: Mapping[str, Any]) -> dict[str, Truth]:
    truths = {}
    for name, acc in accounts.items():
        truth = Truth.from_options(acc.options)
        if not truth.true_er:
            raise InvalidInput(
                [
                    Problem(
                        "config",
                        None,
                        f"accounts.{name}.options.true_er",
                        "no true engagement rates to simulate with",
                        "give --truth FILE, or true_er in the account's options",
                    )
                ]
            )
        truths[name] = truth
    return truths


def summary(results: Mapping[str, RunResult]) -> dict[str, Any]:
    er, oracle, rr = (results[s].engagement for s in STRATEGIES)
    return {
        "engagement": er,
        "oracle": oracle,
        "round_robin": rr,
        "of_oracle": er / oracle if oracle else None,
        "over_round_robin": er / rr - 1 if rr else None,
        "posts": results["er"].posts,
        "by_type": results["er"].by_type,
        "trajectory": results["er"].trajectory,
    }


def print_summary(data: Mapping[str, Any], days: int) -> None:
    click.echo(f"{days} simulated days, {data['posts']} posts")
    table(
        ["strategy", "engagement", "vs oracle"],
        [
            (name, f"{data[key]:,}", f"{data[key] / data['oracle']:.1%}" if data["oracle"] else "-")
            for name, key in (
                ("ER loop", "engagement"),
                ("oracle", "oracle"),
                ("round-robin", "round_robin"),
            )
        ],
    )
    if data["over_round_robin"] is not None:
        click.echo(f"the ER loop: {data['over_round_robin']:+.1%} over round-robin")
    by_type = data["by_type"]
    table(
        ["type", "posts", "engagement/post"],
        [
            (t, v["posts"], f"{v['engagement'] / v['posts']:.1f}" if v["posts"] else "-")
            for t, v in sorted(by_type.items())
        ],
    )
    points = data["trajectory"]
    for account in sorted({p["account"] for p in points}):
        mine = [p["weights"] for p in points if p["account"] == account]
        click.echo(f"priority trajectory, {account}:")
        for ctype in sorted({t for w in mine for t in w}):
            series = [w.get(ctype, 0.0) for w in mine]
            click.echo(f"  {ctype:>14} {sparkline(series, 1.0, 45)} {series[-1]:.2f}")


@click.command("simulate")
@click.option(
    "--plan",
    "plan_files",
    multiple=True,
    required=True,
    type=click.Path(dir_okay=False),
    help="Content plan giving the accounts' content types (repeatable).",
)
@click.option("--days", type=click.IntRange(1, 3650), default=90, show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option(
    "--truth",
    type=click.Path(dir_okay=False, path_type=Path),
    help="True ER per content type (TOML/YAML); default: the accounts' sim options.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@pass_app
def simulate_cmd(
    app: App, plan_files: tuple[str, ...], days: int, seed: int, truth: Path | None, as_json: bool
) -> None:
    """Run the real scheduling, dispatch, metrics and ER code in virtual time on the
    simulated network, beside the oracle and round-robin."""
    config = app.require_config()
    start = START  # a fixed Monday: the same seed, the same run
    app.clock = FixedClock(start)
    items = load_plan(app, plan_files, use_db=False)
    used = {i.account for i in items}
    accounts = {n: a for n, a in config.accounts.items() if n in used}
    truths = read_truth(truth, accounts) if truth else truths_from_config(accounts)
    scenario = Scenario(_only(config, accounts), items, truths, days, seed, start)
    bar = None
    if sys.stderr.isatty() and not as_json:
        bar = click.progressbar(length=len(STRATEGIES) * 100, label="simulating", file=sys.stderr)
    done: dict[str, int] = {}

    def progress(strategy: str, share: float) -> None:
        if bar is not None:
            step = int(share * 100)
            bar.update(step - done.get(strategy, 0))
            done[strategy] = step

    results = asyncio.run(simulate(scenario, on_progress=progress))
    if bar is not None:
        bar.render_finish()
    data = summary(results)
    if as_json:
        echo_json({**data, "days": days, "seed": seed})
        return
    print_summary(data, days)


def _only(config: Any, accounts: Mapping[str, Any]) -> Any:
    import dataclasses

    return dataclasses.replace(config, accounts=dict(accounts))


def register(cli: click.Group) -> None:
    cli.add_command(simulate_cmd)
