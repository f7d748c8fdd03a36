"""``smm simulate``: how the ER loop does against the oracle and round-robin, over seeds."""

from __future__ import annotations

import sys
import tomllib
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from scheduler.cli.app import App, pass_app
from scheduler.cli.output import echo_json, table
from scheduler.er.loopsim import ALL_STRATEGIES, STRATEGIES
from scheduler.er.plot import sparkline
from scheduler.er.trials import cache_dir, run_seeds, summary
from scheduler.er.world import (
    DEFAULT_START,
    World,
    WorldError,
    load_world,
    world_from_dict,
)
from scheduler.errors import InvalidInput, Problem
from scheduler.files import write_private
from scheduler.timeutil import FixedClock

if TYPE_CHECKING:
    from scheduler.er.simulate import Truth

# The plan reader, YAML, the database-backed simulation and the HTML page are imported where
# they are used: the default world needs none of them, and they would double its start-up.

#: The world ``smm simulate`` runs without --world or --plan (benchmarks/worlds/reference.toml).
REFERENCE_WORLD: dict[str, Any] = {
    "world": {
        "name": "reference",
        "days": 90,
        "description": "5 content types at 1-4 % by reach, 3 posts a day",
    },
    "accounts": {
        "acct": {
            "posts_per_day": 3,
            "true_er": {
                "provocation": 0.01,
                "announcement": 0.015,
                "medal": 0.02,
                "laugh": 0.03,
                "instruction": 0.04,
            },
        }
    },
}


def _problem(where: str, message: str, hint: str = "") -> InvalidInput:
    return InvalidInput([Problem(where, None, None, message, hint)])


