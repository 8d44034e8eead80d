"""The landing page: what the user's role works on first."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request, Response

from medalliance.access import policy
from medalliance.access.permissions import Permission
from medalliance.api.deps import DbSession
from medalliance.audit import service as audit
from medalliance.domains.patients import service as patients_service
from medalliance.domains.patients.schemas import PatientRead
from medalliance.kernel.pagination import PageRequest
from medalliance.kernel.roles import Role
from medalliance.web.render import render
from medalliance.web.session import WebUser, WebUserDep

router = APIRouter()

RECENT = 8


@router.get("/")
def landing(request: Request, session: DbSession, user: WebUserDep) -> Response:
    recent = recent_patients(session, user) if user.can(Permission.PATIENT_READ) else []
    return render(
        request,
        "home.html",
        recent=recent,
        is_admin=user.role in (Role.ALLIANCE_ADMIN, Role.INSTITUTION_ADMIN),
        is_desk=user.role in (Role.NURSE, Role.CARE_MANAGER),
        is_auditor=user.role is Role.AUDITOR,
        may_search=user.can(Permission.PATIENT_READ),
        may_review=user.can(Permission.MPI_REVIEW),
        may_prescribe=user.can(Permission.PRESCRIBE),
    )


def recent_patients(session: DbSession, user: WebUser) -> list[PatientRead]:
    """The patients this user opened last (from their own audit trail) that they may
    still read; each shown is a read, audited like any other."""
    events = audit.search(
        session,
        audit.AuditFilter(actor_user_id=user.actor.user_id, action="read", resource_type="Patient"),
        PageRequest(limit=50, offset=0),
    ).items
    seen: list[uuid.UUID] = []
    for event in events:
        if event.patient_id is not None and event.patient_id not in seen:
            seen.append(event.patient_id)
    found: list[PatientRead] = []
    for patient_id in seen:
        facts = patients_service.facts(session, patient_id)
        if facts is None:
            continue
        # Decide before reading, so that a patient no longer in reach is left out
        # instead of writing a denial on every visit to the landing page.
        if not policy.decide(session, user.actor, facts, policy.AccessAction.READ).allowed:
            continue
        found.append(patients_service.get(session, user.actor, patient_id))
        if len(found) >= RECENT:
            break
    return found
