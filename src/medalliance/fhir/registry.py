"""The mapper registry: one mapper per resource type. Adding a type (Observation when
results land, MedicationRequest with prescriptions, Device with monitoring) is one
``REGISTRY.register(SomeMapper())``; the CapabilityStatement follows the registry."""

from __future__ import annotations

import uuid
from collections import namedtuple
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from medalliance.fhir.outcome import FhirError
from medalliance.fhir.search import (
    Criterion,
    SearchParam,
    SearchRequest,
    count_of,
    date_param,
    id_param,
)

if TYPE_CHECKING:
    from medalliance.fhir.context import FhirContext

READ, SEARCH, CREATE, UPDATE, VREAD, HISTORY = (
    "read",
    "search-type",
    "create",
    "update",
    "vread",
    "history-instance",
)
# The one version of a resource whose domain row never changes once written.
FIRST_VERSION = "1"


@dataclass(frozen=True, slots=True)
class Include:
    """``_include=<Type>:<param>``: rows → the ids of the referenced resources."""

    target: str
    column: str  # attribute of the row holding the target id (None values skipped)
    # where the targets are not one column of the row (a panel's member results): the
    # target rows the actor may see, by the target type's access policy
    load: Callable[[FhirContext, list[Any]], list[Any]] | None = None


@dataclass(slots=True)
class Written:
    resource_type: str
    id: uuid.UUID
    created: bool = True


_SHAPES: dict[tuple[str, ...], type[tuple[Any, ...]]] = {}


def row_shape(keys: tuple[str, ...]) -> type[tuple[Any, ...]]:
    """The named tuple class of rows with these column names (one per query shape)."""
    shape = _SHAPES.get(keys)
    if shape is None:
        shape = _SHAPES[keys] = namedtuple("Row", keys)
    return shape


class Instants(dict[Any, Any]):
    """A datetime → its FHIR instant text, worked out once per distinct value: the rows
    written in one transaction share their stamps, so thousands of entries share a few
    strings. Aware values of any zone are answered in UTC; naive ones are UTC."""

    def __missing__(self, value: Any) -> str | None:
        if value is None:
            text = None
        elif value.tzinfo is UTC:
            text = value.isoformat()
        else:
            text = instant_text(value)
        self[value] = text
        return text


def instant_text(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC).isoformat()
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.isoformat()


class Days(dict[Any, Any]):
    """A date → its FHIR date text, once per distinct value."""

    def __missing__(self, value: date | None) -> str | None:
        text = self[value] = None if value is None else value.isoformat()
        return text


class References(dict[Any, dict[str, str]]):
    """An id → the Reference ``{"reference": "<Type>/<id>"}``, one object per id (the
    entries that name the same encounter share it; nothing changes answers after
    rendering)."""

    def __init__(self, resource_type: str) -> None:
        super().__init__()
        self.prefix = f"{resource_type}/"

    def __missing__(self, rid: Any) -> dict[str, str]:
        ref = self[rid] = {"reference": f"{self.prefix}{rid}"}
        return ref


@dataclass(slots=True)
class Lookups:
    """What rendering rows needs besides the rows: fetched once per page (or, for
    $everything, once for the whole compartment)."""

    # source record → person (keyed by uuid, and by text where rows carry text ids)
    persons: dict[Any, uuid.UUID]
    identifiers: dict[uuid.UUID, list[dict[str, Any]]] = field(default_factory=dict)
    codings: dict[tuple[uuid.UUID, str], list[dict[str, Any]]] = field(default_factory=dict)
    # versioned types: row id → (logical id, version number)
    versions: dict[uuid.UUID, tuple[uuid.UUID, int]] = field(default_factory=dict)
    # a grouping row → the ids of the rows it groups, in order (a lab panel's results)
    members: dict[Any, list[uuid.UUID]] = field(default_factory=dict)
    # the texts of the stamps and dates rendered, and the references made, per answer
    instants: Instants = field(default_factory=Instants)
    days: Days = field(default_factory=Days)
    _subjects: dict[uuid.UUID, dict[str, str]] = field(default_factory=dict)
    _references: dict[str, References] = field(default_factory=dict)

    def references(self, resource_type: str) -> References:
        refs = self._references.get(resource_type)
        if refs is None:
            refs = self._references[resource_type] = References(resource_type)
        return refs

    def subject(self, record_id: uuid.UUID) -> dict[str, str]:
        """The Patient reference of a source record's person (one object per person:
        thousands of entries share it; nothing changes answers after rendering)."""
        ref = self._subjects.get(record_id)
        if ref is None:
            ref = self._subjects[record_id] = {"reference": f"Patient/{self.persons[record_id]}"}
        return ref


