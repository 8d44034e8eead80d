"""Patient tables: the MPI person (golden record), source records per institution,
their identifiers, and consent to alliance-wide sharing."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from medalliance.db.base import Base, IdMixin, TimestampMixin
from medalliance.db.types import str_enum
from medalliance.domains.patients.identity import Sex


class PregnancyStatus(StrEnum):
    UNKNOWN = "unknown"
    PREGNANT = "pregnant"
    NOT_PREGNANT = "not_pregnant"


class IdentifierSystem(StrEnum):
    RESIDENT_ID = "resident_id"  # 公民身份号码
    MRN = "mrn"  # the institution's medical record number (病案号)
    INSURANCE = "insurance"  # 医保卡号
    PASSPORT = "passport"
    PHONE = "phone"
    OTHER = "other"


class LinkMethod(StrEnum):
    NEW_PERSON = "new_person"
    RESIDENT_ID = "resident_id"  # decisive: a valid resident ID that agrees
    PROBABILISTIC = "probabilistic"  # Fellegi–Sunter score above the link threshold
    MANUAL = "manual"  # a person in the review queue decided


class ConsentStatus(StrEnum):
    GRANTED = "granted"
    WITHDRAWN = "withdrawn"


class Person(IdMixin, TimestampMixin, Base):
    """One human being across the alliance: the MPI entry and its golden record."""

    __tablename__ = "persons"

    family_name: Mapped[str] = mapped_column(String(50))
    given_name: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(150), index=True)
    name_pinyin: Mapped[str] = mapped_column(String(300), index=True)
    name_initials: Mapped[str] = mapped_column(String(50), index=True)
    sex: Mapped[Sex] = mapped_column(str_enum(Sex, "sex"))
    birth_date: Mapped[date | None] = mapped_column(Date)
    id_number: Mapped[str | None] = mapped_column(String(18), index=True)
    phone: Mapped[str | None] = mapped_column(String(32))
    province: Mapped[str | None] = mapped_column(String(50))
    city: Mapped[str | None] = mapped_column(String(50))
    district: Mapped[str | None] = mapped_column(String(50))
    active: Mapped[bool] = mapped_column(default=True)
    version: Mapped[int] = mapped_column(Integer, default=1)


class PatientRecord(IdMixin, TimestampMixin, Base):
    """What one member institution registered: never deleted, only linked and unlinked."""

    __tablename__ = "patient_records"
    __table_args__ = (
        UniqueConstraint("institution_id", "mrn"),
        Index("ix_patient_records_person_institution", "person_id", "institution_id"),
        Index("ix_patient_records_birth_date_sex", "birth_date", "sex"),
        # The MPI's name block, nearest birth dates first, read from the index alone.
        Index(
            "ix_patient_records_pinyin_compact_birth_id",
            "name_pinyin_compact",
            "birth_date",
            "id",
        ),
    )

    person_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("persons.id"))
    institution_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("institutions.id"), index=True)
    mrn: Mapped[str | None] = mapped_column(String(64))
    family_name: Mapped[str] = mapped_column(String(50))
    given_name: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(150), index=True)
    name_pinyin: Mapped[str] = mapped_column(String(300), index=True)
    name_initials: Mapped[str] = mapped_column(String(50), index=True)
    name_pinyin_compact: Mapped[str] = mapped_column(String(300))
    sex: Mapped[Sex] = mapped_column(str_enum(Sex, "sex"))
    birth_date: Mapped[date | None] = mapped_column(Date)
    id_number: Mapped[str | None] = mapped_column(String(18), index=True)
    phones: Mapped[list[str]] = mapped_column(JSON, default=list)
    province: Mapped[str | None] = mapped_column(String(50))
    city: Mapped[str | None] = mapped_column(String(50))
    district: Mapped[str | None] = mapped_column(String(50))
    street: Mapped[str | None] = mapped_column(String(200))
    postcode: Mapped[str | None] = mapped_column(String(10))
    emergency_contact: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    pregnancy_status: Mapped[PregnancyStatus] = mapped_column(
        str_enum(PregnancyStatus, "pregnancy_status"), default=PregnancyStatus.UNKNOWN
    )
    pregnancy_recorded_at: Mapped[datetime | None]
    link_method: Mapped[LinkMethod] = mapped_column(str_enum(LinkMethod, "link_method"))
    link_score: Mapped[float | None]
    idempotency_key: Mapped[str | None] = mapped_column(String(128), unique=True)
    created_by: Mapped[uuid.UUID | None]


class PatientIdentifier(IdMixin, Base):
    __tablename__ = "patient_identifiers"
    __table_args__ = (
        Index("ix_patient_identifiers_value_system", "value", "system"),
        UniqueConstraint("record_id", "system", "value"),
    )

    record_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patient_records.id"), index=True)
    system: Mapped[IdentifierSystem] = mapped_column(
        str_enum(IdentifierSystem, "identifier_system")
    )
    value: Mapped[str] = mapped_column(String(64))
    assigner: Mapped[str | None] = mapped_column(String(100))


class Consent(IdMixin, Base):
    """Consent to alliance-wide sharing; the newest row per person is in force."""

    __tablename__ = "consents"
    __table_args__ = (Index("ix_consents_person_recorded", "person_id", "recorded_at"),)

    person_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("persons.id"))
    status: Mapped[ConsentStatus] = mapped_column(str_enum(ConsentStatus, "consent_status"))
    excluded_institution_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    note: Mapped[str | None] = mapped_column(Text)
    recorded_by: Mapped[uuid.UUID | None]
    recorded_at_institution_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("institutions.id")
    )
    recorded_at: Mapped[datetime]
