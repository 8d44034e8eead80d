"""Writing many new rows of one table in one statement, without ORM objects.

A unit-of-work flush of N new objects costs the ORM's bookkeeping per object, and on
PostgreSQL it sends one multi-row ``INSERT … VALUES (…), (…)`` whose text psycopg must
re-parse for every batch (too long for its query cache). ``insert_rows`` sends a Core
``executemany`` instead: one short statement, prepared once, rows pipelined. It is for
rows nothing in the session will change afterwards (results, side-table codings,
identifiers); load them back (``session.get`` or a query) if an object is needed.

Column defaults (ids, timestamps) apply as for the ORM. Every row must carry the same
keys (``executemany`` binds one statement).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, insert
from sqlalchemy.orm import Session


def insert_rows(
    session: Session, target: Table | type[Any], rows: Sequence[dict[str, Any]]
) -> None:
    """INSERT ``rows`` into ``target`` (a table or a mapped class) in one executemany.
    Pending ORM objects are flushed first (autoflush), so foreign keys to them hold."""
    if not rows:
        return
    table = target if isinstance(target, Table) else target.__table__
    session.execute(insert(table), list(rows))
