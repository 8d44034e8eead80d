"""Prescriptions (herbal and Western parts on one prescription) and constitution
assessments. Like record entries, each row belongs to a source record and to the
institution that wrote it, so the access policy decides entry by entry."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from medalliance.db.base import Base, IdMixin, TimestampMixin
from medalliance.db.types import str_enum


class PrescriptionStatus(StrEnum):
    DRAFT = "draft"
    SIGNED = "signed"
    CANCELLED = "cancelled"
    # An order placed in another system (a member's HIS, an import) and recorded here:
    # never signed or changed here; its own status is ``order_status``.
    RECORDED = "recorded"


class OrderStatus(StrEnum):
    """FHIR MedicationRequest.status of a recorded order, kept as the sender gave it."""

    ACTIVE = "active"
    ON_HOLD = "on-hold"
    CANCELLED = "cancelled"
    COMPLETED = "completed"
    ENTERED_IN_ERROR = "entered-in-error"
    STOPPED = "stopped"
    DRAFT = "draft"
    UNKNOWN = "unknown"


class HerbalForm(StrEnum):
    DECOCTION = "decoction"  # 饮片 decocted
    GRANULES = "granules"  # 配方颗粒


class Prescription(IdMixin, TimestampMixin, Base):
    __tablename__ = "tcm_prescriptions"

    patient_record_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("patient_records.id"), index=True
    )
    institution_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("institutions.id"))
    # Written here: always on an encounter. Recorded from elsewhere: if the order named one.
    encounter_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("encounters.id"), index=True)
    recorded_by: Mapped[uuid.UUID | None]
    status: Mapped[PrescriptionStatus] = mapped_column(
        str_enum(PrescriptionStatus, "prescription_status")
    )
    # A recorded order (status ``recorded``): what the placing system said about it.
    order_status: Mapped[OrderStatus | None] = mapped_column(str_enum(OrderStatus, "order_status"))
    intent: Mapped[str | None] = mapped_column(String(20))
    authored_at: Mapped[datetime | None]
    requester_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("practitioners.id"))
    reason: Mapped[str | None] = mapped_column(Text)
    reason_diagnosis_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("diagnoses.id"))
    recorded_from: Mapped[str | None] = mapped_column(String(100))  # e.g. "fhir"
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
    # Written here: structured, all given. Recorded: what the order said, often only text.
    dose: Mapped[str | None] = mapped_column(String(100))
    route: Mapped[str | None] = mapped_column(String(50))
    frequency: Mapped[str | None] = mapped_column(String(50))
    duration_days: Mapped[int | None] = mapped_column(Integer)
    dosage_text: Mapped[str | None] = mapped_column(Text)
    as_needed: Mapped[bool | None] = mapped_column(Boolean)


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
