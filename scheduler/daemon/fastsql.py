"""Driver-level statements for the daemon's hot path (claims and outcome writes).

SQLAlchemy Core processes every bound value through its column type; for a few hundred posts
per step that costs more than the database work. These helpers convert the only values that
need it (timestamps, enums) once, the way the column types would, and hand plain tuples to
the driver (``executemany`` or one multi-row statement). The daemon runs on SQLite and
PostgreSQL only, so these are its only paths.
"""

from __future__ import annotations

import functools
import json
from collections import namedtuple
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Connection, Table

from scheduler.db.types import UTCDateTime


def datetime_converter(conn: Connection) -> Callable[[datetime | None], Any]:
    """How a ``UTCDateTime`` value is bound: SQLite gets SQLAlchemy's exact text (naive UTC,
    microseconds; equal values formatted once), PostgreSQL the aware UTC datetime."""
    if conn.dialect.name != "sqlite":

        def pg(value: datetime | None) -> Any:
            if value is None:
                return None
            if value.tzinfo is None:
                raise ValueError(f"naive datetime {value!r} given to a UTC column")
            return value.astimezone(UTC)

        return pg
    cache: dict[datetime, str] = {}

    def sqlite(value: datetime | None) -> Any:
        if value is None:
            return None
        text = cache.get(value)
        if text is None:
            if value.tzinfo is None:
                raise ValueError(f"naive datetime {value!r} given to a UTC column")
            text = cache[value] = value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        return text

    return sqlite


def text(value: Any) -> str | None:
    """A plain ``str`` for enum values (drivers must not see the enum type)."""
    return None if value is None else str(value)


def table_name(conn: Connection, table: Table) -> str:
    return conn.dialect.identifier_preparer.format_table(table)


def quote(conn: Connection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote(name)


def executemany(conn: Connection, sql: str, params: Sequence[tuple[Any, ...]]) -> int:
    """Run ``sql`` once per parameter tuple in one driver call; returns the rows affected."""
    if not params:
        return 0
    return conn.exec_driver_sql(sql, list(params)).rowcount


def insert_returning(
    conn: Connection,
    table: Table,
    columns: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
    returning: Sequence[str],
) -> list[tuple[Any, ...]]:
    """SQLite: one multi-row ``INSERT ... VALUES (...) RETURNING`` (values already converted).

    Rows are sent in chunks that stay under SQLite's bound-parameter limit.
    """
    out: list[tuple[Any, ...]] = []
    if not rows:
        return out
    one = "(" + ", ".join("?" * len(columns)) + ")"
    cols = ", ".join(quote(conn, c) for c in columns)
    ret = ", ".join(quote(conn, c) for c in returning)
    chunk = max(1, 30000 // len(columns))
    for start in range(0, len(rows), chunk):
        part = rows[start : start + chunk]
        sql = (
            f"INSERT INTO {table_name(conn, table)} ({cols}) VALUES "
            f"{', '.join([one] * len(part))} RETURNING {ret}"
        )
        flat = tuple(v for row in part for v in row)
        out.extend(tuple(r) for r in conn.exec_driver_sql(sql, flat).all())
    return out


def pg_plain_columns(table: Table, columns: Sequence[str], alias: str) -> list[str]:
    """PostgreSQL select expressions for ``columns`` that are cheap to read back: timestamps
    as naive UTC, JSON as text (read them with ``row_reader(..., plain=True)``)."""
    out = []
    for name in columns:
        col_type = table.c[name].type
        expr = f'{alias}."{name}"'
        if isinstance(col_type, UTCDateTime):
            expr = f"({expr} AT TIME ZONE 'UTC')"
        elif isinstance(col_type, JSON):
            expr = f"{expr}::text"
        out.append(expr)
    return out


@functools.lru_cache(maxsize=64)
def _row_type(columns: tuple[str, ...]) -> Any:
    """The row class for ``columns``: made once (``namedtuple`` compiles code each time)."""
    return namedtuple("PostRow", columns)


def row_reader(
    conn: Connection | None, table: Table, columns: Sequence[str], *, plain: bool = False
) -> Callable[[Any], Any]:
    """Turn a driver row of ``columns`` into an attribute-access row with the values the
    column types would give (aware UTC datetimes, decoded JSON). ``plain``: the row was
    selected with ``pg_plain_columns`` (JSON comes as text, as from SQLite); ``conn`` None:
    a PostgreSQL row read without SQLAlchemy."""
    row_type = _row_type(tuple(columns))
    convs: list[Callable[[Any], Any] | None] = []
    cache: dict[Any, datetime] = {}

    def when(value: Any) -> Any:
        if value is None:
            return None
        out = cache.get(value)
        if out is None:
            out = value if isinstance(value, datetime) else datetime.fromisoformat(value)
            out = out.replace(tzinfo=UTC) if out.tzinfo is None else out.astimezone(UTC)
            cache[value] = out
        return out

    def decode(value: Any) -> Any:
        # SQLite hands back the text SQLAlchemy's JSON type wrote; psycopg decodes JSON itself.
        if value is None:
            return None
        return [] if value == "[]" else json.loads(value)

    for name in columns:
        col_type = table.c[name].type
        if isinstance(col_type, UTCDateTime):
            convs.append(when)
        elif isinstance(col_type, JSON) and (
            plain or (conn is not None and conn.dialect.name == "sqlite")
        ):
            convs.append(decode)
        else:
            convs.append(None)
    pairs = list(enumerate(convs))

    def read(raw: Any) -> Any:
        values = list(raw)
        for i, conv in pairs:
            if conv is not None:
                values[i] = conv(values[i])
        return row_type._make(values)

    return read
