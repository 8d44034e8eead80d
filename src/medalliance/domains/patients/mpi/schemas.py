"""API shapes of the MPI review queue and link history."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from pydantic import BaseModel, ConfigDict, Field

from medalliance.domains.patients.identity import Sex
from medalliance.domains.patients.mpi.models import LinkAction, ReviewStatus

COMPARED_FIELDS = (
    "name",
    "name_pinyin",
    "sex",
    "birth_date",
    "id_number",
    "phones",
    "province",
    "city",
    "district",
    "street",
    "postcode",
)


class ReviewRecord(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    person_id: uuid.UUID
    institution_id: uuid.UUID
    institution_code: str = ""
    mrn: str | None
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


class ReviewItemRead(BaseModel):
    id: uuid.UUID
    status: ReviewStatus
    probability: float
    weight: float
    record: ReviewRecord
    candidate: ReviewRecord
    differing_fields: list[str] = Field(description="Fields whose values differ, to highlight")
    comparison: dict[str, object]
    created_at: datetime
    decided_by: uuid.UUID | None
    decided_at: datetime | None
    note: str | None


class ReviewDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    same_person: bool
    note: str | None = Field(default=None, max_length=2000)


class LinkRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    person_id: uuid.UUID
    reason: str = Field(min_length=1, max_length=2000)


class UnlinkRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=2000)


class RecordLink(BaseModel):
    record_id: uuid.UUID
    person_id: uuid.UUID


class LinkEventRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    record_id: uuid.UUID
    from_person_id: uuid.UUID | None
    to_person_id: uuid.UUID
    action: LinkAction
    method: str
    probability: float | None
    actor_user_id: uuid.UUID | None
    reason: str | None
    at: datetime
