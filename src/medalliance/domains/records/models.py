"""Record tables. Every row belongs to a source record (so unlinking a wrongly merged
record takes its history with it) and to the institution that wrote it (so the
access policy can decide entry by entry)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, Date, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from medalliance.db.base import Base, IdMixin, TimestampMixin
from medalliance.db.types import str_enum


class EncounterClass(StrEnum):
    OUTPATIENT = "outpatient"
    INPATIENT = "inpatient"
    EMERGENCY = "emergency"
    TELEMEDICINE = "telemedicine"


class EncounterStatus(StrEnum):
    PLANNED = "planned"
    IN_PROGRESS = "in-progress"
    FINISHED = "finished"
    CANCELLED = "cancelled"
    ENTERED_IN_ERROR = "entered-in-error"


class ClinicalStatus(StrEnum):
    ACTIVE = "active"
    RESOLVED = "resolved"
    INACTIVE = "inactive"
    ENTERED_IN_ERROR = "entered-in-error"


class MedicationStatus(StrEnum):
    ACTIVE = "active"
    COMPLETED = "completed"
    STOPPED = "stopped"
    ENTERED_IN_ERROR = "entered-in-error"


class AllergyCategory(StrEnum):
    MEDICATION = "medication"
    HERB = "herb"  # a Chinese materia medica substance
    FOOD = "food"
    ENVIRONMENT = "environment"


class Severity(StrEnum):
    MILD = "mild"
    MODERATE = "moderate"
    SEVERE = "severe"


class NoteKind(StrEnum):
    PROGRESS = "progress"
    ADMISSION = "admission"
    DISCHARGE = "discharge"
    TCM_FOUR_EXAMINATIONS = "tcm_four_examinations"  # 四诊: 望闻问切
    OTHER = "other"


class _Owned:
    """Columns every record entry has."""

    patient_record_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("patient_records.id"), index=True
    )
    institution_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("institutions.id"))
    recorded_by: Mapped[uuid.UUID | None]


class Encounter(IdMixin, TimestampMixin, _Owned, Base):
    __tablename__ = "encounters"
    __table_args__ = (Index("ix_encounters_institution_start", "institution_id", "start"),)

    department_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("departments.id"))
    practitioner_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("practitioners.id"))
    encounter_class: Mapped[EncounterClass] = mapped_column(
        str_enum(EncounterClass, "encounter_class")
    )
    status: Mapped[EncounterStatus] = mapped_column(str_enum(EncounterStatus, "encounter_status"))
    start: Mapped[datetime]
    end: Mapped[datetime | None]
    reason: Mapped[str | None] = mapped_column(Text)


class Diagnosis(IdMixin, TimestampMixin, _Owned, Base):
    """An integrated diagnosis: Western (ICD-10) with TCM disease and TCM pattern (证)."""

    __tablename__ = "diagnoses"

    encounter_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("encounters.id"), index=True)
    primary: Mapped[bool] = mapped_column(Boolean, default=False)
    western_code: Mapped[str | None] = mapped_column(String(16))  # ICD-10
    western_text: Mapped[str | None] = mapped_column(String(300))
    tcm_disease_system: Mapped[str | None] = mapped_column(String(16))  # gbt15657 | icd11
    tcm_disease_code: Mapped[str | None] = mapped_column(String(32))
    tcm_disease_text: Mapped[str | None] = mapped_column(String(300))
    tcm_pattern_system: Mapped[str | None] = mapped_column(String(16))
    tcm_pattern_code: Mapped[str | None] = mapped_column(String(32))
    tcm_pattern_text: Mapped[str | None] = mapped_column(String(300))
    status: Mapped[ClinicalStatus] = mapped_column(str_enum(ClinicalStatus, "clinical_status"))
    recorded_at: Mapped[datetime]


class Allergy(IdMixin, TimestampMixin, _Owned, Base):
    __tablename__ = "allergies"

    substance: Mapped[str] = mapped_column(String(200))
    substance_code: Mapped[str | None] = mapped_column(String(64))
    category: Mapped[AllergyCategory] = mapped_column(str_enum(AllergyCategory, "allergy_category"))
    reaction: Mapped[str | None] = mapped_column(String(300))
    severity: Mapped[Severity | None] = mapped_column(str_enum(Severity, "severity"))
    status: Mapped[ClinicalStatus] = mapped_column(str_enum(ClinicalStatus, "clinical_status"))
    recorded_at: Mapped[datetime]


class MedicationStatement(IdMixin, TimestampMixin, _Owned, Base):
    """A medication the patient takes (Western drug or Chinese patent medicine)."""

    __tablename__ = "medication_statements"

    drug: Mapped[str] = mapped_column(String(200))
    drug_code: Mapped[str | None] = mapped_column(String(64))
    dose: Mapped[str | None] = mapped_column(String(100))
    route: Mapped[str | None] = mapped_column(String(50))
    frequency: Mapped[str | None] = mapped_column(String(50))
    start_date: Mapped[date | None] = mapped_column(Date)
    end_date: Mapped[date | None] = mapped_column(Date)
    status: Mapped[MedicationStatus] = mapped_column(
        str_enum(MedicationStatus, "medication_status")
    )
    recorded_at: Mapped[datetime]


class ClinicalNote(IdMixin, TimestampMixin, _Owned, Base):
    __tablename__ = "clinical_notes"

    encounter_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("encounters.id"), index=True)
    kind: Mapped[NoteKind] = mapped_column(str_enum(NoteKind, "note_kind"))
    text: Mapped[str] = mapped_column(Text, default="")
    # The four examinations: inspection (望, incl. tongue), listening and smelling (闻),
    # inquiry (问), palpation (切, incl. pulse).
    tcm_exam: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    recorded_at: Mapped[datetime]


class Procedure(IdMixin, TimestampMixin, _Owned, Base):
    __tablename__ = "procedures"

    encounter_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("encounters.id"), index=True)
    code_system: Mapped[str | None] = mapped_column(String(32))
    code: Mapped[str | None] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(String(300))
    performed_at: Mapped[datetime]
