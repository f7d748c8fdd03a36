"""``smm plan validate`` and ``smm plan import``."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import click
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from scheduler.cli.app import App, pass_app
from scheduler.cli.config import platform_problems
from scheduler.cli.output import echo_json
from scheduler.db.migrate import current_revision
from scheduler.errors import InvalidInput, Problem, SmmError
from scheduler.outgoing import network_check
from scheduler.plan.check import check_plan
from scheduler.plan.groups import plan_ids
from scheduler.plan.importer import ImportDiff, settled_keys
from scheduler.plan.items import PlanItem
from scheduler.plan.pipeline import import_plan
from scheduler.plan.read import PlanFiles, read_plan_files
from scheduler.plan.validate import validate_items


def _settled_keys(app: App, keys: list[str]) -> set[str]:
    """Ids of the plan already out of the queue; read-only, and empty without a database."""
    url = make_url(app.database_url)
    if url.get_backend_name() == "sqlite" and not Path(url.database or "").is_file():
        return set()  # no database yet: do not create one just to look
    try:
        engine = app.existing_engine
        if current_revision(engine) is None:
            return set()
        with engine.connect() as conn:
            return settled_keys(conn, keys)
    except (SQLAlchemyError, SmmError):
        return set()


def load_plan(app: App, files: Sequence[str], *, use_db: bool = True) -> list[PlanItem]:
    """Read and validate plan files; InvalidInput lists every problem in every file.

    With ``use_db``, posts already out of the queue may keep times in the past."""
    config = app.require_config()
    raws, problems = read_plan_files((Path(f) for f in files), config.plan.max_file_bytes)
    keys = plan_ids(raws)
    items, bad = validate_items(
        raws,
        config,
        app.now(),
        network_check=network_check,
        settled=_settled_keys(app, keys) if use_db else set(),
    )
    problems += bad
    used = {item.account for item in items}
    problems += [p for p in platform_problems(app) if p.field and p.field.split(".")[1] in used]
    if problems:
        raise InvalidInput(problems, "the plan")
    return items


#: Plans from this size on show a progress bar on a terminal.
_BAR_FROM_BYTES = 200_000


@click.group()
def plan() -> None:
    """Content plans (YAML or CSV): validate and import."""


@plan.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(readable=False))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_app
def validate(app: App, files: tuple[str, ...], as_json: bool) -> None:
    """Check plan FILES without touching the database; list every problem.

    Also warns (exit code still 0) when fixed-time posts would exceed a network's known
    quota (YouTube's daily units, TikTok's daily post cap) in some window, naming the posts
    the quota does not cover.
    """
    config = app.require_config()
    # Read as a stream, as an import reads it: the plan is never held whole.
    plan_files = PlanFiles((Path(f) for f in files), config.plan.max_file_bytes)
    with _settled_lookup(app) as settled:
        found = check_plan(
            plan_files, config, app.now(), network_check=network_check, settled=settled
        )
    problems = found.problems + [
        p for p in platform_problems(app) if p.field and p.field.split(".")[1] in found.accounts
    ]
    total = found.problem_count + len(problems) - len(found.problems)
    if problems:
        exc = InvalidInput(problems, "the plan", total)
        if as_json:
            echo_json(
                {
                    "ok": False,
                    "total": exc.total,
                    "problems": [p.as_dict() for p in exc.problems],
                }
            )
            sys.exit(1)
        raise exc
    if as_json:
        echo_json({"ok": True, "posts": found.posts, "warnings": found.warnings})
        return
    queued = found.posts - found.fixed
    click.echo(f"OK: {found.posts} post(s), {found.fixed} at fixed times, {queued} queued")
    for warning in found.warnings:
        click.echo(f"warning: {warning['message']}", err=True)


@contextlib.contextmanager
def _settled_lookup(app: App) -> Iterator[Callable[[Sequence[str]], set[str]] | None]:
    """Which ids of the plan are posts already out of the queue, asked a chunk at a time of
    the database read-only; None without a database (nothing is created to look)."""
    url = make_url(app.database_url)
    if url.get_backend_name() == "sqlite" and not Path(url.database or "").is_file():
        yield None
        return
    try:
        engine = app.existing_engine
        if current_revision(engine) is None:
            yield None
            return
        conn = engine.connect()
    except (SQLAlchemyError, SmmError):
        yield None
        return

    def settled(keys: Sequence[str]) -> set[str]:
        try:
            return settled_keys(conn, keys)
        except SQLAlchemyError:
            return set()

    try:
        yield settled
    finally:
        conn.close()


def _print_diff(diff: ImportDiff, dry_run: bool, prune: bool) -> None:
    s = diff.summary()
    verb = "would be" if dry_run else "were"
    click.echo(
        f"{s['added']} added, {s['updated']} updated, {s['requeued']} requeued, "
        f"{s['unchanged']} unchanged" + (" (dry run: nothing written)" if dry_run else "")
    )
    for item in diff.added[:20] if dry_run else ():
        click.echo(f"  + {item.key} ({item.account}, {item.content_type})")
    for item, old in diff.updated + diff.requeued:
        click.echo(f"  ~ {item.key} ({old.state})")
    _more(diff, "updated", "requeued")
    for item, old in diff.renamed:
        click.echo(f"  = {old.key} is now {item.key} ({old.state})")
    _more(diff, "renamed")
    for item, old in diff.locked:
        click.echo(
            click.style(
                f"  ! {item.key}: changed in the plan but {old.state}; not touched", fg="yellow"
            )
        )
    _more(diff, "locked")
    if diff.gone:
        action = f"{verb} cancelled" if prune else "kept (use --prune to cancel them)"
        click.echo(f"{diff.count('gone')} post(s) no longer in the plan, {action}:")
        for g in diff.gone[:50]:
            click.echo(f"  - {g.key} ({g.state})")
        if diff.count("gone") > 50:
            click.echo(f"  ... and {diff.count('gone') - 50} more")
    if diff.dropped:
        click.echo(
            f"{diff.count('dropped')} post(s) of accounts taken off their plan item "
            f"{verb} cancelled:"
        )
        for d in diff.dropped[:50]:
            click.echo(f"  - {d.key} ({d.state})")
        if diff.count("dropped") > 50:
            click.echo(f"  ... and {diff.count('dropped') - 50} more")


def _more(diff: ImportDiff, *names: str) -> None:
    """The posts of lists ``names`` the diff counted but did not keep (a large import keeps
    the first of each)."""
    more = sum(diff.count(name) - len(getattr(diff, name)) for name in names)
    if more:
        click.echo(f"  ... and {more} more")


@plan.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(readable=False))
@click.option("--dry-run", is_flag=True, help="Print what would change; write nothing.")
@click.option("--prune", is_flag=True, help="Cancel waiting posts that left the plan.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@pass_app
def import_(app: App, files: tuple[str, ...], dry_run: bool, prune: bool, as_json: bool) -> None:
    """Import plan FILES into the queue, in one transaction.

    Re-importing reconciles by id: new posts are added, changed ones that have not been
    published are updated, published ones are never touched.
    """
    config = app.require_config()
    # Read as a stream (the plan is never held whole); an account whose platform no plugin
    # provides is a problem when the plan names it.
    plan_files = PlanFiles((Path(f) for f in files), config.plan.max_file_bytes)
    refused = plan_files.refused()
    if refused:  # files that cannot be read at all: no database is opened for them
        raise InvalidInput(refused, "the plan")
    blocked: dict[str, list[Problem]] = {}
    for p in platform_problems(app):
        if p.field:
            blocked.setdefault(p.field.split(".")[1], []).append(p)
    engine = app.engine(create=not dry_run)
    show_bar = sys.stderr.isatty() and not as_json and plan_files.size() >= _BAR_FROM_BYTES
    # Take SQLite's write lock up front: a read that later upgrades to a write fails at once
    # ("database is locked") if a running daemon took the lock meanwhile.
    with (
        engine.connect() as plain,
        plain.execution_options(sqlite_begin="IMMEDIATE") as conn,
        conn.begin() as tx,
        contextlib.ExitStack() as stack,
    ):
        bars: list[Any] = []

        def progress(written: int, total: int) -> None:
            # The bar starts once the first pass has counted the posts.
            if not bars:
                bars.append(
                    stack.enter_context(
                        click.progressbar(length=total, label="importing", file=sys.stderr)
                    )
                )
            bars[0].update(written)

        diff, bad = import_plan(
            conn,
            plan_files,
            config,
            app.now(),
            network_check=network_check,
            prune=prune,
            dry_run=dry_run,
            progress=progress if show_bar else None,
            account_problems=blocked,
        )
        if bad or dry_run:
            tx.rollback()
    if bad:
        raise InvalidInput(bad, "the plan", diff.problem_count)
    if as_json:
        echo_json(
            {
                "dry_run": dry_run,
                **diff.summary(),
                "gone": [g.key for g in diff.gone],
                "dropped": [d.key for d in diff.dropped],
                "renamed": {old.key: item.key for item, old in diff.renamed},
                "locked": [i.key for i, _ in diff.locked],
            }
        )
        return
    _print_diff(diff, dry_run, prune)


def register(cli: click.Group) -> None:
    cli.add_command(plan)
