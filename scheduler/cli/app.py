"""Shared state of one CLI invocation: the config, the database, "now"."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from scheduler.config import Config
    from scheduler.timeutil import Clock

# The config, SQLAlchemy and the schema code are imported where a command first needs them:
# `smm --help` and tab completion never pay for them.


def _system_clock() -> Clock:
    from scheduler.timeutil import SystemClock

    return SystemClock()


@dataclass
class App:
    """Lazily loads what a command needs, so ``smm --help`` touches nothing."""

    config_path: str | None = None
    db_url: str | None = None
    clock: Clock = field(default_factory=_system_clock)

    @cached_property
    def config_file(self) -> Path | None:
        if self.config_path:
            return Path(self.config_path)
        from scheduler.config import default_config_path

        return default_config_path()

    @cached_property
    def config(self) -> Config:
        """The config; an empty one when none is given or found (database-only commands)."""
        from scheduler.config import empty_config, load_config

        path = self.config_file
        return load_config(path) if path else empty_config()

    def require_config(self) -> Config:
        """The config, or a clear error when there is none."""
        from scheduler.errors import SmmError

        if self.config_file is None:
            raise SmmError(
                "no config file: pass --config PATH or set SMM_CONFIG "
                "(looked in $XDG_CONFIG_HOME/smm-scheduler/config.toml and "
                "/etc/smm-scheduler/config.toml; an example is config/example.toml)"
            )
        return self.config

    @cached_property
    def database_url(self) -> str:
        from scheduler.db.engine import resolve_database_url

        return resolve_database_url(self.db_url, self.config.database_url)

    def _require_database_source(self) -> None:
        """Without a config file and without --db, there is no database to read: say so
        instead of opening (or creating) the default one."""
        from scheduler.errors import SmmError

        if self.config_file is None and not (self.db_url or os.environ.get("SMM_DATABASE_URL")):
            raise SmmError(
                "no config file and no database given: pass --config PATH (or set SMM_CONFIG) "
                "or --db URL (or set SMM_DATABASE_URL); looked for a config in "
                "$XDG_CONFIG_HOME/smm-scheduler/config.toml and /etc/smm-scheduler/config.toml"
            )

    def engine(self, *, create: bool = False) -> Engine:
        """The engine on an up-to-date schema.

        Only ``create`` (``smm init``, ``smm run``, ``smm plan import``) makes a database that
        is not there yet, and says so on stderr; any other command stops with an error naming
        the database, so a mistyped ``--db`` never leaves an empty database behind."""
        from scheduler.db.engine import redact_url
        from scheduler.db.migrate import SCHEMA_HEAD, current_revision, ensure_schema

        if not create:
            self._require_database_source()
        engine = self.raw_engine if create else self.existing_engine
        if create and current_revision(engine) is None:
            ensure_schema(engine, create=True)
            click.echo(
                f"created the database {redact_url(self.database_url)} (schema {SCHEMA_HEAD})",
                err=True,
            )
            return engine
        ensure_schema(engine, create=False)
        return engine

    def database_engine(self) -> Engine:
        """The engine on an existing database, whatever its schema (``smm db``)."""
        self._require_database_source()
        return self.existing_engine

    @cached_property
    def raw_engine(self) -> Engine:
        """An engine that creates a missing SQLite file (and its directory) on first use."""
        from scheduler.db.engine import make_engine

        return make_engine(self.database_url)

    @cached_property
    def existing_engine(self) -> Engine:
        """An engine on a database that must already exist (an error names it otherwise)."""
        from scheduler.db.engine import make_engine

        if "raw_engine" in self.__dict__:
            return self.raw_engine
        engine = make_engine(self.database_url, create=False)
        self.__dict__["raw_engine"] = engine  # one engine per invocation, disposed in close()
        return engine

    def now(self) -> datetime:
        return self.clock.now()

    def close(self) -> None:
        if "raw_engine" in self.__dict__:
            self.raw_engine.dispose()


pass_app = click.make_pass_decorator(App)
