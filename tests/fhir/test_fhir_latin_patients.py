"""Synthea patients have Latin names and no resident ID: the patients service registers
them (the FHIR layer calls it as the JSON API does) and finds them by name."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from sqlalchemy.orm import Session

from medalliance.domains.patients import service as patients_service
from medalliance.domains.patients.schemas import PatientCreate
from medalliance.kernel.actor import Actor
from medalliance.kernel.roles import Role
from tests.factories.alliance import InstitutionFactory


def test_latin_name_without_resident_id_registers_and_is_found(
    session: Session, make_actor: Callable[..., Actor]
) -> None:
    actor = make_actor(Role.CLINICIAN, institution=InstitutionFactory())
    result = patients_service.register(
        session=session,
        actor=actor,
        data=PatientCreate(
            family_name="Lemke863",  # Synthea appends digits to names
            given_name="Abram53",
            sex="male",
            birth_date=date(1975, 6, 18),
            phones=["555-519-6254"],
            province="Massachusetts",
            city="Boston",
            street="1047 Hegmann Ramp",
        ),
    )
    patient = result.patient
    assert patient.name == "Abram53 Lemke863"
    assert patient.name_pinyin == "lemke abram"
    assert patient.id_number is None
    found = patients_service.search(session, actor, "lemke abram", limit=10, offset=0)
    assert [p.id for p in found] == [patient.id]
