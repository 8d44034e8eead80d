"""JSON API of the longitudinal record and the timeline."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from medalliance.access.permissions import Permission
from medalliance.api.deps import DbSession, require
from medalliance.domains.records import schemas, service, timeline
from medalliance.kernel.actor import Actor

router = APIRouter(prefix="/api", tags=["longitudinal record"])

Reader = Annotated[Actor, Depends(require(Permission.PATIENT_READ))]
Writer = Annotated[Actor, Depends(require(Permission.PATIENT_WRITE))]


@router.get("/patients/{patient_id}/timeline", response_model=schemas.Timeline)
def patient_timeline(
    patient_id: uuid.UUID,
    session: DbSession,
    actor: Reader,
    types: Annotated[str | None, Query(description="Comma-separated entry types")] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> schemas.Timeline:
    """Everything the alliance holds on the patient that you may see, newest first,
    each entry labelled with the member that wrote it."""
    wanted = None if not types else [t.strip() for t in types.split(",") if t.strip()]
    return timeline.timeline(
        session,
        actor,
        patient_id,
        types=wanted,
        since=since,
        until=until,
        limit=limit,
        offset=offset,
    )


@router.post(
    "/patients/{patient_id}/encounters", response_model=schemas.EncounterRead, status_code=201
)
def create_encounter(
    patient_id: uuid.UUID, body: schemas.EncounterCreate, session: DbSession, actor: Writer
) -> schemas.EncounterRead:
    return schemas.EncounterRead.model_validate(
        service.create_encounter(session=session, actor=actor, person_id=patient_id, data=body)
    )


@router.get("/encounters/{encounter_id}", response_model=schemas.EncounterDetail)
def read_encounter(
    encounter_id: uuid.UUID, session: DbSession, actor: Reader
) -> schemas.EncounterDetail:
    encounter, diagnoses, notes, procedures = service.get_encounter(session, actor, encounter_id)
    base = schemas.EncounterRead.model_validate(encounter)
    return schemas.EncounterDetail(
        **base.model_dump(),
        diagnoses=[schemas.DiagnosisRead.model_validate(d) for d in diagnoses],
        notes=[schemas.NoteRead.model_validate(n) for n in notes],
        procedures=[schemas.ProcedureRead.model_validate(p) for p in procedures],
    )


@router.patch("/encounters/{encounter_id}", response_model=schemas.EncounterRead)
def update_encounter(
    encounter_id: uuid.UUID, body: schemas.EncounterUpdate, session: DbSession, actor: Writer
) -> schemas.EncounterRead:
    return schemas.EncounterRead.model_validate(
        service.update_encounter(session=session, actor=actor, encounter_id=encounter_id, data=body)
    )


@router.post(
    "/encounters/{encounter_id}/diagnoses", response_model=schemas.DiagnosisRead, status_code=201
)
def add_diagnosis(
    encounter_id: uuid.UUID, body: schemas.DiagnosisCreate, session: DbSession, actor: Writer
) -> schemas.DiagnosisRead:
    """An integrated diagnosis: ICD-10 with TCM disease and pattern (GB/T 15657 or ICD-11 TM1)."""
    return schemas.DiagnosisRead.model_validate(
        service.add_diagnosis(session=session, actor=actor, encounter_id=encounter_id, data=body)
    )


@router.post("/encounters/{encounter_id}/notes", response_model=schemas.NoteRead, status_code=201)
def add_note(
    encounter_id: uuid.UUID, body: schemas.NoteCreate, session: DbSession, actor: Writer
) -> schemas.NoteRead:
    """A clinical note; kind ``tcm_four_examinations`` records 望闻问切 with tongue and pulse."""
    return schemas.NoteRead.model_validate(
        service.add_note(session=session, actor=actor, encounter_id=encounter_id, data=body)
    )


@router.post(
    "/encounters/{encounter_id}/procedures", response_model=schemas.ProcedureRead, status_code=201
)
def add_procedure(
    encounter_id: uuid.UUID, body: schemas.ProcedureCreate, session: DbSession, actor: Writer
) -> schemas.ProcedureRead:
    return schemas.ProcedureRead.model_validate(
        service.add_procedure(session=session, actor=actor, encounter_id=encounter_id, data=body)
    )


@router.post(
    "/patients/{patient_id}/allergies", response_model=schemas.AllergyRead, status_code=201
)
def add_allergy(
    patient_id: uuid.UUID, body: schemas.AllergyCreate, session: DbSession, actor: Writer
) -> schemas.AllergyRead:
    return schemas.AllergyRead.model_validate(
        service.add_allergy(session=session, actor=actor, person_id=patient_id, data=body)
    )


@router.post(
    "/patients/{patient_id}/medications", response_model=schemas.MedicationRead, status_code=201
)
def add_medication(
    patient_id: uuid.UUID, body: schemas.MedicationCreate, session: DbSession, actor: Writer
) -> schemas.MedicationRead:
    return schemas.MedicationRead.model_validate(
        service.add_medication(session=session, actor=actor, person_id=patient_id, data=body)
    )


@router.patch("/diagnoses/{entry_id}", response_model=schemas.DiagnosisRead)
def set_diagnosis_status(
    entry_id: uuid.UUID, body: schemas.StatusUpdate, session: DbSession, actor: Writer
) -> schemas.DiagnosisRead:
    return schemas.DiagnosisRead.model_validate(
        service.set_status(
            session=session, actor=actor, kind="diagnoses", entry_id=entry_id, status=body.status
        )
    )


@router.patch("/allergies/{entry_id}", response_model=schemas.AllergyRead)
def set_allergy_status(
    entry_id: uuid.UUID, body: schemas.StatusUpdate, session: DbSession, actor: Writer
) -> schemas.AllergyRead:
    return schemas.AllergyRead.model_validate(
        service.set_status(
            session=session, actor=actor, kind="allergies", entry_id=entry_id, status=body.status
        )
    )


@router.patch("/medications/{entry_id}", response_model=schemas.MedicationRead)
def set_medication_status(
    entry_id: uuid.UUID, body: schemas.StatusUpdate, session: DbSession, actor: Writer
) -> schemas.MedicationRead:
    return schemas.MedicationRead.model_validate(
        service.set_status(
            session=session, actor=actor, kind="medications", entry_id=entry_id, status=body.status
        )
    )
