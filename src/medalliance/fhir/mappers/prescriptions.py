"""MedicationRequest over prescriptions (``domains/tcm``).

Two kinds of rows answer as MedicationRequest:

* Prescriptions written here (draft → signed, or cancelled): one prescription is one
  MedicationRequest; its herbal formula is a contained Medication whose ingredients are
  the herbs with their grams per dose, and its Western items each become a
  ``dosageInstruction`` naming the drug. These are not created through FHIR: a
  prescription here passes the TCM safety check (十八反/十九畏, pregnancy, allergies)
  and a signature, which a FHIR create cannot carry faithfully.
* Orders placed in another system and recorded here (status ``recorded``): a FHIR
  create (a member's HIS, a transaction, an import) records the order as it was placed
  — its own status, intent, authoredOn, requester, encounter, reason, the drug with
  its codings (RxNorm …, kept beside the row for ``code`` search) and the dosage. The
  safety check runs and its findings are kept as information; it never refuses the
  record of an order that exists already (``domains/tcm/recorded.py``).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import ValidationError
from sqlalchemy import Select, and_, false, func, or_, select

from medalliance.domains.tcm import recorded as tcm_recorded
from medalliance.domains.tcm import schemas as tcm_schemas
from medalliance.domains.tcm.models import OrderStatus, Prescription, PrescriptionStatus
from medalliance.fhir import bulk, store, systems
from medalliance.fhir.mappers.common import (
    PatientDataMapper,
    aware,
    coding,
    codings_in,
    concept_text,
    domain_validation,
    identifier_pairs,
    identifier_param,
    instant,
    meta,
    patient_ref,
    prune,
)
from medalliance.fhir.outcome import invalid
from medalliance.fhir.registry import CREATE, READ, SEARCH, Include, Lookups, Written
from medalliance.fhir.search import (
    NOT,
    Criterion,
    SearchParam,
    date_param,
    reference_param,
    token,
)
from medalliance.kernel.errors import InvalidInput

if TYPE_CHECKING:
    from medalliance.fhir.context import FhirContext

# domain status → FHIR MedicationRequest.status (a draft is not yet an order); a
# recorded order answers its own ``order_status``
STATUS = {"draft": "draft", "signed": "active", "cancelled": "cancelled"}
FROM_FHIR = {v: k for k, v in STATUS.items()}
ORDER_STATUSES = {s.value: s for s in OrderStatus}
# the drug codings of a recorded order, kept beside it
MEDICATION = "medication"
REASON = "reasonCode"
RECORDED_FROM = "fhir"
# the domain's fields of a recorded order → the elements they come from
ELEMENTS = {
    "encounter_id": "MedicationRequest.encounter",
    "requester_id": "MedicationRequest.requester",
    "reason_diagnosis_id": "MedicationRequest.reasonReference",
}
# a structured dosage kept in the domain's text columns, read back by these patterns
_FREQUENCY = re.compile(r"^(\d+(?:\.\d+)?)/(\d+(?:\.\d+)?) (s|min|h|d|wk|mo|a)$")
_DOSE = re.compile(r"^(-?\d+(?:\.\d+)?)(?: (.+))?$")


def _authored() -> Any:
    """When the order was written: as the placing system said, else when it was saved."""
    return func.coalesce(Prescription.authored_at, Prescription.created_at)


def _status_param() -> SearchParam:
    def apply(ctx: FhirContext, query: Select[Any], c: Criterion) -> Select[Any]:
        codes = [token(v)[1] for v in c.values]
        native = [FROM_FHIR[code] for code in codes if code in FROM_FHIR]
        ordered = [ORDER_STATUSES[code] for code in codes if code in ORDER_STATUSES]
        clause = or_(
            and_(
                Prescription.status != PrescriptionStatus.RECORDED, Prescription.status.in_(native)
            )
            if native
            else false(),
            and_(
                Prescription.status == PrescriptionStatus.RECORDED,
                Prescription.order_status.in_(ordered),
            )
            if ordered
            else false(),
        )
        return query.where(~clause if c.modifier == "not" else clause)

    return SearchParam(
        "token",
        apply,
        "draft | active (signed) | cancelled; recorded orders: their own status",
        NOT,
    )


def _code_param() -> SearchParam:
    """code=[system|]code: the kept drug codings of recorded orders, the formula of
    herbal prescriptions (urn:medalliance:cs:tcm-formula)."""

    def apply(ctx: FhirContext, query: Select[Any], c: Criterion) -> Select[Any]:
        conditions: list[Any] = []
        for value in c.values:
            system, code = token(value)
            conditions.append(
                Prescription.id.in_(
                    store.ids_with_coding("MedicationRequest", MEDICATION, system or None, code)
                )
            )
            if system in (None, "", systems.TCM_FORMULA):
                conditions.append(Prescription.formula_id == code)
        return query.where(or_(*conditions) if conditions else false())

    return SearchParam("token", apply, "the medication ([system|]code, e.g. RxNorm)")


class MedicationRequestMapper(PatientDataMapper):
    resource_type = "MedicationRequest"
    model = Prescription
    interactions = (READ, SEARCH, CREATE)
    includes: ClassVar[dict[str, Include]] = {
        "MedicationRequest:patient": Include("Patient", "person_id"),
        "MedicationRequest:subject": Include("Patient", "person_id"),
        "MedicationRequest:encounter": Include("Encounter", "encounter_id"),
        "MedicationRequest:requester": Include("Practitioner", "requester_id"),
    }
    revincludes = (
        "MedicationRequest:patient",
        "MedicationRequest:subject",
        "MedicationRequest:encounter",
        "MedicationRequest:requester",
    )

    def search_params(self) -> dict[str, SearchParam]:
        return {
            **super().search_params(),
            "identifier": identifier_param("MedicationRequest"),
            "status": _status_param(),
            "code": _code_param(),
            "authoredon": date_param(_authored(), doc="when it was written"),
            "encounter": reference_param(Prescription.encounter_id, "Encounter"),
            "requester": reference_param(Prescription.requester_id, "Practitioner"),
        }

    def sort_columns(self) -> dict[str, Any]:
        return {"authoredon": _authored()}

    def clinical_date_column(self) -> Any:
        return _authored()  # MedicationRequest.authoredOn

    def render(self, rows: Sequence[Any], look: Lookups) -> list[dict[str, Any]]:
        return [self._one(p, look.persons[p.patient_record_id], look) for p in rows]

    def compartment_query(
        self,
        ctx: FhirContext,
        person_id: uuid.UUID,
        record_ids: Sequence[uuid.UUID],
        institutions: set[uuid.UUID],
    ) -> Select[Any] | None:
        # ORM objects here: the herbs and drugs come with them (two selectin loads)
        return select(Prescription).where(
            Prescription.patient_record_id.in_(record_ids),
            Prescription.institution_id.in_(institutions),
        )

    def fetch(self, ctx: FhirContext, query: Select[Any]) -> list[Any]:
        return list(ctx.session.scalars(query))

    # --- writing: orders placed elsewhere, recorded ----------------------------------------

    def create(self, ctx: FhirContext, resource: Any) -> Written:
        return bulk.one(self.create_many, ctx, resource)

    def create_many(self, ctx: FhirContext, resources: list[Any]) -> list[Written]:
        """Orders grouped by patient: one ``record_prescriptions`` per patient (one
        policy read, one INSERT per table), then the side tables in one go."""
        prepared = bulk.each(resources, lambda r: self._order_in(ctx, r))
        made: list[Any] = [None] * len(resources)
        for person, positions in bulk.by_key([p for p, _ in prepared]).items():
            with bulk.domain_batch(positions):
                try:
                    ids = tcm_recorded.record_prescriptions(
                        session=ctx.session,
                        actor=ctx.actor,
                        person_id=person,
                        items=[prepared[i][1] for i in positions],
                        recorded_from=RECORDED_FROM,
                    )
                except InvalidInput as exc:  # a reference the domain refused: its element
                    index = exc.extra.get("index")
                    if exc.field not in ELEMENTS or not isinstance(index, int):
                        raise
                    raise bulk.EntryFailed(
                        positions[index], invalid(ELEMENTS[exc.field], exc.detail)
                    ) from exc
            for i, rid in zip(positions, ids, strict=True):
                made[i] = rid
        pairs = [identifier_pairs(r.identifier) for r in resources]
        with bulk.domain_batch(range(len(resources))):
            store.add_identifiers_many(
                ctx.session, "MedicationRequest", list(zip(made, pairs, strict=True))
            )
        codings = store.CodingRows("MedicationRequest")
        for rid, resource in zip(made, resources, strict=True):
            codings.add(rid, MEDICATION, codings_in(resource.medicationCodeableConcept))
            codings.add(
                rid,
                REASON,
                [c for concept in resource.reasonCode or [] for c in codings_in(concept)],
            )
        codings.write(ctx.session)
        return [Written("MedicationRequest", rid) for rid in made]

    def _order_in(
        self, ctx: FhirContext, resource: Any
    ) -> tuple[uuid.UUID, tcm_schemas.PrescriptionRecord]:
        rtype = "MedicationRequest"
        person = self.subject_of(ctx, resource, "subject")
        if resource.medicationReference is not None:
            raise invalid(
                f"{rtype}.medicationReference",
                f"{rtype}.medicationReference is not supported here: send the drug as "
                f"{rtype}.medicationCodeableConcept",
            )
        drug = concept_text(resource.medicationCodeableConcept)
        if drug is None:
            raise invalid(
                f"{rtype}.medicationCodeableConcept",
                f"{rtype}.medicationCodeableConcept needs a coding or a text",
            )
        status = ORDER_STATUSES.get(str(resource.status))
        if status is None:
            raise invalid(f"{rtype}.status", f"{rtype}.status {resource.status!r} is not known")
        encounter = None
        if resource.encounter is not None:
            encounter = ctx.resolve(resource.encounter, f"{rtype}.encounter", "Encounter")[1]
        # a Practitioner (another kind of requester is refused, or left out of an import)
        requester = ctx.resolve_optional(resource.requester, f"{rtype}.requester", "Practitioner")
        reason_diagnosis = None
        for i, ref in enumerate(resource.reasonReference or []):
            reason_diagnosis = reason_diagnosis or ctx.resolve_optional(
                ref, f"{rtype}.reasonReference[{i}]", "Condition"
            )
        reason = next(
            (concept_text(c) for c in resource.reasonCode or [] if concept_text(c)), None
        ) or next((str(r.display) for r in resource.reasonReference or [] if r.display), None)
        try:
            data = tcm_schemas.PrescriptionRecord(
                order_status=status,
                intent=str(resource.intent),
                authored_at=aware(resource.authoredOn),
                encounter_id=encounter,
                requester_id=requester,
                reason=reason,
                reason_diagnosis_id=reason_diagnosis,
                drugs=[_line(drug, resource.dosageInstruction)],
            )
        except ValidationError as exc:
            raise domain_validation(rtype, exc) from exc
        return person, data

    # --- reading ---------------------------------------------------------------------------

    def _one(self, p: Prescription, person: Any, look: Lookups) -> dict[str, Any]:
        if p.status is PrescriptionStatus.RECORDED:
            return self._recorded(p, person, look)
        herbs = sorted(p.herbs, key=lambda h: h.seq)
        drugs = sorted(p.drugs, key=lambda d: d.seq)
        contained = []
        medication: dict[str, Any] = {}
        if herbs:
            contained.append(
                prune(
                    {
                        "resourceType": "Medication",
                        "id": "formula",
                        "code": prune(
                            {
                                "coding": [coding(systems.TCM_FORMULA, p.formula_id)]
                                if p.formula_id
                                else None,
                                "text": p.formula_name or "herbal prescription",
                            }
                        ),
                        "form": {"coding": [coding(systems.HERBAL_FORM, str(p.herbal_form))]}
                        if p.herbal_form
                        else None,
                        "ingredient": [
                            {
                                "itemCodeableConcept": prune(
                                    {
                                        "coding": [coding(systems.TCM_HERB, h.herb, h.name)],
                                        "text": h.name + (f" ({h.note})" if h.note else ""),
                                    }
                                ),
                                "strength": {
                                    "numerator": {
                                        "value": h.dose_g,
                                        "unit": "g",
                                        "system": systems.UCUM,
                                        "code": "g",
                                    },
                                    "denominator": {"value": 1, "unit": "dose"},
                                },
                            }
                            for h in herbs
                        ],
                    }
                )
            )
            medication = {"medicationReference": {"reference": "#formula"}}
        elif drugs:
            medication = {"medicationCodeableConcept": {"text": drugs[0].drug}}
        else:
            medication = {"medicationCodeableConcept": {"text": "empty prescription"}}
        dosage = []
        if herbs:
            dosage.append(
                prune(
                    {
                        "sequence": 0,
                        "text": " ".join(
                            x
                            for x in (
                                f"{p.dose_count} doses" if p.dose_count else None,
                                p.instructions,
                            )
                            if x
                        )
                        or None,
                    }
                )
            )
        for d in drugs:
            dosage.append(
                prune(
                    {
                        "sequence": d.seq,
                        "text": f"{d.drug}: {d.dose} {d.route} {d.frequency}"
                        + (f" for {d.duration_days} days" if d.duration_days else ""),
                        "route": {"text": d.route},
                    }
                )
            )
        return prune(
            {
                "resourceType": "MedicationRequest",
                "id": str(p.id),
                "meta": meta(p),
                "contained": contained,
                "status": STATUS[str(p.status)],
                "intent": "order",
                "category": [{"coding": [coding(systems.RX_KIND, "tcm-herbal")]}]
                if herbs
                else None,
                **medication,
                "subject": patient_ref(person),
                "identifier": look.identifiers.get(p.id),
                "encounter": {"reference": f"Encounter/{p.encounter_id}"}
                if p.encounter_id
                else None,
                "authoredOn": instant(p.authored_at or p.created_at),
                "dosageInstruction": [x for x in dosage if x.get("text")] or None,
                "note": [{"text": p.override_reason}] if p.override_reason else None,
            }
        )

    def _recorded(self, p: Prescription, person: Any, look: Lookups) -> dict[str, Any]:
        drugs = sorted(p.drugs, key=lambda d: d.seq)
        first = drugs[0] if drugs else None
        reasons = look.codings.get((p.id, REASON))
        return prune(
            {
                "resourceType": "MedicationRequest",
                "id": str(p.id),
                "meta": meta(p),
                "identifier": look.identifiers.get(p.id),
                "status": str(p.order_status),
                "intent": p.intent or "order",
                "medicationCodeableConcept": prune(
                    {
                        "coding": look.codings.get((p.id, MEDICATION)),
                        "text": first.drug if first else None,
                    }
                ),
                "subject": patient_ref(person),
                "encounter": {"reference": f"Encounter/{p.encounter_id}"}
                if p.encounter_id
                else None,
                "authoredOn": instant(p.authored_at),
                "requester": {"reference": f"Practitioner/{p.requester_id}"}
                if p.requester_id
                else None,
                "reasonCode": [prune({"coding": reasons, "text": p.reason})]
                if reasons or (p.reason and not p.reason_diagnosis_id)
                else None,
                "reasonReference": [
                    prune({"reference": f"Condition/{p.reason_diagnosis_id}", "display": p.reason})
                ]
                if p.reason_diagnosis_id
                else None,
                "dosageInstruction": [x for x in (_dosage(d) for d in drugs) if x] or None,
            }
        )


def _number(value: float) -> int | float:
    return int(value) if value == int(value) else value


def _line(drug: str, dosages: Any) -> tcm_schemas.RecordedDrugLine:
    """The drug and its (first) dosage: text, as-needed, route, and a simple structured
    dose and frequency kept as readable text the read mapping parses back."""
    dosage = (dosages or [None])[0]
    if dosage is None:
        return tcm_schemas.RecordedDrugLine(drug=drug[:200])
    dose = None
    for dr in dosage.doseAndRate or []:
        quantity = dr.doseQuantity
        if quantity is not None and quantity.value is not None:
            unit = quantity.unit or quantity.code
            dose = f"{_number(float(quantity.value))}" + (f" {unit}" if unit else "")
            break
    frequency = None
    repeat = dosage.timing.repeat if dosage.timing else None
    if repeat is not None and repeat.frequency is not None and repeat.period is not None:
        frequency = f"{repeat.frequency}/{_number(float(repeat.period))} {repeat.periodUnit}"
    elif dosage.timing is not None and dosage.timing.code is not None:
        frequency = concept_text(dosage.timing.code)
    return tcm_schemas.RecordedDrugLine(
        drug=drug[:200],
        dose=dose[:100] if dose else None,
        route=(concept_text(dosage.route) or "")[:50] or None,
        frequency=frequency[:50] if frequency else None,
        dosage_text=dosage.text,
        as_needed=dosage.asNeededBoolean,
    )


def _dosage(d: Any) -> dict[str, Any]:
    timing: dict[str, Any] | None = None
    if d.frequency:
        match = _FREQUENCY.match(d.frequency)
        timing = (
            {
                "repeat": {
                    "frequency": int(float(match.group(1))),
                    "period": _number(float(match.group(2))),
                    "periodUnit": match.group(3),
                }
            }
            if match
            else {"code": {"text": d.frequency}}
        )
    dose: dict[str, Any] | None = None
    if d.dose:
        match = _DOSE.match(d.dose)
        dose = (
            prune({"value": _number(float(match.group(1))), "unit": match.group(2)})
            if match
            else None
        )
    return prune(
        {
            "text": d.dosage_text or (None if dose else d.dose),
            "asNeededBoolean": d.as_needed,
            "timing": timing,
            "route": {"text": d.route} if d.route else None,
            "doseAndRate": [{"doseQuantity": dose}] if dose else None,
        }
    )
