"""API shapes for accounts, tokens and break-the-glass."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from medalliance.access.passwords import MIN_PASSWORD_LENGTH
from medalliance.kernel.roles import Role


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105
    expires_in: int
    refresh_token: str


class RefreshRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    refresh_token: str = Field(min_length=10)


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    username: str = Field(pattern=r"^[A-Za-z0-9_.@-]{3,150}$")
    password: str = Field(min_length=MIN_PASSWORD_LENGTH, max_length=256)
    role: Role
    display_name: str | None = Field(default=None, max_length=150)
    institution_code: str | None = None
    practitioner_id: uuid.UUID | None = None


class UserUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    display_name: str | None = Field(default=None, min_length=1, max_length=150)
    role: Role | None = None
    active: bool | None = None
    password: str | None = Field(default=None, min_length=MIN_PASSWORD_LENGTH, max_length=256)
    unlock: bool | None = Field(default=None, description="Clear a lockout")
    practitioner_id: uuid.UUID | None = None

    @field_validator("display_name", "role", "active", "password")
    @classmethod
    def _required_columns_not_null(cls, value: object) -> object:
        # A required column may be left out of a PATCH, not set to null (422, not a 500).
        if value is None:
            raise ValueError("may be left out, but not set to null")
        return value


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    username: str
    display_name: str
    role: Role
    institution_id: uuid.UUID | None
    practitioner_id: uuid.UUID | None
    active: bool
    locked_until: datetime | None
    last_login_at: datetime | None
    created_at: datetime


class Me(BaseModel):
    id: uuid.UUID
    username: str
    role: Role
    institution_id: uuid.UUID | None
    practitioner_id: uuid.UUID | None
    permissions: list[str]


class BreakGlassStart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    patient_id: uuid.UUID
    reason: str = Field(min_length=1, max_length=2000)


class BreakGlassReview(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str = Field(min_length=1, max_length=2000)


class BreakGlassRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    user_id: uuid.UUID
    institution_id: uuid.UUID | None
    patient_id: uuid.UUID
    reason: str
    started_at: datetime
    expires_at: datetime
    ended_at: datetime | None
    reviewed_at: datetime | None
    reviewed_by: uuid.UUID | None
    review_note: str | None


class NotificationRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    kind: str
    subject: str
    body: str
    link: str | None
    created_at: datetime
    read_at: datetime | None
