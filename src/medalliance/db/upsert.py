"""``INSERT … ON CONFLICT … DO NOTHING`` for both databases the project runs on.

SQLAlchemy has the clause only in its PostgreSQL and SQLite dialects (the generic
``insert()`` has none), so the statement is built per dialect; it is built once per
dialect and kept, so SQLAlchemy's compiled cache serves every later call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Table, TextClause
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


class InsertIgnoringConflicts:
    """``INSERT INTO target … ON CONFLICT (on) [WHERE where] DO NOTHING [RETURNING …]``.

    ``target`` is a table or a mapped class (the latter gives an ORM-enabled insert:
    ``returning`` may then name the class, and the rows come back as objects in the
    session). ``where`` names a partial unique index's predicate.
    """

    def __init__(
        self,
        target: Table | type[Any],
        *,
        on: Sequence[str],
        where: ColumnElement[bool] | TextClause | None = None,
        returning: Sequence[Any] = (),
    ) -> None:
        self._target = target
        self._on = list(on)
        self._where = where
        self._returning = tuple(returning)
        self._built: dict[str, Any] = {}

    def statement(self, dialect: str) -> Any:
        found = self._built.get(dialect)
        if found is None:
            if dialect == "postgresql":
                found = postgresql.insert(self._target).on_conflict_do_nothing(
                    index_elements=self._on, index_where=self._where
                )
            elif dialect == "sqlite":
                found = sqlite.insert(self._target).on_conflict_do_nothing(
                    index_elements=self._on, index_where=self._where
                )
            else:
                raise NotImplementedError(f"No INSERT … ON CONFLICT for the {dialect} dialect.")
            if self._returning:
                found = found.returning(*self._returning)
            self._built[dialect] = found
        return found

    def for_session(self, session: Session) -> Any:
        return self.statement(session.get_bind().dialect.name)
