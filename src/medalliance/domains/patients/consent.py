"""Consent to alliance-wide sharing: recorded rows, or the alliance's default policy."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from medalliance.domains.alliance import service as alliance_service
from medalliance.domains.alliance.models import SharingDefault
from medalliance.domains.patients.models import Consent, ConsentStatus, PatientRecord
from medalliance.domains.patients.schemas import ConsentRead


def latest(session: Session, person_id: uuid.UUID) -> Consent | None:
    return session.scalar(
        select(Consent)
        .where(Consent.person_id == person_id)
        .order_by(Consent.recorded_at.desc(), Consent.id.desc())
        .limit(1)
    )


def history(session: Session, person_id: uuid.UUID) -> list[Consent]:
    return list(
        session.scalars(
            select(Consent)
            .where(Consent.person_id == person_id)
            .order_by(Consent.recorded_at.desc(), Consent.id.desc())
        )
    )


_DEFAULTS_KEY = "medalliance.patients.sharing_defaults"


def _alliance_default(
    session: Session, person_id: uuid.UUID, first_institution_id: uuid.UUID | None
) -> SharingDefault:
    institution_id = first_institution_id or session.scalar(
        select(PatientRecord.institution_id)
        .where(PatientRecord.person_id == person_id)
        .order_by(PatientRecord.created_at)
        .limit(1)
    )
    if institution_id is None:
        return SharingDefault.OPT_IN
    # Alliance policy changes rarely: remember it for the rest of this transaction.
    cache: dict[uuid.UUID, SharingDefault] = session.info.setdefault(_DEFAULTS_KEY, {})
    if institution_id not in cache:
        cache[institution_id] = alliance_service.sharing_default_for(session, institution_id)
    return cache[institution_id]


def in_force(
    session: Session, person_id: uuid.UUID, *, first_institution_id: uuid.UUID | None = None
) -> ConsentRead:
    """The consent in force; ``first_institution_id`` (where the person was first
    registered) spares a query when the caller knows it."""
    row = latest(session, person_id)
    if row is None:
        default = _alliance_default(session, person_id, first_institution_id)
        status = (
            ConsentStatus.GRANTED if default is SharingDefault.OPT_OUT else ConsentStatus.WITHDRAWN
        )
        return ConsentRead(status=status, source="alliance-default", excluded_institution_ids=[])
    return to_read(row)


def to_read(row: Consent) -> ConsentRead:
    return ConsentRead(
        status=row.status,
        source="recorded",
        excluded_institution_ids=[uuid.UUID(i) for i in row.excluded_institution_ids],
        note=row.note,
        recorded_by=row.recorded_by,
        recorded_at=row.recorded_at,
    )
