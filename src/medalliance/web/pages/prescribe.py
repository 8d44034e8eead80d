"""Write an integrated prescription on an encounter: herbal lines (from a classical
formula with changes, or free) and Western lines; herbs found by pinyin initials as one
types; the safety check's findings (severity, message, source) beside the editor as one
types; herb suggestions from the recommender beside them. The same use cases as
/api/encounters/{id}/prescriptions and /api/prescriptions/{id}/sign."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from medalliance.access.permissions import Permission
from medalliance.api.deps import DbSession
from medalliance.api.problems import status_for
from medalliance.db.uow import commit
from medalliance.domains.patients import service as patients_service
from medalliance.domains.recommender import safety as recommender_safety
from medalliance.domains.recommender import service as recommender_service
from medalliance.domains.records import service as records_service
from medalliance.domains.tcm import schemas as tcm_schemas
from medalliance.domains.tcm import service as tcm_service
from medalliance.domains.tcm.catalogue import catalogue
from medalliance.domains.tcm.entries import Formula
from medalliance.domains.tcm.models import HerbalForm, Prescription, PrescriptionStatus
from medalliance.kernel.errors import DomainError, InvalidInput, PermissionDenied
from medalliance.web import i18n
from medalliance.web.forms import FormErrors
from medalliance.web.pages.clinical_forms import PostedForm, attempt, text
from medalliance.web.render import flash, redirect, render
from medalliance.web.session import WebUser, WebUserDep, require_permission

router = APIRouter()
Prescriber = Annotated[WebUser, Depends(require_permission(Permission.PRESCRIBE))]
Reader = Annotated[WebUser, Depends(require_permission(Permission.PATIENT_READ))]
N_ = i18n.N_
HERB_ROWS, DRUG_ROWS, SUGGESTIONS = 8, 3, 8
SEVERITY_LABELS = {"block": N_("Blocking"), "warn": N_("Warning"), "info": N_("Note")}
STATUS_LABELS = {
    PrescriptionStatus.DRAFT: N_("Draft"),
    PrescriptionStatus.SIGNED: N_("Signed"),
    PrescriptionStatus.CANCELLED: N_("Cancelled"),
    PrescriptionStatus.RECORDED: N_("Recorded from another system"),
}
FORM_LABELS = {HerbalForm.DECOCTION: N_("Decoction (饮片)"), HerbalForm.GRANULES: N_("Granules")}


@dataclass
class Editor:
    """What the editor form holds, as typed (so a refused form comes back unchanged)."""

    herbs: list[dict[str, str]] = field(default_factory=list)
    drugs: list[dict[str, str]] = field(default_factory=list)
    formula: str = ""
    dose_count: str = "7"
    herbal_form: str = HerbalForm.DECOCTION.value
    instructions: str = ""
    symptoms: str = ""
    override_reason: str = ""

    def padded(self) -> Editor:
        self.herbs += [{"name": "", "dose": ""} for _ in range(max(HERB_ROWS - len(self.herbs), 2))]
        self.drugs += [
            dict.fromkeys(DRUG_KEYS, "") for _ in range(max(DRUG_ROWS - len(self.drugs), 1))
        ]
        return self

    def herb_lines(self) -> list[tuple[int, str, str]]:
        return [
            (i, r["name"], r["dose"]) for i, r in enumerate(self.herbs) if r["name"] or r["dose"]
        ]


DRUG_KEYS = ("drug", "drug_dose", "route", "frequency", "duration_days")


def _rows(form: FormData, keys: tuple[str, ...]) -> list[dict[str, str]]:
    """Rows posted as ``<key>-<n>`` (unique names, so a kept draft restores each row)."""
    indices = sorted(
        {
            int(name.rsplit("-", 1)[1])
            for name in form
            if name.rsplit("-", 1)[0] in keys and name.rsplit("-", 1)[-1].isdigit()
        }
    )[:100]
    return [{k: text(form, f"{k}-{i}") for k in keys} for i in indices]


def _editor_from_form(form: FormData) -> Editor:
    return Editor(
        herbs=[{"name": r["herb"], "dose": r["dose"]} for r in _rows(form, ("herb", "dose"))],
        drugs=_rows(form, DRUG_KEYS),
        formula=text(form, "formula"),
        dose_count=text(form, "dose_count"),
        herbal_form=text(form, "herbal_form"),
        instructions=text(form, "instructions"),
        symptoms=text(form, "symptoms"),
        override_reason=text(form, "override_reason"),
    )


def _editor_from_formula(formula: Formula) -> Editor:
    rows = []
    for item in formula.herbs:
        daily = formula.is_daily_dose and item.unit == "g" and item.dose_min is not None
        rows.append({"name": item.written, "dose": _grams(item.dose_min) if daily else ""})
    return Editor(herbs=rows, formula=formula.formula_id)


def _editor_from_prescription(p: Prescription) -> Editor:
    return Editor(
        herbs=[{"name": h.name, "dose": _grams(h.dose_g)} for h in p.herbs],
        drugs=[
            {
                "drug": d.drug,
                "drug_dose": d.dose or "",
                "route": d.route or "",
                "frequency": d.frequency or "",
                "duration_days": "" if d.duration_days is None else str(d.duration_days),
            }
            for d in p.drugs
        ],
        formula=p.formula_id or "",
        dose_count="" if p.dose_count is None else str(p.dose_count),
        herbal_form="" if p.herbal_form is None else p.herbal_form.value,
        instructions=p.instructions or "",
    )


def _grams(value: float | None) -> str:
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else str(value)


def _dose(raw: str) -> float | None:
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) and 0 < value <= 1000 else None


# --- from the form to the domain's schema -------------------------------------------


def _parse(editor: Editor, errors: FormErrors) -> tcm_schemas.PrescriptionWrite | None:
    """The domain's PrescriptionWrite from the editor; each row's problem beside it."""
    cat = catalogue()
    lines: list[tuple[str, float]] = []
    for index, name, raw_dose in editor.herb_lines():
        if not name:
            errors.add(f"herb-{index}", N_("Name the herb for this dose."))
            continue
        if cat.resolve(name) is None:
            errors.add(f"herb-{index}", _unknown_herb(name))
        dose = _dose(raw_dose)
        if dose is None:
            errors.add(f"dose-{index}", N_("Enter the daily dose in grams (above 0)."))
        elif cat.resolve(name) is not None:
            lines.append((name, dose))
    western = []
    for index, row in enumerate(editor.drugs):
        if not any(row.values()):
            continue
        for key in ("drug", "drug_dose", "route", "frequency"):
            if not row[key]:
                errors.add(f"{key}-{index}", N_("This field is required."))
        days = row["duration_days"]
        if days and not (days.isdigit() and 1 <= int(days) <= 366):
            errors.add(f"duration_days-{index}", N_("Enter a whole number of days (1–366)."))
        western.append(
            {
                "drug": row["drug"],
                "dose": row["drug_dose"],
                "route": row["route"],
                "frequency": row["frequency"],
                "duration_days": int(days) if days.isdigit() else None,
            }
        )
    formula = cat.formula(editor.formula) if editor.formula else None
    if editor.formula and formula is None:
        errors.add("formula", N_("Choose a formula from the list."))
    if lines:
        if not (editor.dose_count.isdigit() and 1 <= int(editor.dose_count) <= 90):
            errors.add("dose_count", N_("Enter the number of doses (剂数, 1–90)."))
        if editor.herbal_form not in {f.value for f in HerbalForm}:
            errors.add("herbal_form", N_("Choose decoction or granules."))
    if not lines and not western and not errors:
        errors.add("", N_("A prescription needs herbs or Western drugs."))
    if errors:
        return None
    body: dict[str, Any] = {
        "dose_count": int(editor.dose_count) if lines else None,
        "herbal_form": editor.herbal_form if lines else None,
        "instructions": editor.instructions or None,
        "western": western,
    }
    if formula is not None:
        body["from_formula"] = _formula_changes(formula, lines)
    else:
        body["herbs"] = [{"name": n, "dose_g": d} for n, d in lines]
    try:
        return tcm_schemas.PrescriptionWrite.model_validate(body)
    except ValidationError as exc:
        errors.add_validation(exc)
        return None


def _formula_changes(formula: Formula, lines: list[tuple[str, float]]) -> dict[str, Any]:
    """The editor's rows as the formula's removals, dose changes and additions."""
    cat = catalogue()
    by_herb = {cat.resolve(item.written) or item.written: item for item in formula.herbs}
    kept: set[str] = set()
    change, add = [], []
    for name, dose in lines:
        item = by_herb.get(cat.resolve(name) or name)
        if item is None or item.written in kept:
            add.append({"name": name, "dose_g": dose})
            continue
        kept.add(item.written)
        daily = formula.is_daily_dose and item.unit == "g" and item.dose_min is not None
        if not daily or item.dose_min != dose:
            change.append({"name": item.written, "dose_g": dose})
    remove = [item.written for item in formula.herbs if item.written not in kept]
    return {"formula": formula.formula_id, "remove": remove, "change": change, "add": add}


def _unknown_herb(name: str) -> str:
    names = "、".join(s["name_zh"] for s in catalogue().suggestions(name, limit=3))
    message = i18n.gettext(N_("Not a herb of the reference data."))
    if names:
        message += " " + i18n.gettext(N_("Did you mean: %(names)s?"), names=names)
    return message


# --- pages ----------------------------------------------------------------------------


def _encounter_context(session: Session, user: WebUser, encounter_id: uuid.UUID) -> dict[str, Any]:
    encounter, diagnoses, notes, _ = records_service.get_encounter(
        session, user.actor, encounter_id
    )
    person_id = patients_service.person_of_record(session, encounter.patient_record_id)
    assert person_id is not None
    return {
        "encounter": encounter,
        "patient": patients_service.get(session, user.actor, person_id),
        "diagnoses": diagnoses,
        "notes": notes,
        "prescriptions": tcm_service.encounter_prescriptions(session, user.actor, encounter_id),
    }


def _render_editor(
    request: Request,
    user: WebUser,
    context: dict[str, Any],
    editor: Editor,
    *,
    action: str,
    errors: FormErrors | None = None,
    blocking: list[dict[str, Any]] | None = None,
    status_code: int = 200,
) -> Response:
    cat = catalogue()
    return render(
        request,
        "prescribe/editor.html",
        status_code,
        action=action,
        editor=editor.padded(),
        formula=cat.formula(editor.formula) if editor.formula else None,
        errors=errors if errors is not None else FormErrors(),
        blocking=blocking or [],
        herbal_forms=FORM_LABELS,
        severity_labels=SEVERITY_LABELS,
        status_labels=STATUS_LABELS,
        may_recommend=user.can(Permission.TCM_RECOMMEND),
        **context,
    )


@router.get("/encounters/{encounter_id}/prescribe")
def new_prescription(
    request: Request,
    encounter_id: uuid.UUID,
    session: DbSession,
    user: Prescriber,
    formula: Annotated[str, Query(max_length=100)] = "",
) -> Response:
    """The editor for a new prescription; ``formula`` starts from a classical formula."""
    context = _encounter_context(session, user, encounter_id)
    found = catalogue().formula(formula) if formula else None
    editor = _editor_from_formula(found) if found is not None else Editor()
    return _render_editor(
        request, user, context, editor, action=f"/encounters/{encounter_id}/prescribe"
    )


@router.post("/encounters/{encounter_id}/prescribe")
def create_prescription(
    request: Request,
    encounter_id: uuid.UUID,
    session: DbSession,
    user: Prescriber,
    form: PostedForm,
) -> Response:
    """Save a draft, or save and sign (a blocking finding needs an override reason)."""

    def write(data: tcm_schemas.PrescriptionWrite) -> Prescription:
        return tcm_service.create_prescription(
            session=session, actor=user.actor, encounter_id=encounter_id, data=data
        )

    return _save(
        request, session, user, form, write, encounter_id, f"/encounters/{encounter_id}/prescribe"
    )


@router.post("/prescriptions/{prescription_id}")
def update_prescription(
    request: Request,
    prescription_id: uuid.UUID,
    session: DbSession,
    user: Prescriber,
    form: PostedForm,
) -> Response:
    """Save a draft's new content (checked again), or save and sign it."""
    current = tcm_service.get_prescription(session, user.actor, prescription_id)

    def write(data: tcm_schemas.PrescriptionWrite) -> Prescription:
        return tcm_service.update_prescription(
            session=session, actor=user.actor, prescription_id=prescription_id, data=data
        )

    assert current.encounter_id is not None  # written here: always on an encounter
    return _save(
        request,
        session,
        user,
        form,
        write,
        current.encounter_id,
        f"/prescriptions/{prescription_id}",
    )


