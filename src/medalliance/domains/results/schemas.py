"""API shapes of results and mutual recognition. ``LabResultIn`` and
``ImagingReportIn`` are also what the HL7 v2 and FHIR adapters hand to the service."""

from __future__ import annotations

import math
import re
import uuid
from datetime import date, datetime
from decimal import Decimal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from medalliance.domains.results.models import RecognitionChoice, ResultKind, ResultStatus
from medalliance.domains.results.reference import FREE_TEXT_MAX, REPEAT_REASONS

ITEM_CODE = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$"
# HL7 v2.5.1 table 0078 (interpretation codes / abnormal flags).
ABNORMAL_FLAGS = frozenset(
    {"L", "H", "LL", "HH", "<", ">", "N", "A", "AA", "U", "D", "B", "W", "S", "R", "I", "MS", "VS"}
)
LOINC = re.compile(r"^[0-9]{1,7}-[0-9]$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class _Read(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class _ResultIn(_Strict):
    item_code: str = Field(pattern=ITEM_CODE)
    item_system: str = Field(default="LN", max_length=16, description="LN = LOINC, L = local")
    item_name: str | None = Field(default=None, max_length=200)
    status: ResultStatus = ResultStatus.FINAL
    effective_at: AwareDatetime
    issued_at: AwareDatetime | None = None
    performing_lab: str | None = Field(default=None, max_length=200)
    order_ref: str | None = Field(default=None, max_length=64)

    @model_validator(mode="after")
    def _loinc(self) -> _ResultIn:
        if self.item_system == "LN" and not LOINC.match(self.item_code):
            raise ValueError(f"item_code {self.item_code!r} is not a LOINC code")
        return self


class LabResultIn(_ResultIn):
    value_numeric: float | None = None
    value_text: str | None = Field(default=None, max_length=2000)
    unit: str | None = Field(default=None, max_length=32, description="UCUM")
    reference_range: str | None = Field(default=None, max_length=64)
    abnormal_flag: str | None = Field(default=None, max_length=8)

    @model_validator(mode="after")
    def _value(self) -> LabResultIn:
        if self.value_numeric is None and not self.value_text:
            raise ValueError("a lab result needs value_numeric or value_text")
        if self.value_numeric is not None:
            if not math.isfinite(self.value_numeric):
                raise ValueError("value_numeric must be a finite number")
            if not self.unit:
                raise ValueError("a numeric lab result needs a UCUM unit")
        if self.abnormal_flag is not None and self.abnormal_flag not in ABNORMAL_FLAGS:
            raise ValueError(f"abnormal_flag {self.abnormal_flag!r} is not in HL7 table 0078")
        return self


class ImagingReportIn(_ResultIn):
    modality: str = Field(min_length=1, max_length=16, description="DICOM modality, e.g. CT")
    body_site: str | None = Field(default=None, max_length=100)
    report_text: str = Field(default="", max_length=100_000)
    conclusion: str | None = Field(default=None, max_length=20_000)
    pacs_url: str | None = Field(default=None, max_length=500, pattern=r"^https?://")


class ResultRead(_Read):
    id: uuid.UUID
    kind: ResultKind
    institution_id: uuid.UUID
    institution_code: str | None = None
    item_code: str
    item_system: str
    item_name: str | None
    status: ResultStatus
    effective_at: datetime
    issued_at: datetime | None
    performing_lab: str | None
    order_ref: str | None
    value_numeric: float | None
    value_text: str | None
    unit: str | None
    reference_range: str | None
    abnormal_flag: str | None
    modality: str | None
    body_site: str | None
    report_text: str | None
    conclusion: str | None
    pacs_url: str | None
    hr_mark: bool
    supersedes_id: uuid.UUID | None
    superseded_by_id: uuid.UUID | None
    source: str


class TrendPoint(BaseModel):
    result_id: uuid.UUID
    at: datetime
    value: float | None
    value_text: str | None
    unit: str | None
    abnormal_flag: str | None
    status: ResultStatus
    institution_code: str
    hr_mark: bool


class Trend(BaseModel):
    patient_id: uuid.UUID
    item_code: str
    item_name: str | None
    points: list[TrendPoint]
    hidden_institutions: list[str]


# --- the recognition catalogue and accreditation --------------------------------------


class CatalogueItemIn(_Strict):
    code: str = Field(pattern=ITEM_CODE)
    code_system: str = Field(default="LN", max_length=16)
    kind: ResultKind
    name_zh: str = Field(min_length=1, max_length=200)
    name_en: str = Field(min_length=1, max_length=200)
    unit_property: str | None = Field(default=None, max_length=16)
    validity_days: int | None = Field(default=None, ge=0, le=3650)
    validity_source: str | None = Field(default=None, max_length=300)
    price: Decimal | None = Field(default=None, ge=0, max_digits=10, decimal_places=2)
    price_source: str | None = Field(default=None, max_length=300)
    source: str = Field(min_length=1, max_length=2000)
    valid_from: date

    @model_validator(mode="after")
    def _sourced(self) -> CatalogueItemIn:
        # Rules and figures carry their source (the house standard).
        if self.validity_days is not None and not self.validity_source:
            raise ValueError("a validity window needs validity_source")
        if self.price is not None and not self.price_source:
            raise ValueError("a price needs price_source")
        return self


class CatalogueItemRead(_Read):
    id: uuid.UUID
    code: str
    version: int
    code_system: str
    kind: ResultKind
    name_zh: str
    name_en: str
    unit_property: str | None
    validity_days: int | None
    validity_source: str | None
    price: Decimal | None
    price_source: str | None
    source: str
    valid_from: date
    valid_to: date | None


class AccreditationIn(_Strict):
    institution_code: str = Field(min_length=1, max_length=32)
    item_code: str = Field(pattern=ITEM_CODE)
    eqa_scheme: str = Field(min_length=1, max_length=200)
    passed: bool
    valid_from: date
    valid_to: date
    note: str | None = Field(default=None, max_length=2000)

    @model_validator(mode="after")
    def _period(self) -> AccreditationIn:
        if self.valid_to < self.valid_from:
            raise ValueError("valid_to is before valid_from")
        return self


class AccreditationRead(_Read):
    id: uuid.UUID
    institution_id: uuid.UUID
    item_code: str
    eqa_scheme: str
    passed: bool
    valid_from: date
    valid_to: date
    note: str | None


class RepeatReasonRead(BaseModel):
    code: str
    text_en: str
    text_zh: str
    source: str
    needs_free_text: bool


# --- order-time check and decisions ----------------------------------------------------


class OrderCheckIn(_Strict):
    patient_id: uuid.UUID
    institution_code: str = Field(min_length=1, max_length=32)
    items: list[str] = Field(min_length=1, max_length=50)

    @model_validator(mode="after")
    def _codes(self) -> OrderCheckIn:
        for code in self.items:
            if not re.match(ITEM_CODE, code):
                raise ValueError(f"not an item code: {code!r}")
        return self


class RecognisableResult(BaseModel):
    result_id: uuid.UUID
    kind: ResultKind
    value: float | None
    value_text: str | None
    unit: str | None
    conclusion: str | None
    pacs_url: str | None
    collected_at: datetime
    performing_institution_code: str
    performing_institution_name_zh: str
    performing_lab: str | None
    valid_until: datetime
    days_left: int
    hr_mark: bool


class UnrecognisedResult(BaseModel):
    result_id: uuid.UUID
    collected_at: datetime
    performing_institution_code: str
    reason: str


class OrderCheckItem(BaseModel):
    item_code: str
    on_list: bool
    name_zh: str | None
    name_en: str | None
    validity_days: int | None
    validity_source: str | None
    recognisable: list[RecognisableResult]
    reason: str | None = Field(description="Why none qualifies (null when one does)")
    not_recognised: list[UnrecognisedResult]


class OrderCheckOut(BaseModel):
    patient_id: uuid.UUID
    institution_code: str
    checked_at: datetime
    items: list[OrderCheckItem]
    hidden_institutions: list[str]
    level_rule: str


class DecisionIn(_Strict):
    patient_id: uuid.UUID
    result_id: uuid.UUID
    decision: RecognitionChoice
    reason_codes: list[str] = Field(default_factory=list, max_length=10)
    free_text: str | None = Field(default=None, max_length=FREE_TEXT_MAX)
    order_ref: str | None = Field(default=None, max_length=64)

    @model_validator(mode="after")
    def _reasons(self) -> DecisionIn:
        unknown = [c for c in self.reason_codes if c not in REPEAT_REASONS]
        if unknown:
            raise ValueError(f"unknown reason code(s) {unknown}; use R1–R10")
        if len(set(self.reason_codes)) != len(self.reason_codes):
            raise ValueError("a reason code is repeated")
        if self.decision is RecognitionChoice.REUSE:
            if self.reason_codes:
                raise ValueError("reusing a result takes no repeat reason")
            return self
        if not self.reason_codes:
            raise ValueError("repeating a recognisable test needs a reason code (R1–R10)")
        needs_text = [c for c in self.reason_codes if REPEAT_REASONS[c].needs_free_text]
        if needs_text and not (self.free_text and self.free_text.strip()):
            raise ValueError(f"reason {needs_text[0]} needs free_text")
        return self


class DecisionRead(_Read):
    id: uuid.UUID
    person_id: uuid.UUID
    result_id: uuid.UUID
    item_code: str
    item_version: int | None
    ordering_institution_id: uuid.UUID
    order_ref: str | None
    clinician_user_id: uuid.UUID | None
    practitioner_id: uuid.UUID | None
    decision: RecognitionChoice
    reason_codes: list[str]
    free_text: str | None
    price: Decimal | None
    decided_at: datetime


# --- statistics ---------------------------------------------------------------------------


class InstitutionMonth(BaseModel):
    institution_code: str
    month: str  # YYYY-MM
    reused: int
    repeated: int
    tests_avoided: int
    money_saved: Decimal
    unpriced_reuses: int = Field(description="Reuses of items without a configured price")


class ReasonCount(BaseModel):
    code: str
    text_en: str
    count: int


class Statistics(BaseModel):
    since: date | None
    until: date | None
    by_institution_month: list[InstitutionMonth]
    repeat_reasons: list[ReasonCount]
