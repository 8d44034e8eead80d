"""JSON API of patients and their consent."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Response

from medalliance.access.permissions import Permission
from medalliance.api.deps import DbSession, Page, require
from medalliance.domains.patients import service
from medalliance.domains.patients.schemas import (
    ConsentIn,
    ConsentRead,
    PatientCreate,
    PatientRead,
    PatientSummary,
    PatientUpdate,
    RegistrationResult,
)
from medalliance.kernel.actor import Actor

router = APIRouter(prefix="/api/patients", tags=["patients"])

Reader = Annotated[Actor, Depends(require(Permission.PATIENT_READ))]
Writer = Annotated[Actor, Depends(require(Permission.PATIENT_WRITE))]


@router.get("", response_model=list[PatientSummary])
def search_patients(
    session: DbSession,
    actor: Reader,
    page: Page,
    q: Annotated[
        str, Query(min_length=1, max_length=100, description="Name, pinyin, initials, ID or phone")
    ],
) -> list[PatientSummary]:
    """Find people across the alliance that you may see. ID numbers and phones are masked."""
    return service.search(session, actor, q, limit=page.limit, offset=page.offset)


@router.post("", response_model=RegistrationResult, status_code=201)
def register_patient(
    body: PatientCreate,
    session: DbSession,
    actor: Writer,
    response: Response,
    idempotency_key: Annotated[str | None, Header(max_length=100)] = None,
) -> RegistrationResult:
    """Register at your institution; the MPI links the record to the right person.

    Send an ``Idempotency-Key`` header to make retries safe: the same key returns the
    first registration (200) instead of creating a second patient.
    """
    result = service.register(
        session=session, actor=actor, data=body, idempotency_key=idempotency_key
    )
    if not result.created:
        response.status_code = 200
    return result


@router.get("/{patient_id}", response_model=PatientRead)
def read_patient(patient_id: uuid.UUID, session: DbSession, actor: Reader) -> PatientRead:
    return service.get(session, actor, patient_id)


@router.patch("/records/{record_id}", response_model=PatientRead)
def update_patient_record(
    record_id: uuid.UUID, body: PatientUpdate, session: DbSession, actor: Writer
) -> PatientRead:
    """Change a source record registered at your institution."""
    return service.update_record(session=session, actor=actor, record_id=record_id, data=body)


@router.get("/{patient_id}/consent", response_model=list[ConsentRead])
def consent_history(patient_id: uuid.UUID, session: DbSession, actor: Reader) -> list[ConsentRead]:
    """Recorded consent, newest first (empty: the alliance default applies)."""
    return service.consent_history(session, actor, patient_id)


@router.post("/{patient_id}/consent", response_model=ConsentRead, status_code=201)
def record_consent(
    patient_id: uuid.UUID, body: ConsentIn, session: DbSession, actor: Writer
) -> ConsentRead:
    """Record the patient's decision on alliance-wide sharing, with any excluded members."""
    return service.record_consent(session=session, actor=actor, person_id=patient_id, data=body)
