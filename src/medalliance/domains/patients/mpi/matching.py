"""Find the person a new source record belongs to (the online path).

1. A valid resident ID that agrees with birth date and sex (checked before we get
   here) is decisive: the record joins the person who already has that number.
2. Otherwise candidates sharing a blocking key (birth date, full pinyin, a phone)
   are scored with the Fellegi–Sunter model; the best person above the link
   threshold is linked, those in the review band go to the review queue.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from functools import lru_cache

from sqlalchemy import func, select, text, union
from sqlalchemy.orm import Session

from medalliance.domains.patients.identity import Sex
from medalliance.domains.patients.models import (
    IdentifierSystem,
    LinkMethod,
    PatientIdentifier,
    PatientRecord,
    Person,
)
from medalliance.domains.patients.mpi import features
from medalliance.domains.patients.mpi.model import MatchModel, Score, default_model

MAX_CANDIDATES = 1000
PG_PERSONS_ESTIMATE = (
    "SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE relname = 'persons'"
)


@dataclass(frozen=True, slots=True)
class Candidate:
    person_id: uuid.UUID
    record_id: uuid.UUID
    score: Score


@dataclass(frozen=True, slots=True)
class MatchResult:
    person_id: uuid.UUID | None  # None: create a new person
    method: LinkMethod
    score: float | None = None
    review: list[Candidate] = field(default_factory=list)


@lru_cache(maxsize=1)
def shipped_model() -> MatchModel:
    return default_model()


def record_features(record: PatientRecord) -> features.Features:
    return features.build(
        str(record.id),
        family_name=record.family_name,
        given_name=record.given_name,
        birth_date=record.birth_date,
        sex={Sex.MALE: "M", Sex.FEMALE: "F"}.get(record.sex),
        id_number=record.id_number,
        phones=record.phones,
        street=record.street,
        city=record.district or record.city,
        postcode=record.postcode,
    )


_population: dict[str, tuple[float, int]] = {}


def population(session: Session) -> int:
    """How many people the index holds (cached for a minute: it only scales λ)."""
    bind = session.get_bind()
    key = str(bind.engine.url)
    cached = _population.get(key)
    if cached is not None and time.monotonic() - cached[0] < 60:
        return cached[1]
    if bind.dialect.name == "postgresql":
        # The planner's estimate is plenty to scale λ, and costs nothing at 10M rows.
        count = int(
            session.scalar(
                text(
                    "SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE relname = 'persons'"
                )
            )
            or 0
        )
        if count == 0:  # never analysed yet
            count = int(session.scalar(select(func.count()).select_from(Person)) or 0)
    else:
        count = int(session.scalar(select(func.count()).select_from(Person)) or 0)
    _population[key] = (time.monotonic(), count)
    return count


def candidates(session: Session, record: PatientRecord) -> list[PatientRecord]:
    """Records sharing a blocking key. One UNION of single-key selects, so each arm
    uses its own index (an OR across columns makes PostgreSQL scan the table)."""
    arms = [
        select(PatientRecord.id).where(
            PatientRecord.name_pinyin_compact == record.name_pinyin_compact
        )
    ]
    if record.birth_date is not None:
        arms.append(select(PatientRecord.id).where(PatientRecord.birth_date == record.birth_date))
    if record.phones:
        arms.append(
            select(PatientIdentifier.record_id).where(
                PatientIdentifier.value.in_(record.phones),
                PatientIdentifier.system == IdentifierSystem.PHONE,
            )
        )
    ids = union(*arms).subquery()
    query = (
        select(PatientRecord).where(PatientRecord.id.in_(select(ids.c[0]))).limit(MAX_CANDIDATES)
    )
    if record.id is not None:
        query = query.where(PatientRecord.id != record.id)
    return list(session.scalars(query))


def match_new_record(
    session: Session, record: PatientRecord, *, model: MatchModel | None = None
) -> MatchResult:
    if record.id_number:
        person_id = session.scalar(
            select(PatientRecord.person_id)
            .where(PatientRecord.id_number == record.id_number)
            .order_by(PatientRecord.created_at)
            .limit(1)
        )
        if person_id is not None:
            return MatchResult(person_id, LinkMethod.RESIDENT_ID, 1.0)
    found = candidates(session, record)
    if not found:
        return MatchResult(None, LinkMethod.NEW_PERSON)
    scorer = (model or shipped_model()).for_population(max(population(session), 2))
    mine = record_features(record)
    best: dict[uuid.UUID, Candidate] = {}
    for other in found:
        score = scorer.score(mine, record_features(other))
        current = best.get(other.person_id)
        if current is None or score.probability > current.score.probability:
            best[other.person_id] = Candidate(other.person_id, other.id, score)
    ranked = sorted(best.values(), key=lambda c: c.score.weight, reverse=True)
    top = ranked[0]
    if scorer.decide(top.score.probability) == "link":
        return MatchResult(top.person_id, LinkMethod.PROBABILISTIC, top.score.probability)
    review = [c for c in ranked if scorer.decide(c.score.probability) == "review"]
    return MatchResult(None, LinkMethod.NEW_PERSON, None, review=review[:5])