def _save(
    request: Request,
    session: Session,
    user: WebUser,
    form: FormData,
    write: Any,
    encounter_id: uuid.UUID,
    action: str,
) -> Response:
    editor = _editor_from_form(form)
    sign = text(form, "action") == "sign"
    errors = FormErrors()
    data = _parse(editor, errors)
    override = editor.override_reason or None
    if sign and override is not None and len(override) < 5:
        errors.add("override_reason", N_("Give the reason in a few words (at least 5 characters)."))
    blocking: list[dict[str, Any]] = []
    status = 422
    saved: Prescription | None = None
    if data is not None and not errors:

        def use_case() -> Prescription:
            prescription: Prescription = write(data)
            if sign:
                prescription = tcm_service.sign_prescription(
                    session=session,
                    actor=user.actor,
                    prescription_id=prescription.id,
                    override_reason=override,
                )
            return prescription

        try:
            saved = attempt(session, use_case)
        except PermissionDenied:
            raise
        except DomainError as exc:
            status = status_for(exc)
            blocking = list(exc.extra.get("findings", []))
            if exc.field == "override_reason":
                errors.add("override_reason", _override_message(len(blocking)))
            else:
                field_name = exc.field if exc.field in ("dose_count", "herbal_form") else ""
                errors.add(field_name, exc.detail)
    if saved is None:
        context = _encounter_context(session, user, encounter_id)
        return _render_editor(
            request,
            user,
            context,
            editor,
            action=action,
            errors=errors,
            blocking=blocking,
            status_code=status,
        )
    response = redirect(request, f"/prescriptions/{saved.id}")
    flash(
        response,
        N_("The prescription is signed.") if sign else N_("The draft is saved and checked."),
        kind="success",
    )
    return response


