"""Find a patient, open the chart, break the glass."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request, Response

from medalliance.access import break_glass, policy
from medalliance.access.permissions import Permission
from medalliance.api.deps import DbSession
from medalliance.domains.patients import service as patients_service
from medalliance.domains.patients.schemas import PatientRead, PatientSummary
from medalliance.kernel.errors import InvalidInput, NotFound, PermissionDenied
from medalliance.web import i18n
from medalliance.web.forms import FormErrors
from medalliance.web.render import flash, redirect, render, settings_of
from medalliance.web.session import WebUser, require_permission

router = APIRouter(prefix="/patients")

Reader = Annotated[WebUser, Depends(require_permission(Permission.PATIENT_READ))]
SEARCH_LIMIT = 20
N_ = i18n.N_
SECTIONS = (
    ("timeline", N_("Timeline")),
    ("diagnoses", N_("Diagnoses")),
    ("results", N_("Results")),
    ("prescriptions", N_("Prescriptions")),
    ("constitution", N_("Constitution")),
    ("devices", N_("Devices and readings")),
)


@router.get("")
def search_page(
    request: Request,
    session: DbSession,
    user: Reader,
    q: Annotated[str, Query(max_length=100)] = "",
) -> Response:
    """The search page; with HTMX only the result list is sent back as one types."""
    errors = FormErrors()
    hits: list[PatientSummary] | None = None
    if q.strip():
        try:
            hits = patients_service.search(session, user.actor, q, limit=SEARCH_LIMIT, offset=0)
        except InvalidInput as exc:
            errors.add_domain(exc)
    fragment = bool(request.headers.get("hx-request"))
    template = "patients/_results.html" if fragment else "patients/search.html"
    return render(request, template, q=q, hits=hits, errors=errors)


def read_patient(
    session: DbSession, request: Request, user: WebUser, patient_id: uuid.UUID
) -> PatientRead:
    """The patient through the policy (audited); the banner shows while the user's
    emergency access to this patient is in force."""
    patient = patients_service.get(session, user.actor, patient_id)
    request.state.break_glass = policy.active_break_glass(session, user.actor, patient_id)
    return patient


@router.get("/{patient_id}")
def chart(
    request: Request,
    session: DbSession,
    user: Reader,
    patient_id: uuid.UUID,
    tab: Annotated[str, Query(max_length=20)] = "timeline",
) -> Response:
    try:
        patient = read_patient(session, request, user, patient_id)
    except PermissionDenied:
        # Audited by the policy; the denial row is committed with this response.
        if not user.can(Permission.BREAK_GLASS):
            raise
        return _dialog(request, patient_id, FormErrors(), "", status_code=403)
    known = {name for name, _label in SECTIONS}
    return render(
        request,
        "patients/chart.html",
        patient=patient,
        sections=SECTIONS,
        tab=tab if tab in known else "timeline",
    )


def _dialog(
    request: Request, patient_id: uuid.UUID, errors: FormErrors, reason: str, status_code: int
) -> Response:
    return render(
        request,
        "patients/break_glass.html",
        status_code=status_code,
        patient_id=patient_id,
        errors=errors,
        reason=reason,
        minutes=settings_of(request).break_glass_minutes,
        min_chars=break_glass.MIN_REASON_CHARS,
    )


@router.post("/{patient_id}/break-glass")
def start_break_glass(
    request: Request,
    session: DbSession,
    user: Reader,
    patient_id: uuid.UUID,
    reason: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    errors = FormErrors()
    try:
        break_glass.start(
            session=session,
            actor=user.actor,
            settings=settings_of(request),
            patient_id=patient_id,
            reason=reason,
        )
    except InvalidInput as exc:
        errors.add_domain(exc)
        return _dialog(request, patient_id, errors, reason, status_code=422)
    response = redirect(request, f"/patients/{patient_id}")
    flash(response, N_("Emergency access started. It is recorded and will be reviewed."))
    return response


@router.post("/{patient_id}/break-glass/end")
def end_break_glass(
    request: Request, session: DbSession, user: Reader, patient_id: uuid.UUID
) -> Response:
    grant = policy.active_break_glass(session, user.actor, patient_id)
    if grant is None:
        raise NotFound(f"No emergency access in force for patient {patient_id}.")
    break_glass.end(session=session, actor=user.actor, grant_id=grant.id)
    response = redirect(request, "/patients")
    flash(response, N_("Emergency access ended."), kind="success")
    return response
