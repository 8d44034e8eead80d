"""The online matcher against the database: which candidates a capped name block
keeps, and that a block scored all at once decides as one scored pair by pair."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy.orm import Session

from medalliance.domains.alliance.models import Institution
from medalliance.domains.patients import names
from medalliance.domains.patients.identity import Sex
from medalliance.domains.patients.models import LinkMethod, PatientRecord
from medalliance.domains.patients.mpi import matching
from tests.factories.alliance import AllianceFactory, InstitutionFactory
from tests.factories.patients import make_patient

BORN = date(1970, 5, 8)  # day and month swapped: 1970-08-05


@pytest.fixture
def member(session: Session) -> Institution:
    return InstitutionFactory(alliance=AllianceFactory())


def new_record(
    institution: Institution,
    *,
    family_name: str = "王",
    given_name: str = "伟",
    birth_date: date | None = BORN,
    phones: list[str] | None = None,
    street: str | None = None,
    district: str | None = None,
    postcode: str | None = None,
) -> PatientRecord:
    """The unsaved record ``service.register`` hands to the matcher."""
    pinyin = names.full_pinyin(family_name, given_name)
    return PatientRecord(
        institution_id=institution.id,
        family_name=family_name,
        given_name=given_name,
        name=family_name + given_name,
        name_pinyin=pinyin,
        name_initials=names.initials(pinyin),
        name_pinyin_compact=pinyin.replace(" ", ""),
        sex=Sex.MALE,
        birth_date=birth_date,
        phones=phones or [],
        street=street,
        district=district,
        postcode=postcode,
    )


def test_a_capped_name_block_keeps_the_namesakes_born_nearest(
    session: Session, member: Institution, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(matching, "NAME_BLOCK", 4)
    # 王伟 born 0, 1, 2 … 9 days and 2 … 11 years away (each distance once), and one
    # without a birth date; 王玮 is a homophone: the same compact pinyin, the same block.
    offsets = [0, 1, -2, 3, -4, 5, 6, -7, 8, -9, *(365 * y + 30 for y in range(2, 12))]
    records = {}
    for days in reversed(offsets):  # the nearest last: not first by id or by insertion
        _, rec = make_patient(member, birth_date=BORN + timedelta(days=days))
        records[days] = rec
    _, year_typo = make_patient(member, birth_date=BORN.replace(year=1990))  # same day
    _, swapped = make_patient(member, birth_date=date(1970, 8, 5))  # 89 days away
    make_patient(member, given_name="玮", birth_date=BORN + timedelta(days=4000))
    make_patient(member, birth_date=None)
    # Someone else born the same day: the birth-date key, not the name block.
    _, other = make_patient(
        member, family_name="李", given_name="娜", sex=Sex.FEMALE, birth_date=BORN
    )

    found = {row.id for row in matching.candidates(session, new_record(member))}

    # the same or swapped date, the same day in another year, then the nearest dates
    nearest = {records[0].id, swapped.id, year_typo.id, records[1].id}
    assert found == nearest | {other.id}


def test_without_a_birth_date_the_name_block_is_still_capped(
    session: Session, member: Institution, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(matching, "NAME_BLOCK", 3)
    for years in range(6):
        make_patient(member, birth_date=BORN + timedelta(days=365 * years))

    rows = matching.candidates(session, new_record(member, birth_date=None))

    assert len(rows) == 3
    assert rows[0]._fields == tuple(c.key for c in matching.COMPARED_COLUMNS)


def test_a_large_block_is_scored_at_once_and_decides_as_pair_by_pair(
    session: Session, member: Institution
) -> None:
    # 40 namesakes born over four decades, and the person the registration belongs to:
    # the same phone and street, a homophone in the given name, a mistyped birth day.
    for k in range(40):
        make_patient(
            member,
            birth_date=BORN + timedelta(days=377 * (k - 20)),
            phones=[f"139{k:08d}"],
            street=f"解放路{k + 1}号",
            district="西城区",
            postcode="330105",
        )
    person, _ = make_patient(
        member,
        birth_date=BORN,
        phones=["13812345678"],
        street="和平街12号",
        district="东城区",
        postcode="330102",
    )
    record = new_record(
        member,
        given_name="玮",
        birth_date=BORN + timedelta(days=1),
        phones=["13812345678"],
        street="和平街12号",
        district="东城区",
        postcode="330102",
    )
    found = matching.candidates(session, record)
    assert len(found) > matching.VECTORISE_FROM

    result = matching.match_new_record(session, record)

    assert result.person_id == person.id
    assert result.method is LinkMethod.PROBABILISTIC
    scorer = matching.shipped_model().for_population(max(matching.population(session), 2))
    mine = matching.record_features(record)
    others = [matching.row_features(row) for row in found]
    at_once = matching.candidate_weights(scorer, mine, others)
    assert at_once.tolist() == [scorer.score(mine, other).weight for other in others]
    assert result.score == max(scorer.score(mine, other).probability for other in others)
