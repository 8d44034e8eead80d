"""TCM use cases: the safety check, and prescriptions on an encounter (draft →
signed, or cancelled), checked on every save and on signing."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from medalliance.access import policy
from medalliance.audit import service as audit
from medalliance.domains.patients import service as patients_service
from medalliance.domains.records.models import Encounter, EncounterStatus
from medalliance.domains.tcm import patient_context, schemas
from medalliance.domains.tcm.catalogue import catalogue
from medalliance.domains.tcm.models import (
    Prescription,
    PrescriptionDrug,
    PrescriptionHerb,
    PrescriptionStatus,
)
from medalliance.domains.tcm.safety import (
    BLOCK,
    NOT_REVIEWED,
    AllergyEntry,
    DrugInUse,
    Finding,
    HerbDose,
    check_resolved,
    resolve_drug,
    resolve_herbs,
)
from medalliance.kernel.actor import Actor
from medalliance.kernel.clock import utcnow
from medalliance.kernel.errors import Conflict, InvalidInput, NotFound
from medalliance.kernel.ids import new_id


@dataclass(slots=True)
class CheckOutcome:
    findings: list[Finding]
    pregnant: bool | None
    drugs: list[DrugInUse]
    allergies: list[AllergyEntry]
    hidden_institutions: list[str]

    @property
    def blocking(self) -> bool:
        return any(f.severity == BLOCK for f in self.findings)

    def result(self) -> schemas.SafetyCheckResult:
        return schemas.SafetyCheckResult(
            findings=[schemas.FindingRead(**f.as_dict()) for f in self.findings],
            blocking=self.blocking,
            pregnant=self.pregnant,
            drugs=[
                schemas.DrugConsidered(
                    name=d.written, origin=d.origin, recognised=d.drug is not None
                )
                for d in self.drugs
            ],
            allergies=[a.substance for a in self.allergies],
            hidden_institutions=self.hidden_institutions,
            notice_zh=NOT_REVIEWED["zh"],
            notice_en=NOT_REVIEWED["en"],
        )

    def context(self) -> dict[str, Any]:
        return {
            "pregnant": self.pregnant,
            "drugs": [{"name": d.written, "origin": d.origin} for d in self.drugs],
            "allergies": [{"substance": a.substance, "origin": a.origin} for a in self.allergies],
            "hidden_institutions": self.hidden_institutions,
            "clinically_reviewed": False,
        }


# --- the safety check -------------------------------------------------------------------


def safety_check(
    *, session: Session, actor: Actor, request: schemas.SafetyCheckRequest
) -> CheckOutcome:
    """Check without saving. With a patient, pregnancy (unless the request states it),
    active medications and allergies come from the record, through the policy."""
    herbs = resolve_herbs([HerbDose(h.name, h.dose_g) for h in request.herbs])
    drugs = [resolve_drug(d) for d in request.western_drugs]
    allergies = [AllergyEntry(a, "request") for a in request.allergies]
    pregnant = request.pregnant
    hidden: list[str] = []
    if request.patient_id is not None:
        facts = patients_service.facts_or_404(session, request.patient_id)
        decision = policy.enforce(
            session,
            actor,
            facts,
            policy.AccessAction.READ,
            resource_type="TcmSafetyCheck",
            resource_id=request.patient_id,
        )
        context = patient_context.load(
            session, actor, request.patient_id, facts, pregnancy=pregnant is None
        )
        if pregnant is None:
            pregnant = context.pregnant
        drugs += context.drugs
        allergies += context.allergies
        hidden = context.hidden_institutions
        audit.record(
            session,
            actor,
            action="read",
            resource_type="TcmSafetyCheck",
            resource_id=request.patient_id,
            patient_id=request.patient_id,
            purpose_of_use=decision.purpose_of_use,
            detail={
                "medications_read": len(context.drugs),
                "allergies_read": len(context.allergies),
                "pregnancy_read": request.pregnant is None,
                "hidden_institutions": hidden,
            },
        )
    findings = check_resolved(herbs, drugs=drugs, pregnant=pregnant, allergies=allergies)
    return CheckOutcome(findings, pregnant, drugs, allergies, hidden)


# --- prescriptions ----------------------------------------------------------------------


def _encounter_for_write(
    session: Session, actor: Actor, encounter_id: uuid.UUID
) -> tuple[Encounter, policy.PatientFacts]:
    encounter = session.get(Encounter, encounter_id)
    if encounter is None:
        raise NotFound(f"No encounter {encounter_id}.")
    facts = patients_service.facts_of_record(session, encounter.patient_record_id)
    policy.enforce(
        session,
        actor,
        facts,
        policy.AccessAction.WRITE,
        resource_type="Prescription",
        resource_id=encounter_id,
        audit_action="create",
        owner_institution_id=encounter.institution_id,
    )
    if encounter.status in (EncounterStatus.CANCELLED, EncounterStatus.ENTERED_IN_ERROR):
        raise Conflict(f"The encounter is {encounter.status}: prescribe on a live encounter.")
    return encounter, facts


def _prescription(
    session: Session,
    actor: Actor,
    prescription_id: uuid.UUID,
    action: policy.AccessAction,
    audit_action: str | None = None,
) -> tuple[Prescription, uuid.UUID, policy.PatientFacts]:
    # A write locks the row: two signatures (or a sign and a cancel) cannot interleave.
    prescription = session.get(
        Prescription, prescription_id, with_for_update=action is policy.AccessAction.WRITE
    )
    if prescription is None:
        raise NotFound(f"No prescription {prescription_id}.")
    facts = patients_service.facts_of_record(session, prescription.patient_record_id)
    person_id = facts.patient_id
    policy.enforce(
        session,
        actor,
        facts,
        action,
        resource_type="Prescription",
        resource_id=prescription_id,
        audit_action=audit_action,
        owner_institution_id=prescription.institution_id,
    )
    return prescription, person_id, facts


def _own(prescription: Prescription, actor: Actor) -> None:
    # Consent and care may open another member's record for reading, never its orders.
    if prescription.institution_id != actor.institution_id:
        raise Conflict("Only the institution that wrote a prescription may change it.")


def _herbal_lines(data: schemas.PrescriptionWrite) -> list[tuple[str, float, str]]:
    """(name, grams, origin) from a modified classical formula, or a free composition."""
    if data.from_formula is None:
        return [(h.name, float(h.dose_g), "free") for h in data.herbs]
    if data.herbs:
        raise InvalidInput(
            "Give either from_formula (with remove/change/add) or herbs, not both.",
            field="herbs",
        )
    start = data.from_formula
    cat = catalogue()
    formula = cat.formula(start.formula)
    if formula is None:
        raise InvalidInput(
            f"Unknown formula {start.formula!r}.",
            field="from_formula.formula",
            suggestions=[f.name_zh for f in cat.search_formulas(start.formula, limit=5)],
        )

    def in_formula(name: str) -> str | None:
        """The formula's written name for a herb given as written (芍药) or by the herb
        it resolves to (白芍)."""
        herb = cat.resolve(name)
        for item in formula.herbs:
            if item.written == name.strip() or (herb is not None and item.herb == herb):
                return item.written
        return None

    removed = set()
    for index, name in enumerate(start.remove):
        found = in_formula(name)
        if found is None:
            raise InvalidInput(
                f"{name} is not in {formula.name_zh}: nothing to remove.",
                field=f"from_formula.remove.{index}",
            )
        removed.add(found)
    changes = {}
    for index, line in enumerate(start.change):
        found = in_formula(line.name)
        if found is None:
            raise InvalidInput(
                f"{line.name} is not in {formula.name_zh}: add it instead of changing it.",
                field=f"from_formula.change.{index}.name",
            )
        changes[found] = float(line.dose_g)
    lines: list[tuple[str, float, str]] = []
    for item in formula.herbs:
        if item.written in removed:
            continue
        if item.written in changes:
            lines.append((item.written, changes[item.written], "changed"))
            continue
        if not formula.is_daily_dose or item.unit != "g" or item.dose_min is None:
            why = (
                f"its doses are {formula.dose_basis}"
                if not formula.is_daily_dose
                else f"the formula gives {item.dose_text or 'no dose'}"
            )
            raise InvalidInput(
                f"{formula.name_zh}: {item.written} has no daily gram dose ({why}); "
                "give it in from_formula.change.",
                field="from_formula.change",
            )
        # A range (9-30g) starts at its lower bound: the prescriber raises it explicitly.
        lines.append((item.written, item.dose_min, "formula"))
    lines.extend((h.name, float(h.dose_g), "added") for h in start.add)
    return lines


def _apply_content(
    prescription: Prescription, data: schemas.PrescriptionWrite
) -> list[tuple[str, float, str]]:
    lines = _herbal_lines(data)
    if not lines and not data.western:
        raise InvalidInput("A prescription needs herbs or Western drugs.", field="herbs")
    field_name = "from_formula" if data.from_formula is not None else "herbs"
    resolved = resolve_herbs([HerbDose(n, g) for n, g, _ in lines], field=field_name)
    if lines and (data.dose_count is None or data.herbal_form is None):
        missing = "dose_count" if data.dose_count is None else "herbal_form"
        raise InvalidInput(
            f"An herbal part needs {missing} (剂数, decoction or granules).", field=missing
        )
    cat = catalogue()
    formula = None if data.from_formula is None else cat.formula(data.from_formula.formula)
    prescription.formula_id = None if formula is None else formula.formula_id
    prescription.formula_name = None if formula is None else formula.name_zh
    prescription.dose_count = data.dose_count if lines else None
    prescription.herbal_form = data.herbal_form if lines else None
    prescription.instructions = data.instructions
    prescription.herbs = [
        PrescriptionHerb(seq=i + 1, name=n, herb=r.herb, dose_g=g, origin=o)
        for i, ((n, g, o), r) in enumerate(zip(lines, resolved, strict=True))
    ]
    prescription.drugs = [
        PrescriptionDrug(
            seq=i + 1,
            drug=w.drug,
            dose=w.dose,
            route=w.route,
            frequency=w.frequency,
            duration_days=w.duration_days,
        )
        for i, w in enumerate(data.western)
    ]
    return lines


def _run_check(
    session: Session,
    actor: Actor,
    prescription: Prescription,
    person_id: uuid.UUID,
    facts: policy.PatientFacts,
) -> CheckOutcome:
    """Check the prescription against itself and the patient's record; store it."""
    herbs = resolve_herbs([HerbDose(h.name, h.dose_g) for h in prescription.herbs])
    own = [resolve_drug(d.drug, "this prescription") for d in prescription.drugs]
    context = patient_context.load(
        session, actor, person_id, facts, exclude_prescription=prescription.id
    )
    drugs = own + context.drugs
    findings = check_resolved(
        herbs, drugs=drugs, pregnant=context.pregnant, allergies=context.allergies
    )
    outcome = CheckOutcome(
        findings, context.pregnant, drugs, context.allergies, context.hidden_institutions
    )
    prescription.findings = [f.as_dict() for f in findings]
    prescription.check_context = outcome.context()
    prescription.checked_at = utcnow()
    return outcome


