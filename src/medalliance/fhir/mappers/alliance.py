"""The registry: Organization ⇄ member institution, Practitioner, PractitionerRole (one
per practitioner: where they work, their title), Location ⇄ department or bed."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import ValidationError
from sqlalchemy import Select

from medalliance.access.permissions import Permission
from medalliance.domains.alliance import schemas as alliance_schemas
from medalliance.domains.alliance import service as alliance_service
from medalliance.domains.alliance.models import (
    Department,
    Discipline,
    Institution,
    InstitutionType,
    Practitioner,
    PractitionerTitle,
    Tier,
)
from medalliance.fhir import bulk, store, systems
from medalliance.fhir.mappers.common import (
    coding,
    domain_validation,
    identifier_pairs,
    identifier_param,
    meta,
    prune,
)
from medalliance.fhir.outcome import invalid
from medalliance.fhir.registry import CREATE, READ, SEARCH, Include, Mapper, Written
from medalliance.fhir.search import (
    SearchParam,
    SearchRequest,
    reference_param,
    string_param,
    token_param,
)
from medalliance.kernel.errors import PermissionDenied
from medalliance.kernel.ids import new_id

if TYPE_CHECKING:
    from medalliance.fhir.context import FhirContext


def _require_registry_read(ctx: FhirContext) -> None:
    if not ctx.actor.can(Permission.REGISTRY_READ):
        raise PermissionDenied(f"Role {ctx.actor.role} may not read the registry.")


def _code_from(resource: Any, system: str) -> str | None:
    for concept in resource or []:
        for c in concept.coding or []:
            if c.system == system and c.code:
                return str(c.code)
    return None


class RegistryMapper(Mapper):
    def scope(self, ctx: FhirContext, query: Select[Any], req: SearchRequest) -> Select[Any]:
        _require_registry_read(ctx)
        return query

    def check_read(self, ctx: FhirContext, row: Any) -> None:
        _require_registry_read(ctx)


class OrganizationMapper(RegistryMapper):
    resource_type = "Organization"
    model = Institution
    interactions = (READ, SEARCH, CREATE)
    includes: ClassVar[dict[str, Include]] = {
        "Organization:partof": Include("Organization", "lead_institution_id")
    }
    revincludes = ("Organization:partof",)

    def search_params(self) -> dict[str, SearchParam]:
        return {
            "identifier": identifier_param(
                "Organization", {systems.INSTITUTION_CODE: Institution.code}
            ),
            "name": string_param(Institution.name_zh, Institution.name_en),
            "active": token_param(Institution.active),
            "type": token_param(Institution.type, system=systems.INSTITUTION_TYPE),
            "partof": reference_param(Institution.lead_institution_id, "Organization"),
        }

    def sort_columns(self) -> dict[str, Any]:
        return {"name": Institution.name_en}

    def to_fhir(self, ctx: FhirContext, rows: list[Any]) -> list[dict[str, Any]]:
        side = store.identifiers_of(ctx.session, "Organization", [r.id for r in rows])
        return [
            prune(
                {
                    "resourceType": "Organization",
                    "id": str(i.id),
                    "meta": meta(i),
                    "identifier": [
                        {"system": systems.INSTITUTION_CODE, "value": i.code},
                        *side.get(i.id, []),
                    ],
                    "active": i.active,
                    "type": [
                        {
                            "coding": [
                                coding(systems.ORGANIZATION_TYPE, "prov", "Healthcare Provider")
                            ]
                        },
                        {"coding": [coding(systems.INSTITUTION_TIER, str(i.tier))]},
                        {"coding": [coding(systems.INSTITUTION_TYPE, str(i.type))]},
                    ],
                    "name": i.name_zh,
                    "alias": [i.name_en] if i.name_en and i.name_en != i.name_zh else None,
                    "address": [{"text": i.address, "district": i.district}] if i.address else None,
                    "partOf": {"reference": f"Organization/{i.lead_institution_id}"}
                    if i.lead_institution_id
                    else None,
                }
            )
            for i in rows
        ]

    def create(self, ctx: FhirContext, resource: Any) -> Written:
        return bulk.one(self.create_many, ctx, resource)

    def create_many(self, ctx: FhirContext, resources: list[Any]) -> list[Written]:
        """New members (the hospitals of an import) in one ``create_institutions``."""
        data = bulk.each(resources, lambda r: self._institution_in(ctx, r))
        with bulk.domain_batch(range(len(resources))):
            made = alliance_service.create_institutions(
                session=ctx.session, actor=ctx.actor, data=data
            )
            _keep_identifiers_many(ctx, "Organization", made, resources, systems.INSTITUTION_CODE)
        return [Written("Organization", i.id) for i in made]

    def _institution_in(
        self, ctx: FhirContext, resource: Any
    ) -> alliance_schemas.InstitutionCreate:
        """A new member. Tier and type come from our code systems; an external hospital
        without them joins as a secondary general hospital (documented default)."""
        if not resource.name:
            raise invalid("Organization.name", "Organization.name is required here")
        code = (
            next(
                (
                    i.value
                    for i in resource.identifier or []
                    if i.system == systems.INSTITUTION_CODE
                ),
                None,
            )
            or f"EXT-{new_id().hex[-12:]}"
        )
        lead_id = ctx.resolve_optional(resource.partOf, "Organization.partOf", "Organization")
        lead = None if lead_id is None else alliance_service.institution_by_id(ctx.session, lead_id)
        address = (resource.address or [None])[0]
        address_text = None
        if address is not None:
            address_text = address.text or ", ".join(
                [
                    *(address.line or []),
                    *(x for x in (address.city, address.state, address.postalCode) if x),
                ]
            )
        try:
            return alliance_schemas.InstitutionCreate(
                code=code,
                name_zh=resource.name,
                name_en=(resource.alias or [resource.name])[0],
                tier=Tier(_code_from(resource.type, systems.INSTITUTION_TIER) or Tier.SECONDARY),
                type=InstitutionType(
                    _code_from(resource.type, systems.INSTITUTION_TYPE) or InstitutionType.GENERAL
                ),
                district=address.district if address else None,
                address=(address_text or None) and address_text[:300],
                lead_institution_code=None if lead is None else lead.code,
            )
        except (ValidationError, ValueError) as exc:
            if isinstance(exc, ValidationError):
                raise domain_validation("Organization", exc) from exc
            raise invalid("Organization.type", str(exc)) from exc


class PractitionerMapper(RegistryMapper):
    resource_type = "Practitioner"
    model = Practitioner
    interactions = (READ, SEARCH, CREATE)

    def search_params(self) -> dict[str, SearchParam]:
        return {
            "identifier": identifier_param(
                "Practitioner", {systems.PRACTITIONER_LICENCE: Practitioner.licence_number}
            ),
            "name": string_param(Practitioner.name, Practitioner.name_en),
            "active": token_param(Practitioner.active),
        }

    def sort_columns(self) -> dict[str, Any]:
        return {"name": Practitioner.name}

    def check_read(self, ctx: FhirContext, row: Any) -> None:
        # audited as the JSON API does: the licence number is personal data
        alliance_service.get_practitioner(ctx.session, ctx.actor, row.id)

    def to_fhir(self, ctx: FhirContext, rows: list[Any]) -> list[dict[str, Any]]:
        side = store.identifiers_of(ctx.session, "Practitioner", [r.id for r in rows])
        return [
            prune(
                {
                    "resourceType": "Practitioner",
                    "id": str(p.id),
                    "meta": meta(p),
                    "identifier": [
                        {"system": systems.PRACTITIONER_LICENCE, "value": p.licence_number},
                        *side.get(p.id, []),
                    ],
                    "active": p.active,
                    "name": [{"text": p.name}] + ([{"text": p.name_en}] if p.name_en else []),
                    "qualification": [
                        {"code": {"coding": [coding(systems.PRACTITIONER_TITLE, str(p.title))]}}
                    ],
                }
            )
            for p in rows
        ]

    def create(self, ctx: FhirContext, resource: Any) -> Written:
        return bulk.one(self.create_many, ctx, resource)

    def create_many(self, ctx: FhirContext, resources: list[Any]) -> list[Written]:
        """Practitioners at the actor's institution (the registry keeps one workplace),
        in one ``create_practitioners``."""
        if ctx.actor.institution_id is None:
            raise PermissionDenied("Practitioners are created at your own institution.")
        institution = alliance_service.institution_by_id(ctx.session, ctx.actor.institution_id)
        assert institution is not None
        data = bulk.each(resources, lambda r: self._practitioner_in(institution.code, r))
        with bulk.domain_batch(range(len(resources))):
            made = alliance_service.create_practitioners(
                session=ctx.session, actor=ctx.actor, data=data
            )
            _keep_identifiers_many(
                ctx, "Practitioner", made, resources, systems.PRACTITIONER_LICENCE
            )
        return [Written("Practitioner", p.id) for p in made]

    def _practitioner_in(
        self, institution_code: str, resource: Any
    ) -> alliance_schemas.PractitionerCreate:
        name = (resource.name or [None])[0]
        if name is None:
            raise invalid("Practitioner.name", "Practitioner.name is required here")
        full = name.text or " ".join([*(name.given or []), name.family or ""]).strip()
        if not full:
            raise invalid("Practitioner.name[0]", "Practitioner.name is empty")
        licence = (
            next(
                (
                    i.value
                    for i in resource.identifier or []
                    if i.system == systems.PRACTITIONER_LICENCE
                ),
                None,
            )
            or f"EXT-{new_id().hex[-16:]}"
        )
        title = PractitionerTitle.OTHER
        for q in resource.qualification or []:
            found = _code_from([q.code], systems.PRACTITIONER_TITLE)
            if found:
                title = PractitionerTitle(found)
        try:
            return alliance_schemas.PractitionerCreate(
                institution_code=institution_code,
                name=full[:100],
                name_en=full[:100],
                title=title,
                discipline=Discipline.WESTERN,
                licence_number=licence,
            )
        except ValidationError as exc:
            raise domain_validation("Practitioner", exc) from exc


class PractitionerRoleMapper(RegistryMapper):
    """Read-only: the registry keeps one role per practitioner, so the role shares its id."""

    resource_type = "PractitionerRole"
    model = Practitioner
    includes: ClassVar[dict[str, Include]] = {
        "PractitionerRole:practitioner": Include("Practitioner", "id"),
        "PractitionerRole:organization": Include("Organization", "institution_id"),
    }
    revincludes = ("PractitionerRole:practitioner", "PractitionerRole:organization")

    def search_params(self) -> dict[str, SearchParam]:
        return {
            "practitioner": reference_param(Practitioner.id, "Practitioner"),
            "organization": reference_param(Practitioner.institution_id, "Organization"),
            "active": token_param(Practitioner.active),
        }

    def to_fhir(self, ctx: FhirContext, rows: list[Any]) -> list[dict[str, Any]]:
        return [
            prune(
                {
                    "resourceType": "PractitionerRole",
                    "id": str(p.id),
                    "meta": meta(p),
                    "active": p.active,
                    "practitioner": {"reference": f"Practitioner/{p.id}", "display": p.name},
                    "organization": {"reference": f"Organization/{p.institution_id}"},
                    "location": [{"reference": f"Location/{p.department_id}"}]
                    if p.department_id
                    else None,
                    "code": [{"coding": [coding(systems.PRACTITIONER_TITLE, str(p.title))]}],
                    "specialty": [
                        {
                            "coding": [coding(systems.DISCIPLINE, str(p.discipline))],
                            "text": p.specialty,
                        }
                    ],
                }
            )
            for p in rows
        ]


class LocationMapper(RegistryMapper):
    """Read-only: a department of a member as a Location (physical type 'wa', ward)."""

    resource_type = "Location"
    model = Department
    includes: ClassVar[dict[str, Include]] = {
        "Location:organization": Include("Organization", "institution_id")
    }

    def search_params(self) -> dict[str, SearchParam]:
        return {
            "organization": reference_param(Department.institution_id, "Organization"),
            "name": string_param(Department.name_zh, Department.name_en),
            "identifier": token_param(Department.code),
        }

    def to_fhir(self, ctx: FhirContext, rows: list[Any]) -> list[dict[str, Any]]:
        codes = alliance_service.institution_codes(ctx.session, [d.institution_id for d in rows])
        return [
            prune(
                {
                    "resourceType": "Location",
                    "id": str(d.id),
                    "meta": meta(d),
                    "identifier": [
                        {
                            "system": systems.DEPARTMENT_CODE_PREFIX
                            + codes.get(d.institution_id, ""),
                            "value": d.code,
                        }
                    ],
                    "status": "active" if d.active else "inactive",
                    "name": d.name_zh,
                    "alias": [d.name_en],
                    "mode": "instance",
                    "type": [{"coding": [coding(systems.DISCIPLINE, str(d.discipline))]}],
                    "physicalType": {
                        "coding": [coding(systems.LOCATION_PHYSICAL_TYPE, "wa", "Ward")]
                    },
                    "managingOrganization": {"reference": f"Organization/{d.institution_id}"},
                }
            )
            for d in rows
        ]


def exists_any(session: Any, model: Any, rid: uuid.UUID) -> bool:
    return session.get(model, rid) is not None


def _keep_identifiers_many(
    ctx: FhirContext, rtype: str, rows: Sequence[Any], resources: Sequence[Any], ours: str
) -> None:
    """The sender's identifiers of new rows (ours, kept in a column, left out)."""
    store.add_identifiers_many(
        ctx.session,
        rtype,
        [
            (row.id, [p for p in identifier_pairs(r.identifier) if p[0] != ours])
            for row, r in zip(rows, resources, strict=True)
        ],
    )
