"""MPI use cases: record what the matcher did, the review queue, link and unlink.

A source record is never deleted: linking moves it to another person, unlinking
moves it to a person of its own, and every move is kept as a ``LinkEvent``.
"""

from __future__ import annotations

import uuid

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from medalliance.access import policy
from medalliance.access.permissions import Permission
from medalliance.audit import service as audit
from medalliance.domains.patients import golden
from medalliance.domains.patients.models import LinkMethod, PatientRecord, Person
from medalliance.domains.patients.mpi.comparisons import COMPARISONS
from medalliance.domains.patients.mpi.matching import (
    Candidate,
    MatchResult,
    record_features,
    shipped_model,
)
from medalliance.domains.patients.mpi.models import (
    LinkAction,
    LinkEvent,
    ReviewItem,
    ReviewStatus,
)
from medalliance.kernel.actor import Actor
from medalliance.kernel.clock import utcnow
from medalliance.kernel.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from medalliance.kernel.pagination import PageRequest, PageResult


def after_registration(
    session: Session, actor: Actor, record: PatientRecord, result: MatchResult
) -> int:
    """Keep the history of the new record and queue uncertain candidates."""
    action = LinkAction.CREATED if result.person_id is None else LinkAction.AUTO_LINKED
    _event(session, actor, record, None, record.person_id, action, str(result.method), result.score)
    queued = 0
    for candidate in result.review:
        if _decided_distinct(session, record.id, candidate.record_id):
            continue
        session.add(_review_item(record, candidate))
        queued += 1
    session.flush()
    return queued


def _review_item(record: PatientRecord, candidate: Candidate) -> ReviewItem:
    return ReviewItem(
        record_id=record.id,
        candidate_record_id=candidate.record_id,
        probability=candidate.score.probability,
        weight=candidate.score.weight,
        comparison=comparison_detail(candidate.score.levels, candidate.score.contributions),
        status=ReviewStatus.OPEN,
        created_at=utcnow(),
    )


def comparison_detail(
    levels: tuple[int | None, ...], contributions: dict[str, float]
) -> dict[str, object]:
    detail: dict[str, object] = {}
    for comp, level in zip(COMPARISONS, levels, strict=True):
        detail[comp.name] = {
            "level": None if level is None else comp.levels[level],
            "weight": round(contributions.get(comp.name, 0.0), 2),
        }
    return detail


def _decided_distinct(session: Session, a: uuid.UUID, b: uuid.UUID) -> bool:
    return (
        session.scalar(
            select(ReviewItem.id).where(
                ReviewItem.status == ReviewStatus.DISTINCT,
                or_(
                    and_(ReviewItem.record_id == a, ReviewItem.candidate_record_id == b),
                    and_(ReviewItem.record_id == b, ReviewItem.candidate_record_id == a),
                ),
            )
        )
        is not None
    )


def _event(
    session: Session,
    actor: Actor,
    record: PatientRecord,
    from_person: uuid.UUID | None,
    to_person: uuid.UUID,
    action: LinkAction,
    method: str,
    probability: float | None,
    reason: str | None = None,
) -> None:
    session.add(
        LinkEvent(
            record_id=record.id,
            from_person_id=from_person,
            to_person_id=to_person,
            action=action,
            method=method,
            probability=probability,
            actor_user_id=actor.user_id,
            reason=reason,
            at=utcnow(),
        )
    )


# --- the review queue ----------------------------------------------------------------


def _require_reviewer(actor: Actor) -> None:
    if not actor.can(Permission.MPI_REVIEW):
        raise PermissionDenied(f"Role {actor.role} may not review patient matches.")


def review_queue(
    session: Session, actor: Actor, *, status: ReviewStatus, page: PageRequest
) -> PageResult[ReviewItem]:
    """Items touching a record of the actor's institution, most likely matches first."""
    _require_reviewer(actor)
    mine = select(PatientRecord.id).where(PatientRecord.institution_id == actor.institution_id)
    query = select(ReviewItem).where(
        ReviewItem.status == status,
        or_(ReviewItem.record_id.in_(mine), ReviewItem.candidate_record_id.in_(mine)),
    )
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(
        query.order_by(ReviewItem.probability.desc(), ReviewItem.created_at)
        .limit(page.limit)
        .offset(page.offset)
    ).all()
    audit.record(
        session,
        actor,
        action="search",
        resource_type="MpiReviewItem",
        detail={"status": str(status), "returned": len(rows)},
    )
    return PageResult(items=list(rows), total=total)


def review_item(session: Session, actor: Actor, item_id: uuid.UUID) -> ReviewItem:
    _require_reviewer(actor)
    item = session.get(ReviewItem, item_id)
    if item is None:
        raise NotFound(f"No review item {item_id}.")
    record, candidate = _records(session, item)
    if actor.institution_id not in (record.institution_id, candidate.institution_id):
        raise PermissionDenied("This review item concerns no record of your institution.")
    for rec in (record, candidate):
        audit.record(
            session,
            actor,
            action="read",
            resource_type="MpiReviewItem",
            resource_id=item.id,
            patient_id=rec.person_id,
            purpose_of_use=policy.PURPOSE_TREATMENT,
        )
    return item