def create_prescription(
    *,
    session: Session,
    actor: Actor,
    encounter_id: uuid.UUID,
    data: schemas.PrescriptionWrite,
) -> Prescription:
    encounter, facts = _encounter_for_write(session, actor, encounter_id)
    if encounter.institution_id != actor.institution_id:
        raise Conflict("Prescribe on an encounter of your own institution.")
    person_id = facts.patient_id
    prescription = Prescription(
        id=new_id(),
        encounter_id=encounter.id,
        patient_record_id=encounter.patient_record_id,
        institution_id=encounter.institution_id,
        recorded_by=actor.user_id,
        status=PrescriptionStatus.DRAFT,
        findings=[],
        check_context={},
        checked_at=utcnow(),
    )
    _apply_content(prescription, data)
    _run_check(session, actor, prescription, person_id, facts)
    session.add(prescription)
    session.flush()
    return prescription


def update_prescription(
    *,
    session: Session,
    actor: Actor,
    prescription_id: uuid.UUID,
    data: schemas.PrescriptionWrite,
) -> Prescription:
    """Save a draft: its content is replaced and checked again."""
    prescription, person_id, facts = _prescription(
        session, actor, prescription_id, policy.AccessAction.WRITE, "update"
    )
    _own(prescription, actor)
    if prescription.status is not PrescriptionStatus.DRAFT:
        raise Conflict(f"The prescription is {prescription.status}: only drafts change.")
    _apply_content(prescription, data)
    _run_check(session, actor, prescription, person_id, facts)
    session.flush()
    return prescription


