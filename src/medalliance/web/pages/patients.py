"""Find a patient, open the chart, break the glass."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from medalliance.access.permissions import Permission
from medalliance.api.deps import DbSession
from medalliance.domains.patients import service as patients_service
from medalliance.domains.patients.schemas import PatientSummary
from medalliance.kernel.errors import InvalidInput
from medalliance.web.forms import FormErrors
from medalliance.web.render import render
from medalliance.web.session import WebUser, require_permission

router = APIRouter(prefix="/patients")

Reader = Annotated[WebUser, Depends(require_permission(Permission.PATIENT_READ))]
SEARCH_LIMIT = 20


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
    template = (
        "patients/_results.html" if request.headers.get("hx-request") else "patients/search.html"
    )
    return render(request, template, q=q, hits=hits, errors=errors)
