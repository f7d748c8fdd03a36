"""Shared state of one CLI invocation: the config, the database, "now"."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path

import click
from sqlalchemy import Engine

from scheduler.config import Config, default_config_path, empty_config, load_config
from scheduler.db.engine import make_engine, resolve_database_url
from scheduler.db.migrate import ensure_schema
from scheduler.errors import SmmError
from scheduler.timeutil import Clock, SystemClock


@dataclass
class App:
    """Lazily loads what a command needs, so ``smm --help`` touches nothing."""

    config_path: str | None = None
    db_url: str | None = None
    clock: Clock = field(default_factory=SystemClock)

    @cached_property
    def config_file(self) -> Path | None:
        if self.config_path:
            return Path(self.config_path)
        return default_config_path()

    @cached_property
    def config(self) -> Config:
        """The config; an empty one when none is given or found (database-only commands)."""
        path = self.config_file
        return load_config(path) if path else empty_config()

    def require_config(self) -> Config:
        """The config, or a clear error when there is none."""
        if self.config_file is None:
            raise SmmError(
                "no config file: pass --config PATH or set SMM_CONFIG "
                "(looked in $XDG_CONFIG_HOME/smm-scheduler/config.toml and "
                "/etc/smm-scheduler/config.toml; an example is config/example.toml)"
            )
        return self.config

    @cached_property
    def database_url(self) -> str:
        return resolve_database_url(self.db_url, self.config.database_url)

    def engine(self, *, create: bool = True) -> Engine:
        """The engine, with the schema created in an empty database (``create``)."""
        return self._engine_checked(create)

    def _engine_checked(self, create: bool) -> Engine:
        engine = self.raw_engine
        ensure_schema(engine, create=create)
        return engine

    @cached_property
    def raw_engine(self) -> Engine:
        return make_engine(self.database_url)

    def now(self) -> datetime:
        return self.clock.now()

    def close(self) -> None:
        if "raw_engine" in self.__dict__:
            self.raw_engine.dispose()


pass_app = click.make_pass_decorator(App)
