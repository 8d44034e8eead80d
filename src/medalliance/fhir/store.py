"""The side tables: identifiers and codings the domain does not model."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import ARRAY, String, Uuid, and_, any_, cast, or_, select
from sqlalchemy.orm import Session

from medalliance.db.rows import insert_rows
from medalliance.fhir.models import FhirCoding, FhirIdentifier
from medalliance.kernel.errors import Conflict


def in_ids(session: Session, column: Any, ids: Sequence[uuid.UUID]) -> Any:
    """``column IN ids``; on PostgreSQL one array parameter (``= ANY``), so a long list
    costs no query-text expansion."""
    return in_values(session, column, ids, Uuid())


def in_values(session: Session, column: Any, values: Sequence[Any], item_type: Any) -> Any:
    """``column IN values`` (``= ANY(array)`` on PostgreSQL for long lists)."""
    if session.get_bind().dialect.name == "postgresql" and len(values) > 20:
        return column == any_(cast(list(values), ARRAY(item_type)))
    return column.in_(values)


def owners_of_values(
    session: Session, system: str, wanted: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], uuid.UUID]:
    """(resource type, value) -> the resource an identifier of ``system`` names, for
    many at once (one statement; each type's part uses the unique index)."""
    by_type: dict[str, list[str]] = {}
    for rtype, value in wanted:
        by_type.setdefault(rtype, []).append(value)
    if not by_type:
        return {}
    rows = session.execute(
        select(
            FhirIdentifier.resource_type, FhirIdentifier.value, FhirIdentifier.resource_id
        ).where(
            FhirIdentifier.system == system,
            or_(
                *(
                    and_(
                        FhirIdentifier.resource_type == rtype,
                        in_values(session, FhirIdentifier.value, sorted(values), String()),
                    )
                    for rtype, values in by_type.items()
                )
            ),
        )
    )
    return {(row[0], row[1]): row[2] for row in rows}


def find(session: Session, resource_type: str, system: str, value: str) -> uuid.UUID | None:
    return session.scalar(
        select(FhirIdentifier.resource_id).where(
            FhirIdentifier.resource_type == resource_type,
            FhirIdentifier.system == system,
            FhirIdentifier.value == value,
        )
    )


def add_identifiers(
    session: Session,
    resource_type: str,
    resource_id: uuid.UUID,
    pairs: Iterable[tuple[str, str]],
) -> None:
    """Keep identifiers; one identifier names one resource of a type (409 otherwise)."""
    add_identifiers_many(session, resource_type, [(resource_id, pairs)])


def add_identifiers_many(
    session: Session,
    resource_type: str,
    items: Sequence[tuple[uuid.UUID, Iterable[tuple[str, str]]]],
) -> None:
    """``add_identifiers`` for many new resources of a type: one query for the owners
    of every value; a clash (with a stored resource or an earlier one of the batch)
    raises ``Conflict`` with ``extra['index']`` naming the item."""
    wanted = [list(dict.fromkeys(pairs)) for _, pairs in items]
    values = sorted({v for pairs in wanted for _, v in pairs})
    if not values:
        return
    owners = {
        (row[0], row[1]): row[2]
        for row in session.execute(
            select(FhirIdentifier.system, FhirIdentifier.value, FhirIdentifier.resource_id).where(
                FhirIdentifier.resource_type == resource_type,
                FhirIdentifier.system.in_({s for pairs in wanted for s, _ in pairs}),
                in_values(session, FhirIdentifier.value, values, String()),
            )
        )
    }
    rows = []
    for index, ((resource_id, _), pairs) in enumerate(zip(items, wanted, strict=True)):
        for system, value in pairs:
            owner = owners.get((system, value))
            if owner == resource_id:
                continue
            if owner is not None:
                raise Conflict(
                    f"Identifier {system}|{value} already names {resource_type}/{owner}.",
                    field="identifier",
                    index=index,
                )
            owners[(system, value)] = resource_id
            rows.append(identifier_row(resource_type, resource_id, system, value))
    insert_rows(session, FhirIdentifier, rows)


def identifier_row(
    resource_type: str, resource_id: uuid.UUID, system: str, value: str
) -> dict[str, Any]:
    return {
        "resource_type": resource_type,
        "resource_id": resource_id,
        "system": system,
        "value": value,
    }


def identifiers_of(
    session: Session, resource_type: str, ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[dict[str, Any]]]:
    found: dict[uuid.UUID, list[dict[str, Any]]] = {}
    if not ids:
        return found
    for row in session.execute(
        select(FhirIdentifier.resource_id, FhirIdentifier.system, FhirIdentifier.value)
        .where(
            FhirIdentifier.resource_type == resource_type,
            in_ids(session, FhirIdentifier.resource_id, ids),
        )
        .order_by(FhirIdentifier.created_at, FhirIdentifier.id)
    ):
        found.setdefault(row[0], []).append({"system": row[1], "value": row[2]})
    return found


def add_codings(
    session: Session,
    resource_type: str,
    resource_id: uuid.UUID,
    element: str,
    codings: Iterable[tuple[str | None, str | None, str | None]],
) -> None:
    """Keep one resource's extra codings (many resources: ``CodingRows``)."""
    rows = CodingRows(resource_type)
    rows.add(resource_id, element, codings)
    rows.write(session)


class CodingRows:
    """The extra codings of many new resources of a type, written in one statement."""

    def __init__(self, resource_type: str) -> None:
        self.resource_type = resource_type
        self.rows: list[dict[str, Any]] = []

    def add(
        self,
        resource_id: uuid.UUID,
        element: str,
        codings: Iterable[tuple[str | None, str | None, str | None]],
    ) -> None:
        self.rows.extend(
            {
                "resource_type": self.resource_type,
                "resource_id": resource_id,
                "element": element,
                "system": None if system is None else system[:255],
                "code": None if code is None else code[:100],
                "display": None if display is None else display[:500],
            }
            for system, code, display in codings
        )

    def write(self, session: Session) -> None:
        insert_rows(session, FhirCoding, self.rows)
        self.rows = []


def codings_of(
    session: Session, resource_type: str, ids: Sequence[uuid.UUID]
) -> dict[tuple[uuid.UUID, str], list[dict[str, Any]]]:
    found: dict[tuple[uuid.UUID, str], list[dict[str, Any]]] = {}
    if not ids:
        return found
    for row in session.scalars(
        select(FhirCoding)
        .where(
            FhirCoding.resource_type == resource_type,
            in_ids(session, FhirCoding.resource_id, ids),
        )
        .order_by(FhirCoding.id)
    ):
        coding = {
            k: v
            for k, v in (("system", row.system), ("code", row.code), ("display", row.display))
            if v is not None
        }
        found.setdefault((row.resource_id, row.element), []).append(coding)
    return found


def ids_with_coding(resource_type: str, element: str, system: str | None, code: str) -> Any:
    """A subquery of resource ids that carry this extra coding (for token search)."""
    query = select(FhirCoding.resource_id).where(
        FhirCoding.resource_type == resource_type,
        FhirCoding.element == element,
        FhirCoding.code == code,
    )
    if system is not None:
        query = query.where(FhirCoding.system == system)
    return query


def ids_with_identifier(resource_type: str, system: str | None, value: str) -> Any:
    query = select(FhirIdentifier.resource_id).where(
        FhirIdentifier.resource_type == resource_type, FhirIdentifier.value == value
    )
    if system is not None:
        query = query.where(FhirIdentifier.system == system)
    return query
