"""What FHIR carries that the domain does not model, kept beside the domain rows:
identifiers (including a sender's own resource id, for conditional create and idempotent
imports) and extra codings (e.g. SNOMED CT codes of an imported Condition)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from medalliance.db.base import Base, IdMixin
from medalliance.kernel.clock import utcnow


class FhirIdentifier(IdMixin, Base):
    __tablename__ = "fhir_identifiers"
    __table_args__ = (
        UniqueConstraint("resource_type", "system", "value"),
        Index("ix_fhir_identifiers_resource", "resource_type", "resource_id"),
    )

    resource_type: Mapped[str] = mapped_column(String(40))
    resource_id: Mapped[uuid.UUID]
    system: Mapped[str] = mapped_column(String(255))
    value: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class FhirCoding(IdMixin, Base):
    __tablename__ = "fhir_codings"
    __table_args__ = (
        Index("ix_fhir_codings_resource", "resource_type", "resource_id"),
        Index("ix_fhir_codings_code", "resource_type", "code", "system"),
    )

    resource_type: Mapped[str] = mapped_column(String(40))
    resource_id: Mapped[uuid.UUID]
    element: Mapped[str] = mapped_column(String(40))  # e.g. "code", "type"
    system: Mapped[str | None] = mapped_column(String(255))
    code: Mapped[str | None] = mapped_column(String(100))
    display: Mapped[str | None] = mapped_column(String(500))
