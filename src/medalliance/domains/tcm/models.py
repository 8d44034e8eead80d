"""Prescriptions (herbal and Western parts on one prescription) and constitution
assessments. Like record entries, each row belongs to a source record and to the
institution that wrote it, so the access policy decides entry by entry."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from medalliance.db.base import Base, IdMixin, TimestampMixin
from medalliance.db.types import str_enum


class PrescriptionStatus(StrEnum):
    DRAFT = "draft"
    SIGNED = "signed"
    CANCELLED = "cancelled"


class HerbalForm(StrEnum):
    DECOCTION = "decoction"  # 饮片 decocted
    GRANULES = "granules"  # 配方颗粒


class Prescription(IdMixin, TimestampMixin, Base):
    __tablename__ = "tcm_prescriptions"

    patient_record_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("patient_records.id"), index=True
    )
    institution_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("institutions.id"))
    encounter_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("encounters.id"), index=True)
    recorded_by: Mapped[uuid.UUID | None]
    status: Mapped[PrescriptionStatus] = mapped_column(
        str_enum(PrescriptionStatus, "prescription_status")
    )
    # The herbal part: the classical formula it starts from (if any), 剂数, form.
    formula_id: Mapped[str | None] = mapped_column(String(16))
    formula_name: Mapped[str | None] = mapped_column(String(100))
    dose_count: Mapped[int | None] = mapped_column(Integer)  # 剂数
    herbal_form: Mapped[HerbalForm | None] = mapped_column(str_enum(HerbalForm, "herbal_form"))
    instructions: Mapped[str | None] = mapped_column(Text)
    # The last safety check: findings, when, and the pregnancy status it assumed.
    findings: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    checked_at: Mapped[datetime]
    check_context: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    override_reason: Mapped[str | None] = mapped_column(Text)
    signed_at: Mapped[datetime | None]
    signed_by: Mapped[uuid.UUID | None]
    cancelled_at: Mapped[datetime | None]
    cancel_reason: Mapped[str | None] = mapped_column(Text)

    herbs: Mapped[list[PrescriptionHerb]] = relationship(
        order_by="PrescriptionHerb.seq", cascade="all, delete-orphan", lazy="selectin"
    )
    drugs: Mapped[list[PrescriptionDrug]] = relationship(
        order_by="PrescriptionDrug.seq", cascade="all, delete-orphan", lazy="selectin"
    )


class PrescriptionHerb(IdMixin, Base):
    __tablename__ = "tcm_prescription_herbs"

    prescription_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tcm_prescriptions.id", ondelete="CASCADE"), index=True
    )
    seq: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(50))  # as written (法半夏)
    herb: Mapped[str] = mapped_column(String(50))  # the reference herb it resolves to
    dose_g: Mapped[float] = mapped_column(Float)
    origin: Mapped[str] = mapped_column(String(16))  # formula | added | changed | free
    note: Mapped[str | None] = mapped_column(String(200))  # 先煎, 后下, 包煎 …


class PrescriptionDrug(IdMixin, Base):
    __tablename__ = "tcm_prescription_drugs"

    prescription_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tcm_prescriptions.id", ondelete="CASCADE"), index=True
    )
    seq: Mapped[int] = mapped_column(Integer)
    drug: Mapped[str] = mapped_column(String(200))
    dose: Mapped[str] = mapped_column(String(100))
    route: Mapped[str] = mapped_column(String(50))
    frequency: Mapped[str] = mapped_column(String(50))
    duration_days: Mapped[int | None] = mapped_column(Integer)


class ConstitutionAssessment(IdMixin, TimestampMixin, Base):
    __tablename__ = "tcm_constitution_assessments"

    patient_record_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("patient_records.id"), index=True
    )
    institution_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("institutions.id"))
    recorded_by: Mapped[uuid.UUID | None]
    assessed_at: Mapped[datetime]
    sex: Mapped[str] = mapped_column(String(8))  # which 湿热质 item applies
    answers: Mapped[dict[str, int]] = mapped_column(JSON)
    scores: Mapped[dict[str, float]] = mapped_column(JSON)  # transformed score per type
    results: Mapped[dict[str, str]] = mapped_column(JSON)  # judgement per type
    summary: Mapped[str] = mapped_column(String(200))
