"""Prescriptions recorded from another system: an order a member's HIS placed (sent
as a FHIR MedicationRequest, or imported) is kept as it was placed — its own status,
intent, time, requester and reason — with the status ``recorded``. It is not a draft:
it is never signed, changed or cancelled here (the placing system does that).

The safety check runs on it, but informs and never blocks: the order exists already,
refusing to record it would only hide it from the clinicians here. Its findings are
stored with their sources like a native prescription's, marked informational, and the
order then counts as a drug in use for the checks of later prescriptions here while its
status is ``active``.

Writes are batched for imports: one policy read per patient (one audited decision per
order), one check context per patient, and one INSERT per table."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from medalliance.db.rows import insert_rows
from medalliance.domains.alliance import service as alliance_service
from medalliance.domains.patients import service as patients_service
from medalliance.domains.records.models import Diagnosis, Encounter
from medalliance.domains.tcm import patient_context, schemas
from medalliance.domains.tcm.models import Prescription, PrescriptionDrug, PrescriptionStatus
from medalliance.domains.tcm.safety import check_resolved, resolve_drug
from medalliance.kernel.actor import Actor
from medalliance.kernel.clock import utcnow
from medalliance.kernel.errors import InvalidInput
from medalliance.kernel.ids import new_id

INFORMATIONAL = "Recorded order, placed in another system: the check informs, it does not block."


def record_prescriptions(
    *,
    session: Session,
    actor: Actor,
    person_id: uuid.UUID,
    items: Sequence[schemas.PrescriptionRecord],
    recorded_from: str,
) -> list[uuid.UUID]:
    """Record orders of one patient placed elsewhere, all or none, on the patient's
    record at the actor's institution. A bad item raises with ``extra['index']``.
    Returns the new prescriptions' ids, in order."""
    record_id = patients_service.local_record_for_write(
        session, actor, person_id, "Prescription", audited=len(items)
    ).id
    assert actor.institution_id is not None
    _check_references(session, actor.institution_id, person_id, items)
    # The check's view of the record, read once for the patient (through the policy).
    facts = patients_service.facts_or_404(session, person_id)
    context = patient_context.load(session, actor, person_id, facts, pregnancy=False, drugs=False)
    now = utcnow()
    rows: list[dict[str, Any]] = []
    lines: list[dict[str, Any]] = []
    for item in items:
        pid = new_id()
        own = [resolve_drug(d.drug, "this recorded order") for d in item.drugs]
        findings = check_resolved([], drugs=own, allergies=context.allergies)
        rows.append(
            {
                "id": pid,
                "patient_record_id": record_id,
                "institution_id": actor.institution_id,
                "encounter_id": item.encounter_id,
                "recorded_by": actor.user_id,
                "status": PrescriptionStatus.RECORDED,
                "order_status": item.order_status,
                "intent": item.intent,
                "authored_at": item.authored_at,
                "requester_id": item.requester_id,
                "reason": item.reason,
                "reason_diagnosis_id": item.reason_diagnosis_id,
                "recorded_from": recorded_from[:100],
                "findings": [f.as_dict() for f in findings],
                "check_context": {
                    "informational": True,
                    "notice": INFORMATIONAL,
                    "drugs": [{"name": d.written, "origin": d.origin} for d in own],
                    "allergies": [
                        {"substance": a.substance, "origin": a.origin} for a in context.allergies
                    ],
                    "hidden_institutions": context.hidden_institutions,
                    "clinically_reviewed": False,
                },
                "checked_at": now,
                "created_at": now,
                "updated_at": now,
            }
        )
        lines.extend(
            {"id": new_id(), "prescription_id": pid, "seq": i + 1, **d.model_dump()}
            for i, d in enumerate(item.drugs)
        )
    insert_rows(session, Prescription, rows)
    insert_rows(session, PrescriptionDrug, lines)
    return [r["id"] for r in rows]


def _check_references(
    session: Session,
    institution_id: uuid.UUID,
    person_id: uuid.UUID,
    items: Sequence[schemas.PrescriptionRecord],
) -> None:
    """Encounters on the same record, reasons of the same person, requesters known:
    one query per kind for the whole batch."""
    encounters = {i.encounter_id for i in items} - {None}
    records = set(patients_service.record_ids_of(session, person_id))
    found: dict[uuid.UUID, uuid.UUID] = {}  # this patient's encounters at the institution
    if encounters:
        for row in session.execute(
            select(Encounter.id, Encounter.patient_record_id, Encounter.institution_id).where(
                Encounter.id.in_(encounters)
            )
        ):
            if row[1] in records and row[2] == institution_id:
                found[row[0]] = row[1]
    reasons = {i.reason_diagnosis_id for i in items} - {None}
    diagnoses: dict[uuid.UUID, uuid.UUID] = {}
    if reasons:
        for diagnosis_id, diagnosis_record in session.execute(
            select(Diagnosis.id, Diagnosis.patient_record_id).where(Diagnosis.id.in_(reasons))
        ):
            diagnoses[diagnosis_id] = diagnosis_record
    requesters: dict[uuid.UUID, bool] = {}
    for index, item in enumerate(items):
        if item.encounter_id is not None and item.encounter_id not in found:
            raise InvalidInput(
                "The encounter is not one of this patient's at your institution.",
                field="encounter_id",
                index=index,
            )
        if item.reason_diagnosis_id is not None and (
            diagnoses.get(item.reason_diagnosis_id) not in records
        ):
            raise InvalidInput(
                "The reason is not a diagnosis of this patient.",
                field="reason_diagnosis_id",
                index=index,
            )
        if item.requester_id is not None:
            if item.requester_id not in requesters:
                requesters[item.requester_id] = (
                    alliance_service.practitioner_institution(session, item.requester_id)
                    is not None
                )
            if not requesters[item.requester_id]:
                raise InvalidInput(
                    "The requester is not a known practitioner.",
                    field="requester_id",
                    index=index,
                )
