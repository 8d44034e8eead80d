"""Registry tables."""

from __future__ import annotations

import uuid
from enum import StrEnum

from sqlalchemy import Boolean, Float, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from medalliance.db.base import Base, IdMixin, TimestampMixin
from medalliance.db.types import str_enum


class Tier(StrEnum):
    LEAD = "lead"
    SECONDARY = "secondary"
    PRIMARY = "primary"


class InstitutionType(StrEnum):
    TCM = "tcm"
    GENERAL = "general"
    INTEGRATED = "integrated"
    SPECIALISED = "specialised"
    COMMUNITY_HEALTH_CENTRE = "community_health_centre"


class Discipline(StrEnum):
    WESTERN = "western"
    TCM = "tcm"
    INTEGRATED = "integrated"


class PractitionerTitle(StrEnum):
    """Professional titles (职称) used in Chinese hospitals."""

    CHIEF_PHYSICIAN = "chief_physician"  # 主任医师
    ASSOCIATE_CHIEF_PHYSICIAN = "associate_chief_physician"  # 副主任医师
    ATTENDING_PHYSICIAN = "attending_physician"  # 主治医师
    RESIDENT_PHYSICIAN = "resident_physician"  # 住院医师
    GENERAL_PRACTITIONER = "general_practitioner"  # 全科医师
    CHIEF_NURSE = "chief_nurse"  # 主任护师
    SUPERVISOR_NURSE = "supervisor_nurse"  # 主管护师
    NURSE = "nurse"  # 护师/护士
    CHIEF_PHARMACIST = "chief_pharmacist"  # 主任药师
    PHARMACIST = "pharmacist"  # 药师
    TECHNICIAN = "technician"  # 技师
    OTHER = "other"


class BedStatus(StrEnum):
    FREE = "free"
    OCCUPIED = "occupied"
    CLEANING = "cleaning"
    CLOSED = "closed"


class SharingDefault(StrEnum):
    """How a new patient's alliance-wide sharing consent starts (alliance policy)."""

    OPT_IN = "opt_in"
    OPT_OUT = "opt_out"


class Alliance(IdMixin, TimestampMixin, Base):
    __tablename__ = "alliances"

    code: Mapped[str] = mapped_column(String(32), unique=True)
    name_zh: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str] = mapped_column(String(200))
    region: Mapped[str | None] = mapped_column(String(100))
    sharing_default: Mapped[SharingDefault] = mapped_column(
        str_enum(SharingDefault, "sharing_default"), default=SharingDefault.OPT_OUT
    )


class Institution(IdMixin, TimestampMixin, Base):
    __tablename__ = "institutions"

    alliance_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("alliances.id"), index=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name_zh: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str] = mapped_column(String(200))
    tier: Mapped[Tier] = mapped_column(str_enum(Tier, "tier"))
    type: Mapped[InstitutionType] = mapped_column(str_enum(InstitutionType, "institution_type"))
    district: Mapped[str | None] = mapped_column(String(100))
    address: Mapped[str | None] = mapped_column(String(300))
    lead_institution_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("institutions.id"), index=True
    )
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class Department(IdMixin, TimestampMixin, Base):
    __tablename__ = "departments"
    __table_args__ = (UniqueConstraint("institution_id", "code"),)

    institution_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("institutions.id"), index=True)
    code: Mapped[str] = mapped_column(String(32))
    name_zh: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str] = mapped_column(String(200))
    discipline: Mapped[Discipline] = mapped_column(str_enum(Discipline, "discipline"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # where and how to reach it (a FHIR Location's telecom, address, position)
    phone: Mapped[str | None] = mapped_column(String(50))
    address: Mapped[str | None] = mapped_column(String(300))
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)


class Practitioner(IdMixin, TimestampMixin, Base):
    __tablename__ = "practitioners"

    institution_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("institutions.id"), index=True)
    department_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("departments.id"))
    name: Mapped[str] = mapped_column(String(100))
    name_en: Mapped[str | None] = mapped_column(String(100))
    title: Mapped[PractitionerTitle] = mapped_column(
        str_enum(PractitionerTitle, "practitioner_title")
    )
    discipline: Mapped[Discipline] = mapped_column(str_enum(Discipline, "discipline"))
    specialty: Mapped[str | None] = mapped_column(String(100))
    licence_number: Mapped[str] = mapped_column(String(32), unique=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class Bed(IdMixin, TimestampMixin, Base):
    __tablename__ = "beds"
    __table_args__ = (UniqueConstraint("department_id", "code"),)

    department_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("departments.id"), index=True)
    code: Mapped[str] = mapped_column(String(32))
    status: Mapped[BedStatus] = mapped_column(
        str_enum(BedStatus, "bed_status"), default=BedStatus.FREE
    )
    version: Mapped[int] = mapped_column(Integer, default=1)