class Mapper:
    resource_type: ClassVar[str]
    model: ClassVar[Any]
    interactions: ClassVar[tuple[str, ...]] = (READ, SEARCH)
    # True where the domain never changes a row once written (a correction or a new
    # decision is a new row): every resource has exactly one version, "1", so history
    # and vread are complete and truthful. Types whose rows are updated in place keep
    # no versions and offer neither.
    immutable: ClassVar[bool] = False
    # the parameter naming the patient, for Patient/$everything and compartment scoping
    patient_param: ClassVar[str | None] = None
    includes: ClassVar[dict[str, Include]] = {}
    # reference parameters that other types' _revinclude may name: "<Type>:<param>"
    revincludes: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        self.params: dict[str, SearchParam] = {
            "_id": id_param(self.model.id),
            "_lastUpdated": date_param(self.last_updated_column(), doc="meta.lastUpdated"),
            **self.search_params(),
        }
        self.sorts: dict[str, Any] = {
            "_id": self.model.id,
            "_lastUpdated": self.last_updated_column(),
            **self.sort_columns(),
        }

    # --- what a mapper describes --------------------------------------------------------

    def search_params(self) -> dict[str, SearchParam]:
        return {}

    def sort_columns(self) -> dict[str, Any]:
        return {}

    def last_updated_column(self) -> Any:
        return self.model.updated_at

    def clinical_date_column(self) -> Any:
        """The column holding the resource's clinical date (when the care happened),
        for $everything's ``start``/``end``; None: the type has none (always included)."""
        return None

    def exists(self, session: Session, rid: uuid.UUID) -> bool:
        return session.get(self.model, rid) is not None

    # --- access: override for patient data ---------------------------------------------

    def scope(self, ctx: FhirContext, query: Select[Any], req: SearchRequest) -> Select[Any]:
        """Restrict a search to what the actor may see (deny by default)."""
        raise NotImplementedError

    def check_read(self, ctx: FhirContext, row: Any) -> None:
        raise NotImplementedError

    def audit_search(self, ctx: FhirContext, req: SearchRequest, returned: int) -> None:
        """Searches of patient data are audited; registry searches need not be."""

    # --- shapes -------------------------------------------------------------------------

    def to_fhir(self, ctx: FhirContext, rows: list[Any]) -> list[dict[str, Any]]:
        raise NotImplementedError

    # --- Patient/$everything: the patient compartment, read in one query per type ------

    def compartment_parts(self) -> tuple[Mapper, ...]:
        """The mappers whose rows make up this type in the compartment: a type kept in
        two tables (DiagnosticReport: lab panels and imaging reports) has two."""
        return (self,)

    def compartment_query(
        self,
        ctx: FhirContext,
        person_id: uuid.UUID,
        record_ids: Sequence[uuid.UUID],
        institutions: set[uuid.UUID],
    ) -> Select[Any] | None:
        """The type's rows of this person that these members wrote (None: not in the
        compartment). Plain rows with the model's column names, unless ``fetch`` says."""
        return None

    def fetch(self, ctx: FhirContext, query: Select[Any]) -> list[Any]:
        """The rows (of a Core select: ``compartment_query`` names columns, not
        entities) as named tuples: reading a field of one costs a sixth of a Row's
        attribute lookup, and rendering reads a dozen fields of thousands of rows."""
        result = ctx.session.connection().execute(query)
        shape = row_shape(tuple(result.keys()))
        return list(map(partial(tuple.__new__, shape), result.all()))

    def annotate(self, ctx: FhirContext, rows: Sequence[Any], look: Lookups) -> None:
        """Add what this type's rendering needs beyond the shared lookups."""

    def render(self, rows: Sequence[Any], look: Lookups) -> list[dict[str, Any]]:
        """Rows (ORM objects or Core rows with the same column names) → FHIR JSON."""
        raise NotImplementedError

    def create(self, ctx: FhirContext, resource: BaseModel) -> Written:
        raise FhirError(
            405, f"create is not supported for {self.resource_type}", code="not-supported"
        )

    def update(self, ctx: FhirContext, rid: uuid.UUID, resource: BaseModel) -> Written:
        raise FhirError(
            405, f"update is not supported for {self.resource_type}", code="not-supported"
        )

    # --- the generic part ---------------------------------------------------------------

    def get_row(self, ctx: FhirContext, rid: str) -> Any:
        try:
            as_uuid = uuid.UUID(rid)
        except ValueError:
            as_uuid = None
        row = None if as_uuid is None else ctx.session.get(self.model, as_uuid)
        if row is None:
            raise FhirError(404, f"{self.resource_type}/{rid} is not known", code="not-found")
        return row

    def read(self, ctx: FhirContext, rid: str) -> dict[str, Any]:
        row = self.get_row(ctx, rid)
        self.check_read(ctx, row)
        return self.to_fhir(ctx, [row])[0]

    def query(self, ctx: FhirContext, req: SearchRequest) -> Select[Any]:
        query = self.scope(ctx, select(self.model), req)
        for criterion in req.criteria:
            query = self.params[criterion.name].apply(ctx, query, criterion)
        return query

    def search(
        self, ctx: FhirContext, req: SearchRequest, *, count: bool = True
    ) -> tuple[list[Any], int]:
        query = self.query(ctx, req)
        total = count_of(ctx, query) if count else -1
        if req.summary_count:
            self.audit_search(ctx, req, 0)
            return [], total
        order = [
            self.sorts[name].desc() if desc else self.sorts[name].asc() for name, desc in req.sort
        ]
        order.append(self.sorts["_id"].asc())
        rows = list(ctx.session.scalars(query.order_by(*order).limit(req.count).offset(req.offset)))
        self.audit_search(ctx, req, len(rows))
        return rows, (len(rows) if total < 0 else total)

    def rows_by_ids(self, ctx: FhirContext, ids: list[uuid.UUID]) -> list[Any]:
        """For _include: the rows the actor may see among these ids."""
        if not ids:
            return []
        req = SearchRequest(criteria=[Criterion("_id", None, tuple(str(i) for i in ids))])
        req.count = len(ids)
        rows, _ = self.search(ctx, req)
        return rows


class Registry:
    def __init__(self) -> None:
        self._mappers: dict[str, Mapper] = {}
        self.not_yet_modelled: set[str] = set()

    def register(self, mapper: Mapper) -> None:
        # history is offered exactly where every version is kept
        versioned = {HISTORY, VREAD} & set(mapper.interactions)
        assert versioned == ({HISTORY, VREAD} if mapper.immutable else set()), mapper
        self._mappers[mapper.resource_type] = mapper
        self.not_yet_modelled.discard(mapper.resource_type)

    def __contains__(self, resource_type: object) -> bool:
        return resource_type in self._mappers

    def __getitem__(self, resource_type: str) -> Mapper:
        return self._mappers[resource_type]

    def __iter__(self) -> Iterator[Mapper]:
        return iter(sorted(self._mappers.values(), key=lambda m: m.resource_type))

    def get(self, resource_type: str) -> Mapper:
        mapper = self._mappers.get(resource_type)
        if mapper is None:
            raise FhirError(
                404, f"resource type {resource_type!r} is not supported", code="not-supported"
            )
        return mapper

    def writable(self, resource_type: str) -> bool:
        mapper = self._mappers.get(resource_type)
        return mapper is not None and CREATE in mapper.interactions
