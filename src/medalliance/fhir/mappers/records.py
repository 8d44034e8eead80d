"""The longitudinal record: Encounter, Condition (integrated Western + TCM diagnosis),
AllergyIntolerance, MedicationStatement, Procedure. Writes go through records.service."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import ValidationError

from medalliance.domains.alliance import service as alliance_service
from medalliance.domains.records import schemas as record_schemas
from medalliance.domains.records import service as records_service
from medalliance.domains.records.models import (
    Allergy,
    Diagnosis,
    Encounter,
    MedicationStatement,
    Procedure,
)
from medalliance.domains.records.schemas import GBT15657, ICD10, ICD11_TM1
from medalliance.fhir import bulk, store, systems
from medalliance.fhir.mappers.common import (
    PatientDataMapper,
    aware,
    coding,
    codings_in,
    concept_text,
    day,
    domain_validation,
    identifier_pairs,
    identifier_param,
    keep_identifiers,
    persons_of_records,
    prune,
    status_of,
)
from medalliance.fhir.outcome import invalid
from medalliance.fhir.registry import CREATE, READ, SEARCH, UPDATE, Include, Lookups, Written
from medalliance.fhir.search import (
    Criterion,
    SearchParam,
    date_param,
    reference_param,
    token,
    token_param,
)

if TYPE_CHECKING:
    from sqlalchemy import Select

    from medalliance.fhir.context import FhirContext

CLASS_TO_FHIR = {
    "outpatient": ("AMB", "ambulatory"),
    "inpatient": ("IMP", "inpatient encounter"),
    "emergency": ("EMER", "emergency"),
    "telemedicine": ("VR", "virtual"),
}
FHIR_TO_CLASS = {v[0]: k for k, v in CLASS_TO_FHIR.items()}
_CLASS = {
    k: coding(systems.ACT_CODE, code, display) for k, (code, display) in CLASS_TO_FHIR.items()
}
# Other v3 ActCode classes, stored as the nearest domain class; the original coding is
# kept and answered back, so nothing is lost on the FHIR side.
FHIR_TO_CLASS_NEAREST = {
    **FHIR_TO_CLASS,
    "HH": "outpatient",  # home health
    "OBSENC": "outpatient",
    "PRENC": "outpatient",
    "FLD": "outpatient",
    "ACUTE": "inpatient",
    "NONAC": "inpatient",
    "SS": "inpatient",
}
ENCOUNTER_STATUS = {
    s: s for s in ("planned", "in-progress", "finished", "cancelled", "entered-in-error")
}
CLINICAL = {
    "active": "active",
    "recurrence": "active",
    "relapse": "active",
    "inactive": "inactive",
    "remission": "inactive",
    "resolved": "resolved",
}


def _keep_codings(
    rows: store.CodingRows,
    rid: uuid.UUID,
    element: str,
    concepts: Any,
    skip: set[str] | None = None,
) -> None:
    items = [c for concept in (concepts or []) for c in codings_in(concept)]
    rows.add(rid, element, [c for c in items if c[0] not in (skip or set())])


def _code_search(rtype: str, element: str, domain: dict[str | None, Any]) -> SearchParam:
    """code=[system|]code over the domain columns (by system) and the kept codings."""
    from sqlalchemy import or_

    def apply(ctx: FhirContext, query: Select[Any], c: Criterion) -> Select[Any]:
        model = ctx.registry[rtype].model
        conditions = []
        for value in c.values:
            system, code = token(value)
            conditions.append(
                model.id.in_(store.ids_with_coding(rtype, element, system or None, code))
            )
            for sys_, columns in domain.items():
                if system in (None, "") or system == sys_:
                    conditions.extend(col == code for col in columns)
        return query.where(or_(*conditions))

    return SearchParam("token", apply, f"{element} ([system|]code)")


class EncounterMapper(PatientDataMapper):
    resource_type = "Encounter"
    model = Encounter
    interactions = (READ, SEARCH, CREATE, UPDATE)
    includes: ClassVar[dict[str, Include]] = {
        "Encounter:patient": Include("Patient", "person_id"),
        "Encounter:subject": Include("Patient", "person_id"),
        "Encounter:service-provider": Include("Organization", "institution_id"),
        "Encounter:participant": Include("Practitioner", "practitioner_id"),
        "Encounter:location": Include("Location", "department_id"),
    }
    revincludes = (
        "Encounter:patient",
        "Encounter:subject",
        "Encounter:service-provider",
        "Encounter:participant",
    )

    def search_params(self) -> dict[str, SearchParam]:
        return {
            **super().search_params(),
            "identifier": identifier_param("Encounter"),
            "date": date_param(Encounter.start, doc="period start"),
            "status": token_param(Encounter.status),
            "class": _class_param(),
            "service-provider": reference_param(Encounter.institution_id, "Organization"),
            "participant": reference_param(Encounter.practitioner_id, "Practitioner"),
            "location": reference_param(Encounter.department_id, "Location"),
            "type": _code_search("Encounter", "type", {}),
        }

    def sort_columns(self) -> dict[str, Any]:
        return {"date": Encounter.start, "status": Encounter.status}

    def clinical_date_column(self) -> Any:
        return Encounter.start

    def render(self, rows: Sequence[Any], look: Lookups) -> list[dict[str, Any]]:
        # Built element by element in the answer's order (no prune() of a full dict):
        # $everything renders thousands of these.
        side, codings, at = look.identifiers, look.codings, look.instants
        subject = look.subject
        organization = look.references("Organization")
        out = []
        for e in rows:
            rid = e.id
            res: dict[str, Any] = {"resourceType": "Encounter", "id": str(rid)}
            if e.updated_at:  # every row has one (TimestampMixin)
                res["meta"] = {"lastUpdated": at[e.updated_at]}
            identifiers = side.get(rid)
            if identifiers:
                res["identifier"] = identifiers
            res["status"] = str(e.status)
            kept_class = codings.get((rid, "class"))
            res["class"] = kept_class[0] if kept_class else _CLASS[str(e.encounter_class)]
            types = codings.get((rid, "type"))
            if types:
                res["type"] = [{"coding": types}]
            res["subject"] = subject(e.patient_record_id)
            if e.practitioner_id:
                res["participant"] = [
                    {"individual": {"reference": f"Practitioner/{e.practitioner_id}"}}
                ]
            period = {}
            if e.start:
                period["start"] = at[e.start]
            if e.end:
                period["end"] = at[e.end]
            if period:
                res["period"] = period
            if e.reason:
                res["reasonCode"] = [{"text": e.reason}]
            if e.department_id:
                res["location"] = [{"location": {"reference": f"Location/{e.department_id}"}}]
            res["serviceProvider"] = organization[e.institution_id]
            out.append(res)
        return out

    def create(self, ctx: FhirContext, resource: Any) -> Written:
        return bulk.one(self.create_many, ctx, resource)

    def create_many(self, ctx: FhirContext, resources: list[Any]) -> list[Written]:
        """Encounters grouped by patient: one ``create_encounters`` per patient."""
        prepared = bulk.each(resources, lambda r: self._encounter_in(ctx, r))
        made: list[Any] = [None] * len(resources)
        for person, positions in bulk.by_key([p for p, _ in prepared]).items():
            with bulk.domain_batch(positions):
                rows = records_service.create_encounters(
                    session=ctx.session,
                    actor=ctx.actor,
                    person_id=person,
                    data=[prepared[i][1] for i in positions],
                )
            for i, row in zip(positions, rows, strict=True):
                made[i] = row
        ctx.hold.extend(made)  # their diagnoses and procedures read them next
        pairs = [identifier_pairs(r.identifier) for r in resources]
        with bulk.domain_batch(range(len(resources))):
            store.add_identifiers_many(
                ctx.session, "Encounter", [(e.id, p) for e, p in zip(made, pairs, strict=True)]
            )
        codings = store.CodingRows("Encounter")
        for encounter, resource in zip(made, resources, strict=True):
            _keep_codings(codings, encounter.id, "type", resource.type)
            klass = resource.class_fhir
            if klass.code not in FHIR_TO_CLASS:
                codings.add(encounter.id, "class", [(klass.system, klass.code, klass.display)])
        codings.write(ctx.session)
        return [Written("Encounter", e.id) for e in made]

    def _encounter_in(
        self, ctx: FhirContext, resource: Any
    ) -> tuple[uuid.UUID, record_schemas.EncounterCreate]:
        klass = resource.class_fhir
        encounter_class = FHIR_TO_CLASS_NEAREST.get(str(klass.code)) if klass is not None else None
        if encounter_class is None:
            raise invalid(
                "Encounter.class",
                f"Encounter.class must be one of "
                f"{', '.join(FHIR_TO_CLASS_NEAREST)} ({systems.ACT_CODE})",
            )
        start = aware(resource.period.start) if resource.period else None
        if start is None:
            raise invalid("Encounter.period.start", "Encounter.period.start is required here")
        person = self.subject_of(ctx, resource, "subject")
        practitioner = None
        for i, part in enumerate(resource.participant or []):
            practitioner = practitioner or ctx.resolve_optional(
                part.individual, f"Encounter.participant[{i}].individual", "Practitioner"
            )
        department = None
        named = None
        for i, loc in enumerate(resource.location or []):
            if department is None:
                named = loc.location
                department = ctx.resolve_optional(
                    loc.location, f"Encounter.location[{i}].location", "Location"
                )
        if department is not None and ctx.keep_source_ids:
            # imports: a location of another member (the hospital a sender names) is
            # left out and reported, as one that is not here; the encounter is kept
            where = ctx.session.info.setdefault("fhir.department_institution", {})
            if department not in where:
                where[department] = alliance_service.department_institution(ctx.session, department)
            if where[department] != ctx.actor.institution_id:
                ctx.left_out.append(str(getattr(named, "reference", "")))
                department = None
        # The encounter is written at the actor's member (the domain's rule); a different
        # serviceProvider must at least exist.
        ctx.resolve_optional(resource.serviceProvider, "Encounter.serviceProvider", "Organization")
        reason = next((concept_text(c) for c in resource.reasonCode or [] if concept_text(c)), None)
        try:
            data = record_schemas.EncounterCreate(
                encounter_class=encounter_class,
                status=status_of(ENCOUNTER_STATUS, resource.status, "Encounter.status"),
                start=start,
                end=aware(resource.period.end) if resource.period else None,
                practitioner_id=practitioner,
                department_id=department,
                reason=reason,
            )
        except ValidationError as exc:
            raise domain_validation("Encounter", exc) from exc
        return person, data

    def update(self, ctx: FhirContext, rid: uuid.UUID, resource: Any) -> Written:
        """What an encounter may change: status, end, reason."""
        reason = next((concept_text(c) for c in resource.reasonCode or [] if concept_text(c)), None)
        try:
            data = record_schemas.EncounterUpdate(
                status=status_of(ENCOUNTER_STATUS, resource.status, "Encounter.status"),
                end=aware(resource.period.end) if resource.period else None,
                reason=reason,
            )
        except ValidationError as exc:
            raise domain_validation("Encounter", exc) from exc
        records_service.update_encounter(
            session=ctx.session,
            actor=ctx.actor,
            encounter_id=rid,
            data=record_schemas.EncounterUpdate(**data.model_dump(exclude_none=True)),
        )
        return Written("Encounter", rid, created=False)


def _kept_class_ids() -> Any:
    from sqlalchemy import select

    from medalliance.fhir.models import FhirCoding

    return select(FhirCoding.resource_id).where(
        FhirCoding.resource_type == "Encounter", FhirCoding.element == "class"
    )


def _class_param() -> SearchParam:
    from sqlalchemy import false

    def apply(ctx: FhirContext, query: Select[Any], c: Criterion) -> Select[Any]:
        from sqlalchemy import and_, or_

        conditions = []
        for value in c.values:
            code = token(value)[1]
            if code in FHIR_TO_CLASS:  # the domain class, unless another class was kept
                conditions.append(
                    and_(
                        Encounter.encounter_class == FHIR_TO_CLASS[code],
                        Encounter.id.not_in(_kept_class_ids()),
                    )
                )
            else:
                conditions.append(
                    Encounter.id.in_(store.ids_with_coding("Encounter", "class", None, code))
                )
        return query.where(or_(*conditions) if conditions else false())

    return SearchParam("token", apply, "AMB | IMP | EMER | VR")


# Shared by every Condition answered (thousands in a $everything): built once, never changed.
_CONDITION_CATEGORY = [
    {
        "coding": [
            coding(
                "http://terminology.hl7.org/CodeSystem/condition-category", "encounter-diagnosis"
            )
        ]
    }
]
_CONDITION_CLINICAL = {
    s: {"coding": [coding(systems.CONDITION_CLINICAL, s)]}
    for s in ("active", "inactive", "resolved")
}
_CONDITION_VERIFICATION = {
    s: {"coding": [coding(systems.CONDITION_VER_STATUS, s)]}
    for s in ("confirmed", "entered-in-error")
}


def _condition_code(d: Any, kept: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    """Condition.code: the ICD-10, TCM disease and TCM pattern codings, then the kept."""
    codings = []
    if d.western_code:
        codings.append(coding(systems.ICD10, d.western_code, d.western_text))
    if d.tcm_disease_code:
        codings.append(
            coding(
                systems.TCM_SYSTEM_URI.get(d.tcm_disease_system or ""),
                d.tcm_disease_code,
                d.tcm_disease_text,
            )
        )
    if d.tcm_pattern_code:
        codings.append(
            coding(
                systems.TCM_SYSTEM_URI.get(d.tcm_pattern_system or ""),
                d.tcm_pattern_code,
                d.tcm_pattern_text,
            )
        )
    codings += [c for c in kept or () if c]
    codings = [c for c in codings if c]
    texts = [t for t in (d.western_text, d.tcm_disease_text, d.tcm_pattern_text) if t]
    return prune({"coding": codings, "text": " / ".join(texts)}) or None


class ConditionMapper(PatientDataMapper):
    """One integrated diagnosis: ICD-10, TCM disease and TCM pattern codings in Condition.code."""

    resource_type = "Condition"
    model = Diagnosis
    interactions = (READ, SEARCH, CREATE, UPDATE)
    includes: ClassVar[dict[str, Include]] = {
        "Condition:patient": Include("Patient", "person_id"),
        "Condition:subject": Include("Patient", "person_id"),
        "Condition:encounter": Include("Encounter", "encounter_id"),
    }
    revincludes = ("Condition:patient", "Condition:subject", "Condition:encounter")

    def search_params(self) -> dict[str, SearchParam]:
        return {
            **super().search_params(),
            "identifier": identifier_param("Condition"),
            "code": _code_search(
                "Condition",
                "code",
                {
                    systems.ICD10: [Diagnosis.western_code],
                    systems.ICD11_MMS: [Diagnosis.tcm_disease_code, Diagnosis.tcm_pattern_code],
                    systems.GBT15657: [Diagnosis.tcm_disease_code, Diagnosis.tcm_pattern_code],
                },
            ),
            "clinical-status": token_param(Diagnosis.status, doc="active | inactive | resolved"),
            "encounter": reference_param(Diagnosis.encounter_id, "Encounter"),
            "recorded-date": date_param(Diagnosis.recorded_at),
        }

    def sort_columns(self) -> dict[str, Any]:
        return {"recorded-date": Diagnosis.recorded_at}

    def clinical_date_column(self) -> Any:
        return Diagnosis.recorded_at  # Condition.recordedDate

    def render(self, rows: Sequence[Any], look: Lookups) -> list[dict[str, Any]]:
        side, extra, at = look.identifiers, look.codings, look.instants
        subject, encounter = look.subject, look.references("Encounter")
        concepts: dict[tuple[Any, ...], dict[str, Any] | None] = {}  # one per diagnosis
        out = []
        for d in rows:
            rid = d.id
            kept = extra.get((rid, "code"))
            if kept:
                code = _condition_code(d, kept)
            else:
                key = (
                    d.western_code,
                    d.western_text,
                    d.tcm_disease_system,
                    d.tcm_disease_code,
                    d.tcm_disease_text,
                    d.tcm_pattern_system,
                    d.tcm_pattern_code,
                    d.tcm_pattern_text,
                )
                if key in concepts:
                    code = concepts[key]
                else:
                    code = concepts[key] = _condition_code(d, None)
            status = str(d.status)
            res: dict[str, Any] = {
                "resourceType": "Condition",
                "id": str(rid),
                "meta": {"lastUpdated": at[d.updated_at]},
            }
            identifiers = side.get(rid)
            if identifiers:
                res["identifier"] = identifiers
            clinical = _CONDITION_CLINICAL.get(status)
            if clinical:
                res["clinicalStatus"] = clinical
            res["verificationStatus"] = _CONDITION_VERIFICATION[
                "entered-in-error" if status == "entered-in-error" else "confirmed"
            ]
            res["category"] = _CONDITION_CATEGORY
            if code:
                res["code"] = code
            res["subject"] = subject(d.patient_record_id)
            res["encounter"] = encounter[d.encounter_id]
            recorded = at[d.recorded_at]
            if recorded:
                res["recordedDate"] = recorded
            out.append(res)
        return out

    def _diagnosis(self, resource: Any) -> tuple[dict[str, Any], list[Any]]:
        fields: dict[str, Any] = {}
        extra = []
        for c in (resource.code.coding if resource.code else None) or []:
            code, system = (c.code or ""), c.system
            if system == systems.ICD10 and ICD10.match(code) and "western_code" not in fields:
                fields.update(western_code=code, western_text=c.display)
            elif system in systems.TCM_SYSTEM_NAME:
                name = systems.TCM_SYSTEM_NAME[system]
                kind = _tcm_kind(name, code)
                if kind is None or f"tcm_{kind}_code" in fields:
                    extra.append((system, c.code, c.display))
                    continue
                fields.update(
                    {
                        f"tcm_{kind}_system": name,
                        f"tcm_{kind}_code": code,
                        f"tcm_{kind}_text": c.display,
                    }
                )
            else:
                extra.append((system, c.code, c.display))
        if not any(k in fields for k in ("western_code", "tcm_disease_code", "tcm_pattern_code")):
            text = concept_text(resource.code)
            if text is None:
                raise invalid("Condition.code", "Condition.code needs a coding or a text")
            fields["western_text"] = text[:300]
        return fields, extra

    def create(self, ctx: FhirContext, resource: Any) -> Written:
        return bulk.one(self.create_many, ctx, resource)

    def create_many(self, ctx: FhirContext, resources: list[Any]) -> list[Written]:
        prepared = bulk.each(resources, lambda r: self._diagnosis_in(ctx, r))
        _same_patient(ctx, "Condition", [(p, e) for p, e, _, _ in prepared])
        with bulk.domain_batch(range(len(resources))):
            rows = records_service.add_diagnoses(
                session=ctx.session, actor=ctx.actor, items=[(e, d) for _, e, d, _ in prepared]
            )
        _keep_side(ctx, "Condition", rows, resources)
        codings = store.CodingRows("Condition")
        for row, (_, _, _, extra) in zip(rows, prepared, strict=True):
            codings.add(row.id, "code", extra)
        codings.write(ctx.session)
        return [Written("Condition", r.id) for r in rows]

    def _diagnosis_in(
        self, ctx: FhirContext, resource: Any
    ) -> tuple[uuid.UUID, uuid.UUID, record_schemas.DiagnosisCreate, list[Any]]:
        person = self.subject_of(ctx, resource, "subject")
        if resource.encounter is None:
            raise invalid(
                "Condition.encounter",
                "Condition.encounter is required here: a diagnosis belongs to an encounter",
            )
        _, encounter_id = ctx.resolve(resource.encounter, "Condition.encounter", "Encounter")
        fields, extra = self._diagnosis(resource)
        status = "active"
        if resource.clinicalStatus is not None:
            status = (
                status_of(
                    CLINICAL,
                    resource.clinicalStatus.coding[0].code
                    if resource.clinicalStatus.coding
                    else None,
                    "Condition.clinicalStatus",
                )
                or "active"
            )
        if _verification(resource) == "entered-in-error":
            status = "entered-in-error"
        try:
            data = record_schemas.DiagnosisCreate(**fields, status=status)
        except ValidationError as exc:
            raise domain_validation("Condition", exc) from exc
        return person, encounter_id, data, extra

    def update(self, ctx: FhirContext, rid: uuid.UUID, resource: Any) -> Written:
        """The domain lets a diagnosis change status only."""
        status = status_of(
            CLINICAL,
            resource.clinicalStatus.coding[0].code
            if resource.clinicalStatus and resource.clinicalStatus.coding
            else None,
            "Condition.clinicalStatus",
        )
        if _verification(resource) == "entered-in-error":
            status = "entered-in-error"
        if status is None:
            raise invalid("Condition.clinicalStatus", "an update changes the clinical status")
        records_service.set_status(
            session=ctx.session, actor=ctx.actor, kind="diagnoses", entry_id=rid, status=status
        )
        return Written("Condition", rid, created=False)


def _verification(resource: Any) -> str | None:
    concept = resource.verificationStatus
    if concept is None or not concept.coding:
        return None
    return str(concept.coding[0].code)


def _tcm_kind(system_name: str, code: str) -> str | None:
    """Disease or pattern, from the code's shape (standards.md): ICD-11 TM1 disorders
    are SA–SD.., patterns SE–SJ..; GB/T 15657 diseases start A, patterns B."""
    if system_name == "icd11":
        if not ICD11_TM1.match(code):
            return None
        return "disease" if code[1] in "ABCD" else "pattern"
    if not GBT15657.match(code):
        return None
    return "disease" if code[0] == "A" else "pattern"


ALLERGY_CATEGORY = {"food": "food", "medication": "medication", "environment": "environment"}
SEVERITY = {"mild": "mild", "moderate": "moderate", "severe": "severe"}


class AllergyIntoleranceMapper(PatientDataMapper):
    resource_type = "AllergyIntolerance"
    model = Allergy
    subject_name = "patient"
    interactions = (READ, SEARCH, CREATE)
    includes: ClassVar[dict[str, Include]] = {
        "AllergyIntolerance:patient": Include("Patient", "person_id")
    }
    revincludes = ("AllergyIntolerance:patient",)

    def search_params(self) -> dict[str, SearchParam]:
        return {
            **super().search_params(),
            "identifier": identifier_param("AllergyIntolerance"),
            "code": _code_search("AllergyIntolerance", "code", {None: [Allergy.substance_code]}),
            "clinical-status": token_param(Allergy.status),
            "category": token_param(Allergy.category),
            "date": date_param(Allergy.recorded_at),
        }

    def clinical_date_column(self) -> Any:
        return Allergy.recorded_at  # AllergyIntolerance.recordedDate

    def render(self, rows: Sequence[Any], look: Lookups) -> list[dict[str, Any]]:
        side, extra, at = look.identifiers, look.codings, look.instants
        out = []
        for a in rows:
            herb = str(a.category) == "herb"
            out.append(
                prune(
                    {
                        "resourceType": "AllergyIntolerance",
                        "id": str(a.id),
                        "meta": {"lastUpdated": at[a.updated_at]},
                        "identifier": side.get(a.id),
                        "clinicalStatus": None
                        if str(a.status) == "entered-in-error"
                        else {"coding": [coding(systems.ALLERGY_CLINICAL, str(a.status))]},
                        "verificationStatus": {
                            "coding": [
                                coding(
                                    "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
                                    "entered-in-error"
                                    if str(a.status) == "entered-in-error"
                                    else "confirmed",
                                )
                            ]
                        },
                        # a Chinese materia medica substance is a medication to FHIR; our own code
                        # system keeps the finer category
                        "category": ["medication" if herb else str(a.category)],
                        "code": prune(
                            {
                                "coding": extra.get((a.id, "code"))
                                or ([coding(systems.ALLERGY_HERB, "herb")] if herb else None),
                                "text": a.substance,
                            }
                        ),
                        "patient": look.subject(a.patient_record_id),
                        "recordedDate": at[a.recorded_at],
                        "reaction": [
                            prune(
                                {
                                    "manifestation": [{"text": a.reaction or "unspecified"}],
                                    "severity": str(a.severity) if a.severity else None,
                                }
                            )
                        ]
                        if a.reaction or a.severity
                        else None,
                    }
                )
            )
        return out

    def create(self, ctx: FhirContext, resource: Any) -> Written:
        person = self.subject_of(ctx, resource, "patient")
        substance = concept_text(resource.code)
        if substance is None:
            raise invalid("AllergyIntolerance.code", "AllergyIntolerance.code is required here")
        codes = codings_in(resource.code)
        herb = any(c[0] == systems.ALLERGY_HERB and c[1] == "herb" for c in codes)
        category = (
            "herb"
            if herb
            else status_of(
                ALLERGY_CATEGORY,
                (resource.category or ["medication"])[0],
                "AllergyIntolerance.category",
            )
        )
        reaction = (resource.reaction or [None])[0]
        try:
            data = record_schemas.AllergyCreate(
                substance=substance[:200],
                substance_code=next((c[1] for c in codes if c[1] and len(c[1]) <= 64), None),
                category=category,
                reaction=(
                    concept_text((reaction.manifestation or [None])[0]) if reaction else None
                ),
                severity=status_of(
                    SEVERITY, reaction.severity, "AllergyIntolerance.reaction[0].severity"
                )
                if reaction
                else None,
            )
        except ValidationError as exc:
            raise domain_validation("AllergyIntolerance", exc) from exc
        allergy = records_service.add_allergy(
            session=ctx.session, actor=ctx.actor, person_id=person, data=data
        )
        keep_identifiers(ctx, "AllergyIntolerance", allergy.id, resource, set())
        store.add_codings(
            ctx.session,
            "AllergyIntolerance",
            allergy.id,
            "code",
            [c for c in codes if c[0] != systems.ALLERGY_HERB],
        )
        return Written("AllergyIntolerance", allergy.id)


def _contained_medication(resource: Any) -> Any:
    """A medicationReference to a contained Medication ('#id'): its code."""
    ref = getattr(resource.medicationReference, "reference", None) or ""
    if not ref.startswith("#"):
        return None
    for item in resource.contained or []:
        if item.get_resource_type() == "Medication" and item.id == ref[1:]:
            return item.code
    return None


MED_STATUS = {
    "active": "active",
    "completed": "completed",
    "stopped": "stopped",
    "entered-in-error": "entered-in-error",
}


class MedicationStatementMapper(PatientDataMapper):
    resource_type = "MedicationStatement"
    model = MedicationStatement
    interactions = (READ, SEARCH, CREATE)
    includes: ClassVar[dict[str, Include]] = {
        "MedicationStatement:patient": Include("Patient", "person_id"),
        "MedicationStatement:subject": Include("Patient", "person_id"),
    }
    revincludes = ("MedicationStatement:patient", "MedicationStatement:subject")

    def search_params(self) -> dict[str, SearchParam]:
        return {
            **super().search_params(),
            "identifier": identifier_param("MedicationStatement"),
            "code": _code_search(
                "MedicationStatement", "medication", {None: [MedicationStatement.drug_code]}
            ),
            "status": token_param(MedicationStatement.status),
            "effective": date_param(MedicationStatement.start_date, date_only=True),
        }

    def clinical_date_column(self) -> Any:
        return MedicationStatement.start_date  # effectivePeriod.start (a date)

    def render(self, rows: Sequence[Any], look: Lookups) -> list[dict[str, Any]]:
        side, extra, at = look.identifiers, look.codings, look.instants
        return [
            prune(
                {
                    "resourceType": "MedicationStatement",
                    "id": str(m.id),
                    "meta": {"lastUpdated": at[m.updated_at]},
                    "identifier": side.get(m.id),
                    "status": str(m.status),
                    "medicationCodeableConcept": prune(
                        {
                            "coding": extra.get((m.id, "medication"))
                            or ([{"code": m.drug_code}] if m.drug_code else None),
                            "text": m.drug,
                        }
                    ),
                    "subject": look.subject(m.patient_record_id),
                    "effectivePeriod": prune({"start": day(m.start_date), "end": day(m.end_date)})
                    or None,
                    "dateAsserted": at[m.recorded_at],
                    "dosage": [
                        prune(
                            {
                                "text": " ".join(x for x in (m.dose, m.frequency) if x) or None,
                                "route": {"text": m.route} if m.route else None,
                            }
                        )
                    ]
                    if m.dose or m.route or m.frequency
                    else None,
                }
            )
            for m in rows
        ]

    def create(self, ctx: FhirContext, resource: Any) -> Written:
        person = self.subject_of(ctx, resource, "subject")
        concept = resource.medicationCodeableConcept or _contained_medication(resource)
        drug = concept_text(concept)
        if drug is None:
            raise invalid(
                "MedicationStatement.medicationCodeableConcept",
                "a coded or named medication is required here",
            )
        codes = codings_in(concept)
        period = resource.effectivePeriod
        start = aware(period.start if period else resource.effectiveDateTime)
        end = aware(period.end) if period else None
        dosage = (resource.dosage or [None])[0]
        try:
            data = record_schemas.MedicationCreate(
                drug=drug[:200],
                drug_code=next((c[1] for c in codes if c[1] and len(c[1]) <= 64), None),
                dose=dosage.text[:100] if dosage and dosage.text else None,
                route=(concept_text(dosage.route) or "")[:50] or None
                if dosage and dosage.route
                else None,
                start_date=start.date() if start else None,
                end_date=end.date() if end else None,
                status=status_of(MED_STATUS, resource.status, "MedicationStatement.status"),
            )
        except ValidationError as exc:
            raise domain_validation("MedicationStatement", exc) from exc
        statement = records_service.add_medication(
            session=ctx.session, actor=ctx.actor, person_id=person, data=data
        )
        keep_identifiers(ctx, "MedicationStatement", statement.id, resource, set())
        store.add_codings(ctx.session, "MedicationStatement", statement.id, "medication", codes)
        return Written("MedicationStatement", statement.id)


class ProcedureMapper(PatientDataMapper):
    resource_type = "Procedure"
    model = Procedure
    interactions = (READ, SEARCH, CREATE)
    includes: ClassVar[dict[str, Include]] = {
        "Procedure:patient": Include("Patient", "person_id"),
        "Procedure:subject": Include("Patient", "person_id"),
        "Procedure:encounter": Include("Encounter", "encounter_id"),
    }
    revincludes = ("Procedure:patient", "Procedure:subject", "Procedure:encounter")

    def search_params(self) -> dict[str, SearchParam]:
        return {
            **super().search_params(),
            "identifier": identifier_param("Procedure"),
            "code": _code_search("Procedure", "code", {None: [Procedure.code]}),
            "date": date_param(Procedure.performed_at),
            "encounter": reference_param(Procedure.encounter_id, "Encounter"),
        }

    def sort_columns(self) -> dict[str, Any]:
        return {"date": Procedure.performed_at}

    def clinical_date_column(self) -> Any:
        return Procedure.performed_at

    def render(self, rows: Sequence[Any], look: Lookups) -> list[dict[str, Any]]:
        side, extra, at = look.identifiers, look.codings, look.instants
        subject, encounter = look.subject, look.references("Encounter")
        concepts: dict[tuple[Any, ...], dict[str, Any]] = {}  # one per distinct code
        out = []
        for p in rows:
            rid = p.id
            kept = extra.get((rid, "code"))
            if kept:
                code = prune({"coding": kept, "text": p.text})
            else:
                key = (p.code_system, p.code, p.text)
                code = concepts.get(key)  # type: ignore[assignment]
                if code is None:
                    code = concepts[key] = prune(
                        {
                            "coding": [coding(p.code_system, p.code)] if p.code else None,
                            "text": p.text,
                        }
                    )
            res: dict[str, Any] = {"resourceType": "Procedure", "id": str(rid)}
            if p.updated_at:
                res["meta"] = {"lastUpdated": at[p.updated_at]}
            identifiers = side.get(rid)
            if identifiers:
                res["identifier"] = identifiers
            res["status"] = "completed"
            if code:
                res["code"] = code
            res["subject"] = subject(p.patient_record_id)
            res["encounter"] = encounter[p.encounter_id]
            performed = at[p.performed_at]
            if performed:
                res["performedDateTime"] = performed
            out.append(res)
        return out

    def create(self, ctx: FhirContext, resource: Any) -> Written:
        return bulk.one(self.create_many, ctx, resource)

    def create_many(self, ctx: FhirContext, resources: list[Any]) -> list[Written]:
        prepared = bulk.each(resources, lambda r: self._procedure_in(ctx, r))
        _same_patient(ctx, "Procedure", [(p, e) for p, e, _ in prepared])
        with bulk.domain_batch(range(len(resources))):
            rows = records_service.add_procedures(
                session=ctx.session, actor=ctx.actor, items=[(e, d) for _, e, d in prepared]
            )
        _keep_side(ctx, "Procedure", rows, resources)
        codings = store.CodingRows("Procedure")
        for row, resource in zip(rows, resources, strict=True):
            codings.add(row.id, "code", codings_in(resource.code))
        codings.write(ctx.session)
        return [Written("Procedure", r.id) for r in rows]

    def _procedure_in(
        self, ctx: FhirContext, resource: Any
    ) -> tuple[uuid.UUID, uuid.UUID, record_schemas.ProcedureCreate]:
        person = self.subject_of(ctx, resource, "subject")
        if resource.encounter is None:
            raise invalid("Procedure.encounter", "Procedure.encounter is required here")
        _, encounter_id = ctx.resolve(resource.encounter, "Procedure.encounter", "Encounter")
        text = concept_text(resource.code)
        if text is None:
            raise invalid("Procedure.code", "Procedure.code is required here")
        performed = aware(resource.performedDateTime) or aware(
            resource.performedPeriod.start if resource.performedPeriod else None
        )
        if performed is None:
            raise invalid("Procedure.performed[x]", "Procedure.performed[x] is required here")
        codes = codings_in(resource.code)
        first = next((c for c in codes if c[1]), None)
        system = first[0] if first and first[0] and len(first[0]) <= 32 else None
        try:
            data = record_schemas.ProcedureCreate(
                code_system=system,
                code=first[1][:32] if first and first[1] else None,
                text=text[:300],
                performed_at=performed,
            )
        except ValidationError as exc:
            raise domain_validation("Procedure", exc) from exc
        return person, encounter_id, data


def _same_patient(ctx: FhirContext, rtype: str, pairs: list[tuple[uuid.UUID, uuid.UUID]]) -> None:
    """Each entry's encounter is its subject's (the encounters' records in one query)."""
    encounters = {e: ctx.session.get(Encounter, e) for _, e in pairs}
    records = [enc.patient_record_id for enc in encounters.values() if enc is not None]
    owners = persons_of_records(ctx, records)
    for position, (person, encounter_id) in enumerate(pairs):
        encounter = encounters[encounter_id]
        owner = None if encounter is None else owners.get(encounter.patient_record_id)
        if owner != person:
            raise bulk.EntryFailed(
                position,
                invalid(f"{rtype}.encounter", "the encounter belongs to another patient"),
            )


def _keep_side(ctx: FhirContext, rtype: str, rows: list[Any], resources: list[Any]) -> None:
    """The sender's identifiers of new rows, in one query."""
    pairs = [identifier_pairs(r.identifier) for r in resources]
    with bulk.domain_batch(range(len(resources))):
        store.add_identifiers_many(
            ctx.session, rtype, [(row.id, p) for row, p in zip(rows, pairs, strict=True)]
        )
