"""Order tests with the mutual-recognition check inline (互认): per chosen item, the
prior results the clinician may reuse (or why none qualifies); reuse one, or repeat the
test with reason codes R1–R10. The same use cases as POST /api/results/order-check and
/api/results/decisions, so the same access policy and audit."""

from __future__ import annotations

import uuid
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from medalliance.access.permissions import Permission
from medalliance.api.deps import DbSession
from medalliance.api.problems import status_for
from medalliance.domains.alliance import service as alliance_service
from medalliance.domains.patients import service as patients_service
from medalliance.domains.records import timeline
from medalliance.domains.records.models import EncounterClass, EncounterStatus
from medalliance.domains.results import catalogue, recognition, schemas
from medalliance.domains.results.models import RecognitionChoice, RecognitionDecision
from medalliance.domains.results.rules import NotRecognised
from medalliance.kernel.errors import DomainError, InvalidInput, PermissionDenied
from medalliance.web import i18n
from medalliance.web.forms import FormErrors
from medalliance.web.pages.clinical_forms import PostedForm, attempt, text, texts
from medalliance.web.render import flash, redirect, render
from medalliance.web.session import WebUser, require_permission

router = APIRouter()
Reader = Annotated[WebUser, Depends(require_permission(Permission.PATIENT_READ))]
Writer = Annotated[WebUser, Depends(require_permission(Permission.PATIENT_WRITE))]
N_ = i18n.N_

DEAD_ENCOUNTERS = {EncounterStatus.CANCELLED, EncounterStatus.ENTERED_IN_ERROR}
ENCOUNTER_CLASSES = {
    EncounterClass.OUTPATIENT: N_("Outpatient"),
    EncounterClass.INPATIENT: N_("Inpatient"),
    EncounterClass.EMERGENCY: N_("Emergency"),
    EncounterClass.TELEMEDICINE: N_("Telemedicine"),
}
# Why no prior result qualifies (rules.NotRecognised) → msgids.
WHY_NOT: dict[str, str] = {
    NotRecognised.NONE: N_("No result of this item for this patient that you may see."),
    NotRecognised.ITEM_NOT_ON_LIST: N_("The item is not on the recognised-item list."),
    NotRecognised.LAB_NOT_ACCREDITED: N_(
        "The performing laboratory had no passed quality assessment (EQA) for the item."
    ),
    NotRecognised.EXPIRED: N_("The result is older than the item's validity window."),
    NotRecognised.NO_VALIDITY_WINDOW: N_(
        "The item has no validity window configured: not recognised automatically."
    ),
    NotRecognised.NOT_FINAL: N_("The result is not final yet."),
}


def _institution_code(session: Session, user: WebUser) -> str:
    if user.actor.institution_id is None:
        raise InvalidInput(N_("Only a clinician of a member institution orders tests."))
    return alliance_service.institution_codes(session, [user.actor.institution_id])[
        user.actor.institution_id
    ]


def _reasons() -> list[dict[str, Any]]:
    zh = i18n.current() == "zh_CN"
    return [
        {
            "code": r.code,
            "text": r.text_zh if zh else r.text_en,
            "source": r.source,
            "needs_free_text": r.needs_free_text,
        }
        for r in catalogue.repeat_reasons()
    ]


def _prescribable_encounters(session: Session, user: WebUser, patient_id: uuid.UUID) -> list[Any]:
    """The patient's recent live encounters at the user's institution, to prescribe on."""
    if not user.can(Permission.PRESCRIBE):
        return []
    entries = timeline.timeline(session, user.actor, patient_id, types=["encounter"], limit=20)
    return [
        e
        for e in entries.entries
        if e.institution_id == user.actor.institution_id and e.status not in DEAD_ENCOUNTERS
    ][:5]


def _query(items: list[str], encounter: uuid.UUID | None) -> str:
    pairs = [("items", c) for c in items]
    if encounter is not None:
        pairs.append(("encounter", str(encounter)))
    return urlencode(pairs)


