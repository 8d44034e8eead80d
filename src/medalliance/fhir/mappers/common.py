"""Helpers every mapper uses: meta, codings, and the access scoping of patient data."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import ValidationError
from sqlalchemy import DateTime, Enum, Select, String, Uuid, cast, false, select, type_coerce

from medalliance.access import policy
from medalliance.access.permissions import Permission
from medalliance.audit import service as audit
from medalliance.db.types import UTCDateTime
from medalliance.domains.patients import service as patients_service
from medalliance.fhir import store
from medalliance.fhir.outcome import FhirError, invalid
from medalliance.fhir.registry import Lookups, Mapper
from medalliance.fhir.search import Criterion, SearchParam, SearchRequest, reference_id
from medalliance.kernel.errors import NotFound, PermissionDenied

if TYPE_CHECKING:
    from medalliance.fhir.context import FhirContext


def meta(row: Any) -> dict[str, Any]:
    updated = getattr(row, "updated_at", None) or getattr(row, "recorded_at", None)
    return {"lastUpdated": instant(updated)} if updated else {}


def instant(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.isoformat()


def day(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


_FALSY_VALUES = frozenset({bool, int, float})  # False and 0 are values, not absences


def prune(obj: dict[str, Any]) -> dict[str, Any]:
    """Drop empty elements: FHIR forbids empty strings, arrays and objects."""
    return {k: v for k, v in obj.items() if v or type(v) in _FALSY_VALUES}


def coding(system: str | None, code: str | None, display: str | None = None) -> dict[str, Any]:
    """``prune({"system": …, "code": …, "display": …})``, without the dict it drops."""
    out: dict[str, Any] = {}
    if system or type(system) in _FALSY_VALUES:
        out["system"] = system
    if code or type(code) in _FALSY_VALUES:
        out["code"] = code
    if display or type(display) in _FALSY_VALUES:
        out["display"] = display
    return out


def text_ids(session: Any) -> bool:
    """Whether rows rendered in bulk carry their uuids as text: on PostgreSQL the server
    writes them (``id::text`` is the canonical form ``str(uuid)`` gives), so no uuid
    object is built, hashed or formatted per row; SQLite keeps uuid objects."""
    return bool(session.get_bind().dialect.name == "postgresql")


def plain_columns(table: Any, as_text: bool = False) -> list[Any]:
    """A table's columns for rendering many rows: stamps and enums read as the driver
    gives them (no per-value conversion; ``Instants`` and ``str()`` finish them), and
    with ``as_text`` the uuids as text (``text_ids``), so a row costs the driver's
    decoding only. Same column names as the model."""
    out: list[Any] = []
    for column in table.c:
        if isinstance(column.type, UTCDateTime):
            out.append(type_coerce(column, DateTime(timezone=True)).label(column.key))
        elif isinstance(column.type, Enum):
            out.append(type_coerce(column, String()).label(column.key))
        elif as_text and isinstance(column.type, Uuid):
            out.append(cast(column, String()).label(column.key))
        else:
            out.append(column)
    return out


def codings_in(concept: Any) -> list[tuple[str | None, str | None, str | None]]:
    if concept is None:
        return []
    return [(c.system, c.code, c.display) for c in (concept.coding or [])]


def concept_text(concept: Any) -> str | None:
    if concept is None:
        return None
    if concept.text:
        return str(concept.text)
    for c in concept.coding or []:
        if c.display:
            return str(c.display)
    for c in concept.coding or []:
        if c.code:
            return str(c.code)
    return None


def aware(value: Any) -> datetime | None:
    """A FHIR dateTime (date, partial or full) as an aware datetime."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    text = str(value)
    if len(text) == 4:
        return datetime(int(text), 1, 1, tzinfo=UTC)
    if len(text) == 7:
        return datetime(int(text[:4]), int(text[5:7]), 1, tzinfo=UTC)
    return aware(datetime.fromisoformat(text.replace("Z", "+00:00")))


def domain_validation(resource_type: str, exc: ValidationError) -> FhirError:
    """A domain schema refused what the mapper built: say which domain field and why."""
    messages = [
        f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in exc.errors()
    ]
    return FhirError(
        422,
        f"{resource_type} cannot be stored: " + "; ".join(messages),
        code="invariant",
        expression=[resource_type],
    )


def identifier_pairs(identifiers: Iterable[Any] | None) -> list[tuple[str, str]]:
    return [(str(i.system), str(i.value)[:255]) for i in identifiers or [] if i.system and i.value]


def keep_identifiers(
    ctx: FhirContext, resource_type: str, rid: uuid.UUID, resource: Any, skip: set[str]
) -> None:
    pairs = [p for p in identifier_pairs(getattr(resource, "identifier", None)) if p[0] not in skip]
    store.add_identifiers(ctx.session, resource_type, rid, pairs)


def identifier_param(resource_type: str, extra: dict[str, Any] | None = None) -> SearchParam:
    """identifier=[system|]value over the side table, plus domain columns by system."""
    from sqlalchemy import or_

    def apply(ctx: FhirContext, query: Select[Any], c: Criterion) -> Select[Any]:
        from medalliance.fhir.search import token

        model = ctx.registry[resource_type].model
        conditions = []
        for value in c.values:
            system, code = token(value)
            conditions.append(
                model.id.in_(store.ids_with_identifier(resource_type, system or None, code))
            )
            for sys_, column in (extra or {}).items():
                if system in (None, "", sys_):
                    conditions.append(column == code)
        return query.where(or_(*conditions))

    return SearchParam("token", apply, "identifier (system|value)")


