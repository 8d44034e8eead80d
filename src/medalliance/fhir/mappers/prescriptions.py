"""MedicationRequest over TCM prescriptions (``domains/tcm``), read and search only.

One prescription is one MedicationRequest: its herbal formula is a contained Medication
whose ingredients are the herbs with their grams per dose, and its Western items each
become a ``dosageInstruction`` naming the drug. Create is not offered: a prescription
passes the TCM safety check (十八反/十九畏, pregnancy, allergies) and a signature, which
a FHIR create cannot carry faithfully."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import Select, false, select

from medalliance.domains.tcm.models import Prescription
from medalliance.fhir import systems
from medalliance.fhir.mappers.common import (
    PatientDataMapper,
    coding,
    instant,
    meta,
    patient_ref,
    prune,
)
from medalliance.fhir.registry import Include, Lookups
from medalliance.fhir.search import NOT, Criterion, SearchParam, date_param, reference_param, token

if TYPE_CHECKING:
    from medalliance.fhir.context import FhirContext

# domain status → FHIR MedicationRequest.status (a draft is not yet an order)
STATUS = {"draft": "draft", "signed": "active", "cancelled": "cancelled"}
FROM_FHIR = {v: k for k, v in STATUS.items()}


def _status_param() -> SearchParam:
    def apply(ctx: FhirContext, query: Select[Any], c: Criterion) -> Select[Any]:
        wanted = [FROM_FHIR[code] for code in (token(v)[1] for v in c.values) if code in FROM_FHIR]
        clause = Prescription.status.in_(wanted) if wanted else false()
        return query.where(~clause if c.modifier == "not" else clause)

    return SearchParam("token", apply, "draft | active (signed) | cancelled", NOT)


class MedicationRequestMapper(PatientDataMapper):
    resource_type = "MedicationRequest"
    model = Prescription
    includes: ClassVar[dict[str, Include]] = {
        "MedicationRequest:patient": Include("Patient", "person_id"),
        "MedicationRequest:subject": Include("Patient", "person_id"),
        "MedicationRequest:encounter": Include("Encounter", "encounter_id"),
    }
    revincludes = (
        "MedicationRequest:patient",
        "MedicationRequest:subject",
        "MedicationRequest:encounter",
    )

    def search_params(self) -> dict[str, SearchParam]:
        return {
            **super().search_params(),
            "status": _status_param(),
            "authoredon": date_param(Prescription.created_at, doc="when it was written"),
            "encounter": reference_param(Prescription.encounter_id, "Encounter"),
        }

    def sort_columns(self) -> dict[str, Any]:
        return {"authoredon": Prescription.created_at}

    def clinical_date_column(self) -> Any:
        return Prescription.created_at  # MedicationRequest.authoredOn

    side_tables = False

    def render(self, rows: Sequence[Any], look: Lookups) -> list[dict[str, Any]]:
        return [self._one(p, look.persons[p.patient_record_id]) for p in rows]

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

    def _one(self, p: Prescription, person: Any) -> dict[str, Any]:
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
                "encounter": {"reference": f"Encounter/{p.encounter_id}"},
                "authoredOn": instant(p.created_at),
                "dosageInstruction": [x for x in dosage if x.get("text")] or None,
                "note": [{"text": p.override_reason}] if p.override_reason else None,
            }
        )
