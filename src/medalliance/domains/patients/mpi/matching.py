"""Find the person a new source record belongs to.

A valid resident ID that agrees with birth date and sex is decisive (it was checked
before we get here). Without one, a new person is created; the probabilistic
(Fellegi–Sunter) stage and its review queue plug in at ``probabilistic_match``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from medalliance.domains.patients.models import LinkMethod, PatientRecord


@dataclass(frozen=True, slots=True)
class MatchResult:
    person_id: uuid.UUID | None  # None: create a new person
    method: LinkMethod
    score: float | None = None


def match_new_record(session: Session, record: PatientRecord) -> MatchResult:
    if record.id_number:
        person_id = session.scalar(
            select(PatientRecord.person_id)
            .where(PatientRecord.id_number == record.id_number)
            .order_by(PatientRecord.created_at)
            .limit(1)
        )
        if person_id is not None:
            return MatchResult(person_id, LinkMethod.RESIDENT_ID, 1.0)
    return MatchResult(None, LinkMethod.NEW_PERSON)