def _override_message(count: int) -> str:
    return i18n.ngettext(
        "%(num)s blocking finding: sign only with an override reason.",
        "%(num)s blocking findings: sign only with an override reason.",
        count,
    )


@router.get("/prescriptions/{prescription_id}")
def prescription_page(
    request: Request, prescription_id: uuid.UUID, session: DbSession, user: Reader
) -> Response:
    """A prescription with its stored findings; a draft of your institution opens in
    the editor (to change and sign it)."""
    prescription = tcm_service.get_prescription(session, user.actor, prescription_id)
    editable = (
        prescription.status is PrescriptionStatus.DRAFT
        and prescription.institution_id == user.actor.institution_id
        and user.can(Permission.PRESCRIBE)
    )
    if editable:
        assert prescription.encounter_id is not None  # a draft is written on an encounter
        context = _encounter_context(session, user, prescription.encounter_id)
        return _render_editor(
            request,
            user,
            {**context, "prescription": prescription},
            _editor_from_prescription(prescription),
            action=f"/prescriptions/{prescription_id}",
        )
    return render(
        request,
        "prescribe/view.html",
        prescription=prescription,
        severity_labels=SEVERITY_LABELS,
        status_labels=STATUS_LABELS,
        herbal_forms=FORM_LABELS,
    )


