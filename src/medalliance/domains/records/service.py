"""Writing the longitudinal record. Entries are written at the actor's institution,
on the patient's source record there, after the access policy allowed the write."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from medalliance.access import policy
from medalliance.db.base import Base
from medalliance.domains.alliance import service as alliance_service
from medalliance.domains.patients import service as patients_service
from medalliance.domains.records import schemas
from medalliance.domains.records.models import (
    Allergy,
    ClinicalNote,
    ClinicalStatus,
    Diagnosis,
    Encounter,
    EncounterStatus,
    MedicationStatement,
    MedicationStatus,
    Procedure,
)
from medalliance.kernel.actor import Actor
from medalliance.kernel.clock import utcnow
from medalliance.kernel.errors import InvalidInput, NotFound

T = TypeVar("T", bound=Base)


def _own_encounter(session: Session, actor: Actor, encounter_id: uuid.UUID, what: str) -> Encounter:
    encounter = session.get(Encounter, encounter_id)
    if encounter is None:
        raise NotFound(f"No encounter {encounter_id}.")
    person_id = patients_service.person_of_record(session, encounter.patient_record_id)
    assert person_id is not None
    facts = patients_service.facts_or_404(session, person_id)
    policy.enforce(
        session,
        actor,
        facts,
        policy.AccessAction.WRITE,
        resource_type=what,
        resource_id=encounter_id,
        audit_action="create",
        owner_institution_id=encounter.institution_id,
    )
    return encounter


def _own_encounters(
    session: Session, actor: Actor, encounter_ids: Sequence[uuid.UUID], what: str
) -> dict[uuid.UUID, Encounter]:
    """``_own_encounter`` for each entry of a batch: the same audited decision per entry,
    each encounter and each patient's facts read once. A missing encounter raises
    ``NotFound`` with ``extra['index']``."""
    found: dict[uuid.UUID, Encounter] = {}
    facts: dict[uuid.UUID, policy.PatientFacts] = {}
    for index, encounter_id in enumerate(encounter_ids):
        encounter = found.get(encounter_id) or session.get(Encounter, encounter_id)
        if encounter is None:
            raise NotFound(f"No encounter {encounter_id}.", index=index)
        found[encounter_id] = encounter
        record = encounter.patient_record_id
        if record not in facts:
            person_id = patients_service.person_of_record(session, record)
            assert person_id is not None
            facts[record] = patients_service.facts_or_404(session, person_id)
        policy.enforce(
            session,
            actor,
            facts[record],
            policy.AccessAction.WRITE,
            resource_type=what,
            resource_id=encounter_id,
            audit_action="create",
            owner_institution_id=encounter.institution_id,
        )
    return found


def create_encounter(
    *, session: Session, actor: Actor, person_id: uuid.UUID, data: schemas.EncounterCreate
) -> Encounter:
    (encounter,) = create_encounters(session=session, actor=actor, person_id=person_id, data=[data])
    return encounter


def create_encounters(
    *,
    session: Session,
    actor: Actor,
    person_id: uuid.UUID,
    data: Sequence[schemas.EncounterCreate],
) -> list[Encounter]:
    """Several encounters of one patient at the actor's institution, all or none (a FHIR
    transaction): one read of the policy facts, one audited decision per encounter, one
    insert. A bad one raises ``InvalidInput`` with ``extra['index']``."""
    record_id = patients_service.local_record_for_write(
        session, actor, person_id, "Encounter", audited=len(data)
    ).id
    departments: dict[uuid.UUID, uuid.UUID | None] = {}
    practitioners: dict[uuid.UUID, uuid.UUID | None] = {}
    for index, d in enumerate(data):
        if d.department_id is not None:
            if d.department_id not in departments:
                departments[d.department_id] = alliance_service.department_institution(
                    session, d.department_id
                )
            if departments[d.department_id] != actor.institution_id:
                raise InvalidInput(
                    "The department is not part of your institution.",
                    field="department_id",
                    index=index,
                )
        if d.practitioner_id is not None:
            if d.practitioner_id not in practitioners:
                practitioners[d.practitioner_id] = alliance_service.practitioner_institution(
                    session, d.practitioner_id
                )
            if practitioners[d.practitioner_id] != actor.institution_id:
                raise InvalidInput(
                    "The practitioner does not work at your institution.",
                    field="practitioner_id",
                    index=index,
                )
    assert actor.institution_id is not None
    encounters = [
        Encounter(
            patient_record_id=record_id,
            institution_id=actor.institution_id,
            recorded_by=actor.user_id,
            department_id=d.department_id,
            practitioner_id=d.practitioner_id or actor.practitioner_id,
            encounter_class=d.encounter_class,
            status=d.status,
            start=d.start,
            end=d.end,
            reason=d.reason,
        )
        for d in data
    ]
    session.add_all(encounters)
    session.flush()
    return encounters


def update_encounter(
    *, session: Session, actor: Actor, encounter_id: uuid.UUID, data: schemas.EncounterUpdate
) -> Encounter:
    encounter = _own_encounter(session, actor, encounter_id, "Encounter")
    changes = data.model_dump(exclude_unset=True)
    if changes.get("end") is not None and changes["end"] < encounter.start:
        raise InvalidInput("end is before the encounter's start", field="end")
    for key, value in changes.items():
        setattr(encounter, key, value)
    if encounter.status is EncounterStatus.FINISHED and encounter.end is None:
        encounter.end = utcnow()
    session.flush()
    return encounter


def add_diagnosis(
    *, session: Session, actor: Actor, encounter_id: uuid.UUID, data: schemas.DiagnosisCreate
) -> Diagnosis:
    (diagnosis,) = add_diagnoses(session=session, actor=actor, items=[(encounter_id, data)])
    return diagnosis


def add_diagnoses(
    *,
    session: Session,
    actor: Actor,
    items: Sequence[tuple[uuid.UUID, schemas.DiagnosisCreate]],
) -> list[Diagnosis]:
    """Diagnoses on encounters, all or none (a FHIR transaction): one read of each
    patient's policy facts, one audited decision per diagnosis, one insert."""
    encounters = _own_encounters(session, actor, [e for e, _ in items], "Condition")
    now = utcnow()
    diagnoses = [
        Diagnosis(
            **data.model_dump(),
            encounter_id=encounter_id,
            patient_record_id=encounters[encounter_id].patient_record_id,
            institution_id=encounters[encounter_id].institution_id,
            recorded_by=actor.user_id,
            recorded_at=now,
        )
        for encounter_id, data in items
    ]
    session.add_all(diagnoses)
    session.flush()
    return diagnoses