def _page(
    request: Request,
    session: Session,
    user: WebUser,
    patient_id: uuid.UUID,
    items: list[str],
    encounter: uuid.UUID | None,
    *,
    errors: FormErrors | None = None,
    values: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    errors = errors if errors is not None else FormErrors()
    patient = patients_service.get(session, user.actor, patient_id)
    chosen = [c for c in dict.fromkeys(items) if c]
    check: schemas.OrderCheckOut | None = None
    if chosen:
        try:
            check = recognition.order_check(
                session,
                user.actor,
                schemas.OrderCheckIn(
                    patient_id=patient_id,
                    institution_code=_institution_code(session, user),
                    items=chosen,
                ),
            )
        except ValidationError:
            errors.add("items", N_("Choose items from the list."))
        except InvalidInput as exc:
            errors.add("items", exc.detail)
    return render(
        request,
        "orders/order.html",
        status_code,
        encounters=_prescribable_encounters(session, user, patient_id),
        encounter_classes=ENCOUNTER_CLASSES,
        patient=patient,
        catalogue=catalogue.current_items(session),
        chosen=chosen,
        check=check,
        why_not=WHY_NOT,
        reasons=_reasons(),
        encounter=encounter,
        errors=errors,
        values=values or {},
        may_decide=user.can(Permission.PATIENT_WRITE),
    )


@router.get("/patients/{patient_id}/orders")
def order_page(
    request: Request,
    patient_id: uuid.UUID,
    session: DbSession,
    user: Reader,
    items: Annotated[list[str] | None, Query(max_length=50)] = None,
    encounter: uuid.UUID | None = None,
) -> Response:
    """Choose catalogue items; the recognition check shows under them."""
    return _page(request, session, user, patient_id, items or [], encounter)


@router.post("/patients/{patient_id}/orders/decisions")
def decide(
    request: Request, patient_id: uuid.UUID, session: DbSession, user: Writer, form: PostedForm
) -> Response:
    """Reuse a recognisable result, or repeat the test with reason codes (R6 needs text)."""
    items = texts(form, "items")
    encounter = _uuid(text(form, "encounter"))
    result_id = _uuid(text(form, "result_id"))
    choice = text(form, "decision")
    codes = texts(form, "reason_codes")
    free_text = text(form, "free_text") or None
    key = "" if result_id is None else str(result_id)
    values = {"result_id": key, "reason_codes": codes, "free_text": free_text or ""}
    errors = _check_decision(key, result_id, choice, codes, free_text)
    status, decision = 422, None
    if result_id is not None and not errors:
        try:
            data = schemas.DecisionIn(
                patient_id=patient_id,
                result_id=result_id,
                decision=RecognitionChoice(choice),
                reason_codes=codes,
                free_text=free_text,
                order_ref=None if encounter is None else f"encounter:{encounter}",
            )
            decision = attempt(session, lambda: recognition.decide(session, user.actor, data))
        except ValidationError as exc:
            errors.add(f"{key}.decision", str(exc.errors()[0].get("msg", "")))
        except PermissionDenied:
            raise
        except DomainError as exc:
            errors.add(f"{key}.decision", exc.detail)
            status = status_for(exc)
    if decision is None:
        return _page(
            request,
            session,
            user,
            patient_id,
            items,
            encounter,
            errors=errors,
            values=values,
            status_code=status,
        )
    response = redirect(request, f"/patients/{patient_id}/orders?{_query(items, encounter)}")
    flash(response, _stored_message(decision), kind="success")
    return response


def _stored_message(decision: RecognitionDecision) -> str:
    if decision.decision is RecognitionChoice.REUSE:
        return N_("Stored: the prior result is reused; no new test.")
    return N_("Stored: the test is repeated, with its reason.")


def _check_decision(
    key: str, result_id: uuid.UUID | None, choice: str, codes: list[str], free_text: str | None
) -> FormErrors:
    """The form's own checks, each beside its field in the user's language (the
    schema checks the same again)."""
    errors = FormErrors()
    if result_id is None:
        errors.add(".decision", N_("Choose a result to decide on."))
    if choice not in (RecognitionChoice.REUSE, RecognitionChoice.REPEAT):
        errors.add(f"{key}.decision", N_("Choose to reuse the result or to repeat the test."))
        return errors
    known = {r.code: r for r in catalogue.repeat_reasons()}
    if choice == RecognitionChoice.REUSE:
        if codes:
            errors.add(f"{key}.reason_codes", N_("Reusing a result takes no repeat reason."))
        return errors
    if not codes:
        errors.add(
            f"{key}.reason_codes", N_("Repeating a recognisable test needs a reason (R1–R10).")
        )
    elif any(c not in known for c in codes):
        errors.add(f"{key}.reason_codes", N_("Choose one of the options."))
    needs_text = [c for c in codes if c in known and known[c].needs_free_text]
    if needs_text and not free_text:
        errors.add(
            f"{key}.free_text",
            i18n.gettext(N_("Reason %(code)s needs a short description."), code=needs_text[0]),
        )
    return errors


def _uuid(raw: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(raw) if raw else None
    except ValueError:
        return None
