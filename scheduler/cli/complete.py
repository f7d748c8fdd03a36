"""Tab completion of post ids and account names, read straight from the database.

Completion runs on every key press of a shell, so it stays light: on SQLite it reads with the
standard library's ``sqlite3`` (read-only, never creating a file) instead of loading
SQLAlchemy; on PostgreSQL it goes through the engine. Any failure completes nothing.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import click

#: At most this many suggestions: a shell shows no more usefully.
LIMIT = 200


def _database_url(ctx: click.Context) -> str | None:
    root = ctx.find_root().params
    url = root.get("db_url") or os.environ.get("SMM_DATABASE_URL")
    if url:
        return str(url)
    from scheduler.cli.app import App

    app = App(config_path=root.get("config_path"))
    if app.config_file is None:
        return None  # no config and no --db: commands refuse to guess, so does completion
    return app.database_url


def _rows(ctx: click.Context, sql: str, prefix: str) -> list[str]:
    url = _database_url(ctx)
    if not url:
        return []
    pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    if url.startswith("sqlite:///"):
        path = Path(unquote(url.removeprefix("sqlite:///").split("?")[0])).expanduser()
        if not path.is_file():
            return []
        lite = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=1)
        try:
            return [r[0] for r in lite.execute(sql, (pattern, LIMIT))]
        finally:
            lite.close()
    from sqlalchemy import text

    from scheduler.db.engine import make_engine

    engine = make_engine(url, create=False)
    try:
        with engine.connect() as conn:
            query = text(sql.replace("?", ":p", 1).replace("?", ":n", 1))
            return [r[0] for r in conn.execute(query, {"p": pattern, "n": LIMIT})]
    finally:
        engine.dispose()


def _complete(ctx: click.Context, sql: str, incomplete: str) -> list[Any]:
    from click.shell_completion import CompletionItem

    try:
        return [CompletionItem(v) for v in _rows(ctx, sql, incomplete)]
    except Exception:  # completion must never print a traceback into the shell
        return []


def post_ids(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """The plan ids of stored posts that start with ``incomplete``."""
    return _complete(
        ctx, "SELECT key FROM posts WHERE key LIKE ? ESCAPE '\\' ORDER BY key LIMIT ?", incomplete
    )


def account_names(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """The names of the accounts in the database that start with ``incomplete``."""
    return _complete(
        ctx,
        "SELECT name FROM accounts WHERE name LIKE ? ESCAPE '\\' ORDER BY name LIMIT ?",
        incomplete,
    )
