"""Find the person a new source record belongs to (the online path).

1. A valid resident ID that agrees with birth date and sex (checked before we get
   here) is decisive: the record joins the person who already has that number.
2. Otherwise candidates sharing a blocking key (birth date, full pinyin, a phone)
   are scored with the Fellegi–Sunter model; the best person above the link
   threshold is linked, those in the review band go to the review queue.

Only the compared columns are loaded, as plain rows. A block of more than a few
candidates is scored with the vectorised comparisons of batch linkage (the same
levels and weights, tested equal to the one-pair path), so a common name costs
milliseconds, not one Python comparison per candidate.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import ColumnElement, Row, case, extract, func, select, text, union
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
from medalliance.domains.patients.mpi.comparisons import level_matrix
from medalliance.domains.patients.mpi.features import FeatureTable
from medalliance.domains.patients.mpi.model import MatchModel, Score, default_model

# Candidates per blocking key, at most. The name key is the one that grows with the index
# (many people are called 王伟 or 徐艳): its block is cut to the NAME_BLOCK records most
# likely to be the same person by birth date (see ``candidates``).
MAX_CANDIDATES = 1000
NAME_BLOCK = 200
# Below this many candidates one-pair scoring is quicker than building a feature table.
VECTORISE_FROM = 24


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


_SEX_CODES = {Sex.MALE: "M", Sex.FEMALE: "F"}


def record_features(record: PatientRecord) -> features.Features:
    return features.build(
        str(record.id),
        family_name=record.family_name,
        given_name=record.given_name,
        birth_date=record.birth_date,
        sex=_SEX_CODES.get(record.sex),
        id_number=record.id_number,
        phones=record.phones,
        street=record.street,
        city=record.district or record.city,
        postcode=record.postcode,
    )


# What the matcher compares of a candidate, and whose it is: nothing more is loaded.
COMPARED_COLUMNS = (
    PatientRecord.id,
    PatientRecord.person_id,
    PatientRecord.family_name,
    PatientRecord.given_name,
    PatientRecord.birth_date,
    PatientRecord.sex,
    PatientRecord.id_number,
    PatientRecord.phones,
    PatientRecord.street,
    PatientRecord.district,
    PatientRecord.city,
    PatientRecord.postcode,
)


def row_features(row: Row[Any]) -> features.Features:
    """``record_features`` of a candidate loaded as a row of ``COMPARED_COLUMNS``."""
    return features.build(
        str(row.id),
        family_name=row.family_name,
        given_name=row.given_name,
        birth_date=row.birth_date,
        sex=_SEX_CODES.get(row.sex),
        id_number=row.id_number,
        phones=row.phones,
        street=row.street,
        city=row.district or row.city,
        postcode=row.postcode,
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


def _days_apart(session: Session, born: date) -> ColumnElement[Any]:
    """|birth_date − born| in days (PostgreSQL subtracts dates; SQLite needs julianday)."""
    if session.get_bind().dialect.name == "sqlite":
        return func.abs(func.julianday(PatientRecord.birth_date) - func.julianday(born))
    return func.abs(PatientRecord.birth_date - born)


def _nearest_first(session: Session, born: date) -> list[ColumnElement[Any]]:
    """ORDER BY for the name block: the same birth date or the day and month swapped;
    then the same day and month in another year (a mistyped year); then the nearest
    birth dates (a mistyped day stays near); records without a birth date last."""
    likeliest = [born]
    if born.day <= 12 and born.day != born.month:
        likeliest.append(date(born.year, born.day, born.month))
    same_day = (extract("month", PatientRecord.birth_date) == born.month) & (
        extract("day", PatientRecord.birth_date) == born.day
    )
    rank = case((PatientRecord.birth_date.in_(likeliest), 0), (same_day, 1), else_=2)
    return [rank, _days_apart(session, born).nulls_last()]


def candidates(session: Session, record: PatientRecord) -> list[Row[Any]]:
    """Records sharing a blocking key, as rows of ``COMPARED_COLUMNS``.

    One UNION of single-key selects, so each arm uses its own index (an OR across
    columns makes PostgreSQL scan the table). Each arm is capped, in a stated order so
    that the cap keeps the likeliest records, not arbitrary ones. The name arm, the
    only one a large index makes large, keeps ``NAME_BLOCK`` records by birth date
    (``_nearest_first``), read from the index on (name_pinyin_compact, birth_date, id)
    alone: a duplicate with a mistyped or swapped birth date stays in, namesakes born
    decades apart drop out."""
    name_arm = select(PatientRecord.id).where(
        PatientRecord.name_pinyin_compact == record.name_pinyin_compact
    )
    if record.birth_date is not None:
        name_arm = name_arm.order_by(*_nearest_first(session, record.birth_date))
    arms = [name_arm.order_by(PatientRecord.id).limit(NAME_BLOCK)]
    if record.birth_date is not None:
        arms.append(
            select(PatientRecord.id)
            .where(PatientRecord.birth_date == record.birth_date)
            .order_by(PatientRecord.id)
            .limit(MAX_CANDIDATES)
        )
    if record.phones:
        arms.append(
            select(PatientIdentifier.record_id)
            .where(
                PatientIdentifier.value.in_(record.phones),
                PatientIdentifier.system == IdentifierSystem.PHONE,
            )
            .order_by(PatientIdentifier.record_id)
            .limit(MAX_CANDIDATES)
        )
    # Each capped arm as a derived table: SQLite allows no LIMIT inside a UNION's members.
    ids = union(*(select(arm.subquery().c[0]) for arm in arms)).subquery()
    query = select(*COMPARED_COLUMNS).where(PatientRecord.id.in_(select(ids.c[0])))
    if record.id is not None:
        query = query.where(PatientRecord.id != record.id)
    # Core rows through the session's connection: no ORM result machinery per row.
    return list(session.connection().execute(query))


def candidate_weights(
    scorer: MatchModel, mine: features.Features, others: Sequence[features.Features]
) -> npt.NDArray[np.float64]:
    """``scorer.score(mine, other).weight`` of each candidate: one pair at a time for a
    few, else all at once with the vectorised comparisons (the same floats)."""
    if len(others) < VECTORISE_FROM:
        return np.array([scorer.score(mine, other).weight for other in others], dtype=np.float64)
    table = FeatureTable.of([mine, *others])
    left = np.zeros(len(others), dtype=np.intp)
    right = np.arange(1, len(others) + 1, dtype=np.intp)
    return scorer.pair_weights(level_matrix(table, left, right), table=table, left=left)


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
    others = [row_features(row) for row in found]
    weights = candidate_weights(scorer, mine, others)
    # Each person's best record, people in order of that record's weight.
    best: dict[uuid.UUID, int] = {}
    for k in np.argsort(-weights, kind="stable").tolist():
        best.setdefault(found[k].person_id, k)
    ranked = list(best.values())

    def candidate(k: int) -> Candidate:
        return Candidate(found[k].person_id, found[k].id, scorer.score(mine, others[k]))

    top = candidate(ranked[0])
    if scorer.decide(top.score.probability) == "link":
        return MatchResult(top.person_id, LinkMethod.PROBABILISTIC, top.score.probability)
    review = [
        c
        for c in (candidate(k) for k in ranked[:5])
        if scorer.decide(c.score.probability) == "review"
    ]
    return MatchResult(None, LinkMethod.NEW_PERSON, None, review=review)
