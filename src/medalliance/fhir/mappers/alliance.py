"""The registry: Organization ⇄ member institution, Practitioner, PractitionerRole (one
per practitioner: where they work, their title), Location ⇄ department or bed."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import ValidationError
from sqlalchemy import Select, and_, delete, or_, select

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
from medalliance.fhir.context import by_identifier
from medalliance.fhir.mappers.common import (
    coding,
    domain_validation,
    identifier_pairs,
    identifier_param,
    meta,
    prune,
)
from medalliance.fhir.models import FhirCoding
from medalliance.fhir.outcome import invalid
from medalliance.fhir.registry import CREATE, READ, SEARCH, Include, Mapper, Written
from medalliance.fhir.search import (
    Criterion,
    SearchParam,
    SearchRequest,
    reference_param,
    string_param,
    token,
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
    """The registry keeps one role per practitioner (where they work, their title), so
    the role shares the practitioner's id. Create sets it: the practitioner's member
    (organization; another member moves them, which needs the right to manage both;
    imports keep them at the importing member and report the other one as left out)
    and department (location); the sender's code and specialty codings are kept beside."""

    resource_type = "PractitionerRole"
    model = Practitioner
    interactions = (READ, SEARCH, CREATE)
    includes: ClassVar[dict[str, Include]] = {
        "PractitionerRole:practitioner": Include("Practitioner", "id"),
        "PractitionerRole:organization": Include("Organization", "institution_id"),
        "PractitionerRole:location": Include("Location", "department_id"),
    }
    revincludes = ("PractitionerRole:practitioner", "PractitionerRole:organization")

    def search_params(self) -> dict[str, SearchParam]:
        return {
            "identifier": identifier_param("PractitionerRole"),
            "practitioner": reference_param(Practitioner.id, "Practitioner"),
            "organization": reference_param(Practitioner.institution_id, "Organization"),
            "location": reference_param(Practitioner.department_id, "Location"),
            "active": token_param(Practitioner.active),
        }

    def to_fhir(self, ctx: FhirContext, rows: list[Any]) -> list[dict[str, Any]]:
        ids = [r.id for r in rows]
        side = store.identifiers_of(ctx.session, "PractitionerRole", ids)
        codings = store.codings_of(ctx.session, "PractitionerRole", ids)
        return [
            prune(
                {
                    "resourceType": "PractitionerRole",
                    "id": str(p.id),
                    "meta": meta(p),
                    "identifier": side.get(p.id) or None,
                    "active": p.active,
                    "practitioner": {"reference": f"Practitioner/{p.id}", "display": p.name},
                    "organization": {"reference": f"Organization/{p.institution_id}"},
                    "location": [{"reference": f"Location/{p.department_id}"}]
                    if p.department_id
                    else None,
                    "code": [
                        {"coding": [coding(systems.PRACTITIONER_TITLE, str(p.title))]},
                        *_concepts(codings.get((p.id, "code"))),
                    ],
                    "specialty": [
                        {
                            "coding": [coding(systems.DISCIPLINE, str(p.discipline))],
                            "text": p.specialty,
                        },
                        *_concepts(codings.get((p.id, "specialty"))),
                    ],
                }
            )
            for p in rows
        ]

    def create(self, ctx: FhirContext, resource: Any) -> Written:
        return bulk.one(self.create_many, ctx, resource)

    def create_many(self, ctx: FhirContext, resources: list[Any]) -> list[Written]:
        """The roles in one ``assign_practitioners``; their identifiers and codings in
        one statement each (a role set again replaces its codings)."""
        if not ctx.actor.can(Permission.REGISTRY_MANAGE):
            raise PermissionDenied(f"Role {ctx.actor.role} may not manage the registry.")
        data = bulk.each(resources, lambda r: self._assignment_in(ctx, r))
        with bulk.domain_batch(range(len(resources))):
            made = alliance_service.assign_practitioners(
                session=ctx.session, actor=ctx.actor, data=data
            )
            _keep_identifiers_many(ctx, "PractitionerRole", made, resources, "")
        ids = list({p.id for p in made})
        ctx.session.execute(
            delete(FhirCoding).where(
                FhirCoding.resource_type == "PractitionerRole",
                store.in_ids(ctx.session, FhirCoding.resource_id, ids),
            )
        )
        rows = store.CodingRows("PractitionerRole")
        for p, r in zip(made, resources, strict=True):
            for element, ours, concepts in (
                ("code", systems.PRACTITIONER_TITLE, r.code),
                ("specialty", systems.DISCIPLINE, r.specialty),
            ):
                rows.add(
                    p.id,
                    element,
                    [
                        (c.system, c.code, c.display)
                        for concept in concepts or []
                        for c in concept.coding or []
                        if c.system != ours
                    ],
                )
        rows.write(ctx.session)
        return [Written("PractitionerRole", p.id) for p in made]

    def _assignment_in(
        self, ctx: FhirContext, resource: Any
    ) -> alliance_schemas.PractitionerAssignment:
        _, practitioner_id = ctx.resolve(
            by_identifier(resource.practitioner, "Practitioner"),
            "PractitionerRole.practitioner",
            "Practitioner",
        )
        works_at = alliance_service.practitioner_institution(ctx.session, practitioner_id)
        assert works_at is not None  # resolved above
        institution_id = works_at
        if resource.organization is not None:
            organization = by_identifier(resource.organization, "Organization")
            _, named = ctx.resolve(organization, "PractitionerRole.organization", "Organization")
            if named != works_at and ctx.keep_source_ids:
                # imports: the importing member keeps the practitioners the import
                # registered (its records name them, and a record's practitioner works
                # at its member); another member named here is left out and reported,
                # as Encounter.serviceProvider is
                ctx.left_out.append(str(organization.reference))
            else:
                institution_id = named
        department_id = None
        for i, loc in enumerate(resource.location or []):
            path = f"PractitionerRole.location[{i}]"
            ref = by_identifier(loc, "Location")
            found = ctx.resolve_optional(ref, path, "Location")
            if found is None:
                continue
            if alliance_service.department_institution(ctx.session, found) != institution_id:
                if ctx.keep_source_ids:
                    ctx.left_out.append(str(ref.reference))
                    continue
                raise invalid(path, f"{path}: not a department of PractitionerRole.organization")
            department_id = found
            break
        title = _code_from(resource.code, systems.PRACTITIONER_TITLE)
        discipline = _code_from(resource.specialty, systems.DISCIPLINE)
        text = next((c.text for c in resource.specialty or [] if c.text), None)
        try:
            return alliance_schemas.PractitionerAssignment(
                practitioner_id=practitioner_id,
                institution_id=institution_id,
                department_id=department_id,
                title=None if title is None else PractitionerTitle(title),
                discipline=None if discipline is None else Discipline(discipline),
                specialty=None if text is None else text[:100],
            )
        except (ValidationError, ValueError) as exc:
            if isinstance(exc, ValidationError):
                raise domain_validation("PractitionerRole", exc) from exc
            raise invalid("PractitionerRole.code", str(exc)) from exc


