"""Device over monitoring devices (``domains/monitoring``).

Read and search: access follows ``monitoring.service.list_devices``: registry readers
see their own institution's devices (alliance managers all); ``patient=`` additionally
passes the access policy for that patient and finds the devices currently assigned to
them. A device's patient is answered only to whom the policy opens that patient.

Create records a device known from another system (a member's HIS, an import: an
implant, a wheelchair, a home meter): ``monitoring.recorded.record_device`` keeps its
UDI, lot, dates, name and status, and assigns it to its patient through the access
policy (audited). Connected devices (with a gateway, sending readings) are registered
through the monitoring API, not here. The type's codings (SNOMED CT …) are kept beside
the row for ``type`` search; a known SNOMED CT meter maps to its monitoring type.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import ValidationError
from sqlalchemy import Select, false, or_, select

from medalliance.access import policy
from medalliance.access.permissions import Permission
from medalliance.audit import service as audit
from medalliance.domains.monitoring import recorded as monitoring_recorded
from medalliance.domains.monitoring import schemas as monitoring_schemas
from medalliance.domains.monitoring.catalogue import DeviceType
from medalliance.domains.monitoring.models import Device, DeviceAssignment
from medalliance.domains.patients import service as patients_service
from medalliance.fhir import store, systems
from medalliance.fhir.mappers.common import (
    aware,
    codings_in,
    concept_text,
    day,
    domain_validation,
    identifier_pairs,
    meta,
    persons_of_records,
    prune,
)
from medalliance.fhir.outcome import invalid
from medalliance.fhir.registry import CREATE, READ, SEARCH, Include, Mapper, Written
from medalliance.fhir.search import (
    Criterion,
    SearchParam,
    SearchRequest,
    reference_id,
    reference_param,
    token,
)
from medalliance.kernel.errors import NotFound, PermissionDenied

if TYPE_CHECKING:
    from medalliance.fhir.context import FhirContext

SNOMED = "http://snomed.info/sct"
# SNOMED CT device concepts that are a monitoring type (the rest are "other"). Only
# concepts seen in the test data with their display are listed; others can be added here.
SNOMED_TYPES = {
    "337414009": DeviceType.GLUCOMETER,  # Blood glucose meter (physical object), Synthea
}
STATUSES = ("active", "inactive", "entered-in-error", "unknown")
TYPE_CODES = frozenset(t.value for t in DeviceType)


def _require(ctx: FhirContext) -> None:
    if not ctx.actor.can(Permission.REGISTRY_READ):
        raise PermissionDenied(
            f"Role {ctx.actor.role} lacks permission {Permission.REGISTRY_READ}."
        )


def _patient_param() -> SearchParam:
    def apply(ctx: FhirContext, query: Select[Any], c: Criterion) -> Select[Any]:
        records = []
        for value in c.values:
            person = reference_id(value, "Patient")
            if person is None:
                continue
            policy.enforce(  # raises (and audits) a denial, as the JSON API does
                ctx.session,
                ctx.actor,
                patients_service.facts_or_404(ctx.session, person),
                policy.AccessAction.READ,
                resource_type="Device",
            )
            records += patients_service.record_ids_of(ctx.session, person)
        if not records:
            return query.where(false())
        assigned = select(DeviceAssignment.device_id).where(
            DeviceAssignment.patient_record_id.in_(records), DeviceAssignment.end.is_(None)
        )
        return query.where(Device.id.in_(assigned))

    return SearchParam("reference", apply, "devices currently assigned to the patient")


def _identifier_param() -> SearchParam:
    def apply(ctx: FhirContext, query: Select[Any], c: Criterion) -> Select[Any]:
        conditions: list[Any] = []
        for system, code in (token(v) for v in c.values):
            if system in (None, "", systems.DEVICE_SERIAL):
                conditions.append(Device.serial == code)
            if system in (None, ""):
                conditions.append(Device.udi_di == code)
            conditions.append(
                Device.id.in_(store.ids_with_identifier("Device", system or None, code))
            )
        return query.where(or_(*conditions) if conditions else false())

    return SearchParam(
        "token",
        apply,
        f"serial number ({systems.DEVICE_SERIAL}|serial), UDI device identifier, "
        "or a sender's identifier",
    )


def _type_param() -> SearchParam:
    def apply(ctx: FhirContext, query: Select[Any], c: Criterion) -> Select[Any]:
        conditions: list[Any] = []
        for system, code in (token(v) for v in c.values):
            if (
                system in (None, "", systems.DEVICE_TYPE)
                and code in DeviceType.__members__.values()
            ):
                conditions.append(Device.device_type == code)
            conditions.append(
                Device.id.in_(store.ids_with_coding("Device", "type", system or None, code))
            )
        return query.where(or_(*conditions) if conditions else false())

    return SearchParam(
        "token", apply, f"the monitoring type ({systems.DEVICE_TYPE}) or a kept coding (SNOMED CT)"
    )


class DeviceMapper(Mapper):
    resource_type = "Device"
    model = Device
    interactions = (READ, SEARCH, CREATE)
    includes: ClassVar[dict[str, Include]] = {
        "Device:organization": Include("Organization", "institution_id"),
    }

    def search_params(self) -> dict[str, SearchParam]:
        return {
            "identifier": _identifier_param(),
            "type": _type_param(),
            "patient": _patient_param(),
            "organization": reference_param(Device.institution_id, "Organization"),
        }

    def sort_columns(self) -> dict[str, Any]:
        return {"type": Device.device_type}

    def scope(self, ctx: FhirContext, query: Select[Any], req: SearchRequest) -> Select[Any]:
        _require(ctx)
        if ctx.actor.can(Permission.ALLIANCE_MANAGE):
            return query
        return query.where(Device.institution_id == ctx.actor.institution_id)

    def check_read(self, ctx: FhirContext, row: Any) -> None:
        _require(ctx)
        if not ctx.actor.can(Permission.ALLIANCE_MANAGE) and (
            row.institution_id != ctx.actor.institution_id
        ):
            raise PermissionDenied("You can only read your own institution's devices.")

    def audit_search(self, ctx: FhirContext, req: SearchRequest, returned: int) -> None:
        persons = [reference_id(v, "Patient") for v in req.values_of("patient")]
        if persons:  # who has which device is patient data
            audit.record(
                ctx.session,
                ctx.actor,
                action="search",
                resource_type="Device",
                patient_id=persons[0] if len(set(persons)) == 1 else None,
                purpose_of_use=policy.PURPOSE_TREATMENT,
                detail={"via": "fhir", "returned": returned},
            )

    def to_fhir(self, ctx: FhirContext, rows: list[Any]) -> list[dict[str, Any]]:
        ids = [d.id for d in rows]
        side = store.identifiers_of(ctx.session, "Device", ids)
        kept = store.codings_of(ctx.session, "Device", ids)
        patients = self._patients(ctx, ids)
        out = []
        for d in rows:
            types = kept.get((d.id, "type"))
            shown = next((c["display"] for c in types or [] if c.get("display")), None)
            recorded = d.gateway_id is None
            status = d.status if recorded else ("active" if d.active else "inactive")
            out.append(
                prune(
                    {
                        "resourceType": "Device",
                        "id": str(d.id),
                        "meta": meta(d),
                        "identifier": [
                            *side.get(d.id, []),
                            *(
                                [{"system": systems.DEVICE_SERIAL, "value": d.serial}]
                                if d.serial
                                else []
                            ),
                        ],
                        "udiCarrier": [
                            prune({"deviceIdentifier": d.udi_di, "carrierHRF": d.udi_carrier})
                        ]
                        if d.udi_di or d.udi_carrier
                        else None,
                        "status": status,
                        "distinctIdentifier": d.udi_di,
                        "manufactureDate": _instant_or_day(d.manufactured_at),
                        "expirationDate": _instant_or_day(d.expires_at),
                        "lotNumber": d.lot_number,
                        "serialNumber": d.serial,
                        "deviceName": [{"name": d.name, "type": "user-friendly-name"}]
                        if d.name
                        else None,
                        "modelNumber": d.model,
                        "type": {
                            "coding": types
                            or [{"system": systems.DEVICE_TYPE, "code": str(d.device_type)}],
                            "text": shown or str(d.device_type).replace("_", " "),
                        },
                        "patient": {"reference": f"Patient/{patients[d.id]}"}
                        if d.id in patients
                        else None,
                        "owner": {"reference": f"Organization/{d.institution_id}"},
                    }
                )
            )
        return out

    def _patients(self, ctx: FhirContext, ids: list[uuid.UUID]) -> dict[uuid.UUID, uuid.UUID]:
        """device → the person it is assigned to now, where the policy opens that person
        to the actor (a read of patient data: audited)."""
        if not ids or not ctx.actor.can(Permission.PATIENT_READ):
            return {}
        rows = ctx.session.execute(
            select(DeviceAssignment.device_id, DeviceAssignment.patient_record_id).where(
                store.in_ids(ctx.session, DeviceAssignment.device_id, ids),
                DeviceAssignment.end.is_(None),
            )
        ).all()
        persons = persons_of_records(ctx, [r[1] for r in rows])
        allowed: dict[uuid.UUID, bool] = {}
        out: dict[uuid.UUID, uuid.UUID] = {}
        for device_id, record_id in rows:
            person = persons.get(record_id)
            if person is None:
                continue
            if person not in allowed:
                try:
                    facts = patients_service.facts_or_404(ctx.session, person)
                except NotFound:
                    allowed[person] = False
                    continue
                allowed[person] = policy.decide(
                    ctx.session, ctx.actor, facts, policy.AccessAction.READ
                ).allowed
                if allowed[person]:
                    audit.record(
                        ctx.session,
                        ctx.actor,
                        action="read",
                        resource_type="Device",
                        patient_id=person,
                        purpose_of_use=policy.PURPOSE_TREATMENT,
                        detail={"via": "fhir", "devices": len(ids)},
                    )
            if allowed[person]:
                out[device_id] = person
        return out

    # --- create: a device recorded from another system ----------------------------------

    def create(self, ctx: FhirContext, resource: Any) -> Written:
        rtype = "Device"
        person = None
        if resource.patient is not None:
            person = ctx.resolve(resource.patient, f"{rtype}.patient", "Patient")[1]
        status = None if resource.status is None else str(resource.status)
        if status is not None and status not in STATUSES:
            raise invalid(f"{rtype}.status", f"{rtype}.status {status!r} is not known")
        codes = codings_in(resource.type)
        device_type = next(
            (SNOMED_TYPES[c[1]] for c in codes if c[0] == SNOMED and c[1] in SNOMED_TYPES),
            next(
                (
                    DeviceType(c[1])
                    for c in codes
                    if c[0] == systems.DEVICE_TYPE and c[1] in TYPE_CODES
                ),
                DeviceType.OTHER,
            ),
        )
        udi = (resource.udiCarrier or [None])[0]
        names = [n.name for n in resource.deviceName or [] if n.name]
        name = names[0] if names else concept_text(resource.type)
        try:
            data = monitoring_schemas.DeviceRecord(
                device_type=device_type,
                status=status,
                name=name[:200] if name else None,
                model=resource.modelNumber,
                serial=resource.serialNumber,
                udi_di=(udi.deviceIdentifier if udi else None) or resource.distinctIdentifier,
                udi_carrier=udi.carrierHRF if udi else None,
                lot_number=resource.lotNumber,
                manufactured_at=aware(resource.manufactureDate),
                expires_at=aware(resource.expirationDate),
                patient_id=person,
            )
        except ValidationError as exc:
            raise domain_validation(rtype, exc) from exc
        device = monitoring_recorded.record_device(session=ctx.session, actor=ctx.actor, data=data)
        pairs = [p for p in identifier_pairs(resource.identifier) if p[0] != systems.DEVICE_SERIAL]
        store.add_identifiers(ctx.session, rtype, device.id, pairs)
        store.add_codings(ctx.session, rtype, device.id, "type", codes)
        return Written(rtype, device.id)


def _instant_or_day(value: Any) -> str | None:
    """A stored dateTime; midnight UTC was (most likely) a date."""
    if value is None:
        return None
    if (value.hour, value.minute, value.second, value.microsecond) == (0, 0, 0, 0):
        return day(value.date())
    return str(value.isoformat())
