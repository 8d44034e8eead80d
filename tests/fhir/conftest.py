"""Fixtures of the FHIR tests: a member with a clinician, resources built as dicts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from medalliance.kernel.actor import Actor
from medalliance.kernel.roles import Role
from tests.factories.alliance import AllianceFactory, InstitutionFactory

Headers = Callable[[Actor], dict[str, str]]
ID_NUMBER = "11010519491231002X"


def patient_resource(**extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:medalliance:id:resident-id", "value": ID_NUMBER}],
        "name": [{"family": "王", "given": ["秀英"]}],
        "gender": "female",
        "birthDate": "1949-12-31",
        **extra,
    }


def encounter_resource(patient_ref: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": patient_ref},
        "period": {"start": "2026-11-01T09:00:00+08:00", "end": "2026-11-01T09:30:00+08:00"},
        "reasonCode": [{"text": "头晕 dizziness"}],
        **extra,
    }


def condition_resource(patient_ref: str, encounter_ref: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": "active",
                }
            ]
        },
        "code": {
            "coding": [
                {
                    "system": "http://hl7.org/fhir/sid/icd-10",
                    "code": "I10",
                    "display": "Essential hypertension",
                },
                {
                    "system": "http://id.who.int/icd/release/11/mms",
                    "code": "SF52",
                    "display": "Liver yang ascendant hyperactivity pattern (TM1)",
                },
            ]
        },
        "subject": {"reference": patient_ref},
        "encounter": {"reference": encounter_ref},
        **extra,
    }


@pytest.fixture
def member(session: Session, make_actor: Callable[..., Actor], auth_headers: Headers) -> Any:
    alliance = AllianceFactory()
    a, b = InstitutionFactory(alliance=alliance), InstitutionFactory(alliance=alliance)

    class Member:
        inst = a
        other = b
        clinician = make_actor(Role.CLINICIAN, institution=a)
        h = auth_headers(clinician)
        h_other = auth_headers(make_actor(Role.CLINICIAN, institution=b))
        h_admin = auth_headers(make_actor(Role.ALLIANCE_ADMIN))
        h_researcher = auth_headers(make_actor(Role.RESEARCHER, institution=a))

    return Member


@pytest.fixture
def fhir(client: TestClient) -> TestClient:
    return client
