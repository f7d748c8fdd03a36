"""``smm config check``: validate the config and explain every problem."""

from __future__ import annotations

import click

from scheduler import plugins
from scheduler.adapter import Issue
from scheduler.cli.app import App, pass_app
from scheduler.cli.output import echo_json, safe
from scheduler.config import Config, ConfigProblems, line_of
from scheduler.credential_checks import unreadable_credentials
from scheduler.errors import InvalidInput, Problem
from scheduler.outgoing import account_view


def platform_problems(app: App, config: Config | None = None) -> list[Problem]:
    """Accounts whose platform no installed plugin provides (of ``config``, by default the
    app's)."""
    config = config or app.config
    known = plugins.platforms()
    out = []
    for name, acc in config.accounts.items():
        if acc.platform not in known:
            out.append(
                Problem(
                    config.source,
                    line_of(config, f"accounts.{name}.platform"),
                    f"accounts.{name}.platform",
                    f"no installed plugin provides platform {acc.platform!r}",
                    _platform_hint(acc.platform, sorted(known)),
                )
            )
    return out


def _platform_hint(platform: str, known: list[str]) -> str:
    import difflib  # only when a platform is wrong

    close = difflib.get_close_matches(platform.lower(), known, n=1)
    installed = "installed: " + (", ".join(known) or "none")
    return f"did you mean {close[0]!r}? {installed}" if close else installed


def account_problems(app: App, config: Config | None = None) -> list[Problem]:
    """What each account's network plugin finds wrong with its settings (``check_account``)."""
    return plugin_account_problems(config or app.config)


def plugin_account_problems(config: Config) -> list[Problem]:
    """What each account's network plugin finds wrong with its settings (``check_account``)."""
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
            where = f"accounts.{name}.{issue.field}"
            out.append(
                Problem(config.source, line_of(config, where), where, issue.message, issue.hint)
            )
    return out


@click.group("config")
def config_group() -> None:
    """The config file."""


@config_group.command("check")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (problems too, exit code 1).")
@click.option(
    "--skip-credentials",
    is_flag=True,
    help="A credential that cannot be read here is a warning, not a problem: for checking "
    "the file where the secrets are not (CI, another machine).",
)
@pass_app
def check(app: App, as_json: bool, skip_credentials: bool) -> None:
    """Validate the config: keys, time zones, slots, credentials, platforms."""
    if as_json:
        _check_json(app, skip_credentials)
        return
    config, problems, warnings = _all_problems(app, skip_credentials)
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    if problems:
        raise InvalidInput(problems, f"config {config.source}")
    click.echo(f"{safe(str(config.source))}: OK, {len(config.accounts)} account(s)")
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
        learning = ""
        if acc.learn:  # slot learning: the slots move within windows on these days
            days = sum(1 for d in acc.learn if acc.slots.get(d))
            learning = f" (moving within learning windows on {days} day(s) a week)"
        click.echo(
            f"  {acc.name}: {acc.platform}, {acc.timezone}, {slots} weekly slot(s){learning}, "
            f"{cred}"
        )


def credential_problems(config: Config, skip: bool) -> tuple[list[Problem], list[Problem]]:
    """The credentials of enabled accounts that cannot be read here, as (problems, warnings).

    Problems unless ``skip``; a systemd credential outside its service is always a warning:
    only the service can read it. The same ones ``smm doctor`` fails and warns on."""
    problems, warnings = [], []
    for u in unreadable_credentials(config):
        line = line_of(config, u.field)
        if u.why is None:
            message = f"{u.ref.describe()} is readable only inside the service"
            warnings.append(Problem(config.source, line, u.field, message, u.fix()))
        elif skip:
            warnings.append(Problem(config.source, line, u.field, u.why, u.fix()))
        else:
            hint = f"{u.fix()}; to check the file where the secrets are not: --skip-credentials"
            problems.append(Problem(config.source, line, u.field, u.why, hint))
    return problems, warnings


def _all_problems(app: App, skip_credentials: bool) -> tuple[Config, list[Problem], list[Problem]]:
    """The config's own problems, its plugins' and its credentials', and the warnings: those
    of the accounts read without a problem too, when the file has some, so that one pass
    names them all."""
    try:
        config = app.require_config()
    except ConfigProblems as exc:
        config, problems = exc.partial, exc.all_problems
    else:
        problems = []
    problems += platform_problems(app, config) + account_problems(app, config)
    unreadable, warnings = credential_problems(config, skip_credentials)
    return config, problems + unreadable, warnings


def _problem_json(p: Problem) -> dict[str, object]:
    return {"file": p.file, "line": p.line, "field": p.field, "message": p.message, "hint": p.hint}


def _check_json(app: App, skip_credentials: bool) -> None:
    """``config check --json``: one object, ``ok`` false with the problems (exit code 1);
    the warnings in both cases."""
    config: Config | None
    warnings: list[Problem] = []
    try:
        config, problems, warnings = _all_problems(app, skip_credentials)
    except InvalidInput as exc:
        config, problems = None, list(exc.problems)
    problems = InvalidInput(problems).problems  # the first 100, as the text lists them
    warned = [_problem_json(p) for p in warnings]
    if config is None or problems:
        source = config.source if config else str(app.config_file)
        echo_json(
            {
                "config": source,
                "ok": False,
                "problems": [_problem_json(p) for p in problems],
                "warnings": warned,
            }
        )
        click.get_current_context().exit(1)
    assert config is not None
    echo_json(
        {
            "config": config.source,
            "ok": True,
            "warnings": warned,
            "accounts": [
                {
                    "name": acc.name,
                    "platform": acc.platform,
                    "timezone": acc.timezone,
                    "weekly_slots": sum(len(t) for t in acc.slots.values()),
                    "credentials": {k: ref.available() for k, ref in acc.credentials.items()},
                }
                for acc in config.accounts.values()
            ],
        }
    )


def register(cli: click.Group) -> None:
    cli.add_command(config_group)