def sign_prescription(
    *,
    session: Session,
    actor: Actor,
    prescription_id: uuid.UUID,
    override_reason: str | None,
) -> Prescription:
    """Sign after a fresh check; a blocking finding needs an override reason (audited)."""
    prescription, person_id, facts = _prescription(
        session, actor, prescription_id, policy.AccessAction.WRITE, "sign"
    )
    _own(prescription, actor)
    if prescription.status is not PrescriptionStatus.DRAFT:
        raise Conflict(f"The prescription is {prescription.status}: only drafts are signed.")
    outcome = _run_check(session, actor, prescription, person_id, facts)
    blocking = [f for f in outcome.findings if f.severity == BLOCK]
    if blocking and not override_reason:
        raise InvalidInput(
            f"{len(blocking)} blocking finding(s): sign only with an override reason.",
            field="override_reason",
            findings=[f.as_dict() for f in blocking],
        )
    prescription.status = PrescriptionStatus.SIGNED
    prescription.signed_at = utcnow()
    prescription.signed_by = actor.user_id
    prescription.override_reason = override_reason if blocking else None
    if blocking:
        audit.record(
            session,
            actor,
            action="override",
            resource_type="Prescription",
            resource_id=prescription.id,
            patient_id=person_id,
            reason=override_reason,
            detail={
                "blocking_rules": sorted({f.rule for f in blocking}),
                "findings": [
                    {"rule": f.rule, "herbs": list(f.herbs), "drugs": list(f.drugs)}
                    for f in blocking
                ],
            },
        )
    session.flush()
    return prescription


