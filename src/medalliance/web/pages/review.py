"""The MPI review queue: uncertain matches touching the user's institution, each pair
side by side with the fields that differ highlighted, the match probability and how
each field compared; link them, or keep them apart (never proposed again). The same
use cases as /api/mpi/review."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy.orm import Session

from medalliance.access.permissions import Permission
from medalliance.api.deps import DbSession
from medalliance.api.problems import status_for
from medalliance.domains.alliance import service as alliance_service
from medalliance.domains.patients.mpi import service as mpi_service
from medalliance.domains.patients.mpi.models import ReviewItem, ReviewStatus
from medalliance.domains.patients.mpi.schemas import COMPARED_FIELDS, ReviewRecord
from medalliance.kernel.errors import DomainError, PermissionDenied
from medalliance.kernel.pagination import PageRequest
from medalliance.web import i18n
from medalliance.web.forms import FormErrors
from medalliance.web.pages.clinical_forms import PostedForm, attempt, text
from medalliance.web.render import flash, redirect, render
from medalliance.web.session import WebUser, require_permission

router = APIRouter(prefix="/review")
Reviewer = Annotated[WebUser, Depends(require_permission(Permission.MPI_REVIEW))]
N_ = i18n.N_
PAGE_SIZE = 10
NOTE_MAX = 2000

FIELD_LABELS = {
    "name": N_("Name"),
    "name_pinyin": N_("Pinyin"),
    "sex": N_("Sex"),
    "birth_date": N_("Birth date"),
    "id_number": N_("ID number"),
    "phones": N_("Phones"),
    "province": N_("Province"),
    "city": N_("City"),
    "district": N_("District"),
    "street": N_("Street"),
    "postcode": N_("Postcode"),
}
COMPARISON_LABELS = {
    "family_name": N_("Family name"),
    "given_name": N_("Given name"),
    "birth_date": N_("Birth date"),
    "sex": N_("Sex"),
    "id_number": N_("ID number"),
    "phone": N_("Phone"),
    "street": N_("Street"),
    "locality": N_("Locality"),
}
LEVEL_LABELS = {
    "exact": N_("exact"),
    "homophone": N_("homophone"),
    "similar": N_("similar"),
    "somewhat similar": N_("somewhat similar"),
    "different": N_("different"),
    "typo or day/month swap": N_("typo or day/month swap"),
    "same year": N_("same year"),
    "same": N_("same"),
    "one edit": N_("one edit"),
    "two edits": N_("two edits"),
    "shared": N_("shared"),
    "all agree": N_("all agree"),
    "some agree": N_("some agree"),
}
STATUS_LABELS = {
    ReviewStatus.OPEN: N_("Open"),
    ReviewStatus.LINKED: N_("Linked"),
    ReviewStatus.DISTINCT: N_("Kept apart"),
}


def _pair(session: Session, item: ReviewItem) -> dict[str, Any]:
    """The two records side by side, as the API shows them, with the differing fields."""
    record, candidate = mpi_service.records_of_item(session, item)
    codes = alliance_service.institution_codes(
        session, [record.institution_id, candidate.institution_id]
    )
    left, right = ReviewRecord.model_validate(record), ReviewRecord.model_validate(candidate)
    left.institution_code = codes.get(record.institution_id, "")
    right.institution_code = codes.get(candidate.institution_id, "")
    return {
        "item": item,
        "left": left,
        "right": right,
        "differing": [f for f in COMPARED_FIELDS if getattr(left, f) != getattr(right, f)],
        "comparison": item.comparison,
    }


def _labels() -> dict[str, Any]:
    return {
        "fields": COMPARED_FIELDS,
        "field_labels": FIELD_LABELS,
        "comparison_labels": COMPARISON_LABELS,
        "level_labels": LEVEL_LABELS,
        "status_labels": STATUS_LABELS,
    }


def _queue(
    request: Request,
    session: Session,
    user: WebUser,
    status: ReviewStatus,
    offset: int,
    *,
    errors: FormErrors | None = None,
    status_code: int = 200,
) -> Response:
    page = mpi_service.review_queue(
        session, user.actor, status=status, page=PageRequest(limit=PAGE_SIZE, offset=offset)
    )
    return render(
        request,
        "review/queue.html",
        status_code,
        pairs=[_pair(session, item) for item in page.items],
        page_ids={str(item.id) for item in page.items},
        total=page.total,
        offset=offset,
        limit=PAGE_SIZE,
        status=status,
        errors=errors if errors is not None else FormErrors(),
        **_labels(),
    )


@router.get("")
def queue_page(
    request: Request,
    session: DbSession,
    user: Reviewer,
    status: ReviewStatus = ReviewStatus.OPEN,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> Response:
    """Uncertain matches touching your institution, most likely first."""
    return _queue(request, session, user, status, offset)


@router.get("/{item_id}")
def item_page(request: Request, item_id: uuid.UUID, session: DbSession, user: Reviewer) -> Response:
    """One pair (the read of both records is audited)."""
    item = mpi_service.review_item(session, user.actor, item_id)
    return render(
        request, "review/item.html", pair=_pair(session, item), errors=FormErrors(), **_labels()
    )


@router.post("/{item_id}/decision")
def decide(
    request: Request, item_id: uuid.UUID, session: DbSession, user: Reviewer, form: PostedForm
) -> Response:
    """Link the pair (same person), or keep them apart (different people)."""
    choice = text(form, "decision")
    note = text(form, "note") or None
    errors = FormErrors()
    if choice not in ("link", "distinct"):
        errors.add(f"{item_id}.decision", N_("Choose to link the records or keep them apart."))
    if note is not None and len(note) > NOTE_MAX:
        errors.add(f"{item_id}.note", N_("This is too long."))
    status = 422
    if not errors:
        try:
            attempt(
                session,
                lambda: mpi_service.decide(
                    session=session,
                    actor=user.actor,
                    item_id=item_id,
                    same_person=choice == "link",
                    note=note,
                ),
            )
        except PermissionDenied:
            raise
        except DomainError as exc:
            status = status_for(exc)
            errors.add(f"{item_id}.decision", exc.detail)
    if errors:
        return _queue(
            request, session, user, ReviewStatus.OPEN, 0, errors=errors, status_code=status
        )
    response = redirect(request, "/review")
    flash(
        response,
        N_("The records are linked: one person.")
        if choice == "link"
        else N_("The records are kept apart; the pair will not be proposed again."),
        kind="success",
    )
    return response
