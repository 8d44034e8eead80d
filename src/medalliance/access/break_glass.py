"""Break-the-glass: an audited emergency override, queued for retrospective review.

Audit codes follow the FHIR break-glass AuditEvent example (WORKFLOWS.md §6, [S66]):
type DCM 110113 "Security Alert", subtype DCM 110127 "Emergency Override Started";
the stop code 110128 is marked unverified there.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from medalliance.access import policy
from medalliance.access.models import BreakGlassGrant
from medalliance.access.permissions import Permission
from medalliance.audit import service as audit
from medalliance.config import Settings
from medalliance.jobs import service as jobs
from medalliance.kernel.actor import Actor
from medalliance.kernel.clock import utcnow
from medalliance.kernel.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from medalliance.kernel.pagination import PageRequest, PageResult

MIN_REASON_CHARS = 4
REVIEW_JOB = "access.break_glass_review"


def start(
    *, session: Session, actor: Actor, settings: Settings, patient_id: uuid.UUID, reason: str
) -> BreakGlassGrant:
    if not actor.can(Permission.BREAK_GLASS):
        raise PermissionDenied(f"Role {actor.role} may not break the glass.")
    reason = reason.strip()
    if len(reason) < MIN_REASON_CHARS:
        raise InvalidInput(
            "State the emergency: a reason of at least "
            f"{MIN_REASON_CHARS} characters is required to break the glass.",
            field="reason",
        )
    policy.facts_for(session, patient_id)  # the patient must exist
    now = utcnow()
    assert actor.user_id is not None
    grant = BreakGlassGrant(
        user_id=actor.user_id,
        institution_id=actor.institution_id,
        patient_id=patient_id,
        reason=reason,
        started_at=now,
        expires_at=now + timedelta(minutes=settings.break_glass_minutes),
    )
    session.add(grant)
    session.flush()
    audit.record(
        session,
        actor,
        action="break-glass.start",
        resource_type="BreakGlassGrant",
        resource_id=grant.id,
        patient_id=patient_id,
        purpose_of_use=policy.PURPOSE_EMERGENCY,
        reason=reason,
        detail={"type": "DCM 110113", "subtype": "DCM 110127", "expires_at": str(grant.expires_at)},
    )
    jobs.enqueue(
        session,
        REVIEW_JOB,
        {"grant_id": str(grant.id)},
        idempotency_key=f"{REVIEW_JOB}:{grant.id}",
    )
    return grant


def end(*, session: Session, actor: Actor, grant_id: uuid.UUID) -> BreakGlassGrant:
    grant = session.get(BreakGlassGrant, grant_id)
    if grant is None or grant.user_id != actor.user_id:
        raise NotFound(f"No break-the-glass grant {grant_id} of yours.")
    if grant.ended_at is not None:
        raise Conflict("This break-the-glass grant has already ended.")
    grant.ended_at = utcnow()
    audit.record(
        session,
        actor,
        action="break-glass.end",
        resource_type="BreakGlassGrant",
        resource_id=grant.id,
        patient_id=grant.patient_id,
        purpose_of_use=policy.PURPOSE_EMERGENCY,
        detail={"type": "DCM 110113", "subtype": "DCM 110128"},
    )
    return grant


def list_grants(
    *, session: Session, actor: Actor, unreviewed_only: bool, page: PageRequest
) -> PageResult[BreakGlassGrant]:
    """Auditors see every grant (the review queue); others see their own."""
    query = select(BreakGlassGrant)
    if not actor.can(Permission.BREAK_GLASS_REVIEW):
        query = query.where(BreakGlassGrant.user_id == actor.user_id)
    if unreviewed_only:
        query = query.where(BreakGlassGrant.reviewed_at.is_(None))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(
        query.order_by(BreakGlassGrant.started_at.desc()).limit(page.limit).offset(page.offset)
    ).all()
    audit.record(
        session,
        actor,
        action="search",
        resource_type="BreakGlassGrant",
        detail={"unreviewed_only": unreviewed_only, "returned": len(rows)},
    )
    return PageResult(items=list(rows), total=total)


def review(*, session: Session, actor: Actor, grant_id: uuid.UUID, note: str) -> BreakGlassGrant:
    if not actor.can(Permission.BREAK_GLASS_REVIEW):
        raise PermissionDenied("Only auditors review break-the-glass access.")
    grant = session.get(BreakGlassGrant, grant_id)
    if grant is None:
        raise NotFound(f"No break-the-glass grant {grant_id}.")
    if grant.reviewed_at is not None:
        raise Conflict("This grant has already been reviewed.")
    if not note.strip():
        raise InvalidInput("A review note is required.", field="note")
    grant.reviewed_at, grant.reviewed_by, grant.review_note = utcnow(), actor.user_id, note.strip()
    audit.record(
        session,
        actor,
        action="break-glass.review",
        resource_type="BreakGlassGrant",
        resource_id=grant.id,
        patient_id=grant.patient_id,
        reason=note.strip(),
    )
    return grant
