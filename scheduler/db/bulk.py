"""Bulk writes that skip per-value ORM processing where the driver can take the values as is.

A plan import writes tens of thousands of rows; SQLAlchemy's per-value type processing costs
more than the database write itself there. These helpers convert each column once, the way
the column type would, and hand tuples to the driver's ``executemany``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Connection, Table

from scheduler.db.types import UTCDateTime

#: Distinct timestamps ``_sqlite_datetime`` keeps formatted.
_CACHED = 4096


def _sqlite_datetime() -> Callable[[datetime], str]:
    """The exact text SQLAlchemy's SQLite DATETIME type writes (naive UTC, microseconds).

    Rows of one import share most timestamps, so each distinct value is formatted once; the
    cache is emptied when it grows past ``_CACHED`` values (distinct times of a large plan).
    """
    cache: dict[datetime, str] = {}

    def convert(value: datetime) -> str:
        text = cache.get(value)
        if text is None:
            if len(cache) >= _CACHED:
                cache.clear()
            # Plan times and slots are UTC already: astimezone would make a copy of each.
            utc = value if value.tzinfo is UTC else value.astimezone(UTC)
            # isoformat writes the same text as the strftime below, faster; strftime
            # pads years before 1000 differently, so those keep it.
            text = cache[value] = (
                utc.replace(tzinfo=None).isoformat(" ", "microseconds")
                if utc.year >= 1000
                else utc.strftime("%Y-%m-%d %H:%M:%S.%f")
            )
        return text

    return convert


def _sqlite_json(value: Any) -> str:
    # Plain json.dumps, as SQLAlchemy's JSON type writes it; empty lists are the common case.
    return "[]" if value == [] else json.dumps(value)


def _converters(
    conn: Connection, table: Table, columns: Sequence[str]
) -> list[Callable[[Any], Any] | None]:
    dialect = conn.dialect.name
    out: list[Callable[[Any], Any] | None] = []
    for name in columns:
        col_type = table.c[name].type
        conv: Callable[[Any], Any] | None = None
        if dialect == "sqlite":
            if isinstance(col_type, UTCDateTime):
                conv = _sqlite_datetime()
            elif isinstance(col_type, JSON):
                conv = _sqlite_json
            elif isinstance(col_type, Boolean):
                conv = int
        elif dialect == "postgresql" and isinstance(col_type, JSON):
            from psycopg.types.json import Json

            conv = Json
        out.append(conv)
    return out


def insert_rows(conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``rows`` (dicts with the same keys) in one driver-level ``executemany``."""
    if not rows:
        return
    if conn.dialect.name not in ("sqlite", "postgresql"):
        conn.execute(table.insert(), list(rows))
        return
    columns = list(rows[0])
    convs = _converters(conn, table, columns)
    # Column by column: one conversion function per column, applied with map (no per-value
    # dispatch), then transposed into the row tuples the driver wants.
    values = []
    for name, conv in zip(columns, convs, strict=True):
        column = [row[name] for row in rows]
        if conv is not None:
            column = [None if v is None else conv(v) for v in column]
        values.append(column)
    params = list(zip(*values, strict=True))
    marker = "?" if conn.dialect.name == "sqlite" else "%s"
    quoted = ", ".join(conn.dialect.identifier_preparer.quote(c) for c in columns)
    sql = (
        f"INSERT INTO {conn.dialect.identifier_preparer.format_table(table)} ({quoted}) "
        f"VALUES ({', '.join([marker] * len(columns))})"
    )
    conn.exec_driver_sql(sql, params)


def column_converters(
    conn: Connection, table: Table, columns: Sequence[str]
) -> list[Callable[[Any], Any] | None]:
    """Per column, what ``insert_tuples`` expects done to a non-None value (None: nothing).

    Only meaningful when ``supports_tuples`` is true for the connection.
    """
    return _converters(conn, table, columns)


def supports_tuples(conn: Connection) -> bool:
    """Whether ``insert_tuples`` can take pre-converted tuples for this connection."""
    return conn.dialect.name in ("sqlite", "postgresql")


def insert_tuples(
    conn: Connection, table: Table, columns: Sequence[str], params: Sequence[Sequence[Any]]
) -> None:
    """Insert rows given as tuples in ``columns`` order, each value already converted with
    ``column_converters`` (None stays None), in one driver-level ``executemany``."""
    if not params:
        return
    if conn.dialect.name == "postgresql":
        _copy_rows(conn, table, columns, params)
        return
    marker = "?" if conn.dialect.name == "sqlite" else "%s"
    quoted = ", ".join(conn.dialect.identifier_preparer.quote(c) for c in columns)
    sql = (
        f"INSERT INTO {conn.dialect.identifier_preparer.format_table(table)} ({quoted}) "
        f"VALUES ({', '.join([marker] * len(columns))})"
    )
    conn.exec_driver_sql(sql, list(params))


def _copy_rows(
    conn: Connection, table: Table, columns: Sequence[str], params: Sequence[Sequence[Any]]
) -> None:
    """PostgreSQL: the rows through ``COPY ... FROM STDIN`` in the connection's transaction,
    several times faster than an INSERT per row (psycopg adapts each value as for a query)."""
    preparer = conn.dialect.identifier_preparer
    quoted = ", ".join(preparer.quote(c) for c in columns)
    sql = f"COPY {preparer.format_table(table)} ({quoted}) FROM STDIN"
    cursor = conn.connection.cursor()
    try:
        with cursor.copy(sql) as copy:
            for row in params:
                copy.write_row(row)
    finally:
        cursor.close()
