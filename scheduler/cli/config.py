"""``smm config check``: validate the config and explain every problem."""

from __future__ import annotations

import click

from scheduler import plugins
from scheduler.adapter import Issue
from scheduler.cli.app import App, pass_app
from scheduler.errors import InvalidInput, Problem
from scheduler.outgoing import account_view


def platform_problems(app: App) -> list[Problem]:
    """Accounts whose platform no installed plugin provides."""
    config = app.config
    known = plugins.platforms()
    out = []
    for name, acc in config.accounts.items():
        if acc.platform not in known:
            out.append(
                Problem(
                    config.source,
                    None,
                    f"accounts.{name}.platform",
                    f"no installed plugin provides platform {acc.platform!r}",
                    "installed: " + (", ".join(sorted(known)) or "none"),
                )
            )
    return out


def account_problems(app: App) -> list[Problem]:
    """What each account's network plugin finds wrong with its settings (``check_account``)."""
    config = app.config
    known = plugins.platforms()
    out = []
    for name, acc in config.accounts.items():
        info = known.get(acc.platform)
        if info is None:
            continue
        try:
            issues = info.adapter.check_account(account_view(acc))
        except Exception as exc:  # a broken plugin must not take the check down
            issues = [Issue("platform", f"plugin {info.plugin} could not check the account: {exc}")]
        for issue in issues:
            out.append(
                Problem(
                    config.source, None, f"accounts.{name}.{issue.field}", issue.message, issue.hint
                )
            )
    return out


@click.group("config")
def config_group() -> None:
    """The config file."""


@config_group.command("check")
@pass_app
def check(app: App) -> None:
    """Validate the config: keys, time zones, slots, credentials, platforms."""
    config = app.require_config()
    problems = platform_problems(app) + account_problems(app)
    if problems:
        raise InvalidInput(problems, f"config {config.source}")
    click.echo(f"{config.source}: OK, {len(config.accounts)} account(s)")
    for acc in config.accounts.values():
        slots = sum(len(t) for t in acc.slots.values())
        missing = [k for k, ref in acc.credentials.items() if not ref.available()]
        cred = "credentials: " + (
            "missing " + ", ".join(f"{k} ({acc.credentials[k].describe()})" for k in missing)
            if missing
            else "available"
            if acc.credentials
            else "none configured"
        )
        click.echo(f"  {acc.name}: {acc.platform}, {acc.timezone}, {slots} weekly slot(s), {cred}")


def register(cli: click.Group) -> None:
    cli.add_command(config_group)
