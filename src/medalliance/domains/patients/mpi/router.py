"""JSON API of the master patient index: the review queue, link, unlink, history."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from sqlalchemy.orm import Session

from medalliance.access.permissions import Permission
from medalliance.api.deps import DbSession, Page, require
from medalliance.domains.alliance import service as alliance_service
from medalliance.domains.patients.mpi import service
from medalliance.domains.patients.mpi.models import ReviewItem, ReviewStatus
from medalliance.domains.patients.mpi.schemas import (
    COMPARED_FIELDS,
    LinkEventRead,
    LinkRequest,
    RecordLink,
    ReviewDecision,
    ReviewItemRead,
    ReviewRecord,
    UnlinkRequest,
)
from medalliance.kernel.actor import Actor

router = APIRouter(prefix="/api/mpi", tags=["master patient index"])

Reviewer = Annotated[Actor, Depends(require(Permission.MPI_REVIEW))]
Reader = Annotated[Actor, Depends(require(Permission.PATIENT_READ))]


def _read(session: Session, item: ReviewItem) -> ReviewItemRead:
    record, candidate = service.records_of_item(session, item)
    codes = alliance_service.institution_codes(
        session, [record.institution_id, candidate.institution_id]
    )
    left, right = ReviewRecord.model_validate(record), ReviewRecord.model_validate(candidate)
    left.institution_code = codes.get(record.institution_id, "")
    right.institution_code = codes.get(candidate.institution_id, "")
    differing = [f for f in COMPARED_FIELDS if getattr(left, f) != getattr(right, f)]
    return ReviewItemRead(
        id=item.id,
        status=item.status,
        probability=item.probability,
        weight=item.weight,
        record=left,
        candidate=right,
        differing_fields=differing,
        comparison=item.comparison,
        created_at=item.created_at,
        decided_by=item.decided_by,
        decided_at=item.decided_at,
        note=item.note,
    )


@router.get("/review", response_model=list[ReviewItemRead])
def review_queue(
    session: DbSession,
    actor: Reviewer,
    page: Page,
    response: Response,
    status: ReviewStatus = ReviewStatus.OPEN,
) -> list[ReviewItemRead]:
    """Uncertain matches touching your institution, most likely first."""
    result = service.review_queue(session, actor, status=status, page=page)
    response.headers["X-Total-Count"] = str(result.total)
    return [_read(session, item) for item in result.items]


@router.get("/review/{item_id}", response_model=ReviewItemRead)
def review_item(item_id: uuid.UUID, session: DbSession, actor: Reviewer) -> ReviewItemRead:
    """The two records side by side, with the fields that differ."""
    return _read(session, service.review_item(session, actor, item_id))


@router.post("/review/{item_id}/decision", response_model=ReviewItemRead)
def decide(
    item_id: uuid.UUID, body: ReviewDecision, session: DbSession, actor: Reviewer
) -> ReviewItemRead:
    """Link the pair, or mark them as different people (never proposed again)."""
    item = service.decide(
        session=session, actor=actor, item_id=item_id, same_person=body.same_person, note=body.note
    )
    return _read(session, item)


@router.post("/records/{record_id}/link", response_model=RecordLink)
def link_record(
    record_id: uuid.UUID, body: LinkRequest, session: DbSession, actor: Reviewer
) -> RecordLink:
    record = service.link_record(
        session=session,
        actor=actor,
        record_id=record_id,
        person_id=body.person_id,
        reason=body.reason,
    )
    return RecordLink(record_id=record.id, person_id=record.person_id)


@router.post("/records/{record_id}/unlink", response_model=RecordLink)
def unlink_record(
    record_id: uuid.UUID, body: UnlinkRequest, session: DbSession, actor: Reviewer
) -> RecordLink:
    """Split a wrongly linked record off into a person of its own; history is kept."""
    record = service.unlink_record(
        session=session, actor=actor, record_id=record_id, reason=body.reason
    )
    return RecordLink(record_id=record.id, person_id=record.person_id)


@router.get("/persons/{person_id}/history", response_model=list[LinkEventRead])
def link_history(person_id: uuid.UUID, session: DbSession, actor: Reader) -> list[LinkEventRead]:
    """Every link and unlink of the person's source records, oldest first."""
    return [LinkEventRead.model_validate(e) for e in service.history(session, actor, person_id)]