def read_truth(path: Path, accounts: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """A truth file (TOML or YAML): ``true_er`` and optional ``drift`` at the top (for every
    account) or under each account's name."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise _problem(str(path), f"cannot read: {exc}") from None
    if not isinstance(data, dict):
        raise _problem(str(path), "expected a table of true rates")
    return {name: data.get(name, data) for name in accounts}


def world_from_plan(
    app: App, plan_files: tuple[str, ...], truth: Path | None, days: int | None
) -> World:
    """A world from the config's accounts, the plan's content types and the true rates."""
    from scheduler.cli.plan import load_plan

    config = app.require_config()
    app.clock = FixedClock(DEFAULT_START)  # plan times are read as of the simulation's start
    items = load_plan(app, plan_files, use_db=False)
    planned: dict[str, set[str]] = {}
    for item in items:
        planned.setdefault(item.account, set()).add(item.content_type)
    accounts = {n: a for n, a in config.accounts.items() if n in planned}
    truths = read_truth(truth, accounts) if truth else {n: a.options for n, a in accounts.items()}
    where = str(truth) if truth else "config"
    raw: dict[str, Any] = {}
    start = DEFAULT_START
    for name, acc in accounts.items():
        block = truths[name] if isinstance(truths[name], Mapping) else {}
        if not block.get("true_er"):
            raise _problem(
                where,
                f"account {name}: no true engagement rates to simulate with",
                "give --truth FILE, or true_er in the account's options",
            )
        missing = sorted(planned[name] - set(block["true_er"]))
        if missing:
            raise _problem(
                where,
                f"account {name}: content type {missing[0]!r} of the plan has no true_er",
                "every planned type needs a true rate: nothing is assumed",
            )
        slots = next((acc.slots[d] for d in range(7) if acc.slots.get(d)), ())
        if not slots:
            raise _problem("config", f"account {name}: no posting slots to simulate")
        options = acc.options
        if "start" in options and not truth:
            try:
                start = datetime.fromisoformat(str(options["start"]))
            except ValueError:
                raise _problem("config", f"account {name}: options.start is not a time") from None
            start = start.replace(tzinfo=UTC) if start.tzinfo is None else start
        entry: dict[str, Any] = {
            "slots": [s.strftime("%H:%M") for s in slots],
            "true_er": {t: block["true_er"][t] for t in sorted(planned[name])},
        }
        for key in ("followers", "reach_ratio", "noise", "seed"):
            if key in options:
                entry[key] = options[key]
        if block.get("hours"):  # hour-of-week effects, as a world file writes them
            entry["hours"] = block["hours"]
        if block.get("drift"):
            drifts = block["drift"]
            entry["drift"] = [drifts] if isinstance(drifts, Mapping) else list(drifts)
        raw[name] = entry
    data = {"world": {"name": "plan", "days": days or 90, "start": start}, "accounts": raw}
    try:
        world = world_from_dict(data)
    except WorldError as exc:
        raise _problem(where, str(exc)) from None
    # Each account posts at its own slots, day by day, and moves them within its learning
    # windows as the daemon does (the config checked both when it was read).
    shaped = tuple(
        replace(a, weekly=dict(accounts[a.name].slots), learn=dict(accounts[a.name].learn))
        for a in world.accounts
    )
    return replace(world, accounts=shaped, er=config.er)


def truths_from_config(accounts: Mapping[str, Any]) -> dict[str, Truth]:
    """The accounts' true rates from their sim options (``smm demo`` runs on them)."""
    from scheduler.er.simulate import Truth

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


def seeds_phrase(chosen: list[int], total: int) -> str:
    """Which of ``total`` seeds ``chosen`` are, in words: "seed 1", "seeds 1 and 4",
    "all 20 seeds", "3 of 20 seeds" (past two a list of numbers reads worse than a count)."""
    if len(chosen) == 1:
        return f"seed {chosen[0]}"
    if len(chosen) == total:
        return f"all {total} seeds"
    if len(chosen) == 2:
        return f"seeds {chosen[0]} and {chosen[1]}"
    return f"{len(chosen)} of {total} seeds"


def print_summary(data: Mapping[str, Any], strategies: list[str]) -> None:
    seeds = data["seeds"]
    first = data["per_seed"][0]
    click.echo(
        f"world {data['world']}: {data['days']} simulated days, {data['accounts']} account(s), "
        f"{first[strategies[0]]['posts']} posts per run, seed"
        + (f"s {seeds[0]}-{seeds[-1]}" if len(seeds) > 1 else f" {seeds[0]}")
    )
    names = {
        "er": "ER loop",
        "oracle": "oracle",
        "round_robin": "round-robin",
        "fixed_slots": "ER loop, fixed slots",
    }
    table(
        ["strategy", "expected engagement", "drawn engagement"],
        [
            (
                names[s],
                f"{sum(r[s]['value'] for r in data['per_seed']) / len(seeds):,.0f}",
                f"{sum(r[s]['engagement'] for r in data['per_seed']) / len(seeds):,.0f}",
            )
            for s in strategies
        ],
    )
    o = data["of_oracle"]
    if o:
        many = len(seeds) > 1
        click.echo(
            f"the ER loop: {o['mean']:.1%} of the oracle"
            + (f" (worst {o['worst']:.1%} on seed {o['worst_seed']}, spread {o['spread']:.1%})"
               if many else "")
        )  # fmt: skip
    rr = data["over_round_robin"]
    if rr:
        click.echo(f"the ER loop: {rr['mean']:+.1%} over round-robin")
    fixed = data.get("over_fixed_slots")
    if fixed:
        click.echo(f"the ER loop: {fixed['mean']:.2f}x the same loop with its slots fixed")
    for event in data["drift"]:
        follow = ", ".join("never" if f is None else f"{f:.0f}" for f in event["days_to_lead"])
        click.echo(f"day {event['day']:.0f}: {event['new_best']} took the lead after {follow} days")
    if data["demoted_seeds"]:
        click.echo(f"a type was demoted in {seeds_phrase(data['demoted_seeds'], len(seeds))}")
    points = data["trajectory"]
    for account in sorted({p["account"] for p in points}):
        mine = [p["weights"] for p in points if p["account"] == account]
        click.echo(f"priority trajectory, {account} (seed {seeds[0]}):")
        for ctype in sorted({t for w in mine for t in w}):
            series = [w.get(ctype, 0.0) for w in mine]
            click.echo(f"  {ctype:>14} {sparkline(series, 1.0, 45)} {series[-1]:.2f}")


def _strategies(value: str) -> list[str]:
    chosen = [s.strip() for s in value.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in ALL_STRATEGIES]
    if unknown or not chosen:
        raise click.BadParameter(
            f"unknown strategy {unknown[0] if unknown else '(none)'!r}; "
            f"known: {', '.join(ALL_STRATEGIES)}"
        )
    return list(dict.fromkeys(chosen))


@click.command("simulate")
@click.option(
    "--world",
    "world_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="World file (TOML): accounts, true rates, noise, outliers, hours, drift.",
)
@click.option(
    "--plan",
    "plan_files",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="Content plan giving the accounts' content types (repeatable), instead of --world.",
)
@click.option(
    "--truth",
    type=click.Path(dir_okay=False, path_type=Path),
    help="With --plan: true ER per content type (TOML/YAML); default: the accounts' options.",
)
@click.option(
    "--days", type=click.IntRange(1, 3650), help="Days to simulate (default: the world's)."
)
@click.option("--seed", type=int, default=1, show_default=True, help="The first seed.")
@click.option("--seeds", type=click.IntRange(1, 1000), default=1, show_default=True)
@click.option(
    "--strategies",
    default=",".join(STRATEGIES),
    show_default=True,
    help="Comma-separated: er, oracle, round_robin, fixed_slots (the loop with its slots fixed).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option(
    "--html",
    "html_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the summary as an HTML page.",
)
@click.option("--no-cache", is_flag=True, help="Recompute the oracle and round-robin.")
@pass_app
def simulate_cmd(
    app: App,
    world_file: Path | None,
    plan_files: tuple[str, ...],
    truth: Path | None,
    days: int | None,
    seed: int,
    seeds: int,
    strategies: str,
    as_json: bool,
    html_file: Path | None,
    no_cache: bool,
) -> None:
    """Run the ER loop in virtual time on a simulated world, beside the oracle and
    round-robin, over one or more seeds."""
    chosen = _strategies(strategies)
    if world_file and plan_files:
        raise click.UsageError("give --world or --plan, not both")
    if truth and not plan_files:
        raise click.UsageError("--truth goes with --plan")
    try:
        if world_file:
            world = load_world(world_file)
        elif plan_files:
            world = world_from_plan(app, plan_files, truth, days)
        else:
            world = world_from_dict(REFERENCE_WORLD)
    except WorldError as exc:
        where = str(world_file or "world")
        # load_world names the file itself; the problem's place says it once.
        raise InvalidInput(
            [Problem(where, None, None, str(exc).removeprefix(f"{where}: "))], "world file"
        ) from None
    if days:
        world = replace(world, days=days)
    seed_list = list(range(seed, seed + seeds))
    bar = None
    if sys.stderr.isatty() and not as_json:
        bar = click.progressbar(
            length=len(seed_list) * len(chosen), label="simulating", file=sys.stderr
        )
    done = [0]

    def progress(n: int, total: int) -> None:
        if bar is not None:
            bar.update(n - done[0])
            done[0] = n

    results = run_seeds(
        world,
        seed_list,
        chosen,
        cache=None if no_cache else cache_dir(),
        on_progress=progress,
    )
    if bar is not None:
        bar.render_finish()
    data = summary(world, results)
    if html_file is not None:
        from scheduler.er.simhtml import render_summary

        try:
            write_private(html_file, render_summary(data))
        except OSError as exc:
            raise _problem(str(html_file), f"cannot write: {exc.strerror or exc}") from None
    if as_json:
        echo_json(data)
        return
    print_summary(data, chosen)


def register(cli: click.Group) -> None:
    cli.add_command(simulate_cmd)
