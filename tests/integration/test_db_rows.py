"""``db.rows.insert_rows``: many rows in one statement (COPY on PostgreSQL from
``COPY_FROM_ROWS`` rows, executemany otherwise) store exactly what the ORM would:
column defaults, enum values, JSON, reserved-word column names, the rows' order."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum

import pytest
from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Uuid,
    func,
    select,
)
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session

from medalliance.db.rows import COPY_FROM_ROWS, insert_rows
from medalliance.db.types import str_enum
from medalliance.kernel.clock import utcnow
from medalliance.kernel.ids import new_id


class Colour(StrEnum):
    RED = "red"
    GREEN = "green"


_metadata = MetaData()
_table = Table(
    "test_insert_rows",
    _metadata,
    Column("id", Uuid, primary_key=True, default=new_id),
    Column("n", Integer),
    Column("colour", str_enum(Colour, "colour")),
    Column("detail", JSON),
    Column("end", String(20)),  # a reserved word: quoted in COPY too
    Column("note", String(20)),
    Column("created_at", DateTime(timezone=True), default=utcnow),
)


@pytest.mark.parametrize("count", [3, COPY_FROM_ROWS + 5])
def test_rows_are_stored_as_given_with_defaults(session: Session, count: int) -> None:
    _table.create(session.connection())
    before = datetime.now(UTC)
    rows = [
        {
            "n": i,
            "colour": Colour.GREEN if i % 2 else Colour.RED,
            "detail": {"items": [i, "二"], "ok": True},
            "end": f"e{i}",
            "note": None,
        }
        for i in range(count)
    ]
    insert_rows(session, _table, rows)
    stored = session.execute(select(_table).order_by(_table.c.id)).all()
    assert [r.n for r in stored] == list(range(count))  # ids made in order sort in order
    assert all(isinstance(r.id, uuid.UUID) and r.id.version == 7 for r in stored)
    assert [r.colour for r in stored] == [("green" if i % 2 else "red") for i in range(count)]
    assert stored[1].detail == {"items": [1, "二"], "ok": True}
    assert [r.end for r in stored] == [f"e{i}" for i in range(count)]
    assert all(r.note is None for r in stored)
    created = stored[0].created_at
    if created.tzinfo is None:  # SQLite hands back naive UTC
        created = created.replace(tzinfo=UTC)
    assert before.replace(microsecond=0) <= created


def test_a_bad_value_is_refused_and_nothing_is_written(session: Session) -> None:
    _table.create(session.connection())
    insert_rows(session, _table, [{"n": -1, "colour": "red"}])
    rows = [{"n": i, "colour": "blue" if i == 20 else "red"} for i in range(COPY_FROM_ROWS + 10)]
    with pytest.raises((LookupError, StatementError)), session.begin_nested():
        insert_rows(session, _table, rows)
    assert session.execute(select(_table.c.n)).scalars().all() == [-1]


_unique = Table(
    "test_insert_rows_unique",
    MetaData(),
    Column("id", Uuid, primary_key=True, default=new_id),
    Column("code", String(20), unique=True),
)


@pytest.mark.parametrize("count", [3, COPY_FROM_ROWS + 5])
def test_a_clash_is_sqlalchemys_integrity_error(session: Session, count: int) -> None:
    """COPY reports a unique violation as SQLAlchemy does for any statement, so callers
    that retry a lost race (the parallel import) see the same error on both paths."""
    _unique.create(session.connection())
    rows = [{"code": f"c{i}"} for i in range(count - 1)] + [{"code": "c0"}]
    with pytest.raises(IntegrityError), session.begin_nested():
        insert_rows(session, _unique, rows)
    assert session.execute(select(func.count()).select_from(_unique)).scalar() == 0
