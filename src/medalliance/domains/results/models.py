"""Result tables.

A result belongs to the source record of the patient at the member that performed
it (so unlinking a wrongly merged record takes its results along) and to that member
(so the access policy decides result by result). A correction is a new row that
supersedes the old one; the old row is never changed except for the pointer to its
successor.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from medalliance.db.base import Base, IdMixin, TimestampMixin
from medalliance.db.types import str_enum


class ResultKind(StrEnum):
    LAB = "lab"
    IMAGING = "imaging"


class ResultStatus(StrEnum):
    PRELIMINARY = "preliminary"
    FINAL = "final"
    CORRECTED = "corrected"


class RecognitionChoice(StrEnum):
    REUSE = "reuse"  # 互认: the existing result is used, the test is not repeated
    REPEAT = "repeat"  # 不互认: repeated, with a coded reason


class RecognitionItem(IdMixin, TimestampMixin, Base):
    """One version of one item on the alliance's recognised-item list (WORKFLOWS.md §1.2.1)."""

    __tablename__ = "recognition_items"
    __table_args__ = (UniqueConstraint("code", "version"),)

    code: Mapped[str] = mapped_column(String(32), index=True)
    version: Mapped[int] = mapped_column(Integer)
    code_system: Mapped[str] = mapped_column(String(16))  # "LN" (LOINC) or "L" (local)
    kind: Mapped[ResultKind] = mapped_column(str_enum(ResultKind, "result_kind"))
    name_zh: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str] = mapped_column(String(200))
    # LOINC PROPERTY axis (MCnc, SCnc, MFr …): decides which UCUM units fit.
    unit_property: Mapped[str | None] = mapped_column(String(16))
    validity_days: Mapped[int | None] = mapped_column(Integer)
    validity_source: Mapped[str | None] = mapped_column(String(300))
    price: Mapped[Decimal | None] = mapped_column(Numeric(10, 2))
    price_source: Mapped[str | None] = mapped_column(String(300))
    source: Mapped[str] = mapped_column(Text)
    valid_from: Mapped[date] = mapped_column(Date)
    valid_to: Mapped[date | None] = mapped_column(Date)  # exclusive


class LabAccreditation(IdMixin, TimestampMixin, Base):
    """A member's external quality assessment (室间质评) for one item (WORKFLOWS.md §1.2.2)."""

    __tablename__ = "lab_accreditations"
    __table_args__ = (
        Index("ix_lab_accreditations_institution_item", "institution_id", "item_code"),
    )

    institution_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("institutions.id"))
    item_code: Mapped[str] = mapped_column(String(32))
    eqa_scheme: Mapped[str] = mapped_column(String(200))
    passed: Mapped[bool] = mapped_column(Boolean)
    valid_from: Mapped[date] = mapped_column(Date)
    valid_to: Mapped[date] = mapped_column(Date)  # inclusive
    note: Mapped[str | None] = mapped_column(Text)
    recorded_by: Mapped[uuid.UUID | None]


class Hl7Message(IdMixin, Base):
    """The raw inbound message, kept for provenance; one per sender and control id."""

    __tablename__ = "hl7_messages"
    __table_args__ = (UniqueConstraint("sending_institution_id", "control_id"),)

    sending_institution_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("institutions.id"))
    control_id: Mapped[str] = mapped_column(String(199))
    message_type: Mapped[str] = mapped_column(String(32))
    raw: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime]
    received_by: Mapped[uuid.UUID | None]
    patient_record_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("patient_records.id"))
    result_count: Mapped[int] = mapped_column(Integer, default=0)


