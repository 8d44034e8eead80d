"""JSON API of the TCM domain. Every finding names its source; the rule data has not
been clinically reviewed, and the responses say so."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from medalliance.access.permissions import Permission
from medalliance.api.deps import DbSession, authenticated, require
from medalliance.domains.tcm import assessments, constitution, schemas, service
from medalliance.domains.tcm.catalogue import catalogue
from medalliance.domains.tcm.models import ConstitutionAssessment, Prescription
from medalliance.kernel.actor import Actor
from medalliance.kernel.errors import NotFound

router = APIRouter(prefix="/api", tags=["TCM: herbs, safety check, prescriptions, constitution"])

Anyone = Annotated[Actor, Depends(authenticated)]
Reader = Annotated[Actor, Depends(require(Permission.PATIENT_READ))]
Writer = Annotated[Actor, Depends(require(Permission.PATIENT_WRITE))]
Prescriber = Annotated[Actor, Depends(require(Permission.PRESCRIBE))]
STANDARD = "中华中医药学会标准 ZYYXH/T157-2009《中医体质分类与判定》 (not clinically reviewed)"
ANSWER_SCALE = {
    1: "没有(根本不)",
    2: "很少(有一点)",
    3: "有时(有些)",
    4: "经常(相当)",
    5: "总是(非常)",
}
Search = Annotated[str, Query(min_length=1, max_length=50)]
Limit = Annotated[int, Query(ge=1, le=100)]


def _herb(name: str) -> schemas.HerbRead:
    cat = catalogue()
    herb = cat.herbs[name]
    entry = next((cat.pregnancy[n] for n in cat.lineage(name) if n in cat.pregnancy), None)
    data: dict[str, Any] = {
        slot: getattr(herb, slot) for slot in type(herb).__slots__ if slot != "parent_source"
    }
    data["initials"] = herb.initials
    data["aliases"] = list(herb.aliases)
    data["dose"] = None if herb.dose is None else schemas.DoseRangeRead.model_validate(herb.dose)
    data["pregnancy"] = None if entry is None else entry.level
    return schemas.HerbRead(**data)


@router.get("/tcm/herbs", response_model=list[schemas.HerbRead])
def search_herbs(q: Search, actor: Anyone, limit: Limit = 20) -> list[schemas.HerbRead]:
    """By characters (当归), pinyin (danggui), pinyin initials (dg), Latin or English name."""
    return [_herb(h.name_zh) for h in catalogue().search_herbs(q, limit)]


@router.get("/tcm/herbs/{name}", response_model=schemas.HerbRead)
def read_herb(name: str, actor: Anyone) -> schemas.HerbRead:
    cat = catalogue()
    resolved = cat.resolve(name)
    if resolved is None:
        raise NotFound(
            f"No herb {name!r} in the reference data.", suggestions=cat.suggestions(name)
        )
    return _herb(resolved)


@router.get("/tcm/formulas", response_model=list[schemas.FormulaSummary])
def search_formulas(q: Search, actor: Anyone, limit: Limit = 20) -> list[schemas.FormulaSummary]:
    """By name (四君子汤), pinyin, initials (sjzt) or English name."""
    return [schemas.FormulaSummary.model_validate(f) for f in catalogue().search_formulas(q, limit)]


@router.get("/tcm/formulas/{formula}", response_model=schemas.FormulaRead)
def read_formula(formula: str, actor: Anyone) -> schemas.FormulaRead:
    """One formula (by id F001 or name) with its composition."""
    found = catalogue().formula(formula)
    if found is None:
        raise NotFound(f"No formula {formula!r} in the reference data.")
    return schemas.FormulaRead.model_validate(found)


@router.post("/tcm/safety-check", response_model=schemas.SafetyCheckResult)
def safety_check(
    body: schemas.SafetyCheckRequest, session: DbSession, actor: Reader
) -> schemas.SafetyCheckResult:
    """Check herbs (grams per day) against each other, pregnancy, dose ranges, the
    given Western drugs and allergies; with ``patient_id`` also against the patient's
    pregnancy status, active medications and allergies. Saves nothing."""
    return service.safety_check(session=session, actor=actor, request=body).result()


def _read(prescription: Prescription) -> schemas.PrescriptionRead:
    return schemas.PrescriptionRead.model_validate(prescription)


@router.post(
    "/encounters/{encounter_id}/prescriptions",
    response_model=schemas.PrescriptionRead,
    status_code=201,
)
def create_prescription(
    encounter_id: uuid.UUID, body: schemas.PrescriptionWrite, session: DbSession, actor: Prescriber
) -> schemas.PrescriptionRead:
    """A draft: a classical formula with removals, dose changes and additions, or a free
    composition, with Western drugs; checked at once (findings stored with it)."""
    return _read(
        service.create_prescription(
            session=session, actor=actor, encounter_id=encounter_id, data=body
        )
    )


@router.get(
    "/encounters/{encounter_id}/prescriptions", response_model=list[schemas.PrescriptionRead]
)
def encounter_prescriptions(
    encounter_id: uuid.UUID, session: DbSession, actor: Reader
) -> list[schemas.PrescriptionRead]:
    return [_read(p) for p in service.encounter_prescriptions(session, actor, encounter_id)]


@router.get("/prescriptions/{prescription_id}", response_model=schemas.PrescriptionRead)
def read_prescription(
    prescription_id: uuid.UUID, session: DbSession, actor: Reader
) -> schemas.PrescriptionRead:
    return _read(service.get_prescription(session, actor, prescription_id))


@router.put("/prescriptions/{prescription_id}", response_model=schemas.PrescriptionRead)
def save_prescription(
    prescription_id: uuid.UUID,
    body: schemas.PrescriptionWrite,
    session: DbSession,
    actor: Prescriber,
) -> schemas.PrescriptionRead:
    """Save a draft (its whole content); checked again."""
    return _read(
        service.update_prescription(
            session=session, actor=actor, prescription_id=prescription_id, data=body
        )
    )


@router.post("/prescriptions/{prescription_id}/sign", response_model=schemas.PrescriptionRead)
def sign_prescription(
    prescription_id: uuid.UUID, body: schemas.SignRequest, session: DbSession, actor: Prescriber
) -> schemas.PrescriptionRead:
    """Checked again; a blocking finding needs ``override_reason`` (audited)."""
    return _read(
        service.sign_prescription(
            session=session,
            actor=actor,
            prescription_id=prescription_id,
            override_reason=body.override_reason,
        )
    )


@router.post("/prescriptions/{prescription_id}/cancel", response_model=schemas.PrescriptionRead)
def cancel_prescription(
    prescription_id: uuid.UUID, body: schemas.CancelRequest, session: DbSession, actor: Prescriber
) -> schemas.PrescriptionRead:
    return _read(
        service.cancel_prescription(
            session=session, actor=actor, prescription_id=prescription_id, reason=body.reason
        )
    )


@router.get("/tcm/constitution/questionnaire", response_model=schemas.QuestionnaireRead)
def read_questionnaire(actor: Anyone) -> schemas.QuestionnaireRead:
    """The nine-constitution questionnaire (ZYYXH/T157-2009): item ids and wording."""
    q = constitution.questionnaire()
    member_of: dict[str, list[str]] = {}
    for scale in q.scales:
        for item_id, _ in scale.items:
            member_of.setdefault(item_id, []).append(scale.code)
    return schemas.QuestionnaireRead(
        standard=STANDARD,
        scale=ANSWER_SCALE,
        items=[
            schemas.QuestionnaireItem(
                item_id=i.item_id, text=i.text, sex=i.sex, scales=member_of[i.item_id]
            )
            for i in q.items.values()
        ],
        scales={
            s.code: {
                "name_zh": s.name_zh,
                "name_en": s.name_en,
                "items": [{"item_id": i, "reverse_scored": r} for i, r in s.items],
            }
            for s in q.scales
        },
    )


def _assessment(row: ConstitutionAssessment) -> schemas.AssessmentRead:
    return schemas.AssessmentRead.model_validate(row)


@router.post(
    "/patients/{patient_id}/constitution",
    response_model=schemas.AssessmentRead,
    status_code=201,
)
def record_assessment(
    patient_id: uuid.UUID, body: schemas.AssessmentCreate, session: DbSession, actor: Writer
) -> schemas.AssessmentRead:
    """Every item answered 1–5; scored and judged by the standard, stored with its date."""
    return _assessment(
        assessments.record_assessment(session=session, actor=actor, person_id=patient_id, data=body)
    )


@router.get("/patients/{patient_id}/constitution", response_model=list[schemas.AssessmentRead])
def assessment_history(
    patient_id: uuid.UUID, session: DbSession, actor: Reader
) -> list[schemas.AssessmentRead]:
    return [_assessment(a) for a in assessments.history(session, actor, patient_id)]