# --- as one types: herbs, formulas, the safety check, suggestions --------------------


@router.get("/prescribe/herbs")
def herb_search(
    request: Request, user: WebUserDep, q: Annotated[str, Query(max_length=50)] = ""
) -> Response:
    """Herbs by characters, pinyin or pinyin initials (dg → 当归), as a pick list."""
    hits = catalogue().search_herbs(q, limit=12) if q.strip() else []
    return render(request, "prescribe/_herbs.html", hits=hits, q=q)


@router.get("/prescribe/formulas")
def formula_search(
    request: Request,
    user: WebUserDep,
    q: Annotated[str, Query(max_length=50)] = "",
    encounter: uuid.UUID | None = None,
) -> Response:
    hits = catalogue().search_formulas(q, limit=10) if q.strip() else []
    return render(request, "prescribe/_formulas.html", hits=hits, q=q, encounter=encounter)


@router.post("/encounters/{encounter_id}/prescribe/check")
def live_check(
    request: Request,
    encounter_id: uuid.UUID,
    session: DbSession,
    user: Prescriber,
    form: PostedForm,
) -> Response:
    """The safety check of what is typed so far, against the patient's record (the
    service reads pregnancy, medications and allergies through the access policy).
    Saves nothing; a herb still without a dose is checked without the dose rules."""
    editor = _editor_from_form(form)
    encounter, _, _, _ = records_service.get_encounter(session, user.actor, encounter_id)
    person_id = patients_service.person_of_record(session, encounter.patient_record_id)
    cat = catalogue()
    unknown: list[dict[str, str]] = []
    herbs: list[tcm_schemas.HerbLine] = []
    for _, name, raw_dose in editor.herb_lines():
        if not name:
            continue
        if cat.resolve(name) is None:
            unknown.append({"name": name, "hint": _unknown_herb(name)})
            continue
        # A line without a dose yet: checked for pairs, pregnancy, interactions only.
        # model_construct on purpose: the check runs without the dose rules until it is typed.
        line = tcm_schemas.HerbLine.model_construct(name=name, dose_g=_dose(raw_dose))  # type: ignore[arg-type]
        herbs.append(line)
    result = None
    if herbs:
        request_ = tcm_schemas.SafetyCheckRequest.model_construct(
            patient_id=person_id,
            pregnant=None,
            herbs=herbs,
            western_drugs=[r["drug"] for r in editor.drugs if r["drug"]],
            allergies=[],
        )
        try:
            result = tcm_service.safety_check(
                session=session, actor=user.actor, request=request_
            ).result()
        except InvalidInput:
            result = None
    return render(
        request,
        "prescribe/_findings.html",
        result=result,
        unknown=unknown,
        severity_labels=SEVERITY_LABELS,
    )


