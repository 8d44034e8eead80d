"""The golden record: the person's best current view, derived from its source records.

The newest source record wins field by field; empty fields are filled from older
records. It is recomputed whenever a record is added, changed, linked or unlinked.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from medalliance.domains.patients.models import PatientRecord, Person

GOLDEN_FIELDS = (
    "family_name",
    "given_name",
    "name",
    "name_pinyin",
    "name_initials",
    "sex",
    "birth_date",
    "id_number",
    "province",
    "city",
    "district",
)


def records_of(session: Session, person_id: uuid.UUID) -> list[PatientRecord]:
    return list(
        session.scalars(
            select(PatientRecord)
            .where(PatientRecord.person_id == person_id)
            .order_by(PatientRecord.updated_at.desc(), PatientRecord.id.desc())
        )
    )


def refresh(session: Session, person: Person) -> None:
    session.flush()
    records = records_of(session, person.id)
    person.active = bool(records)
    if not records:
        return
    for field in GOLDEN_FIELDS:
        value = next((getattr(r, field) for r in records if getattr(r, field) is not None), None)
        if value is not None:
            setattr(person, field, value)
    person.phone = next((r.phones[0] for r in records if r.phones), None)
    person.version += 1


def new_person(session: Session, record: PatientRecord) -> Person:
    """A person of its own for a record (a new registration, or one split off)."""
    person = Person(
        family_name=record.family_name,
        given_name=record.given_name,
        name=record.name,
        name_pinyin=record.name_pinyin,
        name_initials=record.name_initials,
        sex=record.sex,
        birth_date=record.birth_date,
        active=True,
        version=0,
    )
    session.add(person)
    session.flush()
    return person
