"""Device over monitoring devices (``domains/monitoring``), read and search only: devices
are registered with their gateway through the monitoring API. Access follows
``monitoring.service.list_devices``: registry readers see their own institution's
devices (alliance managers all); ``patient=`` additionally passes the access policy
for that patient and finds the devices currently assigned to them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import Select, false, select

from medalliance.access import policy
from medalliance.access.permissions import Permission
from medalliance.audit import service as audit
from medalliance.domains.monitoring.models import Device, DeviceAssignment
from medalliance.domains.patients import service as patients_service
from medalliance.fhir import systems
from medalliance.fhir.mappers.common import coding, meta, prune
from medalliance.fhir.registry import Include, Mapper
from medalliance.fhir.search import (
    Criterion,
    SearchParam,
    SearchRequest,
    reference_id,
    reference_param,
    token,
    token_param,
)
from medalliance.kernel.errors import PermissionDenied

if TYPE_CHECKING:
    from medalliance.fhir.context import FhirContext


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
        serials = [
            code
            for system, code in (token(v) for v in c.values)
            if system in (None, "", systems.DEVICE_SERIAL)
        ]
        return query.where(Device.serial.in_(serials) if serials else false())

    return SearchParam("token", apply, f"serial number ({systems.DEVICE_SERIAL}|serial)")


class DeviceMapper(Mapper):
    resource_type = "Device"
    model = Device
    includes: ClassVar[dict[str, Include]] = {
        "Device:organization": Include("Organization", "institution_id"),
    }

    def search_params(self) -> dict[str, SearchParam]:
        return {
            "identifier": _identifier_param(),
            "type": token_param(Device.device_type, system=systems.DEVICE_TYPE),
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
        return [
            prune(
                {
                    "resourceType": "Device",
                    "id": str(d.id),
                    "meta": meta(d),
                    "identifier": [{"system": systems.DEVICE_SERIAL, "value": d.serial}],
                    "status": "active" if d.active else "inactive",
                    "serialNumber": d.serial,
                    "modelNumber": d.model,
                    "type": {
                        "coding": [coding(systems.DEVICE_TYPE, str(d.device_type))],
                        "text": str(d.device_type).replace("_", " "),
                    },
                    "owner": {"reference": f"Organization/{d.institution_id}"},
                }
            )
            for d in rows
        ]