def persons_of_records(
    ctx: FhirContext, record_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, uuid.UUID]:
    found = patients_service.persons_of_records(ctx.session, list(set(record_ids)))
    return {record_id: person for record_id, (person, _name) in found.items()}


def patient_ref(person_id: uuid.UUID) -> dict[str, str]:
    return {"reference": f"Patient/{person_id}"}


class PatientDataMapper(Mapper):
    """Entries of the longitudinal record: owned by a source record and the institution
    that wrote them; every read and search passes the access policy and is audited."""

    patient_param: ClassVar[str | None] = "patient"
    subject_name: ClassVar[str] = "subject"
    side_tables: ClassVar[bool] = True  # identifiers and codings kept beside the rows

    def to_fhir(self, ctx: FhirContext, rows: list[Any]) -> list[dict[str, Any]]:
        return self.render(rows, self.lookups(ctx, rows))

    def lookups(self, ctx: FhirContext, rows: Sequence[Any]) -> Lookups:
        ids = [r.id for r in rows]
        persons = persons_of_records(ctx, [r.patient_record_id for r in rows])
        if not self.side_tables:
            return Lookups(persons)
        return Lookups(
            persons,
            store.identifiers_of(ctx.session, self.resource_type, ids),
            store.codings_of(ctx.session, self.resource_type, ids),
        )

    def compartment_query(
        self,
        ctx: FhirContext,
        person_id: uuid.UUID,
        record_ids: Sequence[uuid.UUID],
        institutions: set[uuid.UUID],
    ) -> Select[Any] | None:
        table = self.model.__table__
        return select(*plain_columns(table, text_ids(ctx.session))).where(
            store.in_ids(ctx.session, table.c.patient_record_id, record_ids),
            table.c.institution_id.in_(institutions) if institutions else false(),
            *self.compartment_filter(),
        )

    def compartment_filter(self) -> list[Any]:
        return []

    def search_params(self) -> dict[str, SearchParam]:
        def apply(ctx: FhirContext, query: Select[Any], c: Criterion) -> Select[Any]:
            persons = [p for p in (reference_id(v, "Patient") for v in c.values) if p]
            records = [r for p in persons for r in patients_service.record_ids_of(ctx.session, p)]
            return query.where(self.model.patient_record_id.in_(records) if records else false())

        param = SearchParam("reference", apply, "the patient (Patient/<id>)")
        return {"patient": param, self.subject_name: param}

    def _persons(self, req: SearchRequest) -> list[uuid.UUID]:
        values = req.values_of("patient") + req.values_of(self.subject_name)
        return [p for p in (reference_id(v, "Patient") for v in values) if p is not None]

    def scope(self, ctx: FhirContext, query: Select[Any], req: SearchRequest) -> Select[Any]:
        if not ctx.actor.can(Permission.PATIENT_READ):
            raise PermissionDenied(f"Role {ctx.actor.role} may not read patient data.")
        persons = self._persons(req)
        if not persons:
            # Without a patient: what your own institution wrote.
            return query.where(self.model.institution_id == ctx.actor.institution_id)
        allowed: set[uuid.UUID] = set()
        for person_id in set(persons):
            try:
                facts = patients_service.facts_or_404(ctx.session, person_id)
            except NotFound:
                continue
            mine = {
                inst
                for inst in facts.institution_ids
                if policy.decide(
                    ctx.session,
                    ctx.actor,
                    facts,
                    policy.AccessAction.READ,
                    owner_institution_id=inst,
                ).allowed
            }
            if not mine:  # audit the denial and refuse, as the JSON API does
                policy.enforce(
                    ctx.session,
                    ctx.actor,
                    facts,
                    policy.AccessAction.READ,
                    resource_type=self.resource_type,
                )
            allowed |= mine
        return query.where(self.model.institution_id.in_(allowed) if allowed else false())

    def audit_search(self, ctx: FhirContext, req: SearchRequest, returned: int) -> None:
        persons = self._persons(req)
        audit.record(
            ctx.session,
            ctx.actor,
            action="search",
            resource_type=self.resource_type,
            patient_id=persons[0] if len(set(persons)) == 1 else None,
            purpose_of_use=policy.PURPOSE_TREATMENT,
            detail={
                "via": "fhir",
                "returned": returned,
                "criteria": sorted({c.name for c in req.criteria}),
            },
        )

    def check_read(self, ctx: FhirContext, row: Any) -> None:
        policy.enforce(
            ctx.session,
            ctx.actor,
            patients_service.facts_of_record(ctx.session, row.patient_record_id),
            policy.AccessAction.READ,
            resource_type=self.resource_type,
            resource_id=row.id,
            owner_institution_id=row.institution_id,
        )

    def subject_of(self, ctx: FhirContext, resource: Any, path: str) -> uuid.UUID:
        ref = getattr(resource, self.subject_name, None)
        return ctx.resolve(ref, f"{self.resource_type}.{path}", "Patient")[1]


def status_of(mapping: dict[str, Any], value: Any, path: str) -> Any:
    if value is None:
        return None
    try:
        return mapping[str(value)]
    except KeyError:
        allowed = ", ".join(mapping)
        raise invalid(path, f"{path}: {value!r} is not supported here (one of {allowed})") from None
