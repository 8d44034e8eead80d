"""Read-only: Consent ⇄ consent to alliance-wide sharing; AuditEvent ⇄ the audit trail."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import Select, false, select

from medalliance.access import policy
from medalliance.access.permissions import Permission
from medalliance.audit import service as audit
from medalliance.audit.models import AuditEvent
from medalliance.domains.patients import service as patients_service
from medalliance.domains.patients.models import Consent
from medalliance.fhir import systems
from medalliance.fhir.mappers.common import coding, instant, patient_ref, prune
from medalliance.fhir.outcome import FhirError
from medalliance.fhir.registry import (
    FIRST_VERSION,
    HISTORY,
    READ,
    SEARCH,
    VREAD,
    Include,
    Lookups,
    Mapper,
)
from medalliance.fhir.search import (
    SearchParam,
    SearchRequest,
    date_param,
    reference_id,
    reference_param,
    token_param,
)
from medalliance.kernel.errors import PermissionDenied

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from medalliance.fhir.context import FhirContext


class ConsentMapper(Mapper):
    """Each recorded decision is one Consent; the newest per patient is in force."""

    resource_type = "Consent"
    model = Consent
    # a decision is never changed: a new decision is a new row (the newest is in force)
    immutable = True
    interactions: ClassVar[tuple[str, ...]] = (READ, VREAD, SEARCH, HISTORY)
    patient_param: ClassVar[str | None] = "patient"
    includes: ClassVar[dict[str, Include]] = {"Consent:patient": Include("Patient", "person_id")}
    revincludes = ("Consent:patient",)

    def last_updated_column(self) -> Any:
        return Consent.recorded_at

    def search_params(self) -> dict[str, SearchParam]:
        return {
            "patient": reference_param(Consent.person_id, "Patient"),
            "status": token_param(Consent.status),
            "date": date_param(Consent.recorded_at),
        }

    def sort_columns(self) -> dict[str, Any]:
        return {"date": Consent.recorded_at}

    def scope(self, ctx: FhirContext, query: Select[Any], req: SearchRequest) -> Select[Any]:
        persons = [p for p in (reference_id(v, "Patient") for v in req.values_of("patient")) if p]
        if not persons:
            raise FhirError(
                400,
                "Consent searches name the patient (patient=Patient/<id>)",
                code="required",
                expression=["patient"],
            )
        for person in set(persons):
            policy.enforce(
                ctx.session,
                ctx.actor,
                patients_service.facts_or_404(ctx.session, person),
                policy.AccessAction.READ,
                resource_type="Consent",
                resource_id=person,
            )
        return query.where(Consent.person_id.in_(persons) if persons else false())

    def check_read(self, ctx: FhirContext, row: Any) -> None:
        policy.enforce(
            ctx.session,
            ctx.actor,
            patients_service.facts_or_404(ctx.session, row.person_id),
            policy.AccessAction.READ,
            resource_type="Consent",
            resource_id=row.id,
        )

    def compartment_query(
        self,
        ctx: FhirContext,
        person_id: uuid.UUID,
        record_ids: Sequence[uuid.UUID],
        institutions: set[uuid.UUID],
    ) -> Select[Any] | None:
        # consent is the person's own decision, not a member's entry
        return select(Consent.__table__).where(Consent.person_id == person_id)

    def to_fhir(self, ctx: FhirContext, rows: list[Any]) -> list[dict[str, Any]]:
        return self.render(rows, Lookups({}))

    def render(self, rows: Sequence[Any], look: Lookups) -> list[dict[str, Any]]:
        return [
            prune(
                {
                    "resourceType": "Consent",
                    "id": str(c.id),
                    "meta": {"versionId": FIRST_VERSION, "lastUpdated": instant(c.recorded_at)},
                    "status": "active" if str(c.status) == "granted" else "inactive",
                    "scope": {"coding": [coding(systems.CONSENT_SCOPE, "patient-privacy")]},
                    "category": [
                        {"coding": [coding("http://loinc.org", "59284-0", "Patient Consent")]}
                    ],
                    "patient": patient_ref(c.person_id),
                    "dateTime": instant(c.recorded_at),
                    "organization": [{"reference": f"Organization/{c.recorded_at_institution_id}"}]
                    if c.recorded_at_institution_id
                    else None,
                    "policyRule": {"text": "alliance-wide sharing of the longitudinal record"},
                    "provision": prune(
                        {
                            "type": "permit" if str(c.status) == "granted" else "deny",
                            "provision": [
                                {
                                    "type": "deny",
                                    "actor": [
                                        {
                                            "role": {
                                                "coding": [
                                                    coding(
                                                        "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                                        "CST",
                                                    )
                                                ]
                                            },
                                            "reference": {"reference": f"Organization/{inst}"},
                                        }
                                    ],
                                }
                                for inst in c.excluded_institution_ids
                            ]
                            or None,
                        }
                    ),
                }
            )
            for c in rows
        ]


ACTION = {"create": "C", "read": "R", "search": "E", "update": "U", "everything": "R"}
OUTCOME = {"success": "0", "denied": "4", "failure": "8"}


class AuditEventMapper(Mapper):
    """The hash-chained audit trail, for auditors (permission audit:read)."""

    resource_type = "AuditEvent"
    model = AuditEvent
    immutable = True  # the trail is append-only and hash-chained
    interactions: ClassVar[tuple[str, ...]] = (READ, VREAD, SEARCH, HISTORY)

    def __init__(self) -> None:
        self.params = {
            "_id": SearchParam("token", _event_ids, "event id"),
            "date": date_param(AuditEvent.recorded_at),
            "patient": reference_param(AuditEvent.patient_id, "Patient"),
            "outcome": token_param(AuditEvent.outcome, doc="success | denied | failure"),
            "action": token_param(AuditEvent.action, doc="the platform's action name"),
            "entity-type": token_param(AuditEvent.resource_type),
        }
        self.sorts = {"date": AuditEvent.recorded_at, "_id": AuditEvent.seq}

    def exists(self, session: Session, rid: uuid.UUID) -> bool:
        return session.query(AuditEvent.seq).filter(AuditEvent.event_id == rid).first() is not None

    def get_row(self, ctx: FhirContext, rid: str) -> Any:
        try:
            as_uuid = uuid.UUID(rid)
        except ValueError:
            as_uuid = None
        row = (
            None
            if as_uuid is None
            else ctx.session.query(AuditEvent).filter(AuditEvent.event_id == as_uuid).first()
        )
        if row is None:
            raise FhirError(404, f"AuditEvent/{rid} is not known", code="not-found")
        return row

    def scope(self, ctx: FhirContext, query: Select[Any], req: SearchRequest) -> Select[Any]:
        if not ctx.actor.can(Permission.AUDIT_READ):
            raise PermissionDenied(f"Role {ctx.actor.role} may not read the audit trail.")
        return query

    def check_read(self, ctx: FhirContext, row: Any) -> None:
        self.scope(ctx, None, SearchRequest())  # type: ignore[arg-type]

    def search(
        self, ctx: FhirContext, req: SearchRequest, *, count: bool = True
    ) -> tuple[list[Any], int]:
        # the trail's order is its sequence; ids are event ids
        if not req.sort:
            req.sort = [("_id", False)]
        rows, total = super().search(ctx, req, count=count)
        audit.record(
            ctx.session,
            ctx.actor,
            action="search",
            resource_type="AuditEvent",
            detail={"via": "fhir", "returned": len(rows)},
        )
        return rows, total

    def to_fhir(self, ctx: FhirContext, rows: list[Any]) -> list[dict[str, Any]]:
        out = []
        for e in rows:
            entity = [
                {
                    "what": prune(
                        {
                            "reference": f"{e.resource_type}/{e.resource_id}"
                            if e.resource_id
                            and "/" not in e.resource_id
                            and " " not in e.resource_id
                            else None,
                            "display": f"{e.resource_type} {e.resource_id or ''}".strip(),
                        }
                    )
                }
            ]
            if e.patient_id:
                entity.append({"what": patient_ref(e.patient_id)})
            detail = json.loads(e.detail or "{}")
            out.append(
                prune(
                    {
                        "resourceType": "AuditEvent",
                        "id": str(e.event_id),
                        "meta": {
                            "versionId": FIRST_VERSION,
                            "lastUpdated": instant(e.recorded_at),
                        },
                        "type": coding(
                            "http://dicom.nema.org/resources/ontology/DCM",
                            "110110",
                            "Patient Record",
                        )
                        if e.patient_id
                        else coding(systems.AUDIT_EVENT_TYPE, "rest", "RESTful Operation"),
                        "subtype": [coding(None, e.action)] if e.action else None,
                        "action": ACTION.get(e.action, "E"),
                        "recorded": instant(e.recorded_at),
                        "outcome": OUTCOME.get(e.outcome, "8"),
                        "outcomeDesc": e.reason,
                        "purposeOfEvent": [
                            {"coding": [coding(systems.PURPOSE_OF_USE, e.purpose_of_use)]}
                        ]
                        if e.purpose_of_use
                        else None,
                        "agent": [
                            prune(
                                {
                                    "who": prune(
                                        {
                                            "display": e.actor_username,
                                            "identifier": {"value": str(e.actor_user_id)}
                                            if e.actor_user_id
                                            else None,
                                        }
                                    ),
                                    "requestor": True,
                                    "role": [{"text": e.actor_role}] if e.actor_role else None,
                                    "network": {"address": e.client_address, "type": "2"}
                                    if e.client_address
                                    else None,
                                }
                            )
                        ],
                        "source": {"site": "MedAlliance", "observer": {"display": "MedAlliance"}},
                        "entity": entity
                        + (
                            [
                                {
                                    "detail": [
                                        {
                                            "type": "detail",
                                            "valueString": json.dumps(detail, ensure_ascii=False),
                                        }
                                    ]
                                }
                            ]
                            if detail
                            else []
                        ),
                    }
                )
            )
        return out


def _event_ids(ctx: FhirContext, query: Select[Any], c: Any) -> Select[Any]:
    ids = []
    for value in c.values:
        try:
            ids.append(uuid.UUID(value))
        except ValueError:
            continue
    return query.where(AuditEvent.event_id.in_(ids) if ids else false())