def cancel_prescription(
    *, session: Session, actor: Actor, prescription_id: uuid.UUID, reason: str
) -> Prescription:
    prescription, _, _ = _prescription(
        session, actor, prescription_id, policy.AccessAction.WRITE, "cancel"
    )
    _own(prescription, actor)
    if prescription.status is PrescriptionStatus.RECORDED:
        raise Conflict("A recorded order is changed in the system that placed it, not here.")
    if prescription.status is PrescriptionStatus.CANCELLED:
        raise Conflict("The prescription is already cancelled.")
    prescription.status = PrescriptionStatus.CANCELLED
    prescription.cancelled_at = utcnow()
    prescription.cancel_reason = reason
    session.flush()
    return prescription


def get_prescription(session: Session, actor: Actor, prescription_id: uuid.UUID) -> Prescription:
    prescription, _, _ = _prescription(session, actor, prescription_id, policy.AccessAction.READ)
    return prescription


def encounter_prescriptions(
    session: Session, actor: Actor, encounter_id: uuid.UUID
) -> list[Prescription]:
    """The prescriptions written on an encounter, oldest first (read of its owner's data)."""
    encounter = session.get(Encounter, encounter_id)
    if encounter is None:
        raise NotFound(f"No encounter {encounter_id}.")
    policy.enforce(
        session,
        actor,
        patients_service.facts_of_record(session, encounter.patient_record_id),
        policy.AccessAction.READ,
        resource_type="Prescription",
        resource_id=encounter_id,
        owner_institution_id=encounter.institution_id,
    )
    return list(
        session.scalars(
            select(Prescription)
            .where(Prescription.encounter_id == encounter_id)
            .order_by(Prescription.created_at, Prescription.id)
        )
    )
