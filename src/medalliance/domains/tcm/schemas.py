"""API shapes of the TCM domain: reference lookups, the safety check, prescriptions,
constitution assessments."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictInt

from medalliance.domains.tcm.models import HerbalForm, OrderStatus, PrescriptionStatus

# A dose must be a JSON number: "9" or true are refused, not coerced.
Grams = Annotated[float, Field(gt=0, le=1000, strict=True)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class _Read(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# --- reference ------------------------------------------------------------------------


class DoseRangeRead(_Read):
    min_g: float
    max_g: float
    basis: str
    text: str
    source: str


class HerbRead(_Read):
    name_zh: str
    pinyin: str
    initials: str
    herb_id: str | None
    latin: str
    english: str
    category_zh: str
    category_en: str
    nature: str
    flavours: str
    meridians: str
    toxicity: str | None
    dose: DoseRangeRead | None
    parent: str | None
    aliases: list[str]
    pregnancy: str | None = None  # contraindicated | caution


class FormulaHerbRead(_Read):
    seq: int
    written: str
    herb: str
    dose_min: float | None
    dose_max: float | None
    unit: str
    dose_text: str
    processing: str


class FormulaSummary(_Read):
    formula_id: str
    name_zh: str
    alt_name: str
    pinyin: str
    name_en: str
    source_text: str
    category_zh: str
    category_en: str


class FormulaRead(FormulaSummary):
    functions_zh: str
    pattern_zh: str
    pattern_en: str
    dose_basis: str
    herbs: list[FormulaHerbRead]
    source: str


# --- safety check ---------------------------------------------------------------------


class HerbLine(_Strict):
    name: str = Field(min_length=1, max_length=50)
    dose_g: Grams


class SafetyCheckRequest(_Strict):
    patient_id: uuid.UUID | None = None
    pregnant: bool | None = None
    herbs: list[HerbLine] = Field(min_length=1, max_length=60)
    western_drugs: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default_factory=list, max_length=100
    )
    allergies: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default_factory=list, max_length=100
    )


class FindingRead(BaseModel):
    rule: str
    severity: Literal["block", "warn", "info"]
    herbs: list[str]
    drugs: list[str]
    message_zh: str
    message_en: str
    source: str


class DrugConsidered(BaseModel):
    name: str
    origin: str
    recognised: bool  # False: no reference row could match it by name or class


class SafetyCheckResult(BaseModel):
    findings: list[FindingRead]
    blocking: bool
    pregnant: bool | None
    drugs: list[DrugConsidered]
    allergies: list[str]
    hidden_institutions: list[str] = Field(
        default_factory=list,
        description="Members whose medications/allergies the policy did not let you see",
    )
    clinically_reviewed: bool = False
    notice_zh: str
    notice_en: str


# --- prescriptions --------------------------------------------------------------------


class FormulaStart(_Strict):
    """A classical formula, modified: removals, dose changes, additions."""

    formula: str = Field(min_length=1, max_length=100, description="F001 or 麻黄汤")
    remove: list[str] = Field(default_factory=list, max_length=30)
    change: list[HerbLine] = Field(default_factory=list, max_length=30)
    add: list[HerbLine] = Field(default_factory=list, max_length=30)


class WesternLine(_Strict):
    drug: str = Field(min_length=1, max_length=200)
    dose: str = Field(min_length=1, max_length=100, description="e.g. 5 mg")
    route: str = Field(min_length=1, max_length=50, description="e.g. oral")
    frequency: str = Field(min_length=1, max_length=50, description="e.g. qd, bid")
    duration_days: int | None = Field(default=None, ge=1, le=366)


class PrescriptionWrite(_Strict):
    """The whole content of a draft (create, or replace on save)."""

    from_formula: FormulaStart | None = None
    herbs: list[HerbLine] = Field(default_factory=list, max_length=60)
    dose_count: int | None = Field(default=None, ge=1, le=90, description="剂数")
    herbal_form: HerbalForm | None = None
    instructions: str | None = Field(default=None, max_length=2000)
    western: list[WesternLine] = Field(default_factory=list, max_length=30)


class RecordedDrugLine(_Strict):
    """A drug of an order placed in another system, as that system described it."""

    drug: str = Field(min_length=1, max_length=200)
    dose: str | None = Field(default=None, max_length=100)
    route: str | None = Field(default=None, max_length=50)
    frequency: str | None = Field(default=None, max_length=50)
    dosage_text: str | None = Field(default=None, max_length=2000)
    as_needed: bool | None = None


Intent = Literal[
    "proposal",
    "plan",
    "order",
    "original-order",
    "reflex-order",
    "filler-order",
    "instance-order",
    "option",
]


class PrescriptionRecord(_Strict):
    """An order placed in another system (a member's HIS, an import), recorded here
    as it was placed: not a draft, never signed or changed here."""

    order_status: OrderStatus
    intent: Intent = "order"
    authored_at: AwareDatetime | None = None
    encounter_id: uuid.UUID | None = None
    requester_id: uuid.UUID | None = None
    reason: str | None = Field(default=None, max_length=2000)
    reason_diagnosis_id: uuid.UUID | None = None
    drugs: list[RecordedDrugLine] = Field(min_length=1, max_length=50)


class SignRequest(_Strict):
    override_reason: str | None = Field(default=None, min_length=5, max_length=2000)


class CancelRequest(_Strict):
    reason: str = Field(min_length=3, max_length=2000)


class PrescriptionHerbRead(_Read):
    seq: int
    name: str
    herb: str
    dose_g: float
    origin: str
    note: str | None


class PrescriptionDrugRead(_Read):
    seq: int
    drug: str
    # None only on a recorded order that gave its dosage as text
    dose: str | None
    route: str | None
    frequency: str | None
    duration_days: int | None
    dosage_text: str | None = None
    as_needed: bool | None = None


class PrescriptionRead(_Read):
    id: uuid.UUID
    encounter_id: uuid.UUID | None
    patient_record_id: uuid.UUID
    institution_id: uuid.UUID
    status: PrescriptionStatus
    # recorded orders (status "recorded"): placed in another system, kept as sent
    order_status: OrderStatus | None = None
    intent: str | None = None
    authored_at: datetime | None = None
    requester_id: uuid.UUID | None = None
    reason: str | None = None
    reason_diagnosis_id: uuid.UUID | None = None
    recorded_from: str | None = None
    formula_id: str | None
    formula_name: str | None
    dose_count: int | None
    herbal_form: HerbalForm | None
    instructions: str | None
    herbs: list[PrescriptionHerbRead]
    drugs: list[PrescriptionDrugRead]
    findings: list[FindingRead]
    checked_at: datetime
    check_context: dict[str, Any]
    override_reason: str | None
    signed_at: datetime | None
    signed_by: uuid.UUID | None
    cancelled_at: datetime | None
    cancel_reason: str | None
    created_at: datetime
    clinically_reviewed: bool = False


# --- constitution ---------------------------------------------------------------------


class QuestionnaireItem(BaseModel):
    item_id: str
    text: str
    sex: str | None
    scales: list[str]


class QuestionnaireRead(BaseModel):
    standard: str
    scale: dict[int, str]
    items: list[QuestionnaireItem]
    scales: dict[str, dict[str, Any]]


class AssessmentCreate(_Strict):
    answers: dict[str, Annotated[StrictInt, Field(ge=1, le=5)]]
    assessed_at: AwareDatetime | None = None


class AssessmentRead(_Read):
    id: uuid.UUID
    patient_record_id: uuid.UUID
    institution_id: uuid.UUID
    assessed_at: datetime
    sex: str
    answers: dict[str, int]
    scores: dict[str, float]
    results: dict[str, str]
    summary: str
