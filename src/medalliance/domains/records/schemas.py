"""API shapes of the longitudinal record."""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from medalliance.domains.records.models import (
    AllergyCategory,
    ClinicalStatus,
    EncounterClass,
    EncounterStatus,
    MedicationStatus,
    NoteKind,
    Severity,
)

ICD10 = re.compile(r"^[A-Z][0-9]{2}(\.[0-9A-Z]{1,4})?$")
# ICD-11 TM1 (chapter 26): disorders SA.., patterns SE..–SJ.. (../shared/reference/tcm/standards.md)
ICD11_TM1 = re.compile(r"^S[A-J][0-9A-Z]{2}(\.[0-9A-Z]{1,4})?$")
# GB/T 15657-2021: dotted codes, diseases starting A, patterns B (structure partly verified)
GBT15657 = re.compile(r"^[AB][0-9]{2}(\.[0-9]{2}){0,4}\.?$")
TcmSystem = Literal["gbt15657", "icd11"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class _Read(BaseModel):
    model_config = ConfigDict(from_attributes=True)


def _check_code(system: str | None, code: str | None, what: str, kind: str) -> None:
    if code is None:
        return
    if system is None:
        raise ValueError(f"{what}_system is required with {what}_code")
    pattern = ICD11_TM1 if system == "icd11" else GBT15657
    if not pattern.match(code):
        raise ValueError(f"{what}_code {code!r} is not a {system} {kind} code")
    if system == "gbt15657" and code[0] != ("A" if kind == "disease" else "B"):
        raise ValueError(f"GB/T 15657 {kind} codes start with {'A' if kind == 'disease' else 'B'}")


class EncounterCreate(_Strict):
    encounter_class: EncounterClass
    status: EncounterStatus = EncounterStatus.IN_PROGRESS
    start: AwareDatetime
    end: AwareDatetime | None = None
    department_id: uuid.UUID | None = None
    practitioner_id: uuid.UUID | None = None
    reason: str | None = Field(default=None, max_length=2000)

    @model_validator(mode="after")
    def _order(self) -> EncounterCreate:
        if self.end is not None and self.end < self.start:
            raise ValueError("end is before start")
        return self


class EncounterUpdate(_Strict):
    status: EncounterStatus | None = None
    end: AwareDatetime | None = None
    reason: str | None = Field(default=None, max_length=2000)


class EncounterRead(_Read):
    id: uuid.UUID
    patient_record_id: uuid.UUID
    institution_id: uuid.UUID
    department_id: uuid.UUID | None
    practitioner_id: uuid.UUID | None
    encounter_class: EncounterClass
    status: EncounterStatus
    start: datetime
    end: datetime | None
    reason: str | None


class DiagnosisCreate(_Strict):
    primary: bool = False
    western_code: str | None = Field(default=None, max_length=16)
    western_text: str | None = Field(default=None, max_length=300)
    tcm_disease_system: TcmSystem | None = None
    tcm_disease_code: str | None = Field(default=None, max_length=32)
    tcm_disease_text: str | None = Field(default=None, max_length=300)
    tcm_pattern_system: TcmSystem | None = None
    tcm_pattern_code: str | None = Field(default=None, max_length=32)
    tcm_pattern_text: str | None = Field(default=None, max_length=300)
    status: ClinicalStatus = ClinicalStatus.ACTIVE

    @model_validator(mode="after")
    def _codes(self) -> DiagnosisCreate:
        if self.western_code is not None and not ICD10.match(self.western_code):
            raise ValueError(f"western_code {self.western_code!r} is not an ICD-10 code")
        _check_code(self.tcm_disease_system, self.tcm_disease_code, "tcm_disease", "disease")
        _check_code(self.tcm_pattern_system, self.tcm_pattern_code, "tcm_pattern", "pattern")
        parts = (
            self.western_code or self.western_text,
            self.tcm_disease_code or self.tcm_disease_text,
            self.tcm_pattern_code or self.tcm_pattern_text,
        )
        if not any(parts):
            raise ValueError(
                "a diagnosis needs a Western diagnosis, a TCM disease or a TCM pattern"
            )
        return self


class DiagnosisRead(_Read):
    id: uuid.UUID
    encounter_id: uuid.UUID
    institution_id: uuid.UUID
    primary: bool
    western_code: str | None
    western_text: str | None
    tcm_disease_system: str | None
    tcm_disease_code: str | None
    tcm_disease_text: str | None
    tcm_pattern_system: str | None
    tcm_pattern_code: str | None
    tcm_pattern_text: str | None
    status: ClinicalStatus
    recorded_at: datetime


class AllergyCreate(_Strict):
    substance: str = Field(min_length=1, max_length=200)
    substance_code: str | None = Field(default=None, max_length=64)
    category: AllergyCategory
    reaction: str | None = Field(default=None, max_length=300)
    severity: Severity | None = None


class AllergyRead(_Read):
    id: uuid.UUID
    institution_id: uuid.UUID
    substance: str
    substance_code: str | None
    category: AllergyCategory
    reaction: str | None
    severity: Severity | None
    status: ClinicalStatus
    recorded_at: datetime


class MedicationCreate(_Strict):
    drug: str = Field(min_length=1, max_length=200)
    drug_code: str | None = Field(default=None, max_length=64)
    dose: str | None = Field(default=None, max_length=100)
    route: str | None = Field(default=None, max_length=50)
    frequency: str | None = Field(default=None, max_length=50)
    start_date: date | None = None
    end_date: date | None = None
    status: MedicationStatus = MedicationStatus.ACTIVE

    @model_validator(mode="after")
    def _order(self) -> MedicationCreate:
        if self.start_date and self.end_date and self.end_date < self.start_date:
            raise ValueError("end_date is before start_date")
        return self


class MedicationRead(_Read):
    id: uuid.UUID
    institution_id: uuid.UUID
    drug: str
    drug_code: str | None
    dose: str | None
    route: str | None
    frequency: str | None
    start_date: date | None
    end_date: date | None
    status: MedicationStatus
    recorded_at: datetime


class StatusUpdate(_Strict):
    status: str = Field(min_length=1, max_length=32)


class TcmExamination(_Strict):
    """四诊: inspection 望 (incl. tongue 舌象), listening and smelling 闻, inquiry 问,
    palpation 切 (incl. pulse 脉象)."""

    inspection: str | None = Field(default=None, max_length=2000)
    tongue_body: str | None = Field(default=None, max_length=200)
    tongue_coating: str | None = Field(default=None, max_length=200)
    listening_smelling: str | None = Field(default=None, max_length=2000)
    inquiry: str | None = Field(default=None, max_length=4000)
    palpation: str | None = Field(default=None, max_length=2000)
    pulse: str | None = Field(default=None, max_length=200)


class NoteCreate(_Strict):
    kind: NoteKind
    text: str = Field(default="", max_length=20000)
    tcm_exam: TcmExamination | None = None

    @model_validator(mode="after")
    def _content(self) -> NoteCreate:
        if self.kind is NoteKind.TCM_FOUR_EXAMINATIONS and self.tcm_exam is None:
            raise ValueError("a four-examinations note needs tcm_exam")
        if not self.text and self.tcm_exam is None:
            raise ValueError("the note is empty")
        return self


class NoteRead(_Read):
    id: uuid.UUID
    encounter_id: uuid.UUID
    institution_id: uuid.UUID
    kind: NoteKind
    text: str
    tcm_exam: dict[str, Any] | None
    recorded_at: datetime


class ProcedureCreate(_Strict):
    code_system: str | None = Field(default=None, max_length=32)
    code: str | None = Field(default=None, max_length=32)
    text: str = Field(min_length=1, max_length=300)
    performed_at: AwareDatetime


class ProcedureRead(_Read):
    id: uuid.UUID
    encounter_id: uuid.UUID
    institution_id: uuid.UUID
    code_system: str | None
    code: str | None
    text: str
    performed_at: datetime


class TimelineEntry(BaseModel):
    type: str
    id: uuid.UUID
    at: datetime
    institution_id: uuid.UUID
    institution_code: str
    institution_name_zh: str
    institution_name_en: str
    summary: str
    status: str | None = None
    encounter_id: uuid.UUID | None = None
    detail: dict[str, Any] = Field(default_factory=dict)


class Timeline(BaseModel):
    patient_id: uuid.UUID
    entries: list[TimelineEntry]
    hidden_institutions: list[str] = Field(
        description="Members whose entries the access policy withholds from you"
    )
    total: int


class EncounterDetail(EncounterRead):
    diagnoses: list[DiagnosisRead]
    notes: list[NoteRead]
    procedures: list[ProcedureRead]