class LocationMapper(RegistryMapper):
    """A department of a member as a Location (physical type 'wa', ward, unless the
    sender gave another). Create makes a department of the managing organization; its
    code is ours (``DEPARTMENT_CODE_PREFIX`` + member code) or derived from the sender's
    id; other identifiers and codings are kept beside."""

    resource_type = "Location"
    model = Department
    interactions = (READ, SEARCH, CREATE)
    includes: ClassVar[dict[str, Include]] = {
        "Location:organization": Include("Organization", "institution_id")
    }

    def search_params(self) -> dict[str, SearchParam]:
        return {
            "organization": reference_param(Department.institution_id, "Organization"),
            "name": string_param(Department.name_zh, Department.name_en),
            "identifier": SearchParam("token", _location_identifier, "identifier (system|value)"),
        }

    def to_fhir(self, ctx: FhirContext, rows: list[Any]) -> list[dict[str, Any]]:
        ids = [d.id for d in rows]
        codes = alliance_service.institution_codes(ctx.session, [d.institution_id for d in rows])
        side = store.identifiers_of(ctx.session, "Location", ids)
        codings = store.codings_of(ctx.session, "Location", ids)
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
                        },
                        *side.get(d.id, []),
                    ],
                    "status": "active" if d.active else "inactive",
                    "name": d.name_zh,
                    "alias": [d.name_en],
                    "mode": "instance",
                    "type": [
                        {"coding": [coding(systems.DISCIPLINE, str(d.discipline))]},
                        *_concepts(codings.get((d.id, "type"))),
                    ],
                    "physicalType": {
                        "coding": codings.get((d.id, "physicalType"))
                        or [coding(systems.LOCATION_PHYSICAL_TYPE, "wa", "Ward")]
                    },
                    "telecom": [{"system": "phone", "value": d.phone}] if d.phone else None,
                    "address": {"text": d.address} if d.address else None,
                    "position": {"longitude": d.longitude, "latitude": d.latitude}
                    if d.latitude is not None and d.longitude is not None
                    else None,
                    "managingOrganization": {"reference": f"Organization/{d.institution_id}"},
                }
            )
            for d in rows
        ]

    def create(self, ctx: FhirContext, resource: Any) -> Written:
        return bulk.one(self.create_many, ctx, resource)

    def create_many(self, ctx: FhirContext, resources: list[Any]) -> list[Written]:
        """New departments in one ``create_departments``; the sender's identifiers and
        codings in one statement each."""
        if not ctx.actor.can(Permission.REGISTRY_MANAGE):
            raise PermissionDenied(f"Role {ctx.actor.role} may not manage the registry.")
        prepared = bulk.each(resources, lambda r: self._department_in(ctx, r))
        data = [d for d, _ in prepared]
        with bulk.domain_batch(range(len(resources))):
            made = alliance_service.create_departments(
                session=ctx.session, actor=ctx.actor, data=data
            )
            store.add_identifiers_many(
                ctx.session,
                "Location",
                [
                    (d.id, [p for p in identifier_pairs(r.identifier) if p[0] != ours])
                    for d, r, (_, ours) in zip(made, resources, prepared, strict=True)
                ],
            )
        rows = store.CodingRows("Location")
        for d, r in zip(made, resources, strict=True):
            rows.add(
                d.id,
                "type",
                [
                    (c.system, c.code, c.display)
                    for concept in r.type or []
                    for c in concept.coding or []
                    if c.system != systems.DISCIPLINE
                ],
            )
            if r.physicalType is not None:
                rows.add(
                    d.id,
                    "physicalType",
                    [(c.system, c.code, c.display) for c in r.physicalType.coding or []],
                )
        rows.write(ctx.session)
        return [Written("Location", d.id) for d in made]

    def _department_in(
        self, ctx: FhirContext, resource: Any
    ) -> tuple[alliance_schemas.DepartmentCreateAt, str]:
        """The department, and the system of our code identifier at its member."""
        if resource.managingOrganization is not None:
            _, institution_id = ctx.resolve(
                by_identifier(resource.managingOrganization, "Organization"),
                "Location.managingOrganization",
                "Organization",
            )
        elif ctx.keep_source_ids and ctx.actor.institution_id is not None:
            # imports: a location of no organization (Synthea's "Patient's Home") is
            # kept at the importing member, as its practitioners are
            institution_id = ctx.actor.institution_id
        else:
            raise invalid(
                "Location.managingOrganization",
                "Location.managingOrganization is required here (the member it belongs to)",
            )
        institution = alliance_service.institution_by_id(ctx.session, institution_id)
        assert institution is not None  # resolved above
        ours = systems.DEPARTMENT_CODE_PREFIX + institution.code
        name = resource.name or resource.description
        if not name:
            raise invalid("Location.name", "Location.name is required here")
        identifiers = identifier_pairs(resource.identifier)
        code = next((v for s, v in identifiers if s == ours), None)
        if code is None:
            seed = resource.id or next((f"{s}|{v}" for s, v in identifiers), None)
            code = (
                "LOC-" + hashlib.sha256(seed.encode()).hexdigest()[:16].upper()
                if seed
                else f"LOC-{new_id().hex[-16:].upper()}"
            )
        discipline = _code_from(resource.type, systems.DISCIPLINE)
        phone = next(
            (t.value for t in resource.telecom or [] if t.system == "phone" and t.value), None
        )
        position = resource.position
        try:
            return alliance_schemas.DepartmentCreateAt(
                institution_id=institution_id,
                code=code,
                name_zh=name[:200],
                name_en=(resource.alias or [name])[0][:200],
                discipline=Discipline(discipline or Discipline.WESTERN),
                active=resource.status in (None, "active"),
                phone=None if phone is None else phone[:50],
                address=_address_text(resource.address),
                latitude=None if position is None else float(position.latitude),
                longitude=None if position is None else float(position.longitude),
            ), ours
        except (ValidationError, ValueError) as exc:
            if isinstance(exc, ValidationError):
                raise domain_validation("Location", exc) from exc
            raise invalid("Location.type", str(exc)) from exc


def _location_identifier(ctx: FhirContext, query: Select[Any], c: Criterion) -> Select[Any]:
    """identifier=[system|]value: our department code (system: the member's), or one the
    sender gave (side table)."""
    prefix = systems.DEPARTMENT_CODE_PREFIX
    conditions: list[Any] = []
    for value in c.values:
        system, code = token(value)
        conditions.append(
            Department.id.in_(store.ids_with_identifier("Location", system or None, code))
        )
        if not system:
            conditions.append(Department.code == code)
        elif system.startswith(prefix):
            conditions.append(
                and_(
                    Department.code == code,
                    Department.institution_id.in_(
                        select(Institution.id).where(Institution.code == system[len(prefix) :])
                    ),
                )
            )
    return query.where(or_(*conditions))


def _address_text(address: Any) -> str | None:
    """An Address as one line (text, else lines, city, state, postal code, country)."""
    if address is None:
        return None
    text = address.text or ", ".join(
        [
            *(address.line or []),
            *(x for x in (address.city, address.state, address.postalCode, address.country) if x),
        ]
    )
    return text[:300] or None


def _concepts(codings: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """The sender's extra codings, as one concept."""
    return [{"coding": codings}] if codings else []


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