@router.get("/encounters/{encounter_id}/prescribe/suggest")
def suggest(
    request: Request,
    encounter_id: uuid.UUID,
    session: DbSession,
    user: Annotated[WebUser, Depends(require_permission(Permission.TCM_RECOMMEND))],
    symptoms: Annotated[str, Query(max_length=1000)] = "",
) -> Response:
    """Herb suggestions (already safety-checked) for the typed symptoms, or else for
    the symptoms written in the encounter (reason and notes)."""
    typed = recommender_service.parse_names(symptoms)
    source = "typed"
    if not typed:
        typed, source = _encounter_symptoms(session, user, encounter_id), "encounter"
    # The editor's rows come along (herb-0, herb-1 …): not suggested again, checked with.
    current = [
        v.strip()
        for k, v in request.query_params.multi_items()
        if k.startswith("herb-") and v.strip() and catalogue().resolve(v.strip())
    ][:60]
    # The recommender reads no database, and its first call loads the model (seconds):
    # end the transaction of the reads above (with their audit rows) before it, so that
    # no other request waits on this one (SQLite has one writer at a time).
    commit(session)
    result, problem = None, None
    if typed:
        try:
            result = recommender_service.recommend(
                symptoms=typed,
                k=SUGGESTIONS,
                safety=recommender_safety.default_checker(),
                current_herbs=current,
            )
        except InvalidInput as exc:
            problem = i18n.gettext(
                N_("None of these symptoms is known to the recommender: %(names)s"),
                names=" ".join(exc.extra.get("unknown_symptoms", typed)),
            )
    return render(
        request,
        "prescribe/_suggestions.html",
        result=result,
        problem=problem,
        symptoms=typed,
        source=source,
        severity_labels=SEVERITY_LABELS,
    )


def _encounter_symptoms(session: Session, user: WebUser, encounter_id: uuid.UUID) -> list[str]:
    """The recommender's symptom names that the encounter's reason and notes mention."""
    encounter, diagnoses, notes, _ = records_service.get_encounter(
        session, user.actor, encounter_id
    )
    written = " ".join(
        [encounter.reason or ""]
        + [n.text or "" for n in notes]
        + [str(v) for n in notes for v in (n.tcm_exam or {}).values()]
        + [d.tcm_pattern_text or "" for d in diagnoses]
    )
    if not written.strip():
        return []
    vocabulary = recommender_service.search_symptoms("", limit=100_000)
    found = [e.name for e in vocabulary if len(e.name) > 1 and e.name in written]
    return found[:10]
