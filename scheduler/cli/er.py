"""``smm er``: what the ER loop measured, what it decided and why; recompute on demand."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import click

from scheduler.cli.app import App, pass_app
from scheduler.cli.complete import account_names
from scheduler.cli.output import echo_json, table
from scheduler.cli.params import Count
from scheduler.er import plot
from scheduler.er.recompute import recompute
from scheduler.er.report import (
    account_ids,
    decision_summary,
    fallback_warning,
    history,
    overview,
)
from scheduler.timeutil import format_utc


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _interval(t: Mapping[str, Any]) -> str:
    if t["er_low"] is None or t["er_high"] is None:
        return "-"
    return f"{t['er_low'] * 100:.1f}-{t['er_high'] * 100:.1f}%"


def _trend(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:+.0f}%"


def _print_account(a: Mapping[str, Any], statistics: bool = False) -> None:
    basis = f"ER by {a['basis']}" if a["basis"] else "ER"
    click.echo(
        click.style(a["account"], bold=True) + f"  ({basis}, account {_pct(a['account_er'])})"
    )
    if a.get("reach_fallback_posts"):
        warning = fallback_warning(a["account"], a["reach_fallback_posts"])
        click.echo(click.style(f"warning: {warning}", fg="yellow"))
    table(
        ["type", "er", "90% interval", "posts", "priority", "trend", "flag"],
        [
            (
                t["type"],
                _pct(t["er"]),
                _interval(t),
                t["posts"],
                f"{t['weight']:.2f}",
                _trend(t["trend"]),
                "demoted" if t["demoted"] else "",
            )
            for t in a["types"]
        ],
        empty="no content types weighed yet",
    )
    _print_best_time(a, statistics)
    for d in a["decisions"]:
        flag = " [frozen]" if d["frozen"] else ""
        click.echo(f"  {format_utc(d['at'])}{flag}: {d['summary']}")
        if statistics:
            click.echo(f"    {d['policy']}: {d['reason']}")
    click.echo()


def _print_best_time(a: Mapping[str, Any], statistics: bool) -> None:
    """The best time to post: the proposals, or the moves of an account that learns its slots
    (the latest that moved, else the latest decision); with --statistics, the hours behind."""
    learned = a.get("slot_decisions") or []
    if a.get("learned_slots_misfit"):
        click.echo(click.style(f"  note: {a['learned_slots_misfit']['words']}", fg="yellow"))
    if a.get("learns_slots"):
        shown = [d for d in learned if d["moves"]][:3] or learned[:1]
        if shown:
            click.echo("  best time to post: the slots move themselves within their windows:")
        for d in shown:
            when = format_utc(d["effective_from"])
            click.echo(f"  {format_utc(d['at'])}: slots from {when}: {d['summary']}")
    elif a.get("slot_proposal"):
        click.echo(f"  best time to post: {a['slot_proposal']}")
    if statistics and a.get("hours"):
        click.echo("    by hour of posting (posts; engagement against the same types at an")
        click.echo("    average hour, with its 90% interval):")
        for h in a["hours"]:
            click.echo(
                f"    {h['days']:<8} {h['hour']:02d}:00  {h['posts']:>4}  {h['factor']:.2f}x "
                f"({h['low']:.2f}-{h['high']:.2f})"
            )


@click.group(invoke_without_command=True)
@click.option("--account", help="Only this account.", shell_complete=account_names)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--plot", "as_plot", is_flag=True, help="Draw priorities and ER in the terminal.")
@click.option(
    "--decisions",
    default=3,
    show_default=True,
    type=Count(0),
    help="How many recent decisions to show per account.",
)
@click.option(
    "--statistics",
    is_flag=True,
    help="Also print each decision's statistical reason and the hours behind the best time "
    "to post.",
)
@click.pass_context
def er(
    ctx: click.Context,
    account: str | None,
    as_json: bool,
    as_plot: bool,
    decisions: int,
    statistics: bool,
) -> None:
    """ER per content type: rate with a 90% interval, posts counted, priority, trend, the best
    time to post, the last decisions in plain words (their statistics with --statistics)."""
    if ctx.invoked_subcommand is not None:
        return
    app = ctx.find_object(App)
    assert app is not None
    with app.engine().connect() as conn:
        accounts = overview(
            conn,
            account,
            decisions=decisions,
            settings=app.config.er,
            now=app.now(),
            configs=app.config.accounts,
        )
        trajectory = history(conn, account) if as_plot else []
    if as_json:
        echo_json(accounts)
        return
    if not accounts:
        click.echo("(no ER recompute yet: run `smm er recompute` once metrics are in)")
        return
    if as_plot:
        paths = {h["account"]: h["history"] for h in trajectory}
        for a in accounts:
            steps = paths.get(a["account"], [])
            click.echo(
                click.style(a["account"], bold=True) + f": priority over {len(steps)} recomputes"
            )
            for line in plot.trajectory_lines(steps):
                click.echo(f"  {line}")
            click.echo("  ER per type (90% interval):")
            for line in plot.er_lines(a["types"]):
                click.echo(f"  {line}")
            click.echo()
        return
    for a in accounts:
        _print_account(a, statistics)


@er.command("history")
@click.option("--account", help="Only this account.", shell_complete=account_names)
@click.option("--limit", type=Count(1), help="Only the last N recomputes.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def history_(app: App, account: str | None, limit: int | None, as_json: bool) -> None:
    """The trajectory: each type's weight after every recompute, oldest first."""
    with app.engine().connect() as conn:
        data = history(conn, account, limit=limit)
    if as_json:
        echo_json(data)
        return
    if not data:
        click.echo("(no recomputes yet)")
        return
    for a in data:
        types = sorted({t for h in a["history"] for t in h["weights"]})
        click.echo(click.style(a["account"], bold=True))
        table(
            ["at", *types],
            [
                (
                    f"{format_utc(h['at'])}{' *' if h['frozen'] else ''}",
                    *(f"{h['weights'][t]:.2f}" if t in h["weights"] else "-" for t in types),
                )
                for h in a["history"]
            ],
        )
        click.echo()


