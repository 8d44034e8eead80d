"""Writing many new rows of one table at once, without ORM objects.

A unit-of-work flush of N new objects costs the ORM's bookkeeping per object, and on
PostgreSQL it sends one multi-row ``INSERT … VALUES (…), (…)`` whose text psycopg must
re-parse for every batch (too long for its query cache). ``insert_rows`` sends the rows
with PostgreSQL's ``COPY … FROM STDIN`` (about a sixth of the client CPU of an
executemany per row, measured here) or, on SQLite and for a handful of rows, a Core
``executemany``. It is for rows nothing in the session changes afterwards (results,
side-table codings, identifiers); load them back if an object is needed.

Column defaults (ids, timestamps) apply as for the ORM, and values pass the columns'
own type processing (enums to their stored values, JSON to text). Every row must carry
the same keys.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy import JSON, Column, Table, insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

# Fewer rows than this go as one executemany: a COPY is a round trip of its own.
COPY_FROM_ROWS = 16


def insert_rows(
    session: Session, target: Table | type[Any], rows: Sequence[dict[str, Any]]
) -> None:
    """INSERT ``rows`` into ``target`` (a table or a mapped class). Pending ORM objects
    are flushed first, so foreign keys to them hold."""
    if not rows:
        return
    table: Table = target if isinstance(target, Table) else target.__table__
    if len(rows) >= COPY_FROM_ROWS and session.get_bind().dialect.name == "postgresql":
        _copy(session, table, rows)
    else:
        session.execute(insert(table), list(rows))


def _copy(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    session.flush()  # COPY goes around the session: what it refers to must be written
    connection = session.connection()
    dialect = connection.dialect
    given = [table.c[key] for key in rows[0]]
    defaulted = [
        c
        for c in table.columns
        if c.key not in rows[0] and c.default is not None and not c.default.is_sequence
    ]
    columns = given + defaulted
    process = [_bind_processor(c, dialect) for c in columns]
    defaults = [_default_of(c) for c in defaulted]
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table.name), sql.SQL(", ").join(sql.Identifier(c.name) for c in columns)
    )
    raw = connection.connection.driver_connection
    assert raw is not None
    try:
        _write_copy(raw, statement, rows, given, defaults, process)
    except psycopg.Error as exc:  # as SQLAlchemy reports it for any other statement
        raise DBAPIError.instance(
            statement.as_string(raw), None, exc, psycopg.Error, dialect=dialect
        ) from exc


def _write_copy(
    raw: Any,
    statement: sql.Composed,
    rows: Sequence[dict[str, Any]],
    given: list[Column[Any]],
    defaults: list[Callable[[], Any]],
    process: list[Callable[[Any], Any] | None],
) -> None:
    with raw.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            values = [row[c.key] for c in given] + [make() for make in defaults]
            copy.write_row(
                [
                    v if p is None or v is None else p(v)
                    for p, v in zip(process, values, strict=True)
                ]
            )


def _bind_processor(column: Column[Any], dialect: Any) -> Callable[[Any], Any] | None:
    if isinstance(column.type, JSON):  # psycopg adapts JSON values itself, not in COPY
        serialise: Callable[[Any], str] = dialect._json_serializer or json.dumps
        return serialise
    processor: Callable[[Any], Any] | None = column.type.bind_processor(dialect)
    return processor


def _default_of(column: Column[Any]) -> Callable[[], Any]:
    default: Any = column.default
    if default.is_callable:
        return lambda: default.arg(None)  # SQLAlchemy wraps it to take an execution context
    value = default.arg
    return lambda: value
