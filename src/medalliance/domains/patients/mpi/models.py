"""MPI bookkeeping: the review queue and the full history of links."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from medalliance.db.base import Base, IdMixin
from medalliance.db.types import str_enum


class ReviewStatus(StrEnum):
    OPEN = "open"
    LINKED = "linked"  # decided: the same person
    DISTINCT = "distinct"  # decided: not the same person; never proposed again


class LinkAction(StrEnum):
    CREATED = "created"  # a new record started a new person
    AUTO_LINKED = "auto_linked"  # the matcher linked it
    LINKED = "linked"  # a person linked it
    UNLINKED = "unlinked"  # a person split it off into a person of its own


class ReviewItem(IdMixin, Base):
    """A pair the matcher was unsure about: a record and a person it may belong to."""

    __tablename__ = "mpi_review_items"
    __table_args__ = (Index("ix_mpi_review_items_status_created", "status", "created_at"),)

    record_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patient_records.id"), index=True)
    candidate_record_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("patient_records.id"), index=True
    )
    probability: Mapped[float]
    weight: Mapped[float]
    comparison: Mapped[dict[str, object]] = mapped_column(JSON)
    status: Mapped[ReviewStatus] = mapped_column(str_enum(ReviewStatus, "review_status", length=16))
    created_at: Mapped[datetime]
    decided_by: Mapped[uuid.UUID | None]
    decided_at: Mapped[datetime | None]
    note: Mapped[str | None] = mapped_column(Text)


class LinkEvent(IdMixin, Base):
    """Every change of a source record's person, never deleted."""

    __tablename__ = "mpi_link_events"

    record_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("patient_records.id"), index=True)
    from_person_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("persons.id"))
    to_person_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("persons.id"), index=True)
    action: Mapped[LinkAction] = mapped_column(str_enum(LinkAction, "link_action", length=16))
    method: Mapped[str] = mapped_column(String(32))
    probability: Mapped[float | None]
    actor_user_id: Mapped[uuid.UUID | None]
    reason: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime]
