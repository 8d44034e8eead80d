"""API shapes of the registry."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from medalliance.domains.alliance.models import (
    BedStatus,
    Discipline,
    InstitutionType,
    PractitionerTitle,
    SharingDefault,
    Tier,
)

CODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{1,31}$"

T = TypeVar("T")


def not_null(value: T | None) -> T:
    """In a PATCH a required column may be left out, not set to null (422, not a 500)."""
    if value is None:
        raise ValueError("may be left out, but not set to null")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class _Read(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class AllianceCreate(_Strict):
    code: str = Field(pattern=CODE_PATTERN)
    name_zh: str = Field(min_length=1, max_length=200)
    name_en: str = Field(min_length=1, max_length=200)
    region: str | None = Field(default=None, max_length=100)
    sharing_default: SharingDefault = SharingDefault.OPT_OUT


class AllianceUpdate(_Strict):
    name_zh: str | None = Field(default=None, min_length=1, max_length=200)
    name_en: str | None = Field(default=None, min_length=1, max_length=200)
    region: str | None = Field(default=None, max_length=100)
    sharing_default: SharingDefault | None = None

    @field_validator("name_zh", "name_en", "sharing_default")
    @classmethod
    def _required_columns_not_null(cls, value: object) -> object:
        return not_null(value)


class AllianceRead(_Read):
    id: uuid.UUID
    code: str
    name_zh: str
    name_en: str
    region: str | None
    sharing_default: SharingDefault
    created_at: datetime
    updated_at: datetime


class InstitutionCreate(_Strict):
    code: str = Field(pattern=CODE_PATTERN, description="Unique institution code")
    name_zh: str = Field(min_length=1, max_length=200)
    name_en: str = Field(min_length=1, max_length=200)
    tier: Tier
    type: InstitutionType
    district: str | None = Field(default=None, max_length=100)
    address: str | None = Field(default=None, max_length=300)
    lead_institution_code: str | None = Field(
        default=None, description="The institution this member reports to"
    )
    alliance_code: str | None = Field(
        default=None, description="Defaults to the alliance of the lead institution or the only one"
    )


class InstitutionUpdate(_Strict):
    name_zh: str | None = Field(default=None, min_length=1, max_length=200)
    name_en: str | None = Field(default=None, min_length=1, max_length=200)
    tier: Tier | None = None
    type: InstitutionType | None = None
    district: str | None = Field(default=None, max_length=100)
    address: str | None = Field(default=None, max_length=300)
    lead_institution_code: str | None = None
    active: bool | None = None

    @field_validator("name_zh", "name_en", "tier", "type", "active")
    @classmethod
    def _required_columns_not_null(cls, value: object) -> object:
        return not_null(value)


class InstitutionRead(_Read):
    id: uuid.UUID
    alliance_id: uuid.UUID
    code: str
    name_zh: str
    name_en: str
    tier: Tier
    type: InstitutionType
    district: str | None
    address: str | None
    lead_institution_id: uuid.UUID | None
    active: bool
    created_at: datetime
    updated_at: datetime


class DepartmentCreate(_Strict):
    code: str = Field(pattern=CODE_PATTERN)
    name_zh: str = Field(min_length=1, max_length=200)
    name_en: str = Field(min_length=1, max_length=200)
    discipline: Discipline


class DepartmentCreateAt(DepartmentCreate):
    """A department of a given member (many at once: a FHIR Location import)."""

    institution_id: uuid.UUID
    active: bool = True
    phone: str | None = Field(default=None, max_length=50)
    address: str | None = Field(default=None, max_length=300)
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)


class DepartmentUpdate(_Strict):
    name_zh: str | None = Field(default=None, min_length=1, max_length=200)
    name_en: str | None = Field(default=None, min_length=1, max_length=200)
    discipline: Discipline | None = None
    active: bool | None = None

    @field_validator("name_zh", "name_en", "discipline", "active")
    @classmethod
    def _required_columns_not_null(cls, value: object) -> object:
        return not_null(value)


class DepartmentRead(_Read):
    id: uuid.UUID
    institution_id: uuid.UUID
    code: str
    name_zh: str
    name_en: str
    discipline: Discipline
    active: bool


class PractitionerCreate(_Strict):
    institution_code: str
    department_id: uuid.UUID | None = None
    name: str = Field(min_length=1, max_length=100)
    name_en: str | None = Field(default=None, max_length=100)
    title: PractitionerTitle
    discipline: Discipline
    specialty: str | None = Field(default=None, max_length=100)
    licence_number: str = Field(pattern=r"^[A-Za-z0-9-]{6,32}$")


class PractitionerAssignment(_Strict):
    """Where a practitioner works (their one role): the member, the department (None:
    none), and optionally title, discipline, specialty. Another member moves them."""

    practitioner_id: uuid.UUID
    institution_id: uuid.UUID
    department_id: uuid.UUID | None = None
    title: PractitionerTitle | None = None
    discipline: Discipline | None = None
    specialty: str | None = Field(default=None, max_length=100)


class PractitionerUpdate(_Strict):
    department_id: uuid.UUID | None = None
    name: str | None = Field(default=None, min_length=1, max_length=100)
    name_en: str | None = Field(default=None, max_length=100)
    title: PractitionerTitle | None = None
    discipline: Discipline | None = None
    specialty: str | None = Field(default=None, max_length=100)
    active: bool | None = None

    @field_validator("name", "title", "discipline", "active")
    @classmethod
    def _required_columns_not_null(cls, value: object) -> object:
        return not_null(value)


class PractitionerRead(_Read):
    id: uuid.UUID
    institution_id: uuid.UUID
    department_id: uuid.UUID | None
    name: str
    name_en: str | None
    title: PractitionerTitle
    discipline: Discipline
    specialty: str | None
    licence_number: str
    active: bool


class BedCreate(_Strict):
    code: str = Field(pattern=CODE_PATTERN)
    status: BedStatus = BedStatus.FREE


class BedStatusUpdate(_Strict):
    status: BedStatus
    expected_version: int | None = Field(
        default=None, description="Optimistic concurrency: fail with 409 if the bed changed"
    )


class BedRead(_Read):
    id: uuid.UUID
    department_id: uuid.UUID
    code: str
    status: BedStatus
    version: int
    updated_at: datetime


class BedAvailability(BaseModel):
    institution_code: str
    department_id: uuid.UUID
    department_code: str
    department_name_zh: str
    department_name_en: str
    free: int
    occupied: int
    cleaning: int
    closed: int
    total: int