class Result(IdMixin, TimestampMixin, Base):
    """A lab result (one observation) or an imaging report (one study, no pixels)."""

    __tablename__ = "results"
    __table_args__ = (
        # The order-time check: a patient's current results of some items, newest first.
        Index("ix_results_record_item_effective", "patient_record_id", "item_code", "effective_at"),
        Index("ix_results_institution_order", "institution_id", "order_ref"),
    )

    patient_record_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patient_records.id"))
    institution_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("institutions.id"))
    kind: Mapped[ResultKind] = mapped_column(str_enum(ResultKind, "result_kind"))
    item_code: Mapped[str] = mapped_column(String(32))
    item_system: Mapped[str] = mapped_column(String(16))
    item_name: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[ResultStatus] = mapped_column(str_enum(ResultStatus, "result_status"))
    effective_at: Mapped[datetime]  # specimen collection (lab) or study time (imaging)
    issued_at: Mapped[datetime | None]
    performing_lab: Mapped[str | None] = mapped_column(String(200))
    order_ref: Mapped[str | None] = mapped_column(String(64))
    # lab
    value_numeric: Mapped[float | None] = mapped_column(Float)
    value_text: Mapped[str | None] = mapped_column(Text)
    unit: Mapped[str | None] = mapped_column(String(32))
    reference_range: Mapped[str | None] = mapped_column(String(64))
    abnormal_flag: Mapped[str | None] = mapped_column(String(8))
    # imaging
    modality: Mapped[str | None] = mapped_column(String(16))
    body_site: Mapped[str | None] = mapped_column(String(100))
    report_text: Mapped[str | None] = mapped_column(Text)
    conclusion: Mapped[str | None] = mapped_column(Text)
    pacs_url: Mapped[str | None] = mapped_column(String(500))
    # recognition and provenance
    hr_mark: Mapped[bool] = mapped_column(Boolean, default=False)
    supersedes_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("results.id"))
    superseded_by_id: Mapped[uuid.UUID | None]
    source: Mapped[str] = mapped_column(String(16))  # hl7v2 | fhir | api | demo
    source_message_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("hl7_messages.id"))
    recorded_by: Mapped[uuid.UUID | None]


class RecognitionDecision(IdMixin, Base):
    """What the ordering clinician did with a recognisable result (WORKFLOWS.md §1.3)."""

    __tablename__ = "recognition_decisions"
    __table_args__ = (
        Index("ix_recognition_decisions_institution_at", "ordering_institution_id", "decided_at"),
    )

    person_id: Mapped[uuid.UUID] = mapped_column(index=True)
    result_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("results.id"), index=True)
    item_code: Mapped[str] = mapped_column(String(32))
    item_version: Mapped[int | None] = mapped_column(Integer)
    ordering_institution_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("institutions.id"))
    order_ref: Mapped[str | None] = mapped_column(String(64))
    clinician_user_id: Mapped[uuid.UUID | None]
    practitioner_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("practitioners.id"))
    decision: Mapped[RecognitionChoice] = mapped_column(
        str_enum(RecognitionChoice, "recognition_choice")
    )
    reason_codes: Mapped[list[Any]] = mapped_column(JSON, default=list)
    free_text: Mapped[str | None] = mapped_column(Text)
    price: Mapped[Decimal | None] = mapped_column(Numeric(10, 2))  # the item's price then
    decided_at: Mapped[datetime]


class ResultPanel(IdMixin, TimestampMixin, Base):
    """A lab panel report (a FHIR DiagnosticReport of a laboratory): the panel's code
    (a LOINC panel such as 58410-2, CBC), its status and times, and the lab results it
    groups (``ResultPanelMember``). Written at the performing member on the patient's
    source record there, like the results it groups (``results/panels.py``)."""

    __tablename__ = "result_panels"
    __table_args__ = (
        Index("ix_result_panels_record_effective", "patient_record_id", "effective_at"),
    )

    patient_record_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patient_records.id"))
    institution_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("institutions.id"), index=True)
    encounter_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("encounters.id"))
    practitioner_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("practitioners.id"))
    code: Mapped[str] = mapped_column(String(32))
    code_system: Mapped[str] = mapped_column(String(16))  # "LN" (LOINC) or "L" (local)
    name: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[ResultStatus] = mapped_column(str_enum(ResultStatus, "result_status"))
    effective_at: Mapped[datetime]  # specimen collection
    issued_at: Mapped[datetime | None]
    conclusion: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(16))  # fhir | api | demo
    recorded_by: Mapped[uuid.UUID | None]


class ResultPanelMember(Base):
    """One lab result of a panel, in the report's order."""

    __tablename__ = "result_panel_members"

    panel_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("result_panels.id"), primary_key=True)
    result_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("results.id"), primary_key=True, index=True
    )
    position: Mapped[int] = mapped_column(Integer)