def _records(session: Session, item: ReviewItem) -> tuple[PatientRecord, PatientRecord]:
    record = session.get(PatientRecord, item.record_id)
    candidate = session.get(PatientRecord, item.candidate_record_id)
    assert record is not None and candidate is not None
    return record, candidate


def records_of_item(session: Session, item: ReviewItem) -> tuple[PatientRecord, PatientRecord]:
    return _records(session, item)


def decide(
    *, session: Session, actor: Actor, item_id: uuid.UUID, same_person: bool, note: str | None
) -> ReviewItem:
    item = review_item(session, actor, item_id)
    if item.status is not ReviewStatus.OPEN:
        raise Conflict(f"This pair was already decided ({item.status}).")
    record, candidate = _records(session, item)
    if same_person:
        if record.person_id != candidate.person_id:
            _move(session, actor, record, candidate.person_id, LinkAction.LINKED, note)
        item.status = ReviewStatus.LINKED
    else:
        item.status = ReviewStatus.DISTINCT
    item.decided_by, item.decided_at, item.note = actor.user_id, utcnow(), note
    audit.record(
        session,
        actor,
        action="mpi.link" if same_person else "mpi.distinct",
        resource_type="MpiReviewItem",
        resource_id=item.id,
        patient_id=candidate.person_id,
        reason=note,
        detail={"record": str(record.id), "candidate_record": str(candidate.id)},
    )
    return item


# --- link and unlink ------------------------------------------------------------------


def _move(
    session: Session,
    actor: Actor,
    record: PatientRecord,
    to_person_id: uuid.UUID,
    action: LinkAction,
    reason: str | None,
) -> None:
    from_person_id = record.person_id
    record.person_id = to_person_id
    record.link_method = LinkMethod.MANUAL
    record.link_score = None
    _event(session, actor, record, from_person_id, to_person_id, action, "manual", None, reason)
    session.flush()
    for person_id in {from_person_id, to_person_id}:
        person = session.get(Person, person_id)
        assert person is not None
        golden.refresh(session, person)


def _writable_record(session: Session, actor: Actor, record_id: uuid.UUID) -> PatientRecord:
    _require_reviewer(actor)
    record = session.get(PatientRecord, record_id)
    if record is None:
        raise NotFound(f"No patient record {record_id}.")
    if record.institution_id != actor.institution_id:
        raise PermissionDenied("Only the institution that registered a record may relink it.")
    return record


def link_record(
    *, session: Session, actor: Actor, record_id: uuid.UUID, person_id: uuid.UUID, reason: str
) -> PatientRecord:
    record = _writable_record(session, actor, record_id)
    if not reason.strip():
        raise InvalidInput("Say why these are the same person.", field="reason")
    target = policy.facts_for(session, person_id)
    if not policy.may_discover(session, actor, target):
        audit.record(
            session,
            actor,
            action="mpi.link",
            resource_type="Patient",
            resource_id=person_id,
            patient_id=person_id,
            outcome=audit.Outcome.DENIED,
            survives_rollback=True,
            reason="the target person does not share with your institution",
        )
        raise PermissionDenied("That person does not share records with your institution.")
    if record.person_id == person_id:
        raise Conflict("The record already belongs to that person.")
    source_person = record.person_id
    _move(session, actor, record, person_id, LinkAction.LINKED, reason)
    audit.record(
        session,
        actor,
        action="mpi.link",
        resource_type="PatientRecord",
        resource_id=record.id,
        patient_id=source_person,
        reason=reason,
        detail={"to_person": str(person_id)},
    )
    return record


def unlink_record(
    *, session: Session, actor: Actor, record_id: uuid.UUID, reason: str
) -> PatientRecord:
    """Split a wrongly linked record off into a person of its own."""
    record = _writable_record(session, actor, record_id)
    if not reason.strip():
        raise InvalidInput("Say why this record is another person.", field="reason")
    if len(golden.records_of(session, record.person_id)) < 2:
        raise Conflict("The record is the person's only record; there is nothing to split.")
    person = golden.new_person(session, record)
    source_person = record.person_id
    _move(session, actor, record, person.id, LinkAction.UNLINKED, reason)
    audit.record(
        session,
        actor,
        action="mpi.unlink",
        resource_type="PatientRecord",
        resource_id=record.id,
        patient_id=source_person,
        reason=reason,
        detail={"to_person": str(person.id)},
    )
    return record


def history(session: Session, actor: Actor, person_id: uuid.UUID) -> list[LinkEvent]:
    facts = policy.facts_for(session, person_id)
    policy.enforce(
        session,
        actor,
        facts,
        policy.AccessAction.READ,
        resource_type="MpiLinkEvent",
        resource_id=person_id,
    )
    record_ids = select(LinkEvent.record_id).where(
        or_(LinkEvent.to_person_id == person_id, LinkEvent.from_person_id == person_id)
    )
    return list(
        session.scalars(
            select(LinkEvent).where(LinkEvent.record_id.in_(record_ids)).order_by(LinkEvent.at)
        )
    )


def rescore(session: Session, item: ReviewItem) -> dict[str, object]:
    """The comparison as the current model sees it (for side-by-side display)."""
    record, candidate = _records(session, item)
    score = shipped_model().score(record_features(record), record_features(candidate))
    return comparison_detail(score.levels, score.contributions)
