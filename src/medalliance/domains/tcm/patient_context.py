"""What the safety check reads from a patient's record: pregnancy, active Western
medications (record MedicationStatements and signed prescriptions still running) and
active allergies. Entries written by members the access policy does not open to the
actor are left out and named, exactly as the timeline does it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from medalliance.access import policy
from medalliance.domains.alliance import service as alliance_service
from medalliance.domains.patients import service as patients_service
from medalliance.domains.records import service as records_service
from medalliance.domains.records.models import AllergyCategory
from medalliance.domains.tcm.models import (
    OrderStatus,
    Prescription,
    PrescriptionDrug,
    PrescriptionStatus,
)
from medalliance.domains.tcm.safety import AllergyEntry, DrugInUse, resolve_drug
from medalliance.kernel.actor import Actor
from medalliance.kernel.clock import utcnow


@dataclass(slots=True)
class PatientContext:
    pregnant: bool | None = None
    drugs: list[DrugInUse] = field(default_factory=list)
    allergies: list[AllergyEntry] = field(default_factory=list)
    hidden_institutions: list[str] = field(default_factory=list)


def active_prescription_drugs(
    session: Session, record_ids: list[uuid.UUID], *, exclude: uuid.UUID | None = None
) -> list[tuple[uuid.UUID, PrescriptionDrug, Prescription]]:
    """Western lines of signed prescriptions still within their duration (a line
    without a duration stays active until the prescription is cancelled), and of orders
    recorded from another system while that system says they are active."""
    if not record_ids:
        return []
    rows = session.execute(
        select(PrescriptionDrug, Prescription)
        .join(Prescription, Prescription.id == PrescriptionDrug.prescription_id)
        .where(
            Prescription.patient_record_id.in_(record_ids),
            or_(
                Prescription.status == PrescriptionStatus.SIGNED,
                and_(
                    Prescription.status == PrescriptionStatus.RECORDED,
                    Prescription.order_status == OrderStatus.ACTIVE,
                ),
            ),
        )
    ).all()
    now = utcnow()
    active = []
    for line, prescription in rows:
        if exclude is not None and prescription.id == exclude:
            continue
        signed = prescription.signed_at or prescription.authored_at or prescription.created_at
        if line.duration_days is not None and signed + timedelta(days=line.duration_days) < now:
            continue
        active.append((prescription.institution_id, line, prescription))
    return active


def load(
    session: Session,
    actor: Actor,
    person_id: uuid.UUID,
    facts: policy.PatientFacts,
    *,
    exclude_prescription: uuid.UUID | None = None,
    pregnancy: bool = True,
    drugs: bool = True,
) -> PatientContext:
    """The caller has enforced the patient-level read already. ``pregnancy=False``
    skips reading the status (the request stated it); ``drugs=False`` the drugs in use
    (a recorded order is checked against allergies only: it has no herbs)."""
    meds = records_service.active_medications(session, person_id) if drugs else []
    # Drug and herb allergies only: a pollen (花粉) allergy must not flag 天花粉, whose
    # formula alias is 花粉; the data has no rule linking foods or pollens to herbs.
    allergies = [
        a
        for a in records_service.active_allergies(session, person_id)
        if a.category in (AllergyCategory.MEDICATION, AllergyCategory.HERB)
    ]
    running = (
        active_prescription_drugs(
            session,
            patients_service.record_ids_of(session, person_id),
            exclude=exclude_prescription,
        )
        if drugs
        else []
    )
    owners = (
        {m.institution_id for m in meds}
        | {a.institution_id for a in allergies}
        | {owner for owner, _, _ in running}
    )
    by_kind: dict[bool, bool] = {}
    allowed: dict[uuid.UUID, bool] = {}
    for owner in owners:
        local = owner == actor.institution_id
        if local not in by_kind:
            by_kind[local] = policy.decide(
                session, actor, facts, policy.AccessAction.READ, owner_institution_id=owner
            ).allowed
        allowed[owner] = by_kind[local]
    institutions = alliance_service.institutions_by_id(session, list(owners)) if owners else {}
    context = PatientContext(
        pregnant=patients_service.is_pregnant(session, person_id) if pregnancy else None,
        hidden_institutions=sorted(institutions[o].code for o, ok in allowed.items() if not ok),
    )
    for m in meds:
        if allowed[m.institution_id]:
            code = institutions[m.institution_id].code
            context.drugs.append(resolve_drug(m.drug, f"record: MedicationStatement at {code}"))
    for owner, line, prescription in running:
        if allowed[owner]:
            code = institutions[owner].code
            kind = (
                "recorded order"
                if prescription.status is PrescriptionStatus.RECORDED
                else "signed prescription"
            )
            origin = f"{kind} {prescription.id} at {code}"
            context.drugs.append(resolve_drug(line.drug, origin))
    for a in allergies:
        if allowed[a.institution_id]:
            code = institutions[a.institution_id].code
            recorded = a.recorded_at.date().isoformat()
            context.allergies.append(
                AllergyEntry(a.substance, f"patient record: Allergy {a.id} at {code}, {recorded}")
            )
    return context
