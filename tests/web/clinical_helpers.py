"""Helpers for the clinical pages' TestClient tests: a logged-in browser-less client per
account, the CSRF token it must send, and a small clinical world (a member, a patient
registered there with an encounter and a recent recognisable lab result)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from medalliance.access.models import User
from medalliance.domains.alliance.models import Institution
from medalliance.domains.patients.models import PatientRecord, Person
from medalliance.domains.records import schemas as records_schemas
from medalliance.domains.records import service as records_service
from medalliance.domains.records.models import Encounter, EncounterClass
from medalliance.domains.results import schemas as results_schemas
from medalliance.domains.results import service as results_service
from medalliance.domains.results.models import Result
from medalliance.kernel.actor import Actor
from medalliance.kernel.clock import utcnow
from medalliance.kernel.roles import Role
from medalliance.web import csrf as web_csrf
from tests.conftest import actor_for
from tests.factories.access import UserFactory
from tests.factories.alliance import AllianceFactory, InstitutionFactory
from tests.factories.patients import make_patient
from tests.factories.results import accredit, seed_catalogue
from tests.web.conftest import web_login

GLUCOSE = "14749-6"  # fasting glucose: on the recognised list, with a validity window
POTASSIUM = "2823-3"


def actor_of(user: User, institution: Institution) -> Actor:
    return actor_for(user.role, institution=institution, user_id=user.id, username=user.username)


@contextmanager
def web_client(app: FastAPI, user: User) -> Iterator[TestClient]:
    """A client logged in through the login page as ``user``."""
    with TestClient(app, raise_server_exceptions=False) as client:
        web_login(client, user)
        yield client


def csrf(client: TestClient) -> str:
    """The token the logged-in client must send back (its cookie's value)."""
    return client.cookies.get(web_csrf.COOKIE) or ""


def count(session: Session, model: Any, *where: Any) -> int:
    return session.scalar(select(func.count()).select_from(model).where(*where)) or 0


@dataclass
class World:
    home: Institution
    other: Institution
    clinician: User
    person: Person
    record: PatientRecord
    encounter: Encounter
    glucose: Result


def make_world(session: Session) -> World:
    seed_catalogue()
    alliance = AllianceFactory()
    home, other = InstitutionFactory(alliance=alliance), InstitutionFactory(alliance=alliance)
    accredit(home, GLUCOSE, POTASSIUM)
    clinician = UserFactory(role=Role.CLINICIAN, institution=home)
    person, record = make_patient(home, family_name="李", given_name="秀兰")
    doctor = actor_of(clinician, home)
    encounter = records_service.create_encounter(
        session=session,
        actor=doctor,
        person_id=person.id,
        data=records_schemas.EncounterCreate(
            encounter_class=EncounterClass.OUTPATIENT,
            start=utcnow() - timedelta(hours=1),
            reason="咳嗽 头痛 三天",
        ),
    )
    glucose = results_service.record_lab_result(
        session=session,
        actor=doctor,
        person_id=person.id,
        data=results_schemas.LabResultIn(
            item_code=GLUCOSE,
            effective_at=utcnow() - timedelta(days=2),
            value_numeric=5.4,
            unit="mmol/L",
        ),
    )
    session.flush()
    return World(home, other, clinician, person, record, encounter, glucose)


def new_user(role: Role, institution: Institution) -> User:
    user: User = UserFactory(role=role, institution=institution)
    return user