def add_note(
    *, session: Session, actor: Actor, encounter_id: uuid.UUID, data: schemas.NoteCreate
) -> ClinicalNote:
    encounter = _own_encounter(session, actor, encounter_id, "ClinicalNote")
    note = ClinicalNote(
        encounter_id=encounter.id,
        patient_record_id=encounter.patient_record_id,
        institution_id=encounter.institution_id,
        recorded_by=actor.user_id,
        kind=data.kind,
        text=data.text,
        tcm_exam=None if data.tcm_exam is None else data.tcm_exam.model_dump(exclude_none=True),
        recorded_at=utcnow(),
    )
    session.add(note)
    session.flush()
    return note


def add_procedure(
    *, session: Session, actor: Actor, encounter_id: uuid.UUID, data: schemas.ProcedureCreate
) -> Procedure:
    (procedure,) = add_procedures(session=session, actor=actor, items=[(encounter_id, data)])
    return procedure


def add_procedures(
    *,
    session: Session,
    actor: Actor,
    items: Sequence[tuple[uuid.UUID, schemas.ProcedureCreate]],
) -> list[Procedure]:
    """Procedures on encounters, all or none, as ``add_diagnoses``."""
    encounters = _own_encounters(session, actor, [e for e, _ in items], "Procedure")
    procedures = [
        Procedure(
            **data.model_dump(),
            encounter_id=encounter_id,
            patient_record_id=encounters[encounter_id].patient_record_id,
            institution_id=encounters[encounter_id].institution_id,
            recorded_by=actor.user_id,
        )
        for encounter_id, data in items
    ]
    session.add_all(procedures)
    session.flush()
    return procedures


def add_allergy(
    *, session: Session, actor: Actor, person_id: uuid.UUID, data: schemas.AllergyCreate
) -> Allergy:
    record_id = patients_service.local_record_for_write(
        session, actor, person_id, "AllergyIntolerance"
    ).id
    assert actor.institution_id is not None
    allergy = Allergy(
        **data.model_dump(),
        patient_record_id=record_id,
        institution_id=actor.institution_id,
        recorded_by=actor.user_id,
        status=ClinicalStatus.ACTIVE,
        recorded_at=utcnow(),
    )
    session.add(allergy)
    session.flush()
    return allergy