@er.command("recompute")
@click.option("--account", help="Only this account.", shell_complete=account_names)
@click.option("--json", "as_json", is_flag=True, help="Print the decisions as JSON.")
@click.option("--statistics", is_flag=True, help="Also print each decision's statistical reason.")
@click.option(
    "--full",
    is_flag=True,
    help="Read every snapshot of the horizon again instead of only those new since the last "
    "recompute (the kept sums are rebuilt).",
)
@pass_app
def recompute_(app: App, account: str | None, as_json: bool, statistics: bool, full: bool) -> None:
    """Recompute ER and priorities now; print each account's decision."""
    engine = app.engine()
    if account is not None:
        with engine.connect() as conn:
            account_ids(conn, account)  # a clear error for a name that does not exist
    records = recompute(
        engine,
        app.config,
        app.now(),
        accounts=[account] if account else None,
        keep_sums=True,
        full=full,
    )
    if as_json:
        echo_json(
            [
                {k: v for k, v in r.as_dict().items() if k != "inputs"}
                | {"summary": decision_summary(r.inputs, r.reason)}
                for r in records
            ]
        )
        return
    if not records:
        click.echo("(nothing to recompute: no account has content types yet)")
        return
    for r in records:
        moves = ", ".join(
            f"{t} {r.old_weights.get(t, 0):.2f}->{w:.2f}" for t, w in sorted(r.new_weights.items())
        )
        click.echo(click.style(r.account, bold=True) + f"  {moves}")
        click.echo(f"  {decision_summary(r.inputs, r.reason)}")
        if statistics:
            click.echo(f"    {r.policy}: {r.reason}")


@er.command("collect")
@click.option(
    "--now",
    "unread",
    is_flag=True,
    help="Also read every published post never read yet, whatever its age (to try a "
    "plugin's fetch_metrics right after a publish).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def collect_(app: App, unread: bool, as_json: bool) -> None:
    """Read the engagement metrics due now, as the daemon's metrics job does every 10 minutes
    (first 10 minutes after `smm run` starts)."""
    import asyncio
    from datetime import timedelta

    import httpx

    from scheduler import __version__
    from scheduler.daemon.worker import make_adapters
    from scheduler.er.collect import DEFAULT_BANDS, collect_metrics

    config = app.require_config()
    engine = app.engine()
    bands = (timedelta(0), *DEFAULT_BANDS) if unread else DEFAULT_BANDS

    async def collect() -> int:
        headers = {"User-Agent": f"smm-scheduler/{__version__}"}
        async with httpx.AsyncClient(timeout=httpx.Timeout(30.0), headers=headers) as client:
            adapters = make_adapters(config, client)
            return await collect_metrics(engine, adapters, config, app.now(), bands=bands)

    stored = asyncio.run(collect())
    if as_json:
        echo_json({"snapshots": stored})
        return
    click.echo(f"{stored} metric snapshot(s) stored")


def register(cli: click.Group) -> None:
    cli.add_command(er)
