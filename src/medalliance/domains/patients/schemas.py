"""API shapes of patients and consent."""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from medalliance.domains.patients.identity import Sex
from medalliance.domains.patients.models import (
    ConsentStatus,
    IdentifierSystem,
    LinkMethod,
    PregnancyStatus,
)

PHONE = re.compile(r"^\+?[0-9][0-9 -]{5,30}$")


def normalise_phone(value: str) -> str:
    digits = re.sub(r"[ -]", "", value)
    if digits.startswith("+86"):
        digits = digits[3:]
    return digits


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class IdentifierIn(_Strict):
    system: IdentifierSystem
    value: str = Field(min_length=1, max_length=64)
    assigner: str | None = Field(default=None, max_length=100)


class EmergencyContact(_Strict):
    name: str = Field(min_length=1, max_length=100)
    phone: str = Field(pattern=PHONE.pattern)
    relationship: str | None = Field(default=None, max_length=50)


class PatientCreate(_Strict):
    institution_code: str | None = Field(
        default=None, description="Registering institution; defaults to your own"
    )
    mrn: str | None = Field(default=None, max_length=64, description="Medical record number")
    family_name: str = Field(min_length=1, max_length=50)
    given_name: str = Field(min_length=1, max_length=100)
    sex: Sex
    birth_date: date
    id_number: str | None = Field(default=None, description="Resident ID, 18 or legacy 15 digits")
    identifiers: list[IdentifierIn] = Field(default_factory=list, max_length=20)
    phones: list[str] = Field(default_factory=list, max_length=5)
    province: str | None = Field(default=None, max_length=50)
    city: str | None = Field(default=None, max_length=50)
    district: str | None = Field(default=None, max_length=50)
    street: str | None = Field(default=None, max_length=200)
    postcode: str | None = Field(default=None, pattern=r"^[0-9]{6}$")
    emergency_contact: EmergencyContact | None = None
    pregnancy_status: PregnancyStatus = PregnancyStatus.UNKNOWN

    @field_validator("birth_date")
    @classmethod
    def _not_future(cls, value: date) -> date:
        if value > date.today():  # noqa: DTZ011 - a calendar date
            raise ValueError("birth date is in the future")
        if value.year < 1880:
            raise ValueError("birth date is before 1880")
        return value

    @field_validator("phones")
    @classmethod
    def _phones(cls, values: list[str]) -> list[str]:
        for value in values:
            if not PHONE.match(value):
                raise ValueError(f"not a phone number: {value!r}")
        return [normalise_phone(v) for v in values]


class PatientUpdate(_Strict):
    family_name: str | None = Field(default=None, min_length=1, max_length=50)
    given_name: str | None = Field(default=None, min_length=1, max_length=100)
    phones: list[str] | None = Field(default=None, max_length=5)
    province: str | None = Field(default=None, max_length=50)
    city: str | None = Field(default=None, max_length=50)
    district: str | None = Field(default=None, max_length=50)
    street: str | None = Field(default=None, max_length=200)
    postcode: str | None = Field(default=None, pattern=r"^[0-9]{6}$")
    emergency_contact: EmergencyContact | None = None
    pregnancy_status: PregnancyStatus | None = None

    @field_validator("phones")
    @classmethod
    def _phones(cls, values: list[str] | None) -> list[str] | None:
        if values is None:
            return None
        return PatientCreate._phones(values)


class IdentifierRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    system: IdentifierSystem
    value: str
    assigner: str | None


class SourceRecordRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    institution_id: uuid.UUID
    institution_code: str = ""
    mrn: str | None
    family_name: str
    given_name: str
    name: str
    name_pinyin: str
    sex: Sex
    birth_date: date | None
    id_number: str | None
    phones: list[str]
    province: str | None
    city: str | None
    district: str | None
    street: str | None
    postcode: str | None
    emergency_contact: dict[str, Any] | None
    pregnancy_status: PregnancyStatus
    link_method: LinkMethod
    link_score: float | None
    identifiers: list[IdentifierRead] = Field(default_factory=list)
    created_at: datetime


class PatientSummary(BaseModel):
    """A search hit: enough to pick the right person, the ID number masked."""

    id: uuid.UUID
    name: str
    name_pinyin: str
    sex: Sex
    birth_date: date | None
    age: int | None
    id_number_masked: str | None
    phone_masked: str | None
    institutions: list[str]


class PatientRead(BaseModel):
    id: uuid.UUID
    name: str
    family_name: str
    given_name: str
    name_pinyin: str
    name_initials: str
    sex: Sex
    birth_date: date | None
    id_number: str | None
    phone: str | None
    province: str | None
    city: str | None
    district: str | None
    pregnancy_status: PregnancyStatus
    consent: ConsentRead
    access_basis: str
    records: list[SourceRecordRead]


class RegistrationResult(BaseModel):
    patient: PatientRead
    record_id: uuid.UUID
    link_method: LinkMethod
    created: bool = Field(description="False when an idempotent retry returned the first result")
    review_candidates: int = Field(
        default=0, description="Uncertain matches queued for a person to review"
    )


class ConsentIn(_Strict):
    status: ConsentStatus
    excluded_institution_codes: list[str] = Field(default_factory=list, max_length=200)
    note: str | None = Field(default=None, max_length=2000)


class ConsentRead(BaseModel):
    status: ConsentStatus
    source: str = Field(description="'recorded', or 'alliance-default' when none was recorded")
    excluded_institution_ids: list[uuid.UUID]
    note: str | None = None
    recorded_by: uuid.UUID | None = None
    recorded_at: datetime | None = None


PatientRead.model_rebuild()
