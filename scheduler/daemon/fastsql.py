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
from collections.abc import Callable, Mapping, Sequence
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
            if value.tzinfo is not UTC:
                value = value.astimezone(UTC)
            # SQLAlchemy's "%04d-%02d-%02d %02d:%02d:%02d.%06d" is the first 26 characters
            # of the ISO form (the aware one adds "+00:00"): made without strftime's cost.
            text = cache[value] = value.isoformat(" ", "microseconds")[:26]
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


def json_rows(conn: Connection, sql: str, params: Sequence[Any]) -> list[list[Any]]:
    """SQLite: the rows of ``sql``, a query that returns one row holding them all as a JSON
    array of arrays (``json_group_array(json_array(...))``): one step of the driver, where
    reading rows one by one takes the interpreter lock once per row. Text stays text (JSON
    columns are decoded by ``row_reader``, as when read as rows)."""
    text = conn.exec_driver_sql(sql, tuple(params)).scalar()
    rows: list[list[Any]] = json.loads(text) if text else []
    return rows


def insert_rows(
    conn: Connection, table: Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> None:
    """SQLite: one multi-row ``INSERT ... VALUES`` per chunk under the parameter limit."""
    one = "(" + ", ".join("?" * len(columns)) + ")"
    cols = ", ".join(quote(conn, c) for c in columns)
    chunk = max(1, 30000 // len(columns))
    for start in range(0, len(rows), chunk):
        part = rows[start : start + chunk]
        conn.exec_driver_sql(
            f"INSERT INTO {table_name(conn, table)} ({cols}) VALUES {', '.join([one] * len(part))}",
            tuple(v for row in part for v in row),
        )


#: Rows per ``update_from`` statement: well under SQLite's 32,766 bound parameters.
UPDATE_FROM_ROWS = 1000


def update_from(
    conn: Connection,
    table: Table,
    columns: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
    *,
    expressions: Mapping[str, str] | None = None,
    also: str = "",
    also_params: Sequence[Any] = (),
    where: str = "",
    where_params: Sequence[Any] = (),
) -> int:
    """SQLite: update ``table``'s rows from ``rows`` (each the row's id, then a value per
    column of ``columns``; values already converted) in one ``UPDATE ... FROM (VALUES ...)``
    statement per ``UPDATE_FROM_ROWS`` rows. Each column is set to its value or to its
    expression in ``expressions`` (``{value}``: the value, ``{table}``: the quoted table
    name); ``also``: more assignments, with ``also_params``; ``where``: a further condition
    (``{table}`` as above), with ``where_params``. Returns the rows changed.

    (Not ``WITH v AS (VALUES ...) UPDATE``: the driver counts the rows changed only for a
    statement that starts with ``UPDATE``. A ``VALUES`` list's columns are ``column1``...)
    """
    if not rows:
        return 0
    name = table_name(conn, table)
    sets = []
    for i, c in enumerate(columns, start=2):
        expression = (expressions or {}).get(c, "{value}")
        sets.append(f"{quote(conn, c)} = " + expression.format(table=name, value=f"v.column{i}"))
    if also:
        sets.append(also)
    condition = f"{name}.id = v.column1" + (f" AND {where.format(table=name)}" if where else "")
    one = "(" + ", ".join("?" * (len(columns) + 1)) + ")"
    changed = 0
    for start in range(0, len(rows), UPDATE_FROM_ROWS):
        part = rows[start : start + UPDATE_FROM_ROWS]
        sql = (
            f"UPDATE {name} SET {', '.join(sets)} "
            f"FROM (VALUES {', '.join([one] * len(part))}) AS v WHERE {condition}"
        )
        flat = [value for row in part for value in row]
        changed += conn.exec_driver_sql(sql, (*also_params, *flat, *where_params)).rowcount
    return changed


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
        # Most values are an empty list or JSON null (SQLAlchemy writes None so): no parser.
        if value is None or value == "null":
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
