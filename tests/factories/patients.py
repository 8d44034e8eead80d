"""Patient factories: a person with one source record, bypassing the MPI."""

from __future__ import annotations

from datetime import date

from medalliance.domains.alliance.models import Institution
from medalliance.domains.patients import golden, names
from medalliance.domains.patients.identity import Sex
from medalliance.domains.patients.models import LinkMethod, PatientRecord, Person
from tests.factories import current_session


def make_patient(
    institution: Institution,
    *,
    family_name: str = "王",
    given_name: str = "伟",
    sex: Sex = Sex.MALE,
    birth_date: date | None = date(1970, 5, 17),
    id_number: str | None = None,
    person: Person | None = None,
    phones: list[str] | None = None,
    street: str | None = None,
    district: str | None = None,
    postcode: str | None = None,
) -> tuple[Person, PatientRecord]:
    session = current_session()
    pinyin = names.full_pinyin(family_name, given_name)
    if person is None:
        person = Person(
            family_name=family_name,
            given_name=given_name,
            name=family_name + given_name,
            name_pinyin=pinyin,
            name_initials=names.initials(pinyin),
            sex=sex,
            birth_date=birth_date,
            active=True,
            version=0,
        )
        session.add(person)
        session.flush()
    record = PatientRecord(
        person_id=person.id,
        institution_id=institution.id,
        family_name=family_name,
        given_name=given_name,
        name=family_name + given_name,
        name_pinyin=pinyin,
        name_initials=names.initials(pinyin),
        name_pinyin_compact=pinyin.replace(" ", ""),
        sex=sex,
        birth_date=birth_date,
        id_number=id_number,
        phones=phones or [],
        street=street,
        district=district,
        postcode=postcode,
        link_method=LinkMethod.NEW_PERSON,
    )
    session.add(record)
    golden.refresh(session, person)
    session.flush()
    return person, record
