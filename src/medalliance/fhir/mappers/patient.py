"""Patient ⇄ the MPI person (golden record) and its source records at the members.

``Patient.id`` is the person; each member's record shows as an MRN identifier (system
per institution) and as a ``Patient.link`` (type ``seealso``) naming that record.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import ValidationError
from sqlalchemy import Select, or_, select

from medalliance.access import policy
from medalliance.access.permissions import Permission
from medalliance.audit import service as audit
from medalliance.domains.alliance import service as alliance_service
from medalliance.domains.patients import service as patients_service
from medalliance.domains.patients.models import (
    IdentifierSystem,
    PatientIdentifier,
    PatientRecord,
    Person,
)
from medalliance.domains.patients.schemas import PHONE, IdentifierIn, PatientCreate, PatientUpdate
from medalliance.fhir import store, systems
from medalliance.fhir.mappers.common import (
    day,
    domain_validation,
    meta,
    prune,
)
from medalliance.fhir.outcome import invalid
from medalliance.fhir.registry import CREATE, READ, SEARCH, UPDATE, Include, Mapper, Written
from medalliance.fhir.search import (
    Criterion,
    SearchParam,
    SearchRequest,
    date_param,
    string_param,
    token,
    token_param,
)
from medalliance.kernel.errors import PermissionDenied

if TYPE_CHECKING:
    from medalliance.fhir.context import FhirContext

GENDER_TO_SEX = {"male": "male", "female": "female", "unknown": "unknown", "other": "unknown"}
DOMAIN_SYSTEMS = {
    systems.RESIDENT_ID: IdentifierSystem.RESIDENT_ID,
    systems.INSURANCE: IdentifierSystem.INSURANCE,
    systems.PASSPORT: IdentifierSystem.PASSPORT,
}
URI_OF = {v: k for k, v in DOMAIN_SYSTEMS.items()}


class PatientMapper(Mapper):
    resource_type = "Patient"
    model = Person
    interactions = (READ, SEARCH, CREATE, UPDATE)
    patient_param: ClassVar[str | None] = "_id"
    includes: ClassVar[dict[str, Include]] = {}

    def search_params(self) -> dict[str, SearchParam]:
        return {
            "identifier": self._identifier_param(),
            "name": string_param(
                Person.name,
                Person.family_name,
                Person.given_name,
                Person.name_pinyin,
                doc="name, family, given or pinyin (starts with)",
            ),
            "family": string_param(Person.family_name),
            "given": string_param(Person.given_name),
            "birthdate": date_param(Person.birth_date, date_only=True),
            "gender": token_param(Person.sex, doc="male | female | unknown"),
            "active": token_param(Person.active),
        }

    def sort_columns(self) -> dict[str, Any]:
        return {"name": Person.name, "birthdate": Person.birth_date, "family": Person.family_name}

    def _identifier_param(self) -> SearchParam:
        def apply(ctx: FhirContext, query: Select[Any], c: Criterion) -> Select[Any]:
            conditions = []
            for value in c.values:
                system, code = token(value)
                conditions.append(
                    Person.id.in_(store.ids_with_identifier("Patient", system or None, code))
                )
                domain = (
                    select(PatientRecord.person_id)
                    .join(PatientIdentifier, PatientIdentifier.record_id == PatientRecord.id)
                    .where(PatientIdentifier.value == code)
                )
                if system and system.startswith(systems.MRN_PREFIX):
                    domain = domain.where(
                        PatientIdentifier.system == IdentifierSystem.MRN,
                        PatientIdentifier.assigner == system.removeprefix(systems.MRN_PREFIX),
                    )
                elif system in DOMAIN_SYSTEMS:
                    domain = domain.where(PatientIdentifier.system == DOMAIN_SYSTEMS[system])
                elif system:
                    continue  # only the side table knows other systems
                conditions.append(Person.id.in_(domain))
            return query.where(or_(*conditions))

        return SearchParam("token", apply, "identifier: resident ID, MRN per member, others")

    # --- access -------------------------------------------------------------------------

    def scope(self, ctx: FhirContext, query: Select[Any], req: SearchRequest) -> Select[Any]:
        if not ctx.actor.can(Permission.PATIENT_READ):
            raise PermissionDenied(f"Role {ctx.actor.role} may not search patients.")
        local = select(PatientRecord.person_id).where(
            PatientRecord.institution_id == ctx.actor.institution_id
        )
        return query.where(Person.id.in_(local))

    def audit_search(self, ctx: FhirContext, req: SearchRequest, returned: int) -> None:
        audit.record(
            ctx.session,
            ctx.actor,
            action="search",
            resource_type="Patient",
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
            patients_service.facts_or_404(ctx.session, row.id),
            policy.AccessAction.READ,
            resource_type="Patient",
            resource_id=row.id,
        )

    # --- FHIR shape ---------------------------------------------------------------------

    def to_fhir(self, ctx: FhirContext, rows: list[Any]) -> list[dict[str, Any]]:
        ids = [p.id for p in rows]
        records: dict[uuid.UUID, list[PatientRecord]] = {}
        for rec in ctx.session.scalars(
            select(PatientRecord)
            .where(PatientRecord.person_id.in_(ids))
            .order_by(PatientRecord.created_at.desc())
        ):
            records.setdefault(rec.person_id, []).append(rec)
        all_records = [r.id for rs in records.values() for r in rs]
        idents: dict[uuid.UUID, list[PatientIdentifier]] = {}
        if all_records:
            for ident in ctx.session.scalars(
                select(PatientIdentifier).where(PatientIdentifier.record_id.in_(all_records))
            ):
                idents.setdefault(ident.record_id, []).append(ident)
        codes = alliance_service.institution_codes(
            ctx.session, list({r.institution_id for rs in records.values() for r in rs})
        )
        side = store.identifiers_of(ctx.session, "Patient", ids)
        return [
            self._one(p, records.get(p.id, []), idents, codes, side.get(p.id, [])) for p in rows
        ]

    def _one(
        self,
        person: Person,
        records: list[PatientRecord],
        idents: dict[uuid.UUID, list[PatientIdentifier]],
        codes: dict[uuid.UUID, str],
        side: list[dict[str, Any]],
    ) -> dict[str, Any]:
        identifiers: list[dict[str, Any]] = []
        seen: set[tuple[str, str]] = set()

        def add(item: dict[str, Any]) -> None:
            key = (item["system"], item["value"])
            if key not in seen:
                seen.add(key)
                identifiers.append(item)

        if person.id_number:
            add({"use": "official", "system": systems.RESIDENT_ID, "value": person.id_number})
        links: list[dict[str, Any]] = []
        for rec in records:
            code = codes.get(rec.institution_id, "")
            for ident in idents.get(rec.id, []):
                if ident.system is IdentifierSystem.MRN:
                    add(
                        {
                            "use": "usual",
                            "type": {"coding": [{"system": systems.V2_0203, "code": "MR"}]},
                            "system": systems.mrn_system(ident.assigner or code),
                            "value": ident.value,
                            "assigner": {
                                "reference": f"Organization/{rec.institution_id}",
                                "display": code,
                            },
                        }
                    )
                elif ident.system in URI_OF:
                    add({"system": URI_OF[ident.system], "value": ident.value})
            links.append(
                {
                    "other": {
                        "identifier": {"system": systems.mrn_system(code), "value": rec.mrn}
                        if rec.mrn
                        else None,
                        "display": f"source record {rec.id} at {code}",
                    },
                    "type": "seealso",
                }
            )
        for item in side:
            add(item)
        newest = records[0] if records else None
        address = prune(
            {
                "state": person.province,
                "city": person.city,
                "district": person.district,
                "line": [newest.street] if newest and newest.street else None,
                "postalCode": newest.postcode if newest else None,
            }
        )
        resource = {
            "resourceType": "Patient",
            "id": str(person.id),
            "meta": meta(person),
            "identifier": identifiers,
            "active": person.active,
            "name": [
                prune(
                    {
                        "use": "official",
                        "text": person.name,
                        "family": person.family_name,
                        "given": [person.given_name],
                    }
                )
            ],
            "telecom": [{"system": "phone", "value": person.phone}] if person.phone else None,
            "gender": str(person.sex),
            "birthDate": day(person.birth_date),
            "address": [address] if address else None,
            "managingOrganization": {"reference": f"Organization/{records[-1].institution_id}"}
            if records
            else None,
            "link": [{**link, "other": prune(link["other"])} for link in links],
        }
        return prune(resource)

    # --- writes -------------------------------------------------------------------------

    def _create_data(
        self, ctx: FhirContext, res: Any
    ) -> tuple[PatientCreate, list[tuple[str, str]]]:
        name = (res.name or [None])[0]
        if name is None:
            raise invalid("Patient.name", "Patient.name is required here")
        family = name.family or ""
        given = " ".join(name.given or [])
        if not family or not given:
            if name.text and not (family or given):
                family, _, given = name.text.partition(" ")
            if not family or not given:
                raise invalid("Patient.name[0]", "Patient.name needs a family and a given name")
        if res.birthDate is None:
            raise invalid("Patient.birthDate", "Patient.birthDate is required here")
        if res.gender is None:
            raise invalid("Patient.gender", "Patient.gender is required here")
        institution = (
            alliance_service.institution_by_id(ctx.session, ctx.actor.institution_id)
            if ctx.actor.institution_id
            else None
        )
        own_mrn = systems.mrn_system(institution.code) if institution else None
        id_number, mrn = None, None
        domain_idents: list[IdentifierIn] = []
        side: list[tuple[str, str]] = []
        for ident in res.identifier or []:
            if not ident.value or not ident.system:
                continue
            if ident.system == systems.RESIDENT_ID:
                id_number = ident.value
            elif ident.system == own_mrn:
                mrn = ident.value
            elif ident.system in DOMAIN_SYSTEMS and len(ident.value) <= 64:
                domain_idents.append(
                    IdentifierIn(system=DOMAIN_SYSTEMS[ident.system], value=ident.value)
                )
            else:
                side.append((str(ident.system), str(ident.value)[:255]))
        phones = [
            t.value
            for t in res.telecom or []
            if t.system == "phone" and t.value and PHONE.match(t.value)
        ][:5]
        address = (res.address or [None])[0]
        postcode = address.postalCode if address and address.postalCode else None
        try:
            data = PatientCreate(
                family_name=family,
                given_name=given,
                sex=GENDER_TO_SEX.get(str(res.gender), "unknown"),
                birth_date=res.birthDate,
                id_number=id_number,
                mrn=mrn,
                identifiers=domain_idents,
                phones=phones,
                province=(address.state if address else None),
                city=(address.city if address else None),
                district=(address.district if address else None),
                street=", ".join(address.line) if address and address.line else None,
                # GB/T postcodes are six digits; a foreign one stays in the street line
                postcode=postcode
                if postcode and len(postcode) == 6 and postcode.isdigit()
                else None,
            )
        except ValidationError as exc:
            raise domain_validation("Patient", exc) from exc
        if postcode and data.postcode is None and data.street is not None:
            data.street = f"{data.street} {postcode}"[:200]
        return data, side

    def create(self, ctx: FhirContext, resource: Any) -> Written:
        data, side = self._create_data(ctx, resource)
        result = patients_service.register(session=ctx.session, actor=ctx.actor, data=data)
        store.add_identifiers(ctx.session, "Patient", result.patient.id, side)
        return Written("Patient", result.patient.id)

    def update(self, ctx: FhirContext, rid: uuid.UUID, resource: Any) -> Written:
        """Updates the actor's own member's record of this person (the golden record follows)."""
        if ctx.actor.institution_id is None:
            raise PermissionDenied("Only a member's staff may update a patient.")
        record = patients_service.local_record(ctx.session, rid, ctx.actor.institution_id)
        if record is None:
            raise invalid("Patient.id", "the patient has no record at your institution", 409)
        data, side = self._create_data(ctx, resource)
        try:
            changes = PatientUpdate(
                family_name=data.family_name,
                given_name=data.given_name,
                phones=data.phones,
                province=data.province,
                city=data.city,
                district=data.district,
                street=data.street,
                postcode=data.postcode,
            )
        except ValidationError as exc:
            raise domain_validation("Patient", exc) from exc
        patients_service.update_record(
            session=ctx.session, actor=ctx.actor, record_id=record.id, data=changes
        )
        store.add_identifiers(ctx.session, "Patient", rid, side)
        return Written("Patient", rid, created=False)