def add_medication(
    *, session: Session, actor: Actor, person_id: uuid.UUID, data: schemas.MedicationCreate
) -> MedicationStatement:
    record_id = patients_service.local_record_for_write(
        session, actor, person_id, "MedicationStatement"
    ).id
    assert actor.institution_id is not None
    statement = MedicationStatement(
        **data.model_dump(),
        patient_record_id=record_id,
        institution_id=actor.institution_id,
        recorded_by=actor.user_id,
        recorded_at=utcnow(),
    )
    session.add(statement)
    session.flush()
    return statement


STATUS_TYPES: dict[str, tuple[type[Any], type[Any]]] = {
    "diagnoses": (Diagnosis, ClinicalStatus),
    "allergies": (Allergy, ClinicalStatus),
    "medications": (MedicationStatement, MedicationStatus),
}


def set_status(
    *, session: Session, actor: Actor, kind: str, entry_id: uuid.UUID, status: str
) -> Any:
    """Resolve, stop or mark entered-in-error; only the writing institution may."""
    model, statuses = STATUS_TYPES[kind]
    entry = session.get(model, entry_id)
    if entry is None:
        raise NotFound(f"No {kind[:-1]} {entry_id}.")
    try:
        new_status = statuses(status)
    except ValueError as exc:
        allowed = ", ".join(s.value for s in statuses)
        raise InvalidInput(f"status must be one of {allowed}", field="status") from exc
    policy.enforce(
        session,
        actor,
        patients_service.facts_of_record(session, entry.patient_record_id),
        policy.AccessAction.WRITE,
        resource_type=model.__name__,
        resource_id=entry_id,
        audit_action="update",
        owner_institution_id=entry.institution_id,
    )
    if entry.institution_id != actor.institution_id:
        raise InvalidInput(
            "Only the institution that wrote an entry may change it.", field="status"
        )
    entry.status = new_status
    session.flush()
    return entry


# --- reads for other domains (the caller has already passed the policy) ----------------


def active_medications(session: Session, person_id: uuid.UUID) -> list[MedicationStatement]:
    records = patients_service.record_ids_of(session, person_id)
    return list(
        session.scalars(
            select(MedicationStatement).where(
                MedicationStatement.patient_record_id.in_(records),
                MedicationStatement.status == MedicationStatus.ACTIVE,
            )
        )
    )


def active_allergies(session: Session, person_id: uuid.UUID) -> list[Allergy]:
    records = patients_service.record_ids_of(session, person_id)
    return list(
        session.scalars(
            select(Allergy).where(
                Allergy.patient_record_id.in_(records), Allergy.status == ClinicalStatus.ACTIVE
            )
        )
    )


def encounter_records(
    session: Session, encounter_ids: list[uuid.UUID]
) -> dict[uuid.UUID, uuid.UUID]:
    """encounter id -> the source record it belongs to, for many in one query (another
    domain checks that an encounter is its patient's)."""
    if not encounter_ids:
        return {}
    rows = session.execute(
        select(Encounter.id, Encounter.patient_record_id).where(Encounter.id.in_(encounter_ids))
    )
    return {r[0]: r[1] for r in rows}


def get_encounter(
    session: Session, actor: Actor, encounter_id: uuid.UUID
) -> tuple[Encounter, list[Diagnosis], list[ClinicalNote], list[Procedure]]:
    encounter = session.get(Encounter, encounter_id)
    if encounter is None:
        raise NotFound(f"No encounter {encounter_id}.")
    policy.enforce(
        session,
        actor,
        patients_service.facts_of_record(session, encounter.patient_record_id),
        policy.AccessAction.READ,
        resource_type="Encounter",
        resource_id=encounter_id,
        owner_institution_id=encounter.institution_id,
    )
    diagnoses = list(
        session.scalars(select(Diagnosis).where(Diagnosis.encounter_id == encounter_id))
    )
    notes = list(
        session.scalars(select(ClinicalNote).where(ClinicalNote.encounter_id == encounter_id))
    )
    procedures = list(
        session.scalars(select(Procedure).where(Procedure.encounter_id == encounter_id))
    )
    return encounter, diagnoses, notes, procedures


def active_diagnosis_codes(
    session: Session, record_ids: list[uuid.UUID]
) -> dict[uuid.UUID, set[str]]:
    """The ICD-10 codes of active diagnoses on each of these source records."""
    if not record_ids:
        return {}
    found: dict[uuid.UUID, set[str]] = {}
    rows = session.execute(
        select(Diagnosis.patient_record_id, Diagnosis.western_code).where(
            Diagnosis.patient_record_id.in_(record_ids),
            Diagnosis.status == ClinicalStatus.ACTIVE,
            Diagnosis.western_code.is_not(None),
        )
    )
    for record_id, code in rows:
        if code is not None:
            found.setdefault(record_id, set()).add(code)
    return found
